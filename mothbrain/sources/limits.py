"""The limits ingest holds a reader to while it reads one file: how large the file may be once unpacked
(`ingest.max_file_mb`, for readers that inflate: a zip member) and how deep one record may nest
(`ingest.max_json_depth`, for the JSON readers).

Ingest checks a file's own size before reading it, but a 2 MB zip can inflate to 2 GiB. So ingest also sets
the limit for the reader while it runs (`file_limit`), and a zip member is held to it twice: by the size its
header declares, before a byte is inflated (`FileRefused`), and by the bytes actually inflated
(`CappedReader`). CPython's zipfile already stops a member at its declared size (and then fails its CRC), so
the count is a second guard that does not rest on that.
"""

from __future__ import annotations

import io
import math
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import BinaryIO

from mothbrain.config.schema import IngestConfig

PIECE = 1 << 16  # bytes inflated per read

# A context variable, not a reader argument: every reader keeps its (path, rel, source, problems) signature,
# and a reader called outside ingest (a test, a script) has no limit.
_LIMIT_MB: ContextVar[float] = ContextVar("max_file_mb", default=math.inf)
# Outside ingest the depth limit is still the default one: deep nesting costs time and memory wherever it is read.
_DEPTH: ContextVar[int] = ContextVar("max_json_depth", default=IngestConfig.max_json_depth)


@contextmanager
def file_limit(max_file_mb: float, max_json_depth: int | None = None) -> Iterator[None]:
    """Readers run in this block hold what they unpack to `max_file_mb` (MB of 10^6 bytes, as ingest counts) and
    a record's nesting to `max_json_depth` (None: the default)."""
    token = _LIMIT_MB.set(max_file_mb)
    depth = _DEPTH.set(IngestConfig.max_json_depth if max_json_depth is None else max_json_depth)
    try:
        yield
    finally:
        _DEPTH.reset(depth)
        _LIMIT_MB.reset(token)


def json_depth() -> int:
    """The nesting depth a JSON record may reach (`ingest.max_json_depth`)."""
    return _DEPTH.get()


def too_deep_reason(depth: int | None = None) -> str:
    """Why a record nested past the limit is refused, and the fix: one line for a problem report."""
    limit = json_depth()
    how = f"nested {depth} deep" if depth is not None else f"nested more than {limit} deep"
    return f"{how}, past ingest.max_json_depth ({limit}); skipped, its neighbours kept (raise the limit to read it)"


def limit_mb() -> float:
    """The limit in force (inf outside `file_limit`)."""
    return _LIMIT_MB.get()


class FileRefused(Exception):
    """A whole file not read because it is over a limit. Ingest reports it (at `where`) and keeps what it stored
    from the file before, as it does for a file whose own size is over ingest.max_file_mb."""

    def __init__(self, where: str, reason: str) -> None:
        super().__init__(f"{where}: {reason}")
        self.where, self.reason = where, reason


class CappedReader(io.RawIOBase):
    """A binary stream (a zip member) that ends cleanly at `limit` bytes or at a failed read, saying why in
    `error`: what came before is handed over, never lost with the read that failed (a text layer reading
    a megabyte at a time would drop its whole partial read on an exception). Counts what the stream really
    gives, whatever its header said."""

    def __init__(self, raw: BinaryIO, limit: float, what: str) -> None:
        self.raw, self.limit, self.what = raw, limit, what
        self.count = 0  # bytes handed over so far
        self.error: str | None = None  # why the stream ended early, if it did

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        if self.error is not None:
            return 0
        try:
            # A small piece at a time: zipfile checks the CRC inside the read that reaches the member's end and
            # drops that whole read when it fails, so only the last piece is lost, not everything asked for.
            data = self.raw.read(min(len(b), PIECE))
        except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:  # a bad block, a bad CRC
            self.error = f"read failed ({exc})"
            return 0
        if self.count + len(data) > self.limit:
            data = data[: max(0, int(self.limit - self.count))]
            self.error = (
                f"{self.what} inflates to more than ingest.max_file_mb ({self.limit / 1e6:g} MB) though its header "
                "said less: a zip bomb or a damaged zip? (raise ingest.max_file_mb if it is genuine)"
            )
        self.count += len(data)
        b[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self.raw.close()
        super().close()


class CappedText(io.TextIOWrapper):
    """The text of a CappedReader; `read_error` says why it ended early (None if it did not)."""

    @property
    def read_error(self) -> str | None:
        return self.buffer.raw.error

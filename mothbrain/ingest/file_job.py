"""One changed file's job: scan its bytes (hash, where its last complete line ends), read it into its own shard
(an appended log is resumed where it ended), all within the file's time budget (`ingest_job`). A write to our
own store that fails is `StoreFailed`, never the source file's fault."""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import threading
from collections import Counter
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mothbrain.config import RedactionConfig, SourceConfig
from mothbrain.core.atomic import describe_write_error
from mothbrain.core.clock import DAY
from mothbrain.data.redact_doc import redact_document
from mothbrain.errors import MothError
from mothbrain.sources.base import Problems, Reader
from mothbrain.sources.limits import FileRefused, file_limit
from mothbrain.sources.registry import get_reader
from mothbrain.store.documents import doc_pieces, open_private, shard_name

log = logging.getLogger(__name__)


@dataclass
class _Scan:
    """One pass over a file's bytes: its hash, and where its last complete line ends."""

    size: int = 0
    digest: str = ""
    lines: int = 0  # newline count up to resume_at
    resume_at: int = 0  # byte after the last newline
    resume_hash: str = ""  # hash of bytes [0, resume_at)
    prefix_hash: str | None = None  # hash of bytes [0, old resume_at), for the append check


def _scan(path: Path, old_resume_at: int | None) -> _Scan:
    h = hashlib.blake2b(digest_size=16)
    s = _Scan(resume_hash=h.hexdigest())

    def feed(piece: bytes) -> None:
        nl = piece.rfind(b"\n")
        if nl >= 0:
            h.update(piece[: nl + 1])
            s.lines += piece.count(b"\n")
            s.resume_at, s.resume_hash = s.size + nl + 1, h.hexdigest()
            h.update(piece[nl + 1 :])
        else:
            h.update(piece)
        s.size += len(piece)

    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            if old_resume_at and s.prefix_hash is None and s.size + len(chunk) >= old_resume_at:
                k = old_resume_at - s.size
                feed(chunk[:k])
                s.prefix_hash = h.hexdigest()
                chunk = chunk[k:]
            feed(chunk)
    s.digest = h.hexdigest()
    return s


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return -1


def _ingest_file(
    ingest_dir: Path,
    reader: Reader,
    path: Path,
    rel: str,
    source: SourceConfig,
    problems: Problems,
    scan: _Scan,
    st: os.stat_result,
    old: dict | None,
    redaction: RedactionConfig,
) -> tuple[dict, int, int]:
    """Read one file into its shard. Returns (manifest entry, documents read, bytes parsed)."""
    shard = ingest_dir / shard_name(source, rel)
    shard.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = shard.with_name(shard.name + ".tmp")
    append = (
        reader.read_from is not None
        and old is not None
        and old.get("resume_at", 0) > 0
        and scan.prefix_hash == old.get("resume_hash")
        and _size(ingest_dir / old["shard"]) == old.get("shard_size")
    )
    if append:
        offset, first_line = old["resume_at"], old["lines"] + 1
        docs = reader.read_from(path, rel, source, problems, offset, first_line, scan.size)
    elif reader.read_from is not None:
        offset = 0
        docs = reader.read_from(path, rel, source, problems, 0, 1, scan.size)
    else:
        offset = 0
        docs = reader.read(path, rel, source, problems)
    days: dict[str, int] = dict(old["days"]) if append else {}
    if append:  # the old unterminated last line is read again, so its documents go
        for d, n in old.get("tail_days", {}).items():
            days[d] = days.get(d, 0) - n
    n_docs = old["docs"] - old.get("tail_docs", 0) if append else 0
    n_read, tail_docs, tail_days, written = 0, 0, {}, 0
    shard_keep = None
    redacted: Counter = Counter(old.get("redacted", {})) if append else Counter()
    try:
        with _storing(open_private, tmp) as out:
            if append:
                with (ingest_dir / old["shard"]).open("rb") as prev:
                    remaining = old["shard_keep"]
                    while remaining > 0 and (buf := prev.read(min(remaining, 1 << 20))):
                        _storing(out.write, buf)
                        remaining -= len(buf)
                        written += len(buf)
            for doc in docs:
                redacted.update(redact_document(doc, redaction))  # nothing unredacted is stored
                if doc.timestamp is None:  # "recent" then means the file's mtime when it was read
                    doc.meta["file_mtime"] = st.st_mtime
                day = str(int((doc.timestamp if doc.timestamp is not None else st.st_mtime) // DAY))
                in_tail = reader.read_from is not None and doc.meta.get("line", 0) > scan.lines
                if in_tail:
                    if shard_keep is None:
                        shard_keep = written
                    tail_docs += 1
                    tail_days[day] = tail_days.get(day, 0) + 1
                for piece in doc_pieces(doc, rel, problems):  # one line; a large document's in pieces (memory)
                    _storing(out.write, piece)
                    written += len(piece)
                days[day] = days.get(day, 0) + 1
                n_read += 1
            _storing(out.flush)
            _storing(os.fsync, out.fileno())
        _storing(os.replace, tmp, shard)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and isinstance(exc.__context__, StoreFailed):
            raise exc.__context__ from None  # closing the file re-raised the failed write's error
        raise
    entry = {
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "mtime": st.st_mtime,
        "hash": scan.digest,
        "shard": shard_name(source, rel),
        "docs": n_docs + n_read,
        "days": {d: n for d, n in days.items() if n > 0},
        **({"redacted": dict(redacted)} if redacted else {}),
    }
    if reader.read_from is not None:
        # shard_size guards the append path: a shard rewritten by a run that crashed before saving
        # the manifest no longer matches, and the file is read whole instead.
        entry.update(
            resume_at=scan.resume_at,
            resume_hash=scan.resume_hash,
            lines=scan.lines,
            shard_size=written,
            tail_docs=tail_docs,
            tail_days=tail_days,
            shard_keep=written if shard_keep is None else shard_keep,
        )
    # The file's bad records stay on record, so every later run names the file until it is fixed.
    bad = problems.count + (old.get("bad", 0) if append else 0)
    if bad:
        first = old.get("bad_first") if append and old.get("bad") else None
        entry.update(bad=bad, bad_first=first or (": ".join(problems.items[0][1:]) if problems.items else ""))
    return entry, n_read, scan.size - offset


class StoreFailed(Exception):
    """Writing our own copy failed (disk full, a file size limit, a read-only disk): not the source's fault."""

    def __init__(self, error: OSError):
        super().__init__(str(error))
        self.error = error


def _storing(op: Callable, *args: Any) -> Any:
    """Run one write to the ingest store; an OSError becomes StoreFailed so it is never called 'unreadable'."""
    try:
        return op(*args)
    except OSError as exc:
        raise StoreFailed(exc) from exc


class FileTimedOut(BaseException):
    """A file's time budget ran out (a BaseException, so a reader's own error handling lets it through)."""


@contextmanager
def _time_budget(seconds: float):
    """Raise FileTimedOut in this block after `seconds` (0: no limit). A timer signal, so it needs the
    main thread (a pool worker's tasks run there); elsewhere there is no limit. It interrupts Python
    code and waits that signals interrupt, not a read stuck in the kernel on a hard NFS mount."""
    if not seconds or threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGALRM"):
        yield
        return

    def expired(signum, frame):
        raise FileTimedOut()

    before = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, before)


def ingest_job(job: tuple) -> dict[str, Any]:
    """Scan one changed file and, unless only its mtime changed, store its documents (`_ingest_file`),
    within the file's time budget.

    Pure apart from the shard it writes, so a pool can run it: the result is a plain dict, and the
    file's problems travel back in it as (count, first items).
    """
    root, source, path, rel, st, old, full, budget, max_file_mb, redaction = job
    problems = Problems()
    out: dict[str, Any] = {"status": "failed", "scanned": 0}
    try:
        with _time_budget(budget), file_limit(max_file_mb):
            scan = _scan(path, old.get("resume_at") if old else None)
            out["scanned"] = scan.size
            if not full and old and old.get("hash") == scan.digest:
                out["status"] = "touched"
            else:
                # --full reads every file from its start: an appended log is not resumed
                entry, n_read, parsed = _ingest_file(
                    root,
                    get_reader(source.kind),
                    path,
                    rel,
                    source,
                    problems,
                    scan,
                    st,
                    None if full else old,
                    redaction,
                )
                out.update(status="ingested", entry=entry, read=n_read, parsed=parsed)
    except FileTimedOut:
        out["status"] = "failed"
        out["reason"] = (
            f"not read within ingest.max_file_seconds ({budget:g} s): a hung or very slow mount? "
            "earlier documents kept (raise the limit if the file is just large)"
        )
    except FileRefused as exc:  # over a limit once unpacked: like a file over it on disk, skipped and kept
        out.update(status="failed", where=exc.where, reason=exc.reason)
    except StoreFailed as exc:  # the caller stops cleanly, keeping what is stored
        out["status"] = "store_failed"
        out["reason"] = describe_write_error(exc.error, root)
    except OSError as exc:
        out["reason"] = f"unreadable ({exc.strerror or exc}); earlier documents kept"
    except (MothError, KeyboardInterrupt):
        raise
    except Exception as exc:  # a reader bug must not cost the other files; it is reported loudly
        log.exception("reader %s failed on %s", source.kind, path)
        out["reason"] = (
            f"reader failed ({type(exc).__name__}: {exc}); earlier documents kept "
            "(this is a MothBrain bug: please report it with the file)"
        )
    out["problems"] = (problems.count, problems.items)
    return out

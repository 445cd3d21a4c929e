"""Files and folders that appear whole or not at all: what a kill -9 or a full disk can interrupt.

`write_atomically(path, text)`  a file: temp file beside it, fsync, rename, fsync of the folder.
`write_json_atomically(path, data)`  the same, as indented JSON.
`save_json(path, data)`          the JSON one for records (ledger, run records): a failure is a
                                MothError that names the file and says the old one is untouched.
`replace_folder(tmp, final)`    a folder written completely under a temporary name, moved into
                                place; the old one is renamed aside first and removed after.
Both raise OSError; callers turn it into a message that says what was kept.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from mothbrain.errors import MothError


def write_atomically(path: Path, text: str | bytes) -> None:
    """Write `text` (or bytes) so that readers see the old file or the new one, never a torn write: a temp file
    beside it, fsync, rename, fsync of the folder (so the rename survives a power cut). Raises
    OSError, leaving the old file untouched; callers say what it means for them."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") if isinstance(text, bytes) else os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _clear_stale_temps(path)
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def free_space(folder: Path) -> str:
    """'81,234 MB free in /x', for messages about a full disk."""
    try:
        return f"{shutil.disk_usage(folder).free / 1e6:,.0f} MB free in {folder}"
    except OSError:
        return f"free space in {folder} unknown"


def describe_write_error(exc: OSError, folder: Path | None = None) -> str:
    """'No space left on device [ENOSPC], 0 MB free in /x': the cause, its code and (given a folder) the space left."""
    name = errno.errorcode.get(exc.errno or 0, "")
    hint = " (a file size limit: see `ulimit -f`)" if exc.errno == errno.EFBIG else ""
    where = f", {free_space(folder)}" if folder is not None else ""
    return f"{exc.strerror or exc}{f' [{name}]' if name else ''}{hint}{where}"


STALE_TEMP_S = 600  # a temp file older than this was left by a writer that died (a write takes ms)


def _clear_stale_temps(path: Path) -> None:
    """Remove `.<name>.*.tmp` files that a kill -9 between mkstemp and rename left beside `path`."""
    cutoff = time.time() - STALE_TEMP_S
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        with contextlib.suppress(OSError):
            if tmp.stat().st_mtime < cutoff:
                tmp.unlink()


def write_json_atomically(path: Path, data) -> None:
    """`data` as indented JSON (non-JSON values as str), written atomically; raises OSError."""
    write_atomically(path, json.dumps(data, indent=2, ensure_ascii=False, default=str))


def save_json(path: Path, data: Any) -> None:
    """`write_atomically` as indented JSON and a newline; a failure is a MothError naming the file."""
    try:
        write_atomically(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
    except OSError as exc:
        raise MothError(
            f"could not write {path}: {exc.strerror or exc} (free disk space or fix permissions; "
            "the previous file is untouched)"
        ) from None


def replace_folder(tmp: Path, final: Path) -> None:
    """Move the fully written folder `tmp` to `final`. An existing `final` is renamed aside first and
    removed only after the move, so a crash in between leaves the old folder or the new, never
    neither (a leftover `.<name>.old` is cleared by the next call)."""
    old = final.with_name(f".{final.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)

"""The one-run-at-a-time lock (`<state>/run.lock`): taking it, refusing a second run, and the record of a
holder that died with it."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mothbrain.config import Config
from mothbrain.core import paths
from mothbrain.core.atomic import save_json
from mothbrain.core.clock import now_iso
from mothbrain.errors import MothError
from mothbrain.ops.runs import load_runs, mark_killed

log = logging.getLogger(__name__)


class LockHeld(MothError):
    """Another live run holds the lock: this one was refused before it started anything."""


def lock_path(cfg: Config) -> Path:
    return paths.state_dir(cfg) / "run.lock"


@contextlib.contextmanager
def run_lock(cfg: Config, chain: str, run_id: str, refused: str = "") -> Iterator[dict[str, Any] | None]:
    """Hold the one-run-at-a-time lock; yields what a dead previous holder left (None if nothing).

    Raises LockHeld at once when another live process holds it; `refused` ends its message
    (default "this <chain> run was not started").
    """
    path = lock_path(cfg)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise MothError(
            f"cannot open the run lock {path}: {exc.strerror or exc} (make the state dir writable "
            "or point MOTHBRAIN_HOME elsewhere)"
        ) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise MothError(f"cannot lock {path}: {exc.strerror or exc}") from None
            holder = _read_lock_info(fd)
            raise LockHeld(
                f"another run (pid {holder.get('pid', '?')}, chain {holder.get('chain', '?')}, started "
                f"{holder.get('started', '?')}) holds the lock {path}; {refused or f'this {chain} run was not started'}"
            ) from None
        stale = _read_lock_info(fd) or None
        info = {
            "pid": os.getpid(),
            "chain": chain,
            "run_id": run_id,
            "started": now_iso(),
            "host": socket.gethostname(),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        try:
            yield stale
        finally:
            # An empty file means "released cleanly"; anything left in it was written by a run that died.
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


@contextlib.contextmanager
def command_lock(cfg: Config, command: str) -> Iterator[None]:
    """The run lock for a state-changing stage command run by hand (`mothbrain train`, `promote`, ...).

    Without it `mothbrain train` beside a nightly run training the same version both write the same
    checkpoint and adapter. Refused at once, not queued: a person at a prompt can run it again.
    """
    run_id = f"{command}-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
    lock = run_lock(cfg, command, run_id, refused=f"`mothbrain {command}` was not started (wait for it to finish)")
    with lock as stale:
        if stale and stale.get("pid"):
            mark_stale_holder_killed(cfg, stale)
            log.warning("recovered stale lock from pid %s (chain %s)", stale.get("pid"), stale.get("chain"))
        yield


def _read_lock_info(fd: int) -> dict[str, Any]:
    try:
        raw = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip()
        data = json.loads(raw) if raw else {}
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {"pid": "?", "chain": "?", "started": "?"}


def mark_stale_holder_killed(cfg: Config, stale: dict[str, Any]) -> None:
    """The record of the run that died holding the lock: status killed, its running stage failed."""
    for rec in load_runs(cfg):
        if rec.get("status") != "running" or rec.get("pid") != stale.get("pid"):
            continue
        if stale.get("run_id") and rec.get("run_id") != stale.get("run_id"):
            continue
        rec.pop("_path", None)
        mark_killed(rec, f"found dead at {now_iso()} by a later run")
        save_json(paths.runs_dir(cfg) / f"{rec['run_id']}.json", rec)

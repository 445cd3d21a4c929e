"""Where a running stage is: `<state>/progress.json`, which `mothbrain status` reads.

    tracker = StageProgress(cfg, "train", total=120)   # the stage starts
    tracker.update(40)                                  # each step: the file at most every WRITE_EVERY_S,
                                                        # a log line every LOG_EVERY steps
    tracker.advance(8)                                  # or steps done in a batch (eval's texts scored)
    tracker.done()                                      # the file goes

The file names the process that writes it, so a stage that was killed (its process gone) is never shown as
running: `running_stage` ignores it. Written atomically: status never reads half a file.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import socket
import time
from pathlib import Path
from typing import Any

from mothbrain.core import paths
from mothbrain.core.atomic import write_json_atomically
from mothbrain.core.clock import now_iso, parse_time

log = logging.getLogger(__name__)

WRITE_EVERY_S = 3.0  # seconds between writes of the file: a step may take 10 ms on the tiny model
LOG_EVERY = 10  # a log line every this many steps (the run's log tells the story of a night)


def progress_path(cfg) -> Path:
    return paths.state_dir(cfg) / "progress.json"


class StageProgress:
    """One stage's progress, written for `status` and logged; a failure to write never stops the stage."""

    def __init__(self, cfg, stage: str, total: int | None = None, unit: str = "step", log_every: int = LOG_EVERY):
        self.path = progress_path(cfg)
        self.stage, self.total, self.unit, self.log_every = stage, total, unit, max(1, log_every)
        self.started = now_iso()
        self.step = 0
        self._logged = 0  # the step last logged: a batch of steps may pass a multiple of log_every
        self._written = 0.0
        self._write(force=True)

    def update(self, step: int, total: int | None = None) -> None:
        self.step = step
        if total is not None:
            self.total = total
        if step // self.log_every > self._logged // self.log_every or (step == self.total and step != self._logged):
            self._logged = step
            log.info("%s: %s %d%s", self.stage, self.unit, step, f"/{self.total}" if self.total else "")
        self._write(force=step == self.total)

    def advance(self, steps: int = 1) -> None:
        self.update(self.step + steps)

    def done(self) -> None:
        try:
            if _read(self.path).get("pid") == os.getpid():  # a later stage of ours may have taken it over
                self.path.unlink()
        except OSError:
            pass

    def __enter__(self) -> StageProgress:
        return self

    def __exit__(self, *exc) -> None:
        self.done()

    def _write(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._written < WRITE_EVERY_S:
            return
        self._written = now
        record = {
            "stage": self.stage,
            "step": self.step,
            "total": self.total,
            "unit": self.unit,
            "started": self.started,
            "updated": now_iso(),
            "pid": os.getpid(),
            "host": socket.gethostname(),
        }
        try:
            write_json_atomically(self.path, record)
        except OSError as exc:  # progress is for people; the stage goes on without it
            log.debug("progress not written: %s", exc)


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def pid_alive(pid: Any) -> bool:
    """Whether `pid` is a live process on this host (ops/runs.py reads run records with it too)."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def running_stage(cfg) -> dict[str, Any] | None:
    """The stage running now, from the progress file; None when there is none or its process is gone."""
    data = _read(progress_path(cfg))
    if not data.get("stage"):
        return None
    if data.get("host") == socket.gethostname() and not pid_alive(data.get("pid")):
        return None  # killed: its file stayed behind
    return data


def running_line(data: dict[str, Any]) -> str:
    """ "running: train step 40/120 (since 03:12)" """
    step = data.get("step") or 0
    total = data.get("total")
    where = f" {data.get('unit', 'step')} {step}/{total}" if total else (f" {data.get('unit')} {step}" if step else "")
    since = parse_time(data.get("started"))
    when = f" (since {since.astimezone().strftime('%H:%M')})" if since else ""
    if since and _dt.datetime.now(_dt.timezone.utc) - since > _dt.timedelta(hours=20):
        when = f" (since {since.astimezone().strftime('%Y-%m-%d %H:%M')})"
    return f"running: {data['stage']}{where}{when}"

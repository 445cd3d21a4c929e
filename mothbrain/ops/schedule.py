"""Chains: running a chain's stages, one run at a time, and recording each.

`run_chain(cfg, "nightly")` runs the stages named in `schedule.nightly.stages`, one run at a time:

* a non-blocking `fcntl.flock` on `<state>/run.lock`, tried every few seconds while another run holds
  it, for up to `schedule.<chain>.wait_for_lock_s` (the Saturday weekly waits for a nightly that is
  still training; the wait is logged and kept in the run record). Past that deadline (at once with
  0) the run is refused, naming the holder (pid, chain, start). The kernel drops the lock when its
  holder dies, so a `kill -9` never wedges the schedule; the pid the dead run left in the file is
  reported as a recovered stale lock and its run record is marked "killed".
* every run writes `runs/<run id>.json`, rewritten atomically after each stage, so a kill at any
  moment leaves a record of what happened up to then; `logs/<run id>.log` gets the run's log lines.
* a stage that raises NothingToDo is "skipped" and the chain goes on; one that fails stops the chain
  (later stages "not run"). A MothError is an expected failure (its one-line message is kept); any
  other exception is a bug (a short traceback excerpt is kept, the full one is in the log).
* an `on_finish` hook runs at the end, after a failure too: the CLI passes the briefing's
  `send_after_run`, so this module never imports the briefing (which reads the records, the
  chains and the crontab); a hook failure is a warning on the record and never changes its outcome.
* the records themselves live in mothbrain/ops/runs.py, the lock in run_lock.py; the crontab block that
  starts the chains is cron.py.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import signal
import socket
import time
import traceback
from collections.abc import Callable, Iterator
from typing import Any

from mothbrain.config import KNOWN_STAGES, ChainConfig, Config
from mothbrain.core import paths
from mothbrain.core.atomic import save_json
from mothbrain.core.clock import now_iso
from mothbrain.core.ledger import open_ledger
from mothbrain.core.progress import StageProgress
from mothbrain.errors import MothError, NoNewMaterial, NothingToDo
from mothbrain.ops.run_lock import LockHeld, mark_stale_holder_killed, run_lock
from mothbrain.ops.runs import (
    RECORD_SCHEMA,
    RunRecord,
    StageResult,
    new_run_id,
    run_outcome,
    trim,
)

log = logging.getLogger(__name__)

CHAINS = ("nightly", "weekly", "wiki")
# Where each stage's plain function lives; imported only when the stage runs.
STAGE_FUNCTIONS = {
    "ingest": ("mothbrain.ingest.stage", "run_ingest"),
    "preprocess": ("mothbrain.data.stage", "run_preprocess"),
    "train": ("mothbrain.train.stage", "run_train"),
    "dream": ("mothbrain.dream.stage", "run_dream"),
    "eval": ("mothbrain.evaluate.stage", "run_eval"),
    "promote": ("mothbrain.promote", "run_promote"),
    "wiki_scan": ("mothbrain.wiki.scan", "run_scan"),
    "wiki_review": ("mothbrain.wiki.review", "run_review"),
    "wiki_merge": ("mothbrain.wiki.merge", "run_merge"),
}
# Stages that only make sense on a freshly trained adapter: skipped when train found no new material.
NEEDS_NEW_VERSION = ("dream",)
TRACEBACK_LINES = 12  # lines of a bug's traceback kept in the record (the log has all of it)

StageFn = Callable[[Config], Any]
FinishFn = Callable[[Config, RunRecord], Any]  # the end-of-run hook; returns what the record keeps


# --------------------------------------------------------------------------- running a chain


def default_stages() -> dict[str, StageFn]:
    """The real stage functions, each imported when called (a missing module fails only its stage)."""

    def make(name: str) -> StageFn:
        module, fn_name = STAGE_FUNCTIONS[name]

        def call(cfg: Config) -> Any:
            try:
                mod = importlib.import_module(module)
            except ModuleNotFoundError as exc:
                if exc.name != module:
                    raise
                raise MothError(
                    f"stage {name!r} is not available ({module} is not installed); remove it from "
                    "schedule.<chain>.stages or update mothbrain"
                ) from None
            return getattr(mod, fn_name)(cfg)

        return call

    return {name: make(name) for name in KNOWN_STAGES}


def chain_config(cfg: Config, chain: str) -> ChainConfig:
    if chain not in CHAINS:
        raise MothError(f"unknown chain {chain!r} (one of {', '.join(CHAINS)})")
    return getattr(cfg.schedule, chain)


class _Terminated(SystemExit):
    """SIGTERM (systemd stop, a kill from a person): unwind so the record and lock are left tidy."""


def _on_sigterm(signum, frame):  # pragma: no cover - exercised via subprocess tests
    raise _Terminated(128 + signum)


def run_chain(
    cfg: Config, chain: str, stages: dict[str, StageFn] | None = None, on_finish: FinishFn | None = None
) -> RunRecord:
    """Run the chain's stages under the lock, recording each; returns the record (`.failed` on failure).

    `on_finish(cfg, record)` runs at the end, after a failure too, when schedule.send_briefing is on
    (the CLI points it at the briefing); what it returns is kept as the record's `briefing`, and
    any exception it raises is a warning on the record, never the run's outcome.
    """
    names = list(chain_config(cfg, chain).stages)
    funcs = {**default_stages(), **(stages or {})}
    _ensure_state_dirs(cfg)
    run_id = new_run_id(cfg, chain)
    started = now_iso()  # before any wait for the lock: the run belongs to its cron slot
    with contextlib.ExitStack() as stack:
        try:
            stale, waited = _acquire_lock(stack, cfg, chain, run_id)
        except LockHeld as exc:
            _record_refusal(cfg, run_id, chain, str(exc))
            raise
        record = RunRecord(
            run_id=run_id,
            chain=chain,
            pid=os.getpid(),
            host=socket.gethostname(),
            config=cfg.config_path,
            path=paths.runs_dir(cfg) / f"{run_id}.json",
            log=str(paths.logs_dir(cfg) / f"{run_id}.log"),
            started=started,
            stages=[StageResult(n) for n in names],
        )
        if waited:
            record.lock_wait = waited
            record.warnings.append(waited["note"])
        if stale and stale.get("pid"):
            record.recovered_lock = (
                f"recovered stale lock from pid {stale.get('pid')} (chain "
                f"{stale.get('chain', '?')}, started {stale.get('started', '?')})"
            )
            record.warnings.append(record.recovered_lock)
        record.save()
        with _run_log(record.log) as handler:
            if record.lock_wait:
                log.warning(record.lock_wait["note"])
            if record.recovered_lock:
                log.warning(record.recovered_lock)
                mark_stale_holder_killed(cfg, stale)
            log.info("run %s: chain %s, stages %s, pid %d", run_id, chain, ", ".join(names), record.pid)
            previous = _install_sigterm()
            try:
                _run_stages(cfg, record, funcs)
            finally:
                _restore_sigterm(previous)
            record.status = "failed" if any(s.status == "failed" for s in record.stages) else "ok"
            record.outcome = run_outcome(record.status, [s.to_json() for s in record.stages])
            record.finished = now_iso()
            record.save()
            log.info("run %s finished: %s — %s", run_id, record.status, record.outcome)
            if on_finish is not None and cfg.schedule.send_briefing:
                _finish(cfg, record, on_finish)
            handler.flush()
    return record


LOCK_POLL_S = 2.0  # how often a waiting run tries the lock again


def _acquire_lock(
    stack: contextlib.ExitStack, cfg: Config, chain: str, run_id: str
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """Take the run lock, waiting up to schedule.<chain>.wait_for_lock_s while another run holds it.

    The Saturday weekly starts while a long nightly still trains: it waits for it instead of being
    refused. Returns (what a dead holder left, the wait: seconds and a note, or None if none).
    Raises LockHeld when the deadline passes (or at once with wait_for_lock_s 0).
    """
    limit = chain_config(cfg, chain).wait_for_lock_s
    t0, first = time.monotonic(), None
    while True:
        try:
            stale = stack.enter_context(run_lock(cfg, chain, run_id))
        except LockHeld as exc:
            waited = time.monotonic() - t0
            if waited >= limit:
                if first is None:
                    raise
                raise LockHeld(
                    f"{first}; gave up after waiting {_duration(waited)} (schedule.{chain}.wait_for_lock_s: {limit:g})"
                ) from None
            if first is None:
                first = str(exc).split("; this", 1)[0]
                log.warning(
                    "%s; this %s run waits for it (up to %s, schedule.%s.wait_for_lock_s)",
                    first,
                    chain,
                    _duration(limit),
                    chain,
                )
            time.sleep(min(LOCK_POLL_S, max(limit - waited, 0.05)))
            continue
        if first is None:
            return stale, None
        waited = round(time.monotonic() - t0, 1)
        return stale, {"seconds": waited, "note": f"waited {_duration(waited)} for the lock: {first}"}


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 120:
        return f"{seconds} s"
    h, m = divmod(seconds // 60, 60)
    return f"{h} h {m:02d} min" if h else f"{m} min"


def _ensure_state_dirs(cfg: Config) -> None:
    try:
        paths.runs_dir(cfg), paths.logs_dir(cfg)
    except OSError as exc:
        raise MothError(
            f"cannot use the state dir {paths.state_dir(cfg)}: {exc.strerror or exc} (make it writable, "
            "or point MOTHBRAIN_HOME / state_dir at a writable folder)"
        ) from None


def _record_refusal(cfg: Config, run_id: str, chain: str, message: str) -> None:
    """A short record of a refused run, so the briefing tells "refused" from "never started".

    Not logged: the caller prints the refusal (once) and cron appends it to cron-<chain>.log.
    """
    with contextlib.suppress(MothError, OSError):
        t = now_iso()
        save_json(
            paths.runs_dir(cfg) / f"{run_id}.json",
            {
                "schema": RECORD_SCHEMA,
                "run_id": run_id,
                "chain": chain,
                "status": "refused",
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "config": cfg.config_path,
                "started": t,
                "finished": t,
                "duration_s": 0.0,
                "log": None,
                "version": None,
                "recovered_lock": None,
                "stages": [],
                "briefing": None,
                "warnings": [message],
            },
        )


def _run_stages(cfg: Config, record: RunRecord, funcs: dict[str, StageFn]) -> None:
    stopped = False
    unchanged: NoNewMaterial | None = None  # train's skip: the adapter of last night is still the newest
    for st in record.stages:
        if stopped:
            continue  # a failed stage stops the chain; the rest stay "not run"
        st.status, st.started = "running", now_iso()
        record.save()
        log.info("stage %s: started", st.name)
        t0 = time.monotonic()
        try:
            fn = funcs.get(st.name)
            if fn is None:
                raise MothError(f"no function for stage {st.name!r}")
            if unchanged is not None and st.name in NEEDS_NEW_VERSION and _stage_done(cfg, unchanged.version, st.name):
                raise NothingToDo(f"{unchanged} (no new adapter to {st.name} with)")
            with StageProgress(cfg, st.name):  # status: "running: eval (since 03:12)"; a stage may add steps
                report = fn(cfg)
            st.status = "ok"
            st.figures = trim(report.to_json()) if hasattr(report, "to_json") else {}
            st.warnings = [str(w) for w in getattr(report, "warnings", [])][:20]
            if st.name == "train":
                record.version = getattr(report, "version", None) or st.figures.get("version") or None
        except NothingToDo as exc:
            st.status, st.error = "skipped", str(exc)
            if isinstance(exc, NoNewMaterial):
                unchanged = exc
        except MothError as exc:
            st.status, st.error = "failed", str(exc)
        except (KeyboardInterrupt, SystemExit) as exc:
            st.status = "failed"
            st.error = (
                "interrupted (SIGTERM)" if isinstance(exc, _Terminated) else f"interrupted ({type(exc).__name__})"
            )
            _finish_stage(st, t0)
            for later in record.stages:
                if later.status == "running":
                    later.status = "failed"
            record.status, record.finished = "interrupted", now_iso()
            record.save()
            log.error("stage %s: %s", st.name, st.error)
            raise
        except Exception as exc:  # a bug: keep a short excerpt here, the whole traceback in the log
            st.status = "failed"
            st.error = f"{type(exc).__name__}: {exc}"[:500]
            tb = traceback.format_exc().rstrip().splitlines()
            st.traceback = "\n".join(tb[-TRACEBACK_LINES:])
            log.error("stage %s raised a bug:\n%s", st.name, "\n".join(tb))
        _finish_stage(st, t0)
        if st.status == "failed":
            log.error("stage %s failed: %s", st.name, st.error)
            stopped = True
        else:
            log.info(
                "stage %s: %s in %.1f s%s", st.name, st.status, st.duration_s, f" ({st.error})" if st.error else ""
            )
            for w in st.warnings:
                log.warning("stage %s: %s", st.name, w)
        record.save()


def _stage_done(cfg: Config, version: str, stage: str) -> bool:
    """Whether the ledger holds `stage`'s figures for `version` (a kill mid-stage leaves them out)."""

    try:
        entry = open_ledger(cfg).get(version)
    except MothError:
        return True  # no such version: nothing of it to finish
    return bool(entry.get(stage)) or entry.get("status") not in ("trained", "evaluated", "promoted")


def _finish_stage(st: StageResult, t0: float) -> None:
    st.finished = now_iso()
    st.duration_s = round(time.monotonic() - t0, 2)


def _finish(cfg: Config, record: RunRecord, on_finish: FinishFn) -> None:
    """The end-of-run hook (the briefing); any problem is a warning, never the run's outcome."""
    try:
        record.briefing = on_finish(cfg, record)
    except Exception as exc:  # noqa: BLE001 - deliberately broad: the stages' result must stand
        msg = f"briefing failed: {exc if isinstance(exc, MothError) else f'{type(exc).__name__}: {exc}'}"
        record.warnings.append(msg)
        record.briefing = {"error": msg}
        log.error(msg, exc_info=not isinstance(exc, MothError))
    with contextlib.suppress(MothError):
        record.save()


@contextlib.contextmanager
def _run_log(path: str) -> Iterator[logging.Handler]:
    """Send every log line of this process to the run's log file while the run lasts."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.INFO)
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    if root.level == logging.NOTSET or root.level > logging.INFO:
        root.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        handler.close()


def _install_sigterm():
    if hasattr(signal, "SIGTERM") and _in_main_thread():
        return signal.signal(signal.SIGTERM, _on_sigterm)
    return None


def _restore_sigterm(previous) -> None:
    if previous is not None and _in_main_thread():
        signal.signal(signal.SIGTERM, previous)


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()

"""Run records: what one chain run did, saved as runs/<run id>.json and read back by status and the briefing.

A record is rewritten atomically after each stage, so a kill at any moment leaves what happened up
to then. This module imports nothing of ours beyond core: the chain writes records, the status
and the briefing read them, and neither needs the other.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mothbrain.core import paths
from mothbrain.core.atomic import save_json
from mothbrain.core.clock import now_iso, parse_time
from mothbrain.core.progress import pid_alive

if TYPE_CHECKING:
    from mothbrain.config import Config

log = logging.getLogger(__name__)

RECORD_SCHEMA = 1


@dataclass
class StageResult:
    name: str
    status: str = "not run"  # not run | running | ok | skipped | failed
    started: str | None = None
    finished: str | None = None
    duration_s: float | None = None
    figures: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    error: str | None = None
    traceback: str | None = None

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class RunRecord:
    """What one chain run did; saved as runs/<run_id>.json and returned to the CLI (a Report)."""

    run_id: str
    chain: str
    pid: int
    host: str
    config: str
    path: Path
    log: str
    started: str = field(default_factory=now_iso)
    finished: str | None = None
    status: str = "running"  # running | ok | failed | interrupted | killed
    stages: list[StageResult] = field(default_factory=list)
    version: str | None = None  # the version the train stage produced
    recovered_lock: str | None = None
    lock_wait: dict[str, Any] | None = None  # {"seconds", "note"} when it waited for another run
    briefing: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)
    outcome: str | None = None  # the run in one line, set when it ends ("v0001 not promoted (…)")

    @property
    def title(self) -> str:
        return f"run {self.run_id}: {self.status}" + (f" — {self.outcome}" if self.outcome else "")

    @property
    def failed(self) -> bool:
        return self.status in ("failed", "interrupted", "killed")

    def rows(self) -> list[dict[str, Any]]:
        rows = []
        for s in self.stages:
            if s.status == "failed":
                note = s.error or ""
            elif s.status == "skipped":
                note = f"nothing to do: {s.error}"
            else:
                note = headline(s.name, s.figures)
            rows.append(
                {
                    "stage": s.name,
                    "status": s.status,
                    "seconds": round(s.duration_s, 1) if s.duration_s is not None else None,
                    "result": note,  # whole: the table wraps it at spaces
                }
            )
        return rows

    def to_json(self) -> dict[str, Any]:
        started, finished = parse_time(self.started), parse_time(self.finished)
        return {
            "schema": RECORD_SCHEMA,
            "run_id": self.run_id,
            "chain": self.chain,
            "status": self.status,
            "pid": self.pid,
            "host": self.host,
            "config": self.config,
            "started": self.started,
            "finished": self.finished,
            "duration_s": round((finished - started).total_seconds(), 1) if started and finished else None,
            "log": self.log,
            "version": self.version,
            "recovered_lock": self.recovered_lock,
            "lock_wait": self.lock_wait,
            "stages": [s.to_json() for s in self.stages],
            "briefing": self.briefing,
            "warnings": self.warnings,
            "outcome": self.outcome,
        }

    def save(self) -> None:
        save_json(self.path, self.to_json())


def load_runs(cfg: Config) -> list[dict[str, Any]]:
    """Every readable run record, oldest first. Unreadable files are skipped (they never stop a report)."""
    runs = []
    folder = paths.state_dir(cfg) / "runs"  # read, never created: status answers on a read-only state dir too
    for p in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            log.warning("skipping unreadable run record %s", p)
            continue
        if isinstance(data, dict) and "run_id" in data:
            data["_path"] = str(p)
            runs.append(data)
    # run ids break ties within a second ("...-nightly" < "...-nightly-2")
    runs.sort(
        key=lambda r: (
            parse_time(r.get("started")) or _dt.datetime.min.replace(tzinfo=_dt.timezone.utc),
            str(r.get("run_id")),
        )
    )
    return runs


def settled_runs(cfg: Config) -> list[dict[str, Any]]:
    """load_runs for reports: a run whose record says "running" but whose process is gone is shown killed.

    A kill -9 leaves its record "running"; the next run that takes the lock marks it killed for
    good (run_lock.mark_stale_holder_killed). Until then status and the briefing must not call a dead run live.
    """
    host = socket.gethostname()
    runs = load_runs(cfg)
    for rec in runs:
        if rec.get("status") == "running" and rec.get("host") == host and not pid_alive(rec.get("pid")):
            mark_killed(rec, f"process {rec.get('pid')} is gone: the run died without a clean exit")
    return runs


def mark_killed(rec: dict[str, Any], note: str) -> None:
    """A record of a run that died without a clean exit: status killed, the stage it was in failed."""
    rec["status"] = "killed"
    for st in rec.get("stages", []):
        if st.get("status") == "running":
            st["status"] = "failed"
            st["error"] = "the run was killed during this stage (no clean exit; see its log)"
    rec.setdefault("warnings", []).append(note)


def new_run_id(cfg: Config, chain: str) -> str:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")  # local time: what the operator's cron shows
    run_id, n = f"{stamp}-{chain}", 1
    while (paths.runs_dir(cfg) / f"{run_id}.json").exists():
        n += 1
        run_id = f"{stamp}-{chain}-{n}"
    return run_id


def run_outcome(status: str, stages: list[dict[str, Any]]) -> str:
    """A finished run in one line: where it failed, or what the gate decided, or what was trained.

    A refusal by the gate is an outcome of an ok run ("v0001 not promoted (…)"), not a failure."""
    failed = next((s for s in stages if s.get("status") == "failed"), None)
    if failed is not None:
        return f"{failed['name']} failed: {failed.get('error') or 'see the log'}"
    promote = next((s for s in stages if s.get("name") == "promote" and s.get("status") == "ok"), None)
    figures = (promote or {}).get("figures") or {}
    if figures.get("decision") in ("promoted", "rejected", "undecided", "unchanged"):
        return str(figures.get("title") or figures["decision"])
    skipped = [s["name"] for s in stages if s.get("status") == "skipped"]
    trained = next((s for s in stages if s.get("name") == "train" and s.get("status") == "ok"), None)
    parts = [f"trained {(trained.get('figures') or {}).get('version')}" if trained else ""]
    parts.append(f"skipped: {', '.join(skipped)}" if skipped else "")
    return "; ".join(p for p in parts if p) or status


# The figures a person wants first from each stage's report (the rest stays in the record).
HEADLINES = {
    "ingest": ("documents", "bad_records", "changed"),
    "preprocess": ("documents", "concept_pairs", "fingerprint"),
    "train": ("version", "steps", "train loss", "tokens/s"),
    # surprise is no headline: on SmolLM2 a trained adapter's rate minus the base-vs-base null was below 0
    # (-0.44, 95% CI -0.75 .. -0.06), so it does not tell a learning adapter from the base (README)
    "eval": ("voice_ppl", "voice_ppl_base", "voice_samples"),
}


def headline(stage: str, figures: dict[str, Any]) -> str:
    """A stage's key figures in one line (the run table and the briefing show the same)."""
    keys = HEADLINES.get(stage)
    if keys is None and isinstance(figures.get("title"), str) and figures["title"] != stage:
        return figures["title"]  # dream and promote say it in their title
    keys = keys or [k for k in figures if k not in ("title", "warnings")][:4]
    return ", ".join(f"{k}: {figures[k]}" for k in keys if k in figures and not isinstance(figures[k], (dict, list)))


def trim(value: Any, depth: int = 0) -> Any:
    """A report's JSON cut to key figures: no long lists (losses), long strings or deep nesting."""
    if isinstance(value, dict):
        if depth >= 2:
            return f"<{len(value)} keys>"
        return {str(k): trim(v, depth + 1) for k, v in list(value.items())[:40]}
    if isinstance(value, (list, tuple)):
        if len(value) > 8:
            return f"<{len(value)} items>"
        return [trim(v, depth + 1) for v in value]
    if isinstance(value, str) and len(value) > 300:
        return value[:297] + "..."
    if isinstance(value, float):
        return float(f"{value:.6g}")  # 0.16810972600069363 s → 0.16811
    if isinstance(value, (int, bool)) or value is None:
        return value
    return value if isinstance(value, str) else str(value)

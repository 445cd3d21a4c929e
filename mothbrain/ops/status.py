"""`mothbrain status`: the current adapter, the last runs, proposals waiting and every version.

Reads records only (versions.json, runs/*.json, the proposal queue); never loads a model, so it
answers in well under a second and works while a night run is training.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from mothbrain.config import Config
from mothbrain.core import paths
from mothbrain.core.clock import parse_time
from mothbrain.core.current import reconcile_current
from mothbrain.core.ledger import open_ledger
from mothbrain.core.progress import running_line, running_stage
from mothbrain.errors import MothError
from mothbrain.ops.briefing_figures import numeric_metrics, pending_proposals
from mothbrain.ops.runs import settled_runs
from mothbrain.report import cut_at_word, train_loss_text

LAST_RUNS = 5


def _when(iso: str | None) -> str:
    t = parse_time(iso)
    return t.astimezone().strftime("%Y-%m-%d %H:%M") if t else ""


@dataclass
class StatusReport:
    title: str = "status"
    current: dict[str, Any] = field(default_factory=dict)
    runs: list[dict[str, Any]] = field(default_factory=list)
    proposals: int | None = None
    proposals_note: str = ""
    versions: list[dict[str, Any]] = field(default_factory=list)
    running: str = ""  # "running: train step 40/120 (since 03:12)", or empty when nothing runs
    warnings: list[str] = field(default_factory=list)

    def rows(self) -> list[dict[str, Any]]:
        return self.versions

    def sections(self) -> list[tuple[str, list[dict[str, Any]]]]:
        """(title, rows) tables the CLI prints one after the other."""
        cur = self.current
        head = [{"": k, "value": v} for k, v in cur.items() if k != "eval"] + [
            {"": f"eval {k}", "value": v} for k, v in (cur.get("eval") or {}).items()
        ]
        props = self.proposals if self.proposals is not None else self.proposals_note
        head.append({"": "proposals waiting", "value": props})
        if self.running:
            head.insert(0, {"": "now", "value": self.running})
        return [
            ("current adapter" if cur.get("version") else "no promoted adapter yet", head),
            (f"last {len(self.runs)} runs" if self.runs else "no runs yet (`mothbrain run nightly`)", self.runs),
            ("versions" if self.versions else "no versions yet (`mothbrain train`)", self.versions),
        ]

    def to_json(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "current": self.current,
            "running": self.running,
            "runs": self.runs,
            "proposals_waiting": self.proposals,
            "proposals_note": self.proposals_note,
            "versions": self.versions,
            "warnings": self.warnings,
        }


def status_report(cfg: Config) -> StatusReport:

    report = StatusReport()
    state = paths.state_dir(cfg)
    if state.is_dir() and not os.access(state, os.W_OK):  # status still answers, from what it can read
        report.warnings.append(
            f"the state dir {state} is not writable: shown as found; every stage will refuse until it is "
            "(make it writable, or point MOTHBRAIN_HOME at a state dir you own)"
        )
    try:
        note = reconcile_current(cfg)  # the ledger is the truth; show a link that agrees with it
        if note:
            report.warnings.append(f"adapters/current disagreed with the ledger: {note}")
    except MothError as exc:
        report.warnings.append(str(exc))
    try:
        data = open_ledger(cfg).read()
    except MothError as exc:
        data = {"versions": [], "events": [], "current": None}
        report.warnings.append(str(exc))
    versions = data.get("versions", [])
    current = data.get("current")
    if current:
        entry = next((v for v in versions if v["id"] == current), {})
        promoted = [
            e
            for e in data.get("events", [])
            if e.get("version") == current and e.get("event") in ("promoted", "rollback")
        ]
        report.current = {
            "version": current,
            "promoted": _when(promoted[-1]["at"]) if promoted else "",
            "how": promoted[-1]["event"] if promoted else "",
            "eval": {k: round(v, 4) for k, v in list(numeric_metrics(entry.get("eval") or {}).items())[:10]},
        }
    for r in settled_runs(cfg)[-LAST_RUNS:][::-1]:
        failed = [s for s in r.get("stages", []) if s.get("status") == "failed"]
        note = (
            f"{failed[0]['name']}: {failed[0].get('error') or ''}"
            if failed
            else (r.get("warnings") or [""])[0]
            if r.get("status") == "refused"
            else r["outcome"]
            if r.get("outcome")
            else f"trained {r['version']}"
            if r.get("version")
            else ""
        )
        report.runs.append(
            {
                "run": r["run_id"],
                "chain": r.get("chain"),
                "status": r.get("status"),
                "started": _when(r.get("started")),
                "note": cut_at_word(note, 100),  # cut between words, not inside one
            }
        )
    for v in versions[::-1]:
        tr = v.get("train") or {}
        ev = v.get("eval") or {}
        # the figure a person reads first: held-out voice perplexity against base (not the first number found)
        headline = (
            f"voice ppl {ev['voice_ppl']:.4g} (base {ev['voice_ppl_base']:.4g})"
            if isinstance(ev.get("voice_ppl"), (int, float)) and isinstance(ev.get("voice_ppl_base"), (int, float))
            else ""
        )
        report.versions.append(
            {
                "version": v["id"] + (" *" if v["id"] == current else ""),
                "status": v.get("status"),
                "created": _when(v.get("created_at")),
                "parent": v.get("parent") or "",
                "steps": tr.get("steps"),
                "train loss": train_loss_text(tr.get("first_loss"), tr.get("final_loss")) if tr else "",
                "eval": headline,
                "gate": (v.get("promotion") or {}).get("decision", ""),  # "promotion" would not fit 80 columns
            }
        )
    running = running_stage(cfg)  # None when its process is gone: a killed stage is not running
    report.running = running_line(running) if running else ""
    props, why = pending_proposals(cfg)
    report.proposals, report.proposals_note = (len(props), "") if props is not None else (None, why)
    return report

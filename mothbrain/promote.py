"""Promotion: move the current pointer to an adapter that passes the gate; roll back to the previous one.

The gate (promote.gate) reads the version's eval figures from the ledger — promote never measures
anything itself, and a version without eval results is refused (run `mothbrain eval` first):

  1. held-out voice perplexity better than base by >= min_improvement_vs_base_pct %;
  2. and, when there is a current adapter, no more than max_regression_vs_current_pct % worse than it;
  3. forbid_zero_concepts: no priority concept that the current adapter knows (score > 0 in any probe
     mode) scoring 0 in every mode with the new one — a whole family forgotten.

(`core/gate.py`'s `gate_checks` has them all; eval, status and the briefing read the same rules.) A check
passes, fails, or is "not run" when there is nothing to measure it on yet (a first version's empty
regression set): the decision rests on the checks that ran and names the ones that did not; a check that
did not run is never shown as a pass. The statistical checks decide from their 95% intervals, never from
a count tuned to one corpus: above 0 passes; below the smallest effect worth having fails (the material
says no); an interval that reaches both is "undecided", and a version with an undecided check and no
failed one is "not promoted: not enough held-out material"
(decision "undecided"), which more material, not a better adapter, can change.

Pass: the ledger records the intended move (`pending_current`), then the symlink `adapters/current` is
pointed at `adapters/<version>` by renaming a new temporary symlink over it (os.replace is atomic, so a
reader sees the old target or the new one, never a half-written directory), then the ledger confirms the
promotion. A kill between the steps is settled by `reconcile_current` at the start of the next command
that reads the pointer: the ledger is the truth. Refused: the ledger records `rejected` with every check
and the deciding ones, the pointer does not move, and the report says so (decision "rejected"): a chain
stays ok, and `mothbrain promote` on its own exits 4 so a script can tell a refusal from an error.

Rollback returns the pointer to the version that was current before the present one (promotion
history from the ledger's events: promotions push, rollbacks pop).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mothbrain.config import Config
from mothbrain.core import paths
from mothbrain.core.current import _move_current, adapter_is_complete, reconcile_current
from mothbrain.core.gate import check_status, gate_checks
from mothbrain.core.ledger import open_ledger
from mothbrain.errors import MothError, NothingToDo


@dataclass
class PromoteReport:
    title: str
    version: str
    decision: str  # promoted | rejected | undecided (not enough held-out material) | rollback | unchanged
    checks: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def rows(self) -> list[dict[str, Any]]:
        # status, not ok: a check that was not run is not shown as passed
        return [{k: v for k, v in c.items() if k != "ok"} for c in self.checks]

    def to_json(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "version": self.version,
            "decision": self.decision,
            "checks": self.checks,
            "warnings": self.warnings,
        }


def _refuse_when_current_is_newest(ledger, current: str | None) -> None:
    """NothingToDo when no evaluated version is newer than the current one (never promote an older one)."""
    if current is None:
        return
    ids = [v["id"] for v in ledger.versions()]
    newer = [v for v in ledger.versions()[ids.index(current) + 1 :] if v["status"] in ("evaluated", "trained")]
    if any(v["status"] == "evaluated" for v in newer):
        return
    hint = f"; run `mothbrain eval --version {newer[-1]['id']}` first" if newer else ""
    raise NothingToDo(f"{current} is already current and no newer version is evaluated{hint}")


def run_promote(cfg: Config, version: str | None = None) -> PromoteReport:

    reconcile_current(cfg)
    ledger = open_ledger(cfg)
    current = ledger.current()
    if version is None:
        _refuse_when_current_is_newest(ledger, current)
        entry = ledger.latest(("evaluated",)) or ledger.latest(("trained",))
        if entry is None:
            raise NothingToDo("no evaluated version to promote; run `mothbrain train` and `mothbrain eval` first")
    else:
        entry = ledger.get(version)
    version = entry["id"]
    if version == current:
        return PromoteReport(title=f"promote: {version} is already current", version=version, decision="unchanged")
    if entry["status"] in ("training", "failed"):
        raise MothError(
            f"version {version} has status {entry['status']!r}; only a trained and evaluated version can be promoted"
        )
    ev = entry.get("eval") or {}
    if not ev.get("evaluated_at") and ev.get("voice_ppl") is None:
        raise MothError(f"version {version} has no eval results; run `mothbrain eval --version {version}` first")
    if (ev.get("current_version") or None) != current and current is not None:
        raise MothError(
            f"{version} was evaluated against {ev.get('current_version') or 'base only'} but the current "
            f"adapter is now {current}; run `mothbrain eval --version {version}` again"
        )
    target = paths.adapter_dir(cfg, version)
    if not adapter_is_complete(target):
        raise MothError(f"the adapter of {version} at {target} is missing or incomplete; it cannot be promoted")

    checks = gate_checks(ev, cfg.promote.gate, has_current=current is not None)
    reasons = [c["reason"] for c in checks]
    # The decision rests on the checks that ran; those that could not run are named with it.
    not_run = [c["check"] for c in checks if check_status(c) == "not run"]
    without = f"; decided without {', '.join(not_run)} (not run)" if not_run else ""
    if all(c["ok"] for c in checks):
        promotion = {"decision": "promoted", "reasons": reasons, "checks": checks, "previous": current}
        _move_current(cfg, ledger, version, "promoted", "; ".join(reasons), {version: {"promotion": promotion}})
        return PromoteReport(
            title=f"promoted {version} (was {current or 'none'}){without}",
            version=version,
            decision="promoted",
            checks=checks,
        )
    # A refusal is the gate doing its job, not a failure: a report (the chain stays ok), never an error.
    # A failed check rejects; with none failed, an undecided one means the material could not tell.
    failed = [c for c in checks if check_status(c) == "fail"] or [c for c in checks if not c["ok"]]
    decision = "rejected" if any(check_status(c) == "fail" for c in failed) else "undecided"
    deciding = ", ".join(c["check"] for c in failed)  # the checks that decided, by name
    promotion = {"decision": decision, "reasons": reasons, "checks": checks, "deciding": deciding}
    ledger.update(version, status="rejected", promotion=promotion)  # not current: the pointer stays
    ledger.add_event("rejected", version, "; ".join(c["reason"] for c in failed))
    why = "; ".join(c["reason"] for c in failed)
    if decision == "undecided":
        why = "not enough held-out material: " + "; ".join(
            c["reason"].removeprefix("not enough held-out material: ") for c in failed
        )
    return PromoteReport(
        title=f"{version} not promoted ({why}); current stays {current or 'none'}{without}",
        version=version,
        decision=decision,
        checks=checks,
    )


def rollback_target(events: list[dict[str, Any]]) -> tuple[str | None, str | None]:
    """(version current now per the events, the one before it) — promotions push, rollbacks pop."""
    stack: list[str] = []
    for e in events:
        if e.get("event") == "promoted" and e.get("version"):
            stack.append(e["version"])
        elif e.get("event") == "rollback":
            if stack:
                stack.pop()
            if e.get("version") and (not stack or stack[-1] != e["version"]):
                stack.append(e["version"])
    return (stack[-1] if stack else None), (stack[-2] if len(stack) > 1 else None)


def run_rollback(cfg: Config) -> PromoteReport:

    reconcile_current(cfg)
    ledger = open_ledger(cfg)
    data = ledger.read()
    current = data.get("current")
    top, previous = rollback_target(data.get("events", []))
    if current is None or previous is None or top != current:
        raise MothError(
            f"nothing to roll back to: {current or 'no version'} is current and no earlier promoted "
            "version is recorded (see `mothbrain status`)"
        )
    target = paths.adapter_dir(cfg, previous)
    if not adapter_is_complete(target):
        raise MothError(f"cannot roll back to {previous}: its adapter at {target} is missing or incomplete")
    demoted = {
        "status": "rejected",
        "promotion": {"decision": "rolled back", "reasons": [f"rolled back to {previous}"]},
    }
    _move_current(cfg, ledger, previous, "rollback", f"from {current}", {current: demoted})
    return PromoteReport(
        title=f"rolled back: current is {previous} again (was {current})", version=previous, decision="rollback"
    )

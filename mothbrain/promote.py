"""Promotion: move the current pointer to an adapter that passes the gate; roll back to the previous one.

The gate (promote.gate) reads the version's eval figures from the ledger — promote never measures
anything itself, and a version without eval results is refused (run `mothbrain eval` first):

  1. held-out voice perplexity better than base by >= min_improvement_vs_base_pct %;
  2. and, when there is a current adapter, no more than max_regression_vs_current_pct % worse than it;
  3. forbid_zero_concepts: no priority concept that the current adapter knows (score > 0 in any probe
     mode) scoring 0 in every mode with the new one — a whole family forgotten.

(`gate_checks` has them all.) A check passes, fails, or is "not run" when there is nothing to measure it
on yet (a first version's empty regression set): the decision rests on the checks that ran and names
the ones that did not; a check that did not run is never shown as a pass. The statistical checks decide
from their 95% intervals, never from a count tuned to one corpus: above 0 passes; below the smallest
effect worth having fails (the material says no); an interval that reaches both is "undecided", and a
version with an undecided check and no failed one is "not promoted: not enough held-out material"
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

import contextlib
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from mothbrain.config import Config, GateConfig
from mothbrain.core import paths
from mothbrain.core.ledger import LOCK_TIMEOUT_S, Ledger, open_ledger
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


def _check(name: str, ok: bool, value: Any, threshold: str, reason: str) -> dict[str, Any]:
    """A check that ran: status "pass" or "fail"; `ok` is whether it lets the version through."""
    status = "pass" if ok else "fail"
    return {"check": name, "status": status, "value": value, "threshold": threshold, "ok": bool(ok), "reason": reason}


def _undecided(name: str, value: Any, threshold: str, reason: str) -> dict[str, Any]:
    """A check the held-out material was too small to decide either way: status "undecided". It blocks
    the promotion (nothing is promoted without evidence), and the decision says "not enough held-out
    material" rather than "rejected": more material, not a better adapter, is what it needs."""
    return {"check": name, "status": "undecided", "value": value, "threshold": threshold, "ok": False, "reason": reason}


def _interval_verdict(ci: dict[str, Any], smallest: float) -> str:
    """ "pass" when the 95% interval is above 0; "fail" when it is below the smallest effect worth having
    (the material decided: no such effect); else "undecided" (it reaches both 0 and that effect)."""
    if ci.get("lo") is None:
        return "undecided"
    if ci["lo"] > 0:
        return "pass"
    return "fail" if ci["hi"] < smallest else "undecided"


def _not_run(name: str, value: Any, threshold: str, reason: str) -> dict[str, Any]:
    """A check with nothing to measure: status "not run". It blocks nothing (`ok` stays true for readers of
    older records) and is never shown or counted as a pass; the gate decides on the checks that ran."""
    return {"check": name, "status": "not run", "value": value, "threshold": threshold, "ok": True, "reason": reason}


def check_status(c: dict[str, Any]) -> str:
    """The check's verdict, "pass", "fail", "undecided" or "not run" (one recorded before checks had a status:
    from ok)."""
    return c.get("status") or ("pass" if c.get("ok") else "fail")


def _ci(x: dict[str, Any] | None, scale: float = 1.0, unit: str = "") -> str:
    if not x or x.get("mean") is None:
        return "n/a"
    return f"{x['mean'] * scale:+.3f}{unit} (95% CI {x['lo'] * scale:+.3f} .. {x['hi'] * scale:+.3f}, n={x['n']})"


def gate_checks(ev: dict[str, Any], gate: GateConfig, has_current: bool) -> list[dict[str, Any]]:
    """The gate's checks on one version's eval figures: [{check, status, value, threshold, ok, reason}].

    Voice must improve on base beyond the noise; held-out associations must be lifted above base; the
    data must be sane and the regression set must hold; a current adapter must not be clearly better.
    A check with nothing to measure yet (a first version's empty regression set) is "not run", not a pass."""
    checks = []
    ppl, base, cur = ev.get("voice_ppl"), ev.get("voice_ppl_base"), ev.get("voice_ppl_current")
    gain = ev.get("voice_gain_vs_base") or {}
    n = ev.get("voice_samples") or 0
    if not ppl or not base:
        checks.append(
            _check(
                "voice vs base",
                False,
                None,
                "",
                "no held-out voice perplexity was measured (no held-out voice samples)",
            )
        )
    else:
        pct = (base - ppl) / base * 100
        # The smallest gain that counts, in the interval's unit: min_improvement_vs_base_pct of perplexity.
        smallest = -math.log1p(-gate.min_improvement_vs_base_pct / 100)
        verdict = "undecided" if n < gate.min_voice_samples else _interval_verdict(gain, smallest)
        value = f"{ppl:.3f} vs {base:.3f} ({pct:+.2f}%); saved {_ci(gain, unit=' nats/token')}"
        threshold = f">= {gate.min_improvement_vs_base_pct}% better, CI above 0"
        if n < gate.min_voice_samples:
            checks.append(
                _undecided(
                    "voice vs base",
                    value,
                    threshold,
                    f"not enough held-out material: {n} held-out voice samples (an interval needs "
                    f">= {gate.min_voice_samples})",
                )
            )
        elif verdict == "undecided":
            checks.append(
                _undecided(
                    "voice vs base",
                    value,
                    threshold,
                    f"not enough held-out material: the voice gain's interval reaches both 0 and a "
                    f"{gate.min_improvement_vs_base_pct}% gain ({_ci(gain, unit=' nats/token')})",
                )
            )
        else:
            ok = verdict == "pass" and pct >= gate.min_improvement_vs_base_pct
            if verdict == "fail":
                worse = (gain.get("mean") or 0) < 0
                why = f"voice {'worse than' if worse else 'not significantly better than'} base: " + _ci(
                    gain, unit=" nats/token saved"
                )
            else:
                sign = ">=" if ok else "<"
                why = f"voice perplexity {pct:.2f}% better than base ({sign} {gate.min_improvement_vs_base_pct}%)"
            checks.append(_check("voice vs base", ok, value, threshold, why))
    if gate.require_association:
        lift = ev.get("association_heldout_vs_base") or {}
        held = ev.get("association_heldout") or {}
        value = (
            f"lift {_ci(lift, unit=' nats')}; top-1 {held.get('top1')} (base "
            f"{(ev.get('association_heldout_base') or {}).get('top1')}, chance {held.get('chance')})"
            + (
                f"; {held['pairs']} pairs" if held.get("pairs") is not None else ""
            )  # those that passed the strength test
        )
        threshold = f"lift over base, 95% CI above 0 (smallest that counts: {gate.min_association_lift} nats)"
        verdict = _interval_verdict(lift, gate.min_association_lift) if lift.get("n") else "undecided"
        name = "held-out associations vs base"
        if verdict == "undecided":
            checks.append(
                _undecided(
                    name,
                    value,
                    threshold,
                    "not enough held-out material: "
                    + (
                        f"the lift's interval reaches both 0 and {gate.min_association_lift} nats "
                        f"({_ci(lift, unit=' nats')})"
                        if lift.get("n")
                        else "no held-out pairs probed (none that passed preprocess's strength test)"
                    ),
                )
            )
        else:
            ok = verdict == "pass"
            why = (
                "held-out pairs lifted above base"
                if ok
                else f"held-out associations not lifted above base ({_ci(lift, unit=' nats')})"
            )
            checks.append(_check(name, ok, value, threshold, why))
    accepted = ev.get("accepted_voice_ppl_base")
    if accepted and base:
        ratio = base / accepted
        ok = ratio <= gate.max_data_ppl_ratio
        checks.append(
            _check(
                "data sanity",
                ok,
                f"base perplexity {base:.3f} vs {accepted:.3f} on the accepted data ({ratio:.2f}x)",
                f"<= {gate.max_data_ppl_ratio}x",
                "the data reads like the accepted data to the base"
                if ok
                else f"the new data set is {ratio:.1f}x harder for the base than the accepted one: damaged or foreign "
                "material? (check the data set's composition)",
            )
        )
    else:
        checks.append(_first_data_sanity(ev, gate))
    reg = ev.get("regression") or {}
    if reg.get("worse_pct") is not None:
        ok = reg["worse_pct"] <= gate.max_regression_pct
        checks.append(
            _check(
                "regression set",
                ok,
                f"{reg['adapter_ppl']:.3f} vs {reg['reference']} {reg['reference_ppl']:.3f} ({reg['worse_pct']:+.2f}%, "
                f"{reg['samples']} samples, {reg['accepted_samples']} of them accepted held-out)",
                f"<= {gate.max_regression_pct}% worse than {reg['reference']}",
                f"regression set {reg['worse_pct']:+.2f}% vs {reg['reference']} "
                f"({'within' if ok else 'beyond'} {gate.max_regression_pct}%)",
            )
        )
    elif reg:  # a first version, and a base that does not know the general text: nothing to lose yet
        checks.append(
            _not_run(
                "regression set",
                f"empty (no accepted held-out set; the {reg['reference']} predicts the general text barely better "
                f"than chance, perplexity {reg.get('general_reference_ppl')})",
                f"<= {gate.max_regression_pct}% worse than {reg['reference']}",
                "regression set not run: no accepted held-out set yet, and nothing in the general text the "
                f"{reg['reference']} knows to lose",
            )
        )
    if has_current:
        if not ppl or not cur:
            checks.append(
                _check(
                    "voice vs current", False, None, "", "no voice perplexity of the current adapter to compare with"
                )
            )
        else:
            worse = (ppl - cur) / cur * 100
            ok = worse <= gate.max_regression_vs_current_pct
            checks.append(
                _check(
                    "voice vs current",
                    ok,
                    f"{ppl:.3f} vs {cur:.3f} ({worse:+.2f}%)",
                    f"<= {gate.max_regression_vs_current_pct}% worse",
                    f"voice perplexity {worse:+.2f}% vs current "
                    f"({'within' if ok else 'beyond'} {gate.max_regression_vs_current_pct}%)",
                )
            )
        vs_cur = ev.get("association_heldout_vs_current")
        if gate.require_association and vs_cur and vs_cur.get("hi") is not None:
            ok = vs_cur["hi"] >= 0
            checks.append(
                _check(
                    "held-out associations vs current",
                    ok,
                    f"lift {_ci(vs_cur, unit=' nats')}",
                    "not below current (95% CI reaches 0)",
                    "held-out associations not below current" if ok else "held-out associations clearly below current",
                )
            )
        if gate.forbid_zero_concepts:
            lost = [
                c
                for c, modes in (ev.get("probes") or {}).items()
                if sum(m.get("n") or 0 for m in modes.values()) >= gate.min_probes_per_concept
                and any((m.get("current") or 0) > 0 for m in modes.values())
                and all((m.get("adapter") or 0) == 0 for m in modes.values())
            ]
            checks.append(
                _check(
                    "priority concepts kept",
                    not lost,
                    ", ".join(lost) or "all",
                    f"none known by current drops to 0 (with >= {gate.min_probes_per_concept} probes)",
                    f"priority concept(s) {', '.join(lost)} scored > 0 with current and 0 now"
                    if lost
                    else "no priority concept dropped to 0",
                )
            )
    return checks


def _first_data_sanity(ev: dict[str, Any], gate: GateConfig) -> dict[str, Any]:
    """Data sanity with no accepted data to compare with: the base's perplexity on the new held-out voice
    text against its perplexity on plain English (eval.general_text). A pretrained base reads clean
    personal text within a few times its general-text perplexity; word-shuffled text or random tokens
    cost it ten times and more. The ratio means nothing for a base that was built from this very corpus
    or that barely predicts English, so then the check is not run."""
    base, general = ev.get("voice_ppl_base"), ev.get("general_ppl_base")
    limit = gate.max_data_ppl_ratio_vs_general
    threshold = f"<= {limit}x the base's perplexity on general text"
    if not base:
        return _not_run(
            "data sanity", "n/a", threshold, "data sanity not run: no held-out voice perplexity of the base"
        )
    if ev.get("base_from_corpus"):
        return _not_run(
            "data sanity",
            f"base perplexity {base:.3f} on the held-out voice text",
            threshold,
            "data sanity not run: the base was built from this corpus (model.build_tiny), so how hard it finds "
            "the data says nothing about the data",
        )
    if not general or not ev.get("base_knows_general"):
        return _not_run(
            "data sanity",
            f"base perplexity {base:.3f} on the held-out voice text, {general} on general text",
            threshold,
            "data sanity not run: the base predicts the general text barely better than chance, so it is no yardstick",
        )
    ratio = base / general
    ok = ratio <= limit
    return _check(
        "data sanity",
        ok,
        f"base perplexity {base:.3f} on the held-out voice text vs {general:.3f} on general text ({ratio:.2f}x)",
        threshold,
        f"the data reads to the base like ordinary text ({ratio:.2f}x general)"
        if ok
        else f"the data set is {ratio:.1f}x harder for the base than plain English: shuffled, garbled or foreign "
        "material? (check the data set's composition)",
    )


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
    from mothbrain.models.loading import adapter_is_complete

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
    from mothbrain.models.loading import adapter_is_complete

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


def _pointer_lock(cfg: Config, timeout: float = LOCK_TIMEOUT_S) -> FileLock:
    """Held for a whole move (intent, swap, confirm) and by reconciliation, so neither sees the other's middle."""
    adapters = paths.adapters_dir(cfg)
    adapters.mkdir(parents=True, exist_ok=True)
    return FileLock(str(adapters / ".pointer.lock"), timeout=timeout)


def _move_current(
    cfg: Config, ledger: Ledger, version: str | None, event: str, detail: str, updates: dict[str, dict[str, Any]]
) -> None:
    """Move the pointer so that a kill at any instant leaves link and ledger reconcilable: the ledger records
    the intent first, then the link is swapped, then the ledger confirms (the move's updates land with it)."""
    with _locked(_pointer_lock(cfg)):
        previous = ledger.begin_current(version, event, detail, updates)
        try:
            _point_current(cfg, version)
        except BaseException:
            # The swap did not happen (or its failure is unclear): put the link back, then drop the intent.
            with contextlib.suppress(Exception):
                _point_current(cfg, previous)
            ledger.finish_current(confirm=False)
            raise
        # A failure here leaves the intent recorded and the link moved: the next command confirms it.
        ledger.finish_current(confirm=True)


@contextlib.contextmanager
def _locked(lock: FileLock):
    try:
        lock.acquire()
    except Timeout:
        raise MothError(
            f"another mothbrain process holds {lock.lock_file} (moving adapters/current); wait for it or remove "
            "the lock file if no mothbrain runs"
        ) from None
    try:
        yield
    finally:
        lock.release()


def _link_target(cfg: Config) -> str | None:
    """The version adapters/current names (None: no link)."""
    link = paths.current_adapter_link(cfg)
    return os.path.basename(os.readlink(link)) if link.is_symlink() else None


def reconcile_current(cfg: Config, wait: float = LOCK_TIMEOUT_S) -> str | None:
    """Make adapters/current agree with the ledger, which is the truth; returns what was done (None: nothing).

    A move in flight (a kill between intent and confirmation) is confirmed when the link already names its
    version, and abandoned otherwise. Then a link that names another version than the ledger's current is
    pointed back at it. Called first by every command that reads either."""
    from mothbrain.models.loading import adapter_is_complete

    ledger = open_ledger(cfg)
    if not ledger.path.exists():
        return None  # no ledger, nothing to be true to; the link is left alone
    data = ledger.read()
    if not data.get("pending_current") and _link_target(cfg) == data.get("current"):
        return None  # the common case costs one read and no lock
    with _locked(_pointer_lock(cfg, wait)):
        notes = []
        for tmp in paths.adapters_dir(cfg).glob(".current.*.tmp"):  # a kill between symlink and rename
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        move = ledger.pending_current()
        if move:
            done = _link_target(cfg) == move.get("version")
            ledger.finish_current(confirm=done)
            notes.append(
                f"{'confirmed' if done else 'abandoned'} an interrupted {move.get('event')} of {move.get('version')}"
            )
        current, linked = ledger.current(), _link_target(cfg)
        if linked != current:
            if current is not None and not adapter_is_complete(paths.adapter_dir(cfg, current)):
                # Nothing sound to point at; the link is left alone and `mothbrain doctor` keeps reporting it.
                notes.append(f"the ledger's current {current} has no complete adapter; adapters/current left as is")
                return "; ".join(notes)
            _point_current(cfg, current)
            notes.append(f"pointed adapters/current at {current or 'nothing'} (it named {linked or 'nothing'})")
        return "; ".join(notes) or None


def _point_current(cfg: Config, version: str | None) -> None:
    """Swap adapters/current to adapters/<version> (None removes it) by renaming a temp symlink over it."""
    from mothbrain.models.loading import adapter_is_complete

    link = paths.current_adapter_link(cfg)
    if link.exists() and not link.is_symlink():
        raise MothError(f"{link} is a real directory, not a symlink; move it aside (MothBrain never overwrites it)")
    if version is None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(link)
        return
    if not adapter_is_complete(paths.adapter_dir(cfg, version)):
        raise MothError(f"refusing to point {link} at the incomplete adapter {paths.adapter_dir(cfg, version)}")
    tmp = link.with_name(f".current.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    try:
        os.symlink(version, tmp)  # relative: the state directory can move without breaking it
        os.replace(tmp, link)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise MothError(f"cannot update {link} ({exc.strerror or exc}); the previous pointer is unchanged") from None


def current_adapter_path(cfg: Config) -> Path | None:
    """The promoted adapter's directory (resolved through the link, once it agrees with the ledger), or None."""
    reconcile_current(cfg)
    link = paths.current_adapter_link(cfg)
    return link.resolve() if link.is_symlink() and link.exists() else None

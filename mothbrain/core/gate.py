"""The gate's rules, in one place: from an eval result to the list of checks (pass, fail, undecided, not run)
that promote decides by and that eval, status and the briefing display."""

from __future__ import annotations

import math
from typing import Any

from mothbrain.config import GateConfig


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
    """Data sanity with no accepted data to compare with, two yardsticks of the base on the new held-out voice
    text. Its perplexity against plain English (eval.general_text): a pretrained base reads clean personal text
    within a few times its general-text perplexity. And its word order: shuffling the text's words costs a
    pretrained base 1-3 nats a token on language and next to nothing on text that is already word salad. The
    second holds where the first cannot: text full of words the base never saw (invented names, another
    jargon) is hard for it either way, so shuffled persona text read only ~3x plain English to SmolLM2.
    Neither means anything for a base built from this very corpus, nor the ratio for a base that barely
    predicts English: then that part is not run."""
    base, general = ev.get("voice_ppl_base"), ev.get("general_ppl_base")
    order = ev.get("voice_word_order_nats_base")
    limit, min_order = gate.max_data_ppl_ratio_vs_general, gate.min_data_word_order_nats
    threshold = (
        f"<= {limit}x the base's perplexity on general text, and >= {min_order} nats/token lost "
        "when its words are shuffled"
    )
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
    knows = bool(general) and bool(ev.get("base_knows_general"))
    if not knows and order is None:
        return _not_run(
            "data sanity",
            f"base perplexity {base:.3f} on the held-out voice text, {general} on general text",
            threshold,
            "data sanity not run: the base predicts the general text barely better than chance, so it is no yardstick",
        )
    ratio = base / general if knows else None
    ratio_ok = ratio is None or ratio <= limit
    order_ok = order is None or order >= min_order
    value = f"base perplexity {base:.3f} on the held-out voice text" + (
        f" vs {general:.3f} on general text ({ratio:.2f}x)" if ratio is not None else ""
    )
    value += f"; {order:+.3f} nats/token with its words shuffled" if order is not None else ""
    if not order_ok:
        reason = (
            f"the data reads to the base like word salad: shuffling its words costs only {order:+.3f} nats/token "
            f"(language: 1-3; limit {min_order}): shuffled, garbled or generated material? (check the data "
            "set's composition)"
        )
    elif not ratio_ok:
        reason = (
            f"the data set is {ratio:.1f}x harder for the base than plain English: shuffled, garbled or foreign "
            "material? (check the data set's composition)"
        )
    else:
        seen = [f"{ratio:.2f}x general"] if ratio is not None else []
        seen += [f"word order worth {order:+.2f} nats/token"] if order is not None else []
        reason = f"the data reads to the base like ordinary text ({', '.join(seen)})"
    return _check("data sanity", ratio_ok and order_ok, value, threshold, reason)

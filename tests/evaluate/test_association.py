"""The association figure measures what the cue adds, not which words a model likes; the statistics
and the held-out set the gate relies on behave as claimed. Fake scorers stand in for models."""

from __future__ import annotations

import numpy as np

from mothbrain.evaluate import association as A
from mothbrain.evaluate.stats import bootstrap_mean, bootstrap_ratio

PAIRS = [(f"cue{i}", f"partner{i}") for i in range(12)]
TEMPLATES = ["{a} reminds me of", "User: Tell me about the {a}.\nMoth: The {a} makes me think of the"]


def _probes():
    return A.build_probes(PAIRS, set(PAIRS[:6]), lambda c: 1, distractors=10)


def _scorer(tied: bool, favourite: str = "partner3"):
    """log p(candidate | prompt): a favourite word is likely everywhere; with `tied`, a partner is likely
    right after its own cue."""
    partner_of = {a: b for a, b in PAIRS} | {b: a for a, b in PAIRS}

    def score(items):
        out = []
        for prompt, cont in items:
            cand = cont.strip()
            s = -5.0 + (3.0 if cand == favourite else 0.0)
            if tied and any(f"{c} " in prompt or f"{c}." in prompt for c in [partner_of.get(cand, "")] if c):
                s += 2.0
            out.append(s)
        return out

    return score


def test_probes_have_ten_distractors_of_the_partners_length_never_its_partners():
    lengths = {f"cue{i}": 1 + i % 3 for i in range(12)} | {f"partner{i}": 1 + i % 3 for i in range(12)}
    probes = A.build_probes(PAIRS, set(PAIRS[:6]), lambda c: lengths[c], distractors=10)
    assert len(probes) == 24 and sum(p.heldout for p in probes) == 12
    for p in probes:
        assert len(p.distractors) == 10 and p.cue not in p.distractors and p.partner not in p.distractors
        near = sorted(abs(lengths[c] - lengths[p.partner]) for c in p.distractors)
        assert near[0] == 0  # the nearest length class comes first
        # a candidate's stand-ins in the cue's place: neither it, nor its partner, nor the cue; the ablation's
        # concept is one more of the partner's, not among its baseline
        partner_of = {a: b for a, b in PAIRS} | {b: a for a, b in PAIRS}
        for c in p.candidates:
            assert len(p.stand_ins[c]) == A.OTHER_CUES and not {c, partner_of[c], p.cue} & set(p.stand_ins[c])
        assert p.ablation not in {p.cue, p.partner, *p.stand_ins[p.partner]}
    assert A.build_probes(PAIRS, set(), lambda c: 1, 10)[0].distractors == _probes()[0].distractors  # stable


def test_a_model_that_likes_a_word_everywhere_gets_no_lift_and_chance_top1():
    probes = _probes()
    lifts = A.candidate_lifts(probes, _scorer(tied=False), TEMPLATES)
    s = A.summarize(lifts, probes)
    assert abs(s["lift"]) < 1e-9 and s["top1"] == 0.0 and s["chance"] == round(1 / 11, 4)
    # The old mean-log-prob ranking would have crowned the favourite for every cue; lift does not.
    assert not (lifts[:, 1:] > 0).any()


def test_a_model_that_expects_a_concept_after_any_concept_gets_no_lift():
    """A real base expects a rare word after any rare word (SmolLM2 "lifted" invented partners it cannot know
    by +0.87 nats over "it"), and an adapter expects its corpus's concepts after any of them: neither is an
    association, so neither may score one."""
    import re

    concepts = {x for p in PAIRS for x in p}

    def score(items):
        return [-5.0 + 1.5 * any(re.search(rf"\b{c}\b", prompt) for c in concepts) for prompt, _ in items]

    probes = _probes()
    s = A.summarize(A.candidate_lifts(probes, score, TEMPLATES), probes)
    assert abs(s["lift"]) < 1e-9 and s["top1"] == 0.0


def test_a_cue_tied_model_lifts_its_partners_and_the_cue_removed_lifts_nothing():
    probes = _probes()
    lifts = A.candidate_lifts(probes, _scorer(tied=True), TEMPLATES)
    s = A.summarize(lifts, probes)
    assert s["lift"] > 1.9 and s["top1"] == 1.0
    ablated = A.summarize(A.candidate_lifts(probes, _scorer(tied=True), TEMPLATES, ablate=True), probes)
    assert abs(ablated["lift"]) < 1e-9 and ablated["top1"] == 0.0


def test_voice_templates_are_in_the_training_format():
    from mothbrain.data.format import render_prompt

    t = A.voice_templates("User", "Moth")
    assert len(t) == len(A.EVAL_TEMPLATES) >= 3
    assert t[0].startswith(render_prompt([("User", "Tell me about the {a}.")], "Moth"))
    assert all("{a}" in x for x in t)


def test_bootstrap_interval_excludes_zero_for_a_real_gain_and_includes_it_for_noise():
    rng = np.random.default_rng(1)
    real = bootstrap_mean(rng.normal(0.3, 1.0, 200))
    noise = bootstrap_mean(rng.normal(0.0, 1.0, 200))
    assert real["lo"] > 0 and noise["lo"] < 0 < noise["hi"] and real["n"] == 200
    r = bootstrap_ratio(np.array([2.0, 4.0, 6.0]), np.array([2, 4, 6]))
    assert r["mean"] == 1.0 and r["lo"] == r["hi"] == 1.0
    assert bootstrap_mean(np.array([]))["mean"] is None


def test_filler_is_reported_apart_and_the_headline_counts_the_real_pairs():
    """Held-out pairs that failed preprocess's strength test (the words of a stock phrase) are measured
    and shown apart; the headline figure, its lift over base and its count are the real pairs'."""
    from mothbrain.evaluate.stage import EvalReport

    held, filler = set(PAIRS[:8]), set(PAIRS[5:8])  # 5 real held-out pairs, 3 filler, 4 in-sample
    probes = A.build_probes(PAIRS, held, lambda c: 1, distractors=10, filler=filler)
    assert sum(p.heldout and not p.real for p in probes) == 6 and all(p.real for p in probes if not p.heldout)
    real_partners = {x for a, b in PAIRS if (a, b) not in filler for x in (a, b)}

    def adapter(items):  # tied on the real pairs only: a phrase's words lift nothing
        out = _scorer(tied=True)(items)
        return [s if cont.strip() in real_partners else -5.0 for s, (_, cont) in zip(out, items)]

    lifts = {
        "adapter": A.candidate_lifts(probes, adapter, TEMPLATES),
        "base": A.candidate_lifts(probes, _scorer(tied=False), TEMPLATES),
    }
    f = A.figures(lifts, probes)
    real, junk = f["association_heldout"], f["association_heldout_filler"]
    assert (real["pairs"], real["probes"], junk["pairs"], junk["probes"]) == (5, 10, 3, 6)
    assert real["lift"] > 1.9 and real["top1"] == 1.0
    assert abs(junk["lift"]) < 1e-9 and junk["top1"] == 0.0
    assert f["association_heldout_vs_base"]["n"] == 10 and f["association_heldout_vs_base"]["lo"] > 1.9
    assert f["association_heldout_filler_vs_base"]["n"] == 6 and f["association_heldout_filler_vs_base"]["mean"] == 0
    assert f["association_insample"]["pairs"] == 4 and f["association_heldout_base"]["pairs"] == 5
    # Mixed together, the filler would have diluted the figure by however many got in.
    both = A.summarize(lifts["adapter"][[p.heldout for p in probes]], [p for p in probes if p.heldout])
    assert both["lift"] < 0.7 * real["lift"]

    rows = {r["metric"]: r for r in EvalReport("v0001", figures=f).rows()}
    headline = next(m for m in rows if m.startswith("held-out associations: partner lift"))
    assert "n=10 probes of 5 pairs" in headline
    apart = next(m for m in rows if m.startswith("held-out filler") and "partner lift" in m)
    assert "n=6 probes of 3 pairs" in apart and rows[apart]["adapter"] == 0.0

    # No filler (or a data set from before the test): no filler rows, no filler interval.
    f = A.figures(lifts, A.build_probes(PAIRS, held, lambda c: 1, distractors=10))
    assert f["association_heldout"]["pairs"] == 8 and "association_heldout_filler_vs_base" not in f
    assert not any(r["metric"].startswith("held-out filler") for r in EvalReport("v0001", figures=f).rows())


def test_per_probe_rows_recut_the_figure_on_a_subset_of_pairs():
    """The eval keeps each counted held-out probe's lifts, so a figure can be re-cut on some of the pairs (the
    learning bench's planted pairs apart from pairs mined from its persona's habits): the pairs an adapter
    learned show a lift over base whose interval excludes 0, the pairs it did not show none."""
    held = set(PAIRS[:8])
    probes = A.build_probes(PAIRS, held, lambda c: 1, distractors=10)
    learned = {x for a, b in PAIRS[:4] for x in (a, b)}

    def adapter(items):  # tied on the first four held-out pairs only
        tied, plain = _scorer(tied=True)(items), _scorer(tied=False)(items)
        return [t if cont.strip() in learned else p for t, p, (_, cont) in zip(tied, plain, items)]

    lifts = {
        "adapter": A.candidate_lifts(probes, adapter, TEMPLATES),
        "base": A.candidate_lifts(probes, _scorer(tied=False), TEMPLATES),
    }
    rows = A.heldout_rows(lifts, probes)
    assert len(rows) == 16 and {frozenset((r["cue"], r["partner"])) for r in rows} == {frozenset(p) for p in held}
    whole = A.recut(rows)
    assert whole["vs_base"]["mean"] == A.figures(lifts, probes)["association_heldout_vs_base"]["mean"]
    on = A.recut([r for r in rows if r["partner"] in learned])
    off = A.recut([r for r in rows if r["partner"] not in learned])
    assert (on["pairs"], on["probes"], off["pairs"], off["probes"]) == (4, 8, 4, 8)
    assert on["vs_base"]["lo"] > 1.9 and on["top1_adapter"] == 1.0 and on["top1_base"] == 0.0
    assert off["vs_base"]["mean"] == 0 and off["top1_adapter"] == 0.0
    assert A.recut([]) == {"probes": 0, "pairs": 0}

"""The learning benchmark, smaller: four adapters from one persona corpus with planted novel pairs, each
judged by the real eval and gate. A good adapter is promoted; a null, a diverged and a garbage one are
rejected, each for its own reason; the association figure is the cue's doing (removing the cue removes
the lift). The corpus does not speak the probes' language (tests/evaluate/test_persona.py).
bench/bench_learning.py runs the full-size version and prints the table."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def learned(tmp_path_factory):
    from bench_learning import run

    # The benchmark's own corpus and training (smaller runs stay on the plateau before pairs bind); only
    # the bad adapters train shorter and the surprise rate uses fewer prompts.
    return run(tmp_path_factory.mktemp("learning"), surprise_prompts=8, bad_steps=120)["adapters"]


def _failed(a: dict) -> str:
    return " | ".join(a["failed_checks"])


def test_good_adapter_learns_the_voice_and_the_held_out_pairs_and_is_promoted(learned):
    good = learned["good"]
    assert good["decision"] == "promoted", _failed(good)
    assert good["voice_gain_vs_base"]["lo"] > 0
    # No margin of our own: the interval over base must exclude 0 (the gate asks the same), and top-1 must
    # beat both chance and the base clearly.
    assert good["lift_vs_base"]["lo"] > 0 and good["heldout_lift"] > good["heldout_lift_base"]
    assert good["heldout_top1"] > 2 * good["chance"] and good["heldout_top1"] > good["heldout_top1_base"]
    # The cue ablation: the same probes with the cue removed keep almost none of the lift.
    assert abs(good["cue_removed_lift"]) < 0.25 * good["heldout_lift"]


def test_null_adapter_is_rejected_for_no_voice_gain(learned):
    null = learned["null"]
    assert null["decision"] == "rejected" and null["voice_ppl"] == pytest.approx(null["voice_ppl_base"], rel=1e-3)
    assert "voice vs base" in _failed(null) and "not significantly better" in _failed(null)
    assert null["surprise_vs_null"]["mean"] == 0  # its samples are the null's own


def test_diverged_adapter_is_rejected_as_worse_than_base(learned):
    diverged = learned["diverged"]
    assert diverged["decision"] == "rejected"
    assert diverged["voice_ppl"] > diverged["voice_ppl_base"] and "voice worse than base" in _failed(diverged)


def test_garbage_adapter_is_rejected_for_its_data(learned):
    garbage = learned["garbage"]
    # Word-shuffled text is easier for an adapter trained on it than for the base: voice alone would pass.
    assert garbage["voice_ppl"] < garbage["voice_ppl_base"]
    assert garbage["decision"] == "rejected" and "data sanity" in _failed(garbage)

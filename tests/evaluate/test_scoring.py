"""Scoring with a shared prompt cache gives the numbers of scoring whole sequences, on the real 4-bit path."""

from __future__ import annotations

import pytest


def test_shared_prompt_cache_scores_like_whole_sequences(demo_cfg, state_home, monkeypatch):
    from mothbrain.evaluate import scoring
    from mothbrain.models.loading import load_base_model, load_tokenizer
    from mothbrain.models.location import ensure_base_model

    cfg = demo_cfg()
    ensure_base_model(cfg)
    tokenizer = load_tokenizer(cfg)
    model = load_base_model(cfg)  # NF4, as eval loads it
    prompts = ["User: Tell me about the lantern.\nMoth: The lantern makes me think of the", "It reminds me of", ""]
    conts = [" tide", " bridge repair", " compost heap by the wall", " figs", " a", " memory of the harbour at night"]
    pairs = [(p, c) for p in prompts for c in conts] + [("A lone prompt", " with one continuation"), ("x", "")]
    calls = {"shared": 0}
    real_shared = scoring._score_shared

    def counting(*args):
        calls["shared"] += 1
        return real_shared(*args)

    monkeypatch.setattr(scoring, "_score_shared", counting)
    shared = scoring.score_continuations(model, tokenizer, pairs, max_len=64)
    whole = scoring.score_continuations(model, tokenizer, pairs, max_len=64, share=False)
    assert [n for _, n in shared] == [n for _, n in whole] and shared[-1] == (0.0, 0)
    for (a, _), (b, _) in zip(shared, whole):
        assert a == pytest.approx(b, abs=2e-3)
    # The shared path really ran for the prompts with many continuations, and tells continuations apart.
    assert calls["shared"] == len(prompts)
    assert len({round(s, 3) for s, _ in shared[: len(conts)]}) == len(conts)

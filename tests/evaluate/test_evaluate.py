"""Eval on the tiny model: real, finite figures for every metric, and an adapter trained on a corpus with
a planted voice and planted associations beats the base on both, by a margin the test asserts.

The planted state (sample corpus ingested for dream prompts, a generated corpus preprocessed, one
version trained with the real trainer) is built once per session and copied into each test's state
dir; test_promote.py reuses it.
"""

from __future__ import annotations

import json
import math

import pytest
from openai_standin import ChatStandIn
from planted_corpus import DEMO

from mothbrain.config import load_config


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def test_trained_adapter_beats_base_on_planted_voice_and_associations(planted_cfg, state_home):
    from mothbrain.core.ledger import open_ledger
    from mothbrain.evaluate.stage import run_eval

    cfg = planted_cfg()
    report = run_eval(cfg)
    f = report.figures

    # Voice: held-out perplexity of the planted voice drops well below the base's.
    assert f["voice_samples"] > 5 and f["voice_tokens"] > 100
    assert _finite(f["voice_ppl"]) and _finite(f["voice_ppl_base"])
    assert f["voice_ppl"] < 0.8 * f["voice_ppl_base"], (f["voice_ppl"], f["voice_ppl_base"])

    # Associations: the partner's lift from its cue, held-out pairs apart from in-sample ones.
    held, ins = f["association_heldout"], f["association_insample"]
    assert held["probes"] > 0 and ins["probes"] > 0
    assert held["chance"] <= 1 / 11 and ins["chance"] <= 1 / 11  # at least 10 distractors per probe
    for key in ("association_heldout", "association_insample"):
        for who in ("", "_base"):
            assert _finite(f[key + who]["lift"]) and 0 <= f[key + who]["top1"] <= 1, key + who
    # Whether an adapter learns pairs, and whether the lift tells it from a null, garbage and a diverged one,
    # is pinned at the bench's size in test_learning.py; 50 steps here only exercise the figures.
    gain = f["association_heldout_vs_base"]
    assert gain["lo"] <= gain["mean"] <= gain["hi"] and gain["n"] == held["probes"]

    # Held-out voice text that near-duplicates training (the planted openers and closers) is removed and
    # counted; the planted lines themselves are new sentences and stay.
    overlap = f["heldout_overlap"]
    assert 0 < overlap["share"] < 1 and overlap["samples_after"] == f["voice_samples"] <= overlap["samples_before"]
    assert overlap["shared_with_train"] == overlap["same_when_normalised"] + overlap["near_duplicates"] > 0
    assert f["voice_gain_vs_base"]["lo"] > 0  # the planted voice, well beyond the noise
    # No accepted set yet, and the tiny base does not know general English: nothing to regress on.
    reg = f["regression"]
    assert reg["reference"] == "base" and _finite(reg["general_reference_ppl"]) and reg["samples"] == 0
    # Data sanity's yardstick for a first version: this base was built from the corpus, and knows no English.
    assert f["general_ppl_base"] == reg["general_reference_ppl"]
    assert f["base_from_corpus"] is True and f["base_knows_general"] is False

    # Probes: a table of every priority concept in every mode, each a share in [0, 1].
    assert set(f["probes"]) == {"figs", "lantern", "compost"}
    for concept, modes in f["probes"].items():
        assert set(modes) == {"direct", "association", "completion"}
        for mode, cell in modes.items():
            assert cell["n"] > 0, (concept, mode)
            assert 0.0 <= cell["adapter"] <= 1.0 and 0.0 <= cell["base"] <= 1.0

    # Surprise: a real rate against the local base, with its thresholds recorded.
    assert 0.0 <= f["surprise_rate"] <= 1.0
    s = f["surprise"]
    assert s["reference"] == "local base" and s["prompts"] == 4 and s["embedder"] == "all-MiniLM-L6-v2"
    assert s["distance_min"] == cfg.eval.surprise_distance and _finite(s["nearest_distance_mean"])
    null = f["surprise_vs_null"]  # adapter minus the base's own sample, judged the same way
    assert null["n"] == 4 and null["lo"] <= null["mean"] <= null["hi"] and 0 <= f["surprise_rate_base"] <= 1

    # Everything is in the ledger, and the version is now evaluated.
    entry = open_ledger(cfg).get("v0001")
    assert entry["status"] == "evaluated"
    assert entry["eval"]["voice_ppl"] == f["voice_ppl"] and entry["eval"]["probes"] == f["probes"]
    assert report.rows() and json.dumps(report.to_json())


def _reference(body: dict) -> str:
    """The reference model talks about tax forms; the judge says YES."""
    return (
        "YES"
        if "Answer YES or NO" in body["messages"][0]["content"]
        else ("Tax forms are due in April and the printer needs toner.")
    )


def test_surprise_against_an_openai_compatible_reference_and_judge(planted_cfg, monkeypatch):
    from mothbrain.core.paths import adapter_dir
    from mothbrain.evaluate.surprise import surprise, surprise_prompts
    from mothbrain.models.loading import load_model_with_adapters, load_tokenizer

    with ChatStandIn(_reference) as server:
        monkeypatch.setenv("REF_KEY", "sk-test")
        url = server.url
        cfg = planted_cfg(
            f"eval.reference_url={url}",
            "eval.reference_model=ref",
            "eval.reference_api_key_env=REF_KEY",
            "eval.judge=true",
            "eval.surprise_prompts=3",
            "dream.max_new_tokens=8",
        )
        model = load_model_with_adapters(cfg, {"adapter": adapter_dir(cfg, "v0001")})
        warnings: list[str] = []
        out = surprise(cfg, model, load_tokenizer(cfg), ["adapter", "base"], surprise_prompts(cfg, warnings), warnings)
    assert out["surprise"]["reference"] == url and out["surprise"]["prompts"] == 3
    calls = server.seen
    assert calls[0]["path"] == "/v1/chat/completions" and calls[0]["auth"] == "Bearer sk-test"
    assert calls[0]["body"]["model"] == "ref"
    # 3 prompts x 3 reference samples, then one judge call per surprise
    refs = [c for c in calls if "Answer YES or NO" not in c["body"]["messages"][0]["content"]]
    assert len(refs) == 9
    # The reference talks about tax forms: the adapter's harbour dreams are far from every reference sample.
    assert out["surprise"]["nearest_distance_mean"] > cfg.eval.surprise_distance
    assert 0.0 <= out["surprise_rate"] <= 1.0
    judged = len(calls) - len(refs)
    assert judged == round(out["surprise_rate"] * 3)
    assert out["judge_yes_rate"] == (1.0 if judged else None)
    assert not warnings or all("bag-of-words" not in w for w in warnings)


def test_unreachable_reference_falls_back_to_the_local_base(planted_cfg):
    from mothbrain.core.paths import adapter_dir
    from mothbrain.evaluate.surprise import surprise, surprise_prompts
    from mothbrain.models.loading import load_model_with_adapters, load_tokenizer

    cfg = planted_cfg("eval.reference_url=http://127.0.0.1:9/v1", "eval.surprise_prompts=2", "dream.max_new_tokens=8")
    model = load_model_with_adapters(cfg, {"adapter": adapter_dir(cfg, "v0001")})
    warnings: list[str] = []
    out = surprise(cfg, model, load_tokenizer(cfg), ["adapter", "base"], surprise_prompts(cfg, warnings), warnings)
    assert out["surprise"]["reference"] == "local base (endpoint failed)"
    assert any("unreachable" in w for w in warnings)
    assert 0.0 <= out["surprise_rate"] <= 1.0


def test_eval_refuses_unknown_probe_mode_and_missing_version(planted_cfg):
    from mothbrain.errors import MothError
    from mothbrain.evaluate.stage import run_eval

    with pytest.raises(MothError, match="eval.probe_modes"):
        run_eval(planted_cfg("eval.probe_modes=[direct,telepathy]"))
    with pytest.raises(MothError, match="no version 'v0099'"):
        run_eval(planted_cfg(), version="v0099")


def _fake_adapter(cfg, v: str) -> None:
    from mothbrain.core.paths import adapter_dir

    d = adapter_dir(cfg, v)
    d.mkdir(parents=True)
    (d / "adapter_config.json").write_text("{}")
    (d / "adapter_model.safetensors").write_bytes(b"\0")


def test_eval_with_nothing_new_says_so_and_keeps_the_figures(state_home):
    """The newest version is evaluated (and current): `mothbrain eval` exits 3 instead of measuring it again
    over the figures its promotion was decided on; `--version` measures it on purpose."""
    from click.testing import CliRunner

    from mothbrain.cli import main
    from mothbrain.core.ledger import open_ledger

    cfg = load_config(DEMO)
    led = open_ledger(cfg)
    figures = {"voice_ppl": 9.0, "evaluated_at": "2025-05-01T02:00:00+00:00", "current_version": None}
    v1 = led.new_version(status="evaluated", eval=figures)["id"]
    _fake_adapter(cfg, v1)
    led.set_current(v1)
    eval_ = ["eval", "--config", str(DEMO)]
    result = CliRunner().invoke(main, eval_)
    assert result.exit_code == 3, result.output
    assert f"nothing to do: {v1} (promoted) is already evaluated and no newer version waits for eval" in result.output
    assert f"`mothbrain eval --version {v1}` measures it again" in result.output
    assert open_ledger(cfg).get(v1)["eval"] == figures

    # --version goes past that check (and here stops at the missing data set: exit 1, not 3).
    result = CliRunner().invoke(main, [*eval_, "--version", v1])
    assert result.exit_code == 1 and f"cannot evaluate {v1}" in result.output, result.output

    # A rejected newest version is not measured again either; one that is only evaluated, and against
    # an adapter that is no longer current, is (promote would refuse its figures).
    v2 = led.new_version(status="rejected", eval={**figures, "current_version": v1})["id"]
    _fake_adapter(cfg, v2)
    assert CliRunner().invoke(main, eval_).exit_code == 3
    led.update(v2, status="evaluated", eval={**figures, "current_version": None})
    result = CliRunner().invoke(main, eval_)
    assert result.exit_code == 1 and f"cannot evaluate {v2}" in result.output, result.output

    # A version waiting for eval is picked as before.
    v3 = led.new_version(status="trained")["id"]
    _fake_adapter(cfg, v3)
    result = CliRunner().invoke(main, eval_)
    assert result.exit_code == 1 and f"cannot evaluate {v3}" in result.output, result.output


def test_the_base_finds_garbage_harder_than_clean_text_and_data_sanity_rejects_it(tiny_model_dir):
    """Data sanity's figure on a real model: the base's perplexity on clean text, the same words shuffled and
    random tokens. The tiny base knows no English, so the yardstick here is clean corpus text it does know;
    too weak to care much about word order, it finds shuffled text only somewhat harder (which is why the
    check is not run for a base built from the corpus), and random tokens far harder, beyond the gate."""
    import random

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from mothbrain.config import REPO_ROOT, GateConfig
    from mothbrain.core.gate import gate_checks
    from mothbrain.evaluate import heldout
    from mothbrain.evaluate.scoring import score_continuations

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    rng = random.Random(0)
    clean = heldout.sentences((REPO_ROOT / "data" / "sample" / "writing" / "the_bridge.txt").read_text())[:40]
    shuffled = [" ".join(rng.sample(s.split(), len(s.split()))) for s in clean]
    noise = [
        tokenizer.decode([rng.randrange(len(tokenizer)) for _ in tokenizer(s)["input_ids"]], skip_special_tokens=True)
        for s in clean
    ]

    def ppl(texts: list[str]) -> float:
        scores = score_continuations(model, tokenizer, [("", " " + t) for t in texts], 256)
        return math.exp(-sum(s for s, _ in scores) / sum(n for _, n in scores))

    figures = {"clean": ppl(clean), "shuffled": ppl(shuffled), "random": ppl(noise)}
    assert figures["clean"] < figures["shuffled"] < figures["random"], figures

    def sanity(voice_ppl_base: float) -> dict:
        ev = {
            "voice_ppl": voice_ppl_base / 2,
            "voice_ppl_base": voice_ppl_base,
            "general_ppl_base": figures["clean"],
            "base_knows_general": True,
            "base_from_corpus": False,
        }
        return [c for c in gate_checks(ev, GateConfig(), has_current=False) if c["check"] == "data sanity"][0]

    assert sanity(figures["clean"])["status"] == "pass"
    assert sanity(figures["random"])["status"] == "fail", figures


def test_embeddings_load_offline_and_rank_meaning():
    from mothbrain.models.embeddings import BOW, MINILM, load_embedder

    cfg = load_config(DEMO)
    emb = load_embedder(cfg)
    assert emb.name == MINILM and not emb.warning
    v = emb.encode(["The cat sat on the mat.", "A kitten was sitting on the rug.", "Quarterly tax filing deadline."])
    assert v.shape == (3, 384)
    sims = v @ v.T
    assert sims[0, 1] > sims[0, 2] + 0.2  # meaning, not word overlap: the paraphrase shares no content word

    broken = load_embedder(load_config(DEMO, ["eval.embedding_model=/nonexistent/model"]))
    assert broken.name == BOW and "bag-of-words" in broken.warning
    w = broken.encode(["figs and patience", "patience and figs", "tide tables"])
    assert (w @ w.T)[0, 1] > (w @ w.T)[0, 2]


def test_regression_counts_general_text_only_where_the_reference_knows_it():
    import numpy as np

    from mothbrain.evaluate.perplexity import regression_figures

    vocab = 4096

    def scores(per_token: list[float]) -> tuple[np.ndarray, np.ndarray]:
        return np.array([10 * x for x in per_token]), np.full(len(per_token), 10)

    # Two accepted held-out samples, then three sentences of general text the base knows well (ppl e^2).
    knows = {"adapter": scores([1.0, 1.0, 2.5, 2.5, 2.5]), "base": scores([1.0, 1.0, 2.0, 2.0, 2.0])}
    fig = regression_figures(knows, "base", accepted=2, general=3, vocab_size=vocab)
    assert fig["samples"] == 5 and fig["general_samples"] == 3
    assert fig["worse_pct"] > 2  # forgetting general English counts against the adapter

    # A base that predicts the general text barely better than chance (tiny demo base): it cannot regress.
    near_uniform = math.log(vocab) * 0.9
    lost = {"adapter": scores([1.0, 1.0, 8.0, 8.0, 8.0]), "base": scores([1.0, 1.0] + [near_uniform] * 3)}
    fig = regression_figures(lost, "base", accepted=2, general=3, vocab_size=vocab)
    assert fig["samples"] == 2 and fig["general_samples"] == 0 and fig["worse_pct"] == 0.0
    assert fig["general_reference_ppl"] == pytest.approx(math.exp(near_uniform), rel=1e-3)

    # No accepted set and nothing known: an empty regression set, no figure.
    fig = regression_figures(lost, "base", accepted=0, general=5, vocab_size=vocab)
    assert fig["samples"] == 0 and fig["worse_pct"] is None

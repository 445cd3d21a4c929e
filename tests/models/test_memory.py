"""The memory preflight: parameter counts from config.json alone, the estimate, and its advice.

Run: .venv/bin/python -m pytest tests/test_memory.py -q
The 72B is built on the meta device (no weights), so these take seconds.
"""

from __future__ import annotations

import json
import re
import shutil

import pytest

from mothbrain.config import REPO_ROOT, load_config
from mothbrain.errors import MothError
from mothbrain.models.memory import (
    GB,
    check_fits,
    estimate_memory,
    format_estimate,
    measured_peak_bytes,
)
from mothbrain.models.parameter_count import count_parameters

QWEN_72B = REPO_ROOT / "configs" / "qwen2.5-72b.config.json"


@pytest.fixture(scope="module")
def prod_yaml(tmp_path_factory):
    """A production-like config (sized for a GPU) whose config_json is relative to the YAML.

    One file for the module, so count_parameters' cache builds the meta 72B once per rank.
    """
    root = tmp_path_factory.mktemp("prod")
    (root / "models").mkdir()
    shutil.copy(QWEN_72B, root / "models" / "config.json")
    yaml = root / "prod.yaml"
    yaml.write_text(
        "model:\n  base: Qwen/Qwen2.5-72B\n  config_json: models/config.json\n  device: cuda\n"
        "hardware:\n  memory_gb: 128\n"
    )
    return yaml


@pytest.fixture
def make_cfg(prod_yaml):
    def load(*overrides: str):
        return load_config(prod_yaml, list(overrides))

    return load


def _lora_params_by_hand(r: int) -> int:
    """r·(in + out) per adapted projection, from the config's shapes (a cross-check of peft's count)."""
    c = json.loads(QWEN_72B.read_text())
    h, i = c["hidden_size"], c["intermediate_size"]
    kv = c["num_key_value_heads"] * h // c["num_attention_heads"]
    shapes = [(h, h), (h, kv), (h, kv), (h, h), (h, i), (h, i), (i, h)]  # q k v o gate up down
    return c["num_hidden_layers"] * sum(r * (a + b) for a, b in shapes)


def test_72b_r16_counts_match_qlora_figures(make_cfg):
    cfg = make_cfg()
    counts = count_parameters(cfg)
    assert counts.trainable == _lora_params_by_hand(16) == 210_534_400
    assert f"{counts.trainable_pct:.2f}" == "0.29"
    assert 72e9 < counts.base < 73.5e9  # Qwen2.5-72B: 72.7B parameters
    assert counts.total == counts.base + counts.trainable
    text = format_estimate(counts, estimate_memory(cfg, counts))
    assert "210,534,400" in text and "0.29%" in text


def test_72b_sizes_on_disk_and_in_memory(make_cfg):
    cfg = make_cfg()
    est = estimate_memory(cfg)
    assert est.disk["adapter"] == pytest.approx(842e6, rel=0.01)  # fp32 adapter, ~842 MB
    assert 38e9 <= est.disk["base_quantized"] <= 42e9  # NF4 + double quant + bf16 embeddings
    assert est.disk["base_checkpoint"] > 3.4 * est.disk["base_quantized"]  # the bf16 release is ~145 GB
    parts = {c["key"]: c["bytes"] for c in est.components}
    assert sum(parts.values()) == est.peak_bytes
    assert 38e9 <= parts["base_4bit"] + parts["base_quant_constants"] + parts["base_unquantized"] <= 42e9
    # 152k vocab: the loss is the backward peak, and it outweighs all 80 layer checkpoints
    peak_row = next(c["component"] for c in est.components if c["key"] == "act_peak")
    assert peak_row.startswith("logits + loss") and parts["act_peak"] > parts["act_checkpoints"]
    assert est.fits and est.advice == "" and est.peak_bytes < 128 * GB
    json.dumps(est.to_json())  # scripts read it


def test_double_quant_saves_about_3gb_on_72b(make_cfg):
    on = estimate_memory(make_cfg())
    off = estimate_memory(make_cfg("model.quantization.double_quant=false"), on.counts)
    assert 2.5 * GB < off.peak_bytes - on.peak_bytes < 4 * GB


def test_rank_32_doubles_lora_and_grows_estimate(make_cfg):
    c16 = count_parameters(make_cfg())
    cfg32 = make_cfg("lora.r=32")
    c32 = count_parameters(cfg32)
    assert c32.trainable == 2 * c16.trainable == _lora_params_by_hand(32)
    e16, e32 = estimate_memory(make_cfg(), c16), estimate_memory(cfg32, c32)
    assert e32.peak_bytes > e16.peak_bytes
    assert e32.disk["adapter"] == 2 * e16.disk["adapter"]


def test_tiny_memory_raises_naming_a_knob(make_cfg):
    with pytest.raises(MothError) as err:
        check_fits(make_cfg("hardware.memory_gb=8"))
    msg = str(err.value)
    assert "exceeds hardware.memory_gb 8 GB" in msg and "\n" not in msg
    assert re.search(r"train\.max_seq_len|lora\.r|train\.micro_batch_size|gradient_checkpointing", msg)
    assert "more memory" in msg  # the 4-bit base alone is ~41 GB: no knob can fix that


def test_long_sequence_advice_names_max_seq_len_and_the_value_fits(make_cfg):
    with pytest.raises(MothError) as err:
        check_fits(make_cfg("train.max_seq_len=65536"))
    m = re.search(r"lower train\.max_seq_len from 65536 to (\d+)", str(err.value))
    assert m, str(err.value)
    # The proposed value really fits, and its double does not (the advice is the mildest change).
    assert check_fits(make_cfg(f"train.max_seq_len={m.group(1)}")).fits
    assert not estimate_memory(make_cfg(f"train.max_seq_len={2 * int(m.group(1))}")).fits


def test_no_checkpointing_advice_turns_it_on(make_cfg):
    with pytest.raises(MothError, match="turn on train.gradient_checkpointing"):
        check_fits(make_cfg("train.gradient_checkpointing=false"))
    assert check_fits(make_cfg("train.gradient_checkpointing=true")).fits


def test_cpu_run_is_sized_in_fp32_with_adamw(make_cfg):
    gpu = estimate_memory(make_cfg())
    cpu = estimate_memory(make_cfg("model.device=cpu"), gpu.counts)
    assert cpu.settings["compute_dtype"] == "float32" and cpu.settings["optimizer"] == "adamw_torch"
    g = {c["key"]: c["bytes"] for c in gpu.components}
    c = {c["key"]: c["bytes"] for c in cpu.components}
    assert c["base_unquantized"] == 2 * g["base_unquantized"]
    assert c["optimizer"] > 3 * g["optimizer"]  # 8 B/param fp32 AdamW vs ~2 B/param 8-bit


def test_missing_config_json_is_a_clean_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    y = tmp_path / "c.yaml"
    y.write_text("model:\n  base: nobody/not-a-cached-model\n")
    with pytest.raises(MothError, match="model.config_json"):
        count_parameters(load_config(y))
    y.write_text("model:\n  base: nobody/not-a-cached-model\n  config_json: nope/config.json\n")
    with pytest.raises(MothError, match=r"model.config_json: .*nope.*not found"):
        count_parameters(load_config(y))


def test_malformed_config_json_is_a_clean_error(tmp_path):
    (tmp_path / "bad.json").write_text('{"model_type": "qwen2", "hidden_size": ')
    y = tmp_path / "c.yaml"
    y.write_text("model:\n  config_json: bad.json\n")
    with pytest.raises(MothError, match="bad.json"):
        count_parameters(load_config(y))


def test_unknown_target_module_is_a_clean_error(make_cfg):
    with pytest.raises(MothError, match="lora.target_modules"):
        count_parameters(make_cfg("lora.target_modules=[no_such_proj]"))


def test_demo_config_is_sized_before_the_tiny_model_exists():
    cfg = load_config(REPO_ROOT / "configs" / "demo-tiny.yaml")
    est = check_fits(cfg)
    assert est.settings["device"] == "cpu" and est.counts.model_type == "qwen2"
    assert 0 < est.counts.trainable < est.counts.total


def test_measured_peak_is_the_process_rss_on_cpu():
    buf = bytearray(200 * 10**6)  # touch 200 MB so the peak must include it
    assert measured_peak_bytes() >= 200 * 10**6
    del buf


def _profiled_peak(step) -> int:
    """Peak bytes of tensors allocated while `step()` runs (CPU), from torch.profiler's memory events."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    try:
        events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    except AttributeError:  # pragma: no cover - profiler internals moved
        pytest.skip("this torch's profiler exposes no memory events")
    current = peak = 0
    for e in sorted(events, key=lambda e: e.start_ns()):
        current += e.nbytes()
        peak = max(peak, current)
    return peak


@pytest.mark.parametrize("checkpointing", [False, True])
def test_estimate_matches_a_real_qlora_step_on_cpu(tmp_path, checkpointing):
    """A small random Qwen2 in 4-bit with bf16 compute: the loaded base and the forward+backward peak
    (activations, loss, LoRA gradients) against the prediction."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from mothbrain.models.loading import load_base_model

    torch.manual_seed(0)
    arch = Qwen2Config(
        vocab_size=4096,
        hidden_size=256,
        intermediate_size=704,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=False,
    )
    Qwen2ForCausalLM(arch).save_pretrained(tmp_path / "m")
    y = tmp_path / "c.yaml"
    y.write_text(
        f"model:\n  base: {tmp_path / 'm'}\n  device: cpu\n  quantization: {{compute_dtype: bfloat16}}\n"
        "lora: {r: 8, dropout: 0.05}\n"
        "train: {micro_batch_size: 2, max_seq_len: 256, "
        f"gradient_checkpointing: {str(checkpointing).lower()}}}\n"
    )
    cfg = load_config(y)
    est = estimate_memory(cfg)
    parts = {c["key"]: c["bytes"] for c in est.components}

    model = load_base_model(cfg, for_training=True)
    storages = {}
    for p in model.parameters():
        storages[p.untyped_storage().data_ptr()] = p.untyped_storage().nbytes()
        qs = getattr(p, "quant_state", None)
        for t in (qs.absmax, qs.state2.absmax) if qs is not None and qs.nested else ():
            storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
    predicted_base = sum(v for k, v in parts.items() if k.startswith("base_"))
    assert sum(storages.values()) == pytest.approx(predicted_base, rel=0.02)

    lora = cfg.lora
    model = get_peft_model(
        model,
        LoraConfig(
            r=lora.r,
            lora_alpha=lora.alpha,
            lora_dropout=lora.dropout,
            target_modules=lora.target_modules,
            task_type="CAUSAL_LM",
        ),
    )
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    model.train()
    ids = torch.randint(0, 4096, (2, 256))

    def step():
        model(input_ids=ids, labels=ids).loss.backward()

    measured = _profiled_peak(step)
    predicted = sum(v for k, v in parts.items() if k.startswith(("act_", "attn_mask", "lora_grads")))
    assert measured == pytest.approx(predicted, rel=0.2), (measured, predicted)

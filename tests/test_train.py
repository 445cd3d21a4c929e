"""The trainer: real 4-bit QLoRA on the tiny model; resume after kill -9; refusals and failures."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from click.testing import CliRunner

from mothbrain.cli import main
from mothbrain.config import REPO_ROOT
from mothbrain.errors import MothError
from mothbrain.ingest import run_ingest
from mothbrain.ledger import open_ledger
from mothbrain.preprocess import run_preprocess
from mothbrain.train import run_train

DEMO = str(REPO_ROOT / "configs" / "demo.yaml")
DEFAULT = str(REPO_ROOT / "configs" / "default.yaml")


@pytest.fixture
def prepared(demo_cfg):
    """Demo config with ingested and preprocessed sample material."""
    cfg = demo_cfg()
    run_ingest(cfg)
    run_preprocess(cfg)
    return demo_cfg


def _quantized_weight_bytes(model) -> bytes:
    layer = model.get_base_model().model.layers[0].mlp.up_proj if hasattr(model, "get_base_model") \
        else model.model.layers[0].mlp.up_proj
    base = getattr(layer, "base_layer", layer)
    return base.weight.data.clone().numpy().tobytes()


def test_real_qlora_run_trains_saves_and_records(prepared, state_home):
    cfg = prepared("train.max_steps=24", "train.logging_steps=2", "train.save_steps=100")
    report = run_train(cfg)
    v = open_ledger(cfg).get(report.version)

    assert v["status"] == "trained"
    assert v["train"]["losses"] and v["train"]["final_loss"] is not None
    assert v["train"]["steps"] == 24 and v["train"]["tokens"] > 0
    assert v["train"]["pad_share"] < 0.02  # packed padding-free
    assert v["dataset"]["fingerprint"] and v["dataset"]["composition"]
    assert v["hyperparameters"]["quantization"]["quant_type"] == "nf4"
    assert v["hyperparameters"]["quantization"]["double_quant"] is True
    assert v["memory"]["predicted_peak_gb"] > 0 and v["memory"]["measured_peak_gb"] > 0
    assert v["timings"]["train_s"] > 0

    adapter = state_home / "adapters" / report.version
    meta = json.loads((adapter / "mothbrain.json").read_text())
    assert meta["steps"] == 24 and meta["dataset"]["fingerprint"] == v["dataset"]["fingerprint"]
    assert not (state_home / "adapters" / ".checkpoints" / report.version).exists()

    # The adapter loads with plain peft, unchanged, on a freshly loaded 4-bit base.
    from peft import PeftModel

    from mothbrain.modeling import load_base_model, load_tokenizer

    tok = load_tokenizer(cfg)
    ids = tok("Moth: the lantern", return_tensors="pt")
    base = load_base_model(cfg)
    with torch.no_grad():
        base_logits = base(**ids).logits.clone()
    before = _quantized_weight_bytes(base)  # after a forward: bitsandbytes' CPU path repacks on first use
    model = PeftModel.from_pretrained(base, str(adapter))
    with torch.no_grad():
        tuned = model(**ids).logits
    assert not torch.allclose(base_logits, tuned, atol=1e-4)  # the adapter changes outputs
    assert _quantized_weight_bytes(model) == before  # the frozen 4-bit base is untouched
    from safetensors import safe_open

    with safe_open(str(adapter / "adapter_model.safetensors"), "pt") as f:
        keys = list(f.keys())
    assert keys and all("lora_" in k for k in keys)  # only LoRA weights were trained and saved

    # The training loss really went down: completion loss on fixed training samples, base vs adapter.
    from mothbrain.preprocess import load_latest_dataset

    rows = load_latest_dataset(cfg)[0]["train"].select(range(48))
    with model.disable_adapter():
        base_loss = _completion_loss(model, tok, rows)
    tuned_loss = _completion_loss(model, tok, rows)
    assert tuned_loss < base_loss * 0.97, (base_loss, tuned_loss)


def _completion_loss(model, tok, rows) -> float:
    total = count = 0.0
    with torch.no_grad():
        for r in rows:
            p = tok(r["prompt"])["input_ids"]
            c = tok(r["completion"])["input_ids"] + [tok.eos_token_id]
            ids = torch.tensor([p + c])
            labels = torch.tensor([[-100] * len(p) + c])
            out = model(input_ids=ids, labels=labels)
            total += float(out.loss) * len(c)
            count += len(c)
    return total / count


def _train_cmd(*sets: str) -> list[str]:
    cmd = [sys.executable, "-m", "mothbrain.cli", "train", "--config", DEMO]
    for s in sets:
        cmd += ["--set", s]
    return cmd


def _wait_for_checkpoint(folder, proc, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"trainer exited early: {proc.returncode}")
        found = [p for p in folder.glob("checkpoint-*") if (p / "trainer_state.json").exists()] if folder.exists() else []
        if found:
            return found
        time.sleep(0.2)
    pytest.fail("no checkpoint appeared")


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["kill-9", "sigterm"])
def test_killed_run_resumes_as_one_version(prepared, state_home, sig):
    sets = ("train.max_steps=14", "train.save_steps=3", "train.logging_steps=2")
    env = dict(os.environ, MOTHBRAIN_HOME=str(state_home))
    proc = subprocess.Popen(_train_cmd(*sets), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _wait_for_checkpoint(state_home / "adapters" / ".checkpoints" / "v0001", proc)
    os.kill(proc.pid, sig)
    _, err = proc.communicate(timeout=120)
    if sig == signal.SIGTERM:
        assert proc.returncode == 1 and "interrupted" in err and "Traceback" not in err

    cfg = prepared(*sets)
    ledger = open_ledger(cfg)
    assert ledger.get("v0001")["status"] == "training"
    report = run_train(cfg)
    versions = ledger.versions()
    assert [v["id"] for v in versions] == ["v0001"] and report.version == "v0001"
    v = versions[0]
    assert v["status"] == "trained"
    assert v["train"]["resumed_from"].startswith("checkpoint-")
    assert v["train"]["steps"] == 14
    assert any(e["event"] == "resumed" for e in ledger.read()["events"])


def test_run_predicted_not_to_fit_refuses_with_the_knob(prepared, state_home):
    cfg = prepared("hardware.memory_gb=0.05", "train.max_seq_len=1024")
    with pytest.raises(MothError) as err:
        run_train(cfg)
    msg = str(err.value)
    assert "hardware.memory_gb" in msg
    assert any(k in msg for k in ("train.max_seq_len", "lora.r", "train.micro_batch_size", "gradient_checkpointing",
                                  "more memory"))
    assert open_ledger(cfg).versions() == []  # nothing started


def test_nan_loss_fails_the_version_with_a_suggestion(prepared):
    cfg = prepared("train.max_steps=6", "train.learning_rate=1e30", "train.max_grad_norm=0", "train.logging_steps=1")
    with pytest.raises(MothError, match="failed"):
        run_train(cfg)
    v = open_ledger(cfg).versions()[-1]
    assert v["status"] == "failed"
    assert "learning_rate" in v["error"]["suggestion"]
    with pytest.raises(MothError):
        open_ledger(cfg).set_current(v["id"])


def test_no_dataset_is_nothing_to_do(demo_cfg):
    from mothbrain.errors import NothingToDo

    with pytest.raises(NothingToDo, match="preprocess"):
        run_train(demo_cfg())


def test_dry_run_for_the_72b_default():
    result = CliRunner().invoke(main, ["train", "--dry-run", "--config", DEFAULT])
    assert result.exit_code == 0, result.output
    assert "210,534,400" in result.output and "0.29%" in result.output
    big = CliRunner().invoke(main, ["train", "--dry-run", "--config", DEFAULT, "--set", "lora.r=32", "--json"])
    data = json.loads(big.output)
    assert "421,068,800" in data["trainable parameters"]

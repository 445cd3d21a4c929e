"""The trainer: real 4-bit QLoRA on the tiny model; resume after SIGTERM and kill -9; yielding;
growing the current adapter with replay; refusals and failures; the 72B dry run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest
import torch
from click.testing import CliRunner

from mothbrain.cli import main
from mothbrain.config import REPO_ROOT
from mothbrain.core.ledger import open_ledger
from mothbrain.data.dataset import load_latest_dataset
from mothbrain.errors import MothError, NothingToDo
from mothbrain.train.stage import loss_summary, run_train
from mothbrain.train.trainer import select_rows

DEMO = str(REPO_ROOT / "configs" / "demo-tiny.yaml")
DEFAULT = str(REPO_ROOT / "configs" / "default.yaml")


def _quantized_weight_bytes(model) -> bytes:
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    layer = inner.model.layers[0].mlp.up_proj
    return getattr(layer, "base_layer", layer).weight.data.clone().numpy().tobytes()


def _completion_loss(model, tok, rows) -> float:
    """Token-weighted loss on the completions only, as the trainer computes it."""
    total = count = 0.0
    with torch.no_grad():
        for r in rows:
            p = tok(r["prompt"])["input_ids"]
            c = tok(r["completion"])["input_ids"] + [tok.eos_token_id]
            labels = torch.tensor([[-100] * len(p) + c])
            out = model(input_ids=torch.tensor([p + c]), labels=labels)
            total += float(out.loss) * len(c)
            count += len(c)
    return total / count


def test_real_qlora_run_trains_saves_and_records(prepared, state_home):
    cfg = prepared("train.max_steps=40", "train.logging_steps=2", "train.save_steps=100")
    dataset_folder = state_home / "data" / "datasets"
    before = sorted(p.relative_to(dataset_folder) for p in dataset_folder.rglob("*"))
    report = run_train(cfg)
    v = open_ledger(cfg).get(report.version)
    # Training leaves the fingerprinted data set as preprocess wrote it (no datasets cache-*.arrow files).
    assert sorted(p.relative_to(dataset_folder) for p in dataset_folder.rglob("*")) == before

    # The ledger entry is complete.
    assert v["status"] == "trained" and v["parent"] is None
    t = v["train"]
    assert t["steps"] == 40 and [s for s, _ in t["losses"]][:2] == [1, 2]
    assert t["tokens"] > 40 * 4 * 100 and t["tokens_per_s"] > 0  # 4 packed rows of up to 256 tokens a step
    assert t["pad_share"] == 0.0  # packed padding-free
    assert t["resumed_from"] is None and t["yields"] == 0
    assert v["dataset"]["fingerprint"] and v["dataset"]["composition"] and v["dataset"]["path"]
    assert v["hyperparameters"]["quantization"]["quant_type"] == "nf4"
    assert v["hyperparameters"]["quantization"]["double_quant"] is True
    assert v["hyperparameters"]["lora"]["r"] == 16 and v["hyperparameters"]["train"]["max_steps"] == 40
    assert v["memory"]["predicted_peak_gb"] > 0 and v["memory"]["measured_peak_gb"] > 0
    assert v["timings"]["train_s"] > 0 and v["timings"]["finished_at"]

    adapter = state_home / "adapters" / report.version
    meta = json.loads((adapter / "mothbrain.json").read_text())
    assert meta["steps"] == 40 and meta["dataset"]["fingerprint"] == v["dataset"]["fingerprint"]
    assert meta["config"]["lora"]["r"] == 16 and meta["base_model"] == cfg.model.base
    assert not (state_home / "adapters" / ".checkpoints" / report.version).exists()
    assert not list((state_home / "adapters").glob(".*.saving"))

    # Only LoRA weights were trained and saved.
    from safetensors import safe_open

    with safe_open(str(adapter / "adapter_model.safetensors"), "pt") as f:
        keys = list(f.keys())
    assert keys and all("lora_" in k for k in keys)

    # The adapter loads with plain peft, unchanged, on a freshly loaded 4-bit base, and changes outputs.
    from peft import PeftModel

    from mothbrain.models.loading import load_base_model, load_tokenizer

    tok = load_tokenizer(cfg)
    ids = tok("Moth: the lantern", return_tensors="pt")
    base = load_base_model(cfg)
    with torch.no_grad():
        base_logits = base(**ids).logits.clone()
    before = _quantized_weight_bytes(base)  # after a forward: bitsandbytes' CPU path repacks on first use
    model = PeftModel.from_pretrained(base, str(adapter))
    with torch.no_grad():
        tuned = model(**ids).logits
    assert not torch.allclose(base_logits, tuned, atol=1e-4)
    assert _quantized_weight_bytes(model) == before  # the frozen 4-bit base is untouched

    # The training loss really went down: completion loss on fixed training samples, base vs adapter.
    rows = load_latest_dataset(cfg)[0]["train"].shuffle(seed=0).select(range(48))  # rows are in stream order
    with model.disable_adapter():
        base_loss = _completion_loss(model, tok, rows)
    tuned_loss = _completion_loss(model, tok, rows)
    assert tuned_loss < base_loss * 0.97, (base_loss, tuned_loss)


def _train_cmd(*sets: str) -> list[str]:
    cmd = [sys.executable, "-m", "mothbrain.cli", "train", "--config", DEMO]
    for s in sets:
        cmd += ["--set", s]
    return cmd


def _wait_for_checkpoint(folder, proc, beyond: int = 0, timeout: float = 180):
    """Block until `folder` holds a complete checkpoint with a step > `beyond`; return that step."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"trainer exited early ({proc.returncode}): {proc.stderr.read()[-800:]}")
        steps = [int(p.name.split("-")[-1]) for p in folder.glob("checkpoint-*") if (p / "trainer_state.json").exists()]
        if steps and max(steps) > beyond:
            return max(steps)
        time.sleep(0.1)
    pytest.fail("no checkpoint appeared")


def test_sigterm_then_kill_9_resume_as_one_version(prepared, state_home):
    sets = ("train.max_steps=40", "train.save_steps=4", "train.logging_steps=2")
    env = dict(os.environ, MOTHBRAIN_HOME=str(state_home))
    ckpts = state_home / "adapters" / ".checkpoints" / "v0001"
    cfg = prepared(*sets)
    ledger = open_ledger(cfg)

    # SIGTERM: a checkpoint at the end of the step, a clean message, the version stays resumable.
    proc = subprocess.Popen(_train_cmd(*sets), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    first = _wait_for_checkpoint(ckpts, proc)
    os.kill(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1 and "interrupted" in err and "Traceback" not in err, err[-800:]
    assert ledger.get("v0001")["status"] == "training"
    stopped_at = max(int(p.name.split("-")[-1]) for p in ckpts.glob("checkpoint-*"))
    assert stopped_at >= first

    # kill -9 of the resumed run once it has written a newer checkpoint.
    proc = subprocess.Popen(_train_cmd(*sets), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _wait_for_checkpoint(ckpts, proc, beyond=stopped_at)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    assert ledger.get("v0001")["status"] == "training"

    # The next run resumes from the last checkpoint and finishes the same version.
    report = run_train(cfg)
    versions = ledger.versions()
    assert [v["id"] for v in versions] == ["v0001"] and report.version == "v0001"
    v = versions[0]
    assert v["status"] == "trained" and v["train"]["steps"] == 40
    resumed = int(v["train"]["resumed_from"].split("-")[-1])
    assert resumed > stopped_at
    steps = [s for s, _ in v["train"]["losses"]]
    assert steps[0] == 1 and steps[-1] == 40  # the loss history survived both interruptions
    assert [e["event"] for e in ledger.read()["events"]].count("resumed") == 2
    assert not ckpts.exists()


class _StubController:
    """Stands in for neighbour.YieldController: busy once at the third check, then quiet."""

    def __init__(self):
        self.cfg = SimpleNamespace(interval_s=0.0)
        self.checks = 0

    def start_window(self):
        pass

    def busy(self):
        self.checks += 1
        return "someone is typing" if self.checks == 3 else None

    def wait_until_quiet(self, sleep=None):
        return 1.5


def test_yield_checkpoints_waits_and_resumes_in_the_same_version(prepared, monkeypatch):
    from mothbrain.core import neighbour
    from mothbrain.train import stage as train_stage

    monkeypatch.setattr(train_stage, "make_yield_callback", lambda ycfg: neighbour.YieldCallback(_StubController()))
    cfg = prepared("train.max_steps=8", "train.save_steps=100", "train.logging_steps=1")
    report = run_train(cfg)
    ledger = open_ledger(cfg)
    (v,) = ledger.versions()
    assert v["id"] == report.version and v["status"] == "trained"
    assert v["train"]["steps"] == 8 and v["train"]["yields"] == 1 and v["train"]["yield_seconds"] == 1.5
    assert v["train"]["yield_events"][0]["reason"] == "someone is typing"
    assert [s for s, _ in v["train"]["losses"]] == list(range(1, 9))
    assert any(e["event"] == "yielded" for e in ledger.read()["events"])


def test_growing_the_current_adapter_with_replay(prepared, state_home):
    cfg = prepared("train.max_steps=3", "train.save_steps=100")
    first = run_train(cfg).version
    ledger = open_ledger(cfg)
    ledger.set_current(first)
    (state_home / "adapters" / "current").symlink_to(first)

    grow = prepared("train.max_steps=3", "train.save_steps=100", "train.init_from=current", "train.replay_share=0.25")
    report = run_train(grow)
    v = ledger.get(report.version)
    assert v["parent"] == first and v["train"]["init_from"] == f"current ({first})"
    rows = load_latest_dataset(cfg)[0]["train"]
    recent = sum(rows["recent"])
    assert 0 < recent < len(rows)
    assert v["train"]["samples"] == recent + v["train"]["replay_samples"]
    assert v["train"]["replay_samples"] / v["train"]["samples"] == pytest.approx(0.25, abs=0.02)


def test_select_rows_mixes_recent_and_replay(demo_cfg):
    from datasets import Dataset

    rows = Dataset.from_dict(
        {
            "prompt": [f"p{i}" for i in range(100)],
            "completion": [f" c{i}" for i in range(100)],
            "recent": [i < 30 for i in range(100)],
            "source": ["s"] * 100,
        }
    )
    cfg = demo_cfg("train.replay_share=0.4")
    all_rows, n = select_rows(cfg, rows, growing=False)
    assert len(all_rows) == 100 and n == 0 and all_rows.column_names == ["prompt", "completion"]
    mixed, n = select_rows(cfg, rows, growing=True)
    assert n == 20 and len(mixed) == 50  # 20 / (30 + 20) = 0.4
    assert sum(int(p[1:]) < 30 for p in mixed["prompt"]) == 30
    only_recent, n = select_rows(demo_cfg("train.replay_share=0"), rows, growing=True)
    assert n == 0 and len(only_recent) == 30


def test_run_predicted_not_to_fit_refuses_with_the_knob(prepared):
    cfg = prepared("hardware.memory_gb=0.05", "train.max_seq_len=1024")
    with pytest.raises(MothError) as err:
        run_train(cfg)
    msg = str(err.value)
    assert "hardware.memory_gb" in msg
    assert any(k in msg for k in ("train.max_seq_len", "lora.r", "train.micro_batch_size", "gradient_checkpointing"))
    assert open_ledger(cfg).versions() == []  # nothing started


def test_nan_loss_fails_the_version_with_a_suggestion(prepared, state_home):
    cfg = prepared(
        "train.max_steps=6",
        "train.learning_rate=1e30",
        "train.max_grad_norm=0",
        "train.logging_steps=1",
        "train.save_steps=2",
    )
    with pytest.raises(MothError, match="failed.*learning_rate"):
        run_train(cfg)
    ledger = open_ledger(cfg)
    v = ledger.versions()[-1]
    assert v["status"] == "failed" and ("nan" in v["error"]["reason"] or "inf" in v["error"]["reason"])
    assert "train.learning_rate" in v["error"]["suggestion"]
    assert not (state_home / "adapters" / v["id"]).exists()
    with pytest.raises(MothError):
        ledger.set_current(v["id"])  # a failed version never becomes current
    # The next run starts a new version instead of resuming the failed one.
    ok = prepared("train.max_steps=2")
    assert run_train(ok).version != v["id"]


def test_no_dataset_is_nothing_to_do(demo_cfg):
    with pytest.raises(NothingToDo, match="preprocess"):
        run_train(demo_cfg())


def test_dry_run_for_the_72b_default():
    result = CliRunner().invoke(main, ["train", "--dry-run", "--config", DEFAULT])
    assert result.exit_code == 0, result.output
    assert "210,534,400" in result.output and "0.29%" in result.output
    assert "predicted peak" in result.output and "fits" in result.output
    big = CliRunner().invoke(main, ["train", "--dry-run", "--config", DEFAULT, "--set", "lora.r=32", "--json"])
    data = json.loads(big.output)
    assert data["trainable parameters"].startswith("421,068,800")
    small = json.loads(CliRunner().invoke(main, ["train", "--dry-run", "--config", DEFAULT, "--json"]).output)
    assert float(data["predicted peak"].split()[0]) > float(small["predicted peak"].split()[0])


def _nightly(*args: str):
    sets = ["train.max_steps=2", "train.save_steps=100", "dream.num_prompts=2", "schedule.send_briefing=false"]
    cmd = ["run", "nightly", "--config", DEMO, *args]
    for s in sets:
        cmd += ["--set", s]
    return CliRunner().invoke(main, cmd)


def test_a_night_with_no_new_material_trains_and_dreams_nothing(demo_cfg, state_home):
    from mothbrain.ops.briefing import build_briefing
    from mothbrain.ops.runs import load_runs
    from mothbrain.proposals.queue import list_proposals

    cfg = demo_cfg()
    first = _nightly()
    assert first.exit_code == 0, first.output
    (v1,) = open_ledger(cfg).versions()
    dreams = len(list_proposals(cfg))

    second = _nightly()
    assert second.exit_code == 0, second.output
    assert [v["id"] for v in open_ledger(cfg).versions()] == [v1["id"]]  # no second version
    assert len(list_proposals(cfg)) == dreams  # no more dreams staged
    stages = {s["name"]: s for s in load_runs(cfg)[-1]["stages"]}
    fp = v1["dataset"]["fingerprint"]
    for name in ("train", "dream"):
        assert stages[name]["status"] == "skipped"
        assert f"no new material since {v1['id']} (fingerprint {fp[:12]})" in stages[name]["error"]
    assert f"no new material since {v1['id']}" in build_briefing(cfg).text

    # --force trains anyway, and a new version may grow from the current one (init_from: current).
    open_ledger(cfg).set_current(v1["id"])
    (state_home / "adapters" / "current").symlink_to(v1["id"])
    forced = _nightly("--force", "--set", "train.init_from=current")
    assert forced.exit_code == 0, forced.output
    v2 = open_ledger(cfg).versions()[-1]
    assert v2["id"] != v1["id"] and v2["status"] == "trained" and v2["parent"] == v1["id"]
    assert len(list_proposals(cfg)) > dreams


def test_train_force_and_config_setting_train_unchanged_data_again(prepared):
    cfg = prepared("train.max_steps=2", "train.save_steps=100", "train.logging_steps=1")
    report = run_train(cfg)
    first = report.version
    losses = open_ledger(cfg).get(first)["train"]["losses"]
    first_loss, final_loss = loss_summary(losses)
    assert report.figures["train loss"] == f"{first_loss:.3f} → {final_loss:.3f}"  # the one figure, as defined
    with pytest.raises(NothingToDo, match=f"no new material since {first}"):
        run_train(cfg)
    result = CliRunner().invoke(
        main, ["train", "--config", DEMO, "--set", "train.max_steps=2", "--set", "train.save_steps=100"]
    )
    assert result.exit_code == 3 and f"nothing to do: no new material since {first}" in result.output
    assert run_train(cfg, force=True).version != first
    assert run_train(prepared("train.max_steps=2", "train.save_steps=100", "train.skip_unchanged=false")).version
    assert len(open_ledger(cfg).versions()) == 3


class _KilledAfterSave(BaseException):
    """A kill -9 between saving the adapter and recording it (not an Exception: nothing handles it)."""


def test_a_kill_after_the_adapter_was_saved_records_it_without_training_again(prepared, state_home, monkeypatch):
    from mothbrain.train import stage

    cfg = prepared("train.max_steps=6", "train.save_steps=3", "train.logging_steps=1")
    real_save = stage._save_adapter

    def save_then_die(*args, **kwargs):
        real_save(*args, **kwargs)
        raise _KilledAfterSave()

    monkeypatch.setattr(stage, "_save_adapter", save_then_die)
    with pytest.raises(_KilledAfterSave):
        run_train(cfg)
    monkeypatch.setattr(stage, "_save_adapter", real_save)
    ledger = open_ledger(cfg)
    assert ledger.get("v0001")["status"] == "training"
    weights = state_home / "adapters" / "v0001" / "adapter_model.safetensors"
    saved = weights.read_bytes()

    report = run_train(cfg)
    assert report.version == "v0001" and [v["id"] for v in ledger.versions()] == ["v0001"]
    v = ledger.get("v0001")
    assert v["status"] == "trained" and v["train"]["steps"] == 6, v["train"]["steps"]
    assert [s for s, _ in v["train"]["losses"]] == list(range(1, 7))
    assert weights.read_bytes() == saved  # the saved adapter is the one recorded, not a retrained one
    assert not (state_home / "adapters" / ".checkpoints" / "v0001").exists()


def test_a_full_disk_at_a_checkpoint_names_the_cause_and_keeps_the_version(prepared, state_home, monkeypatch):
    """ENOSPC in a checkpoint save, with versions.json unwritable too: the message names the disk, not the ledger."""
    import errno

    import transformers

    import mothbrain.core.ledger as ledger_mod

    cfg = prepared("train.max_steps=6", "train.save_steps=2", "train.logging_steps=1")
    real_save_checkpoint = transformers.Trainer._save_checkpoint
    real_save_json = ledger_mod.save_json
    disk = {"full": False, "saves": 0}

    def save_checkpoint(self, *args, **kwargs):
        disk["saves"] += 1
        if disk["saves"] == 2:  # the second checkpoint meets a full disk, half written
            partial = state_home / "adapters" / ".checkpoints" / "v0001" / "checkpoint-4"
            partial.mkdir(parents=True, exist_ok=True)
            (partial / "adapter_model.safetensors").write_bytes(b"\0" * 100)
            disk["full"] = True
            raise OSError(errno.ENOSPC, "No space left on device", str(partial / "optimizer.pt"))
        return real_save_checkpoint(self, *args, **kwargs)

    def save_json(path, data):
        if disk["full"]:
            raise MothError(f"could not write {path}: No space left on device (free disk space ...)")
        return real_save_json(path, data)

    monkeypatch.setattr(transformers.Trainer, "_save_checkpoint", save_checkpoint)
    monkeypatch.setattr(ledger_mod, "save_json", save_json)
    with pytest.raises(MothError) as err:
        run_train(cfg)
    msg = str(err.value)
    assert "No space left on device [ENOSPC]" in msg and "optimizer.pt" in msg and "MB free" in msg, msg
    assert "resumes from checkpoint-2" in msg, msg
    ckpts = state_home / "adapters" / ".checkpoints" / "v0001"
    assert sorted(p.name for p in ckpts.glob("checkpoint-*")) == ["checkpoint-2"]  # the partial one is gone

    monkeypatch.setattr(transformers.Trainer, "_save_checkpoint", real_save_checkpoint)
    monkeypatch.setattr(ledger_mod, "save_json", real_save_json)
    ledger = open_ledger(cfg)
    assert ledger.get("v0001")["status"] == "training"
    report = run_train(cfg)  # space freed: the same version resumes and finishes
    assert report.version == "v0001" and ledger.get("v0001")["status"] == "trained"
    assert ledger.get("v0001")["train"]["resumed_from"] == "checkpoint-2"

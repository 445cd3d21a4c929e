"""Doctor's disk, architecture and GPU memory checks: each tells a night that fits from one that does not,
and a check with nothing to check says "not run"."""

from __future__ import annotations

import json
import shutil
from collections import namedtuple

import pytest

from mothbrain.config import REPO_ROOT, load_config
from mothbrain.models import preflight
from mothbrain.models.memory import estimate_memory
from mothbrain.models.preflight import architecture_check, disk_check, disk_needs, gpu_memory_check
from mothbrain.ops.doctor import run_doctor

DEMO_TINY = REPO_ROOT / "configs" / "demo-tiny.yaml"
QWEN_72B = REPO_ROOT / "configs" / "qwen2.5-72b.config.json"
GIB = 1024**3
Usage = namedtuple("Usage", "total used free")


@pytest.fixture
def prod(tmp_path):
    """A 72B profile whose base is a name to prepare (not there yet), sized from the shipped config.json."""
    (tmp_path / "models").mkdir()
    shutil.copy(QWEN_72B, tmp_path / "models" / "config.json")
    (tmp_path / "prod.yaml").write_text(
        "model:\n  base: qwen2.5-72b\n  config_json: models/config.json\n  device: cuda\n"
        "hardware:\n  memory_gb: 128\nsources: []\n"
    )
    return lambda *o: load_config(tmp_path / "prod.yaml", list(o))


# --------------------------------------------------------------------------- GPU memory


@pytest.fixture(scope="module")
def cuda_estimate():
    return estimate_memory(load_config(DEMO_TINY), device="cuda")


def test_gpu_memory_fits_does_not_fit_busy_and_no_cuda(cuda_estimate):
    peak = cuda_estimate.peak_bytes
    fits = gpu_memory_check(True, free=peak + GIB, total=peak + 2 * GIB, est=cuda_estimate, name="H100")
    assert fits.status == "ok" and "H100" in fits.detail and "fits" in fits.detail
    too_small = gpu_memory_check(True, free=peak // 2, total=peak - 1, est=cuda_estimate)
    assert too_small.status == "fail" and "does not fit" in too_small.detail and too_small.fix
    busy = gpu_memory_check(True, free=peak - 1, total=peak * 2, est=cuda_estimate)
    assert busy.status == "warn" and "in use" in busy.detail
    for no_cuda in (gpu_memory_check(False, 0, 0, cuda_estimate), gpu_memory_check(False, 0, 0, None)):
        assert no_cuda.status == "not run" and no_cuda.detail == "not run (no CUDA)"
    assert gpu_memory_check(True, 10 * GIB, 10 * GIB, None).status == "not run"


def test_doctor_on_this_cpu_box_says_gpu_memory_not_run(state_home, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    report = run_doctor(load_config(DEMO_TINY))
    check = report.get("gpu memory")
    assert check.status == "not run" and check.detail == "not run (no CUDA)"
    assert report.title.endswith("1 not run") and not any(c.status == "ok" and "CUDA" in c.name for c in report.checks)


# --------------------------------------------------------------------------- disk


def test_disk_needs_count_the_base_to_prepare_checkpoints_adapter_and_data(prod):
    cfg = prod()
    est = estimate_memory(cfg)
    needs = dict(disk_needs(cfg, est))
    base = next(b for what, b in needs.items() if what.startswith("the base's weights"))
    assert 180e9 < base < 190e9  # the bf16 release (~145 GB) and its NF4 copy (~40 GB)
    assert needs["the adapter"] == pytest.approx(842e6, rel=0.01)
    # A checkpoint is the adapter and its optimizer's states: more kept, more disk.
    three = dict(disk_needs(prod("train.keep_checkpoints=3"), est))
    assert three["3 checkpoints"] == 3 * needs["2 checkpoints"] // 2 > 3 * needs["the adapter"]


def test_disk_fails_naming_the_shortfall_and_passes_with_room(prod, monkeypatch, state_home):
    cfg = prod()
    est = estimate_memory(cfg)
    need = sum(b for _, b in disk_needs(cfg, est))
    monkeypatch.setattr(preflight.shutil, "disk_usage", lambda _p: Usage(10**13, 0, need - 5 * GIB))
    short = disk_check(cfg, est)
    assert short.status == "fail" and "5.0 GiB short" in short.detail and "the base's weights" in short.detail
    assert "free 5.0 GiB" in short.fix and "MOTHBRAIN_HOME" in short.fix and "\n" not in short.line()
    monkeypatch.setattr(preflight.shutil, "disk_usage", lambda _p: Usage(10**13, 0, 3 * need))
    assert disk_check(cfg, est).status == "ok"
    monkeypatch.setattr(preflight.shutil, "disk_usage", lambda _p: Usage(10**13, 0, need + GIB))
    assert disk_check(cfg, est).status == "warn"


def test_a_prepared_base_is_not_counted_again(prod, state_home):
    cfg = prod()
    folder = state_home / "data" / "models" / "qwen2.5-72b"
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text("{}")
    assert not any(w.startswith("the base's weights") for w, _ in disk_needs(cfg, estimate_memory(cfg)))


# --------------------------------------------------------------------------- architecture


def _hf_folder(tmp_path, **changes):
    """A base folder with the tiny demo's Qwen2 config.json (architecture only: the check reads no weights)."""
    from transformers import Qwen2Config

    from mothbrain.models.tiny import TINY_ARCH

    folder = tmp_path / "base"
    folder.mkdir()
    data = {**Qwen2Config(**TINY_ARCH).to_dict(), "architectures": ["Qwen2ForCausalLM"], **changes}
    (folder / "config.json").write_text(json.dumps(data))
    return folder


def test_architecture_checks_target_modules_against_the_base(tmp_path):
    folder = _hf_folder(tmp_path)
    ok = architecture_check(load_config(DEMO_TINY, ["model.build_tiny=false", f"model.base={folder}"]))
    assert ok.status == "ok" and "Qwen2ForCausalLM" in ok.detail
    bad = architecture_check(
        load_config(
            DEMO_TINY, ["model.build_tiny=false", f"model.base={folder}", "lora.target_modules=[q_proj,c_attn]"]
        )
    )
    assert bad.status == "fail" and "['c_attn']" in bad.detail and "q_proj" in bad.detail
    assert "lora.target_modules" in bad.fix


def test_architecture_catches_a_config_json_of_another_model(tmp_path):
    folder = _hf_folder(tmp_path)
    other = tmp_path / "llama.json"
    other.write_text(json.dumps({"model_type": "llama", "architectures": ["LlamaForCausalLM"]}))
    cfg = load_config(DEMO_TINY, ["model.build_tiny=false", f"model.base={folder}", f"model.config_json={other}"])
    check = architecture_check(cfg)
    assert check.status == "fail" and "'llama'" in check.detail and "'qwen2'" in check.detail


def test_architecture_is_not_run_without_a_base(prod):
    check = architecture_check(prod())
    assert check.status == "not run" and "not here yet" in check.detail

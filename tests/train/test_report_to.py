"""train.report_to: TensorBoard when installed and asked for, off by default, one clear line when missing."""

from __future__ import annotations

import importlib.util

import pytest

from mothbrain.config import REPO_ROOT, ConfigError, load_config
from mothbrain.errors import MothError
from mothbrain.train.callbacks import check_report_to, tensorboard_dir
from mothbrain.train.stage import run_train

DEMO = REPO_ROOT / "configs" / "demo-tiny.yaml"
HAS_TENSORBOARD = importlib.util.find_spec("tensorboard") is not None


def test_report_to_is_off_by_default_and_knows_only_tensorboard(state_home):
    assert load_config(DEMO).train.report_to == []
    assert load_config(DEMO, ["train.report_to=[tensorboard]"]).train.report_to == ["tensorboard"]
    with pytest.raises(ConfigError, match=r"train.report_to: unknown 'wandb' \(known: tensorboard; empty = off\)"):
        load_config(DEMO, ["train.report_to=[wandb]"])


def test_asking_for_tensorboard_without_it_is_one_clear_line(state_home, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a))
    cfg = load_config(DEMO, ["train.report_to=[tensorboard]"])
    msg = "train.report_to: tensorboard is not installed; pip install tensorboard or remove it"
    with pytest.raises(MothError) as err:
        run_train(cfg)  # refused before anything is loaded
    assert str(err.value) == msg
    check_report_to(load_config(DEMO))  # not asked for: nothing to check


@pytest.mark.skipif(not HAS_TENSORBOARD, reason="not run: tensorboard not installed")
def test_a_tiny_training_run_writes_tensorboard_events(demo_cfg):
    from mothbrain.data.stage import run_preprocess
    from mothbrain.ingest.stage import run_ingest

    cfg = demo_cfg(
        "train.max_steps=2", "train.save_steps=100", "train.logging_steps=1", "train.report_to=[tensorboard]"
    )
    run_ingest(cfg)
    run_preprocess(cfg)
    report = run_train(cfg)
    events = list(tensorboard_dir(cfg, report.version).glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0

"""A night that doctor would fail never starts a version: `train` runs doctor's night checks first and
refuses with doctor's line, leaving the ledger as it was."""

from __future__ import annotations

import json
from collections import namedtuple

import pytest

from mothbrain.core import paths
from mothbrain.errors import MothError
from mothbrain.models import preflight
from mothbrain.train.stage import run_train


def _versions(cfg) -> list[dict]:
    path = paths.ledger_path(cfg)
    return json.loads(path.read_text())["versions"] if path.exists() else []


def test_a_missing_prepared_base_starts_no_version(prepared, state_home):
    # model.config_json sizes the run without the base (as the 72B profile does), so the memory
    # preflight passes and only the base's absence stands between the run and the ledger.
    tiny_config = state_home / "data" / "models" / "tiny-qwen2" / "config.json"
    cfg = prepared(
        "model.build_tiny=false", "model.base=someprepared", f"model.config_json={tiny_config}", "train.max_steps=1"
    )
    before = _versions(cfg)
    with pytest.raises(MothError) as err:
        run_train(cfg)
    line = str(err.value)
    assert "someprepared" in line and "not prepared" in line and "mothbrain models prepare" in line
    assert "\n" not in line
    assert _versions(cfg) == before


def test_a_full_disk_starts_no_version(prepared, monkeypatch):
    cfg = prepared("train.max_steps=1")
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(preflight.shutil, "disk_usage", lambda _p: usage(10**12, 10**12 - 1000, 1000))
    before = _versions(cfg)
    with pytest.raises(MothError) as err:
        run_train(cfg)
    line = str(err.value)
    assert line.startswith("disk: ") and "short" in line and "MOTHBRAIN_HOME" in line and "\n" not in line
    assert _versions(cfg) == before

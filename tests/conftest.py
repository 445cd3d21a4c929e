"""Shared fixtures: no test touches real state; the tiny base model is built once per session."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from mothbrain.config import REPO_ROOT, load_config

sys.path.insert(0, str(REPO_ROOT / "bench"))  # stand-ins and generators the benches and tests share

pytest_plugins = ["planted_corpus"]  # the planted state eval and promote tests share

DEMO_CONFIG = REPO_ROOT / "configs" / "demo-tiny.yaml"


@pytest.fixture(autouse=True)
def state_home(tmp_path, monkeypatch) -> Path:
    """Every test gets its own state directory (data/, adapters/, versions.json)."""
    home = tmp_path / "state"
    home.mkdir()
    monkeypatch.setenv("MOTHBRAIN_HOME", str(home))
    # Commands without --config get the tiny demo (the default, configs/demo.yaml, needs SmolLM2 prepared).
    monkeypatch.setenv("MOTHBRAIN_CONFIG", str(DEMO_CONFIG))
    return home


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """The demo's tiny Qwen2 (tokenizer + briefly pre-trained weights), built once per session."""
    from mothbrain.models.tiny import build_tiny_model

    cfg = load_config(DEMO_CONFIG)
    out = tmp_path_factory.mktemp("tiny") / "tiny-qwen2"
    build_tiny_model(out, [cfg.resolve_path(s.path) for s in cfg.sources], pretrain_steps=100)
    return out


def install_tiny_model(tiny_model_dir: Path, home: Path) -> Path:
    """Put the session's tiny model where the demo config looks for it under state dir `home`."""
    target = home / "data" / "models" / "tiny-qwen2"
    if not target.exists():
        shutil.copytree(tiny_model_dir, target)
    return home


@pytest.fixture(scope="session")
def tiny_model_into(tiny_model_dir):
    """install_tiny_model for module-scoped state dirs: tiny_model_into(home) → home."""
    return lambda home: install_tiny_model(tiny_model_dir, home)


@pytest.fixture
def demo_cfg(state_home, tiny_model_dir):
    """A loader for the demo config whose state dir already holds the tiny model."""
    install_tiny_model(tiny_model_dir, state_home)

    def load(*overrides: str):
        return load_config(DEMO_CONFIG, list(overrides))

    return load

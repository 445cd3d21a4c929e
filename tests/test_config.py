"""Config: every shipped YAML loads; mistakes are one clear message naming file and key."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from mothbrain.cli import main
from mothbrain.config import REPO_ROOT, ConfigError, load_config

SHIPPED = sorted((REPO_ROOT / "configs").glob("*.yaml"))
MOTHBRAIN_CONFIGS = [p for p in SHIPPED if not p.name.startswith("accelerate")]


def test_shipped_configs_exist():
    names = {p.name for p in SHIPPED}
    assert {"demo.yaml", "default.yaml"} <= names


@pytest.mark.parametrize("path", MOTHBRAIN_CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_loads(path):
    cfg = load_config(path)
    for src in cfg.sources:
        assert cfg.resolve_path(src.path).exists(), f"{path.name}: source {src.name} path missing"
    assert cfg.schedule.nightly.stages and cfg.schedule.weekly.stages


def test_default_is_the_production_profile():
    cfg = load_config(REPO_ROOT / "configs" / "default.yaml")
    assert cfg.model.base == "Qwen/Qwen2.5-72B"
    q = cfg.model.quantization
    assert (q.load_in_4bit, q.quant_type, q.double_quant) == (True, "nf4", True)
    assert cfg.lora.r == 16
    assert set(cfg.lora.target_modules) == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    assert cfg.resolve_path(cfg.model.config_json).is_file()


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


@pytest.mark.parametrize(
    "text,needle",
    [
        ("train:\n  max_step: 3\n", "unknown key 'train.max_step'"),
        ("train:\n  max_steps: three\n", "train.max_steps: expected an integer"),
        ("lora:\n  r: 1.5\n", "lora.r: expected an integer"),
        (
            "model:\n  quantization:\n    quant_type: int3\n",
            "model.quantization.quant_type: expected one of 'nf4', 'fp4'",
        ),
        ("sources:\n  - {name: a, kind: email, path: x}\n", "sources[0].kind"),
        ("sources:\n  - {name: a, kind: wiki, path: x}\n  - {name: a, kind: wiki, path: y}\n", "names must be unique"),
        ("schedule:\n  nightly: {stages: [ingest, sleep]}\n", "unknown stage 'sleep'"),
        ("train: [1, 2]\n", "train: expected a mapping"),
        ("a: [unclosed\n", "not valid YAML"),
        ("preprocess:\n  dedup_window: -5\n", "preprocess.dedup_window: expected 0 (no limit)"),
    ],
)
def test_bad_config_names_file_and_key(tmp_path, text, needle):
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    msg = str(err.value)
    assert needle in msg
    assert str(path) in msg
    assert "\n" not in msg


def test_overrides_keep_types(tmp_path):
    path = _write(tmp_path, "train:\n  max_steps: 3\n")
    cfg = load_config(path, ["train.max_steps=7", "lora.target_modules=[q_proj]", "neighbour.yield.enabled=true"])
    assert cfg.train.max_steps == 7
    assert cfg.lora.target_modules == ["q_proj"]
    assert cfg.neighbour.yield_.enabled is True
    with pytest.raises(ConfigError, match="with --set overrides"):
        load_config(path, ["train.max_steps=lots"])


def test_relative_paths_follow_the_config_file(tmp_path, monkeypatch):
    path = _write(tmp_path, "sources:\n  - {name: w, kind: wiki, path: notes}\n")
    monkeypatch.chdir("/")
    cfg = load_config(path)
    assert cfg.resolve_path(cfg.sources[0].path) == tmp_path / "notes"


def test_missing_config_file_is_a_clean_cli_error(tmp_path):
    result = CliRunner().invoke(main, ["ingest", "--config", str(tmp_path / "nope.yaml")])
    assert result.exit_code != 0
    assert "config file not found" in result.output
    assert "Traceback" not in result.output


def test_unknown_key_is_a_clean_cli_error(tmp_path):
    path = _write(tmp_path, "trian: {}\n")
    result = CliRunner().invoke(main, ["ingest", "--config", str(path)])
    assert result.exit_code != 0
    assert "unknown key 'trian'" in result.output
    assert "Traceback" not in result.output

"""Config: every shipped YAML loads; mistakes are one clear message naming file and key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from mothbrain.cli import main
from mothbrain.config import REPO_ROOT, ConfigError, load_config

SHIPPED = sorted((REPO_ROOT / "configs").glob("*.yaml"))
MOTHBRAIN_CONFIGS = [p for p in SHIPPED if not p.name.startswith("accelerate")]


def test_shipped_configs_exist():
    names = {p.name for p in SHIPPED}
    assert {"demo.yaml", "demo-tiny.yaml", "default.yaml"} <= names


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
        ("train:\n  max_steps: 3\n lora: {r: 4}\n", ":3:2: not valid YAML"),  # line and column of the fault
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


@pytest.mark.parametrize(
    "override, needle",
    [
        ("train.max_steps=0", "train.max_steps: expected a number of steps >= 1, or -1 for train.num_epochs"),
        ("train.max_steps=-5", "train.max_steps: expected a number of steps >= 1, or -1"),
        ("train.learning_rate=0", "train.learning_rate: expected a number > 0, got 0.0"),
        ("train.learning_rate=-0.001", "train.learning_rate: expected a number > 0"),
        ("train.num_epochs=0", "train.num_epochs: expected a number > 0"),
        ("serve.port=0", "serve.port: expected a number from 1 to 65535, got 0"),
        ("serve.port=70000", "serve.port: expected a number from 1 to 65535, got 70000"),
        ("briefing.smtp_port=-1", "briefing.smtp_port: expected a number from 1 to 65535"),
        ("dream.top_p=1.5", "dream.top_p: expected a number > 0 and <= 1"),
        ("lora.dropout=1", "lora.dropout: expected a number >= 0 and < 1"),
        ("preprocess.dedup_threshold=0", "preprocess.dedup_threshold: expected a number > 0 and <= 1"),
        ("coordinator.system1_timeout_s=0", "coordinator.system1_timeout_s: expected a number > 0"),
        ("neighbour.yield.interval_s=-1", "neighbour.yield.interval_s: expected a number > 0"),
        ("schedule.weekly.wait_for_lock_s=-1", "schedule.weekly.wait_for_lock_s: expected a number >= 0"),
    ],
)
def test_numbers_out_of_range_are_refused_when_the_config_loads(override, needle):
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    assert needle in str(err.value)
    assert load_config(None, ["train.max_steps=-1"]).train.max_steps == -1  # documented: num_epochs passes


def test_a_config_that_cannot_train_creates_no_version(state_home):
    result = CliRunner().invoke(main, ["train", "--set", "train.learning_rate=-1"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "train.learning_rate: expected a number > 0, got -1.0" in result.output
    assert not (state_home / "versions.json").exists()


def test_help_and_readme_document_the_exit_codes():
    help_text = CliRunner().invoke(main, ["--help"]).output
    readme = (REPO_ROOT / "README.md").read_text()
    for code, meaning in (("0", "ok"), ("1", "error"), ("3", "nothing to do"), ("130", "interrupted")):
        assert f"{code} " in help_text.split("Exit codes:")[1] and meaning in help_text
        assert f"| {code} | {meaning}" in readme


def test_every_preprocess_setting_says_what_it_affects():
    """The cache and data set keys are derived from this: a new setting without it would be in neither."""
    import dataclasses

    from mothbrain.config import AFFECTS, PreprocessConfig

    missing = [f.name for f in dataclasses.fields(PreprocessConfig) if f.metadata.get("affects") not in AFFECTS]
    assert not missing, f"declare affects= on {missing}"


def test_every_number_refuses_infinity_nan_and_out_of_range():
    """Walk every numeric setting: .inf, -.inf and .nan are one line at load naming the key (no run starts),
    and so is a negative count or a value below a declared range."""
    from mothbrain.config.load import NEGATIVE_OK, RANGES, _numbers

    demo = REPO_ROOT / "configs" / "demo-tiny.yaml"
    keys = [k for k, _ in _numbers(load_config(demo)) if "[" not in k]  # --set cannot name a list item
    assert len(keys) > 60 and "train.learning_rate" in keys and "model.tiny_pretrain_steps" in keys
    for key in keys:
        for bad in (".inf", "-.inf", ".nan"):
            with pytest.raises(ConfigError, match=re.escape(key)):
                load_config(demo, [f"{key}={bad}"])
    ints = [k for k, v in _numbers(load_config(demo)) if isinstance(v, int) and "[" not in k]
    for key in ints:
        with pytest.raises(ConfigError, match=re.escape(key)):
            load_config(demo, [f"{key}={-2 if key in NEGATIVE_OK else -1}"])
    for key, lo, _hi, lo_ok, _ in RANGES:
        with pytest.raises(ConfigError, match=re.escape(key)):
            load_config(demo, [f"{key}={lo - 1 if lo_ok else lo}"])
    # A list item's number is walked too (sources[].weight, priority_concepts[].min_samples), from YAML.
    assert any(k.startswith("sources[0].") for k, _ in _numbers(load_config(demo)))


def test_each_shipped_profile_has_its_own_state_dir(monkeypatch):
    """The demo, the tiny demo and production never share a ledger or a data set."""
    from mothbrain.core import paths

    monkeypatch.delenv("MOTHBRAIN_HOME", raising=False)
    dirs = {name: paths.state_dir(load_config(REPO_ROOT / "configs" / name)) for name in SHIPPED_PROFILES}
    assert len(set(dirs.values())) == len(dirs), dirs
    assert all(REPO_ROOT / "state" in d.parents for d in dirs.values())  # git-ignored, beside the code


SHIPPED_PROFILES = ("demo.yaml", "demo-tiny.yaml", "default.yaml")

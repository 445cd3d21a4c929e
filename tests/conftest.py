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


@pytest.fixture
def prepared(demo_cfg):
    """Demo config with the sample material ingested and preprocessed (the real stages, ~2 s)."""
    from mothbrain.data.stage import run_preprocess
    from mothbrain.ingest.stage import run_ingest

    cfg = demo_cfg()
    run_ingest(cfg)
    run_preprocess(cfg)
    return demo_cfg


# The end-to-end tests that train, run the learning bench or load the real base: `scripts/test.sh --fast` leaves
# them out (pytest -m "not slow"); CI runs everything. A whole file, or one test by its name.
SLOW = {
    "tests/evaluate/test_learning.py",
    "tests/evaluate/test_learning_real_base.py",
    "tests/models/test_real_base.py",
    "tests/test_crash_consistency.py",
    "tests/test_cycle.py",
    "tests/train/test_train.py",
    "tests/test_promote.py::test_gate_passes_trained_rejects_damaged_and_rollback_restores",
    "tests/wiki/test_wiki_worker.py::test_crosslink_backtest_finds_hidden_links_and_leaves_other_senses_alone",
    "tests/wiki/test_wiki_worker.py::test_splits_frames_and_stale_statements_are_found_with_few_false_alarms",
    "tests/wiki/test_wiki_worker.py::test_every_proposal_carries_a_patch_against_its_page_hash_a_rationale_and_a_score",
    "tests/wiki/test_wiki_worker.py::test_the_wiki_chain_scans_reviews_and_merges_from_the_cli",
    "tests/wiki/test_wiki_worker.py::test_a_wiki_without_defects_gets_no_split_frame_or_staleness",
    "tests/sources/test_sources.py::test_ten_thousand_malformed_records_across_all_six_kinds_none_vanish",
    "tests/ops/test_schedule.py::test_stage_commands_refuse_while_a_run_holds_the_lock",
    "tests/wiki/test_wiki_worker.py::test_frame_openings_are_written_by_the_local_model",
    "tests/wiki/test_wiki_worker.py::test_a_reviewer_that_is_down_makes_the_wiki_chain_exit_non_zero",
    "tests/evaluate/test_evaluate.py::test_trained_adapter_beats_base_on_planted_voice_and_associations",
    "tests/evaluate/test_evaluate.py::test_surprise_against_an_openai_compatible_reference_and_judge",
    "tests/evaluate/test_evaluate.py::test_unreachable_reference_falls_back_to_the_local_base",
    "tests/models/test_memory.py::test_estimate_matches_a_real_qlora_step_on_cpu",
    "tests/ask/test_coordinator.py::test_the_cli_prints_each_layer_once_and_keeps_library_warnings_out_of_stderr",
}


def pytest_collection_modifyitems(config, items):
    root = Path(config.rootpath)
    for item in items:
        path = Path(item.path).relative_to(root).as_posix()
        if path in SLOW or f"{path}::{item.name.split('[')[0]}" in SLOW:
            item.add_marker(pytest.mark.slow)

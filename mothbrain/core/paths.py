"""The state directory and where each artifact lives inside it.

All runtime state hangs off one directory: `$MOTHBRAIN_HOME` when set (tests point it at a temp
dir), else the config's `state_dir` (relative to the config file). Nothing else in the code
builds state paths by hand.
"""

from __future__ import annotations

import os
from pathlib import Path

from mothbrain.config import Config

ENV_HOME = "MOTHBRAIN_HOME"


def state_dir(cfg: Config) -> Path:
    env = os.environ.get(ENV_HOME)
    root = Path(env).expanduser().resolve() if env else cfg.resolve_path(cfg.state_dir)
    return root


def _d(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def data_dir(cfg: Config) -> Path:
    return _d(state_dir(cfg) / "data")


def ingest_dir(cfg: Config) -> Path:
    """Ingested documents (JSONL shards) and the content-hash manifest."""
    return _d(data_dir(cfg) / "ingest")


def datasets_dir(cfg: Config) -> Path:
    """Preprocessed HF datasets, one folder per fingerprint, plus latest.json."""
    return _d(data_dir(cfg) / "datasets")


def models_dir(cfg: Config, create: bool = True) -> Path:
    """Locally built base models (the tiny demo model); `create=False` only to look, never to make it."""
    where = state_dir(cfg) / "data" / "models"
    return _d(where) if create else where


def proposals_dir(cfg: Config) -> Path:
    """The dream staging queue and its exports."""
    return _d(data_dir(cfg) / "proposals")


def wiki_state_dir(cfg: Config) -> Path:
    """The wiki-worker's records: what each merge replaced (for `wiki revert` without git)."""
    return _d(data_dir(cfg) / "wiki")


def adapters_dir(cfg: Config) -> Path:
    return _d(state_dir(cfg) / "adapters")


def adapter_dir(cfg: Config, version: str) -> Path:
    """The finished adapter of a version (standard PEFT layout). Never written in place."""
    return adapters_dir(cfg) / version


def checkpoints_dir(cfg: Config, version: str) -> Path:
    """Trainer checkpoints of an unfinished version (removed once the adapter is saved)."""
    return _d(adapters_dir(cfg) / ".checkpoints" / version)


def current_adapter_link(cfg: Config) -> Path:
    """A symlink to the promoted adapter, swapped atomically by promote."""
    return adapters_dir(cfg) / "current"


def ledger_path(cfg: Config) -> Path:
    return state_dir(cfg) / "versions.json"


def runs_dir(cfg: Config) -> Path:
    """Run records of chains (`run nightly|weekly`)."""
    return _d(state_dir(cfg) / "runs")


def logs_dir(cfg: Config) -> Path:
    return _d(state_dir(cfg) / "logs")


def briefings_dir(cfg: Config) -> Path:
    return _d(data_dir(cfg) / "briefings")

"""The data set on disk: its schema version, the settings its fingerprint covers, and loading the latest."""

from __future__ import annotations

import json
from typing import Any

from mothbrain.config import Config, settings_affecting
from mothbrain.core import paths
from mothbrain.data.writer import META_NAME
from mothbrain.data.writer import fingerprint as dataset_fingerprint
from mothbrain.errors import MothError

DATASET_SCHEMA = 1  # bump when the columns or the sample format change (changes every fingerprint)


LATEST_NAME = "latest.json"


def data_settings(cfg: Config) -> dict[str, Any]:
    """The preprocess settings the data set depends on (not `workers`: the same data either way)."""
    return settings_affecting(cfg.preprocess, "documents", "dataset")


def hash_settings(cfg: Config) -> dict[str, Any]:
    return {"schema": DATASET_SCHEMA, "preprocess": data_settings(cfg)}


def fingerprint(tables: dict[str, Any], cfg: Config) -> str:
    """The data set's fingerprint from whole tables: what the writer computes as the rows stream
    (a 128-bit hash of both splits' columns and the preprocess settings, short hex)."""
    return dataset_fingerprint(tables, hash_settings(cfg))


def load_latest_dataset(cfg: Config):
    """(DatasetDict with "train" and "heldout", meta dict) of the data set latest.json points at."""
    import datasets

    root = paths.datasets_dir(cfg)
    latest = root / LATEST_NAME
    if not latest.is_file():
        raise MothError(f"no preprocessed data set under {root}: run `mothbrain preprocess` first")
    try:
        pointer = json.loads(latest.read_text(encoding="utf-8"))
        folder = root / pointer["path"]
    except (ValueError, KeyError, TypeError, OSError) as exc:
        raise MothError(f"{latest} is damaged ({exc}); run `mothbrain preprocess` to rewrite it") from None
    try:
        meta = json.loads((folder / META_NAME).read_text(encoding="utf-8"))
        # In memory: then the trainer's and eval's map/filter/shuffle results stay in memory too, instead
        # of `cache-*.arrow` files written into the fingerprinted data set folder, growing it many times over.
        dd = datasets.load_from_disk(str(folder), keep_in_memory=True)
    except (OSError, ValueError) as exc:
        raise MothError(
            f"data set {folder} is missing or damaged ({str(exc).splitlines()[0][:160]}); "
            "run `mothbrain preprocess` to rebuild it"
        ) from None
    return dd, meta

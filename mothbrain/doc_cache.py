"""The document cache: each stored shard's preprocessed documents, so a nightly run redoes only
the shards that changed.

Per-document work (redaction, filters, samples, dedup signatures, candidate concepts, token
counts) is nine tenths of a cold preprocess, and it depends only on the document and the
settings, never on the date or on other documents. So each shard's results (a list of
`preprocess.BatchResult`) are pickled under data/datasets/cache/shards/, keyed by the shard's identity
(its source file's hash, its size and mtime) and everything that shapes the results (the
preprocess settings, the source's settings, the tokenizer, the cache and data set schemas).
A key that differs, a damaged or unreadable file: the shard is processed again. The global steps
(dedup, split, weights, composition) always run over all documents, so a data set built from the
cache is the one a cold run would build. Files of shards no longer stored are removed after a run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
from pathlib import Path

from . import paths
from .config import Config, to_dict

log = logging.getLogger(__name__)

CACHE_SCHEMA = 1  # bump when what a shard's results hold changes
CACHE_DIR = "cache"


def cache_dir(cfg: Config) -> Path:
    return paths.datasets_dir(cfg) / CACHE_DIR


class DocCache:
    """load(shard) → cached results or None; save(shard, results); prune() after the run."""

    def __init__(self, cfg: Config, schema: int, tokenizer: list, enabled: bool = True):
        self.root = cache_dir(cfg) / "shards"
        self.enabled = enabled
        settings = {k: v for k, v in to_dict(cfg.preprocess).items() if k != "workers"}
        self._base = json.dumps({"cache": CACHE_SCHEMA, "schema": schema, "preprocess": settings,
                                 "tokenizer": tokenizer}, sort_keys=True, default=str)
        self._sources = {s.name: json.dumps([s.name, s.kind, sorted(s.voice_roles or [])]) for s in cfg.sources}
        self._used: set[str] = set()

    def _file(self, shard) -> Path:
        name = hashlib.sha1(shard.name.encode()).hexdigest()[:24]
        self._used.add(name)
        return self.root / f"{name}.pkl"

    def key(self, shard) -> str:
        text = "\0".join([self._base, self._sources.get(shard.source, shard.source), shard.identity])
        return hashlib.sha256(text.encode()).hexdigest()

    def load(self, shard) -> list[bytes] | None:
        """The shard's batches as the pickles the workers made (None: not cached or no longer valid)."""
        path = self._file(shard)
        if not self.enabled:
            return None
        try:
            with path.open("rb") as fh:
                data = pickle.load(fh)
            if isinstance(data, dict) and data.get("key") == self.key(shard):
                return data["batches"]
        except FileNotFoundError:
            return None
        except Exception as exc:  # noqa: BLE001 - a damaged cache file only means: process the shard again
            log.info("document cache %s unreadable (%s); processing %s again", path, exc, shard.path)
        return None

    def save(self, shard, batches: list[bytes]) -> None:
        """Write via a temp file and a rename (no fsync: a torn file reads as damaged and the shard is
        processed again); a failure (a full disk) costs only the next run's time, so it warns."""
        path = self._file(shard)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with tmp.open("wb") as fh:
                pickle.dump({"key": self.key(shard), "batches": batches}, fh, protocol=5)
            os.replace(tmp, path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            log.warning("cannot write the document cache %s (%s); the next run processes %s again",
                        path, exc.strerror or exc, shard.path)

    def prune(self) -> None:
        """Remove the files of shards this run did not see (sources or files removed)."""
        if not self.root.is_dir():
            return
        for path in self.root.glob("*.pkl"):
            if path.stem not in self._used:
                try:
                    os.unlink(path)
                except OSError:
                    pass

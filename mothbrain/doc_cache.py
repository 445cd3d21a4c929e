"""The document cache: each stored shard's preprocessed documents, so a nightly run redoes only
the shards that changed.

Per-document work (redaction, filters, samples, dedup signatures, candidate concepts, token
counts) is nine tenths of a cold preprocess, and it depends only on the document and the
settings, never on the date or on other documents. So each shard's results (a list of
`preprocess.BatchResult`) are pickled under data/datasets/cache/shards/, keyed by the shard's identity
(its source file's hash, its size and mtime) and everything that shapes the results (the
preprocess settings, the source's settings, the tokenizer, the cache and data set schemas).
A key that differs, a damaged or unreadable file: the shard is processed again.

The format keeps the bulk zero-copy: a batch is pickled with protocol 5 and its Arrow (and numpy)
buffers out of band (`pack`), and a file is each batch's pickle and buffers at 64-byte-aligned
offsets, then a JSON footer (the key and the offsets) and its length. Loading memory-maps the file and hands the buffers' views to `unpack`,
so the samples' text is never copied into the process: it stays in the page cache until the data
set is written (fresh memory costs ~2 ms per MB on a small VM; a large archive's cache is
hundreds of MB). The global steps
(dedup, split, weights, composition) always run over all documents, so a data set built from the
cache is the one a cold run would build. Files of shards no longer stored are removed after a run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import mmap
import os
import pickle
from pathlib import Path
from typing import Any

from . import paths
from .config import Config, to_dict

log = logging.getLogger(__name__)

CACHE_SCHEMA = 2  # bump when what a shard's results hold changes
CACHE_DIR = "cache"
MAGIC = b"MothBrain document cache\n"
ALIGN = 64

Packed = tuple[Any, list[Any]]  # (in-band pickle, out-of-band buffers): bytes or memoryviews


def cache_dir(cfg: Config) -> Path:
    return paths.datasets_dir(cfg) / CACHE_DIR


def pack(obj: Any) -> tuple[bytes, list[bytes]]:
    """`obj` pickled (protocol 5) with its large buffers out of band, as bytes (picklable, for the pool)."""
    buffers: list[pickle.PickleBuffer] = []
    inband = pickle.dumps(obj, protocol=5, buffer_callback=buffers.append)
    return inband, [bytes(b.raw()) for b in buffers]


def unpack(packed: Packed) -> Any:
    inband, buffers = packed
    return pickle.loads(inband, buffers=buffers)


class DocCache:
    """load(shard) → its packed batches or None; save(shard, packed batches); prune() after the run."""

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
        return self.root / f"{name}.bin"

    def key(self, shard) -> str:
        text = "\0".join([self._base, self._sources.get(shard.source, shard.source), shard.identity])
        return hashlib.sha256(text.encode()).hexdigest()

    def load(self, shard) -> list[Packed] | None:
        """The shard's packed batches, as views of the memory-mapped file (None: not cached, no longer
        valid, or damaged)."""
        path = self._file(shard)
        if not self.enabled:
            return None
        try:
            with path.open("rb") as fh:
                size = os.fstat(fh.fileno()).st_size
                if fh.read(len(MAGIC)) != MAGIC or size < ALIGN + 8:
                    raise ValueError("not a cache file")
                fh.seek(size - 8)
                n = int.from_bytes(fh.read(8), "little")
                if not 0 < n <= size - ALIGN - 8:
                    raise ValueError("torn")
                fh.seek(size - 8 - n)
                footer = json.loads(fh.read(n))
                if footer.get("key") != self.key(shard):
                    return None
                if footer["end"] != size - 8 - n:
                    raise ValueError("torn")
                view = memoryview(mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ))
            return [(view[a:a + n], [view[o:o + m] for o, m in bufs]) for (a, n), bufs in footer["batches"]]
        except FileNotFoundError:
            return None
        except Exception as exc:  # noqa: BLE001 - a damaged cache file only means: process the shard again
            log.info("document cache %s unreadable (%s); processing %s again", path, exc, shard.path)
        return None

    def save(self, shard, batches: list[Packed]) -> None:
        """Write via a temp file and a rename (no fsync: a torn file fails the footer check and the
        shard is processed again); a failure (a full disk) costs only the next run's time, so it warns."""
        path = self._file(shard)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            layout = []
            with tmp.open("wb") as fh:
                fh.write(MAGIC + bytes(ALIGN - len(MAGIC)))
                at = ALIGN
                for inband, buffers in batches:
                    spots = []
                    for piece in (inband, *buffers):
                        spots.append((at, len(piece)))
                        pad = -len(piece) % ALIGN
                        fh.write(piece)
                        fh.write(bytes(pad))
                        at += len(piece) + pad
                    layout.append([spots[0], spots[1:]])
                footer = json.dumps({"key": self.key(shard), "batches": layout, "end": at}).encode()
                fh.write(footer + len(footer).to_bytes(8, "little"))
            os.replace(tmp, path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            log.warning("cannot write the document cache %s (%s); the next run processes %s again",
                        path, exc.strerror or exc, shard.path)

    def prune(self) -> None:
        """Remove the files of shards this run did not see (sources or files removed)."""
        if not self.root.is_dir():
            return
        for path in self.root.iterdir():
            if path.stem not in self._used:
                try:
                    os.unlink(path)
                except OSError:
                    pass

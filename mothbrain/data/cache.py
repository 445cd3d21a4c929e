"""The document cache: each batch of stored documents' preprocessed results, so a nightly run redoes
only the batches that changed.

Per-document work (redaction, filters, samples, dedup signatures, candidate concepts, token
counts) is nine tenths of a cold preprocess, and it depends only on the documents and the
settings, never on the date or on other batches. So the results of each batch (a
`preprocess.BatchResult`) are kept under data/datasets/cache/shards/, one file per stored shard,
each batch under the hash of its stored lines. A shard unchanged since the last run (same
identity) is served whole without reading it; a changed one (an appended chat log) is read and
hashed, and only its new or changed batches are processed. Everything that shapes the results is
in the file's settings key: the per-document preprocess settings, the sources' kinds and voice
roles, the tokenizer, the code of the modules that build samples and the versions of the
libraries it depends on; a different key: nothing in the file is used. The global
steps (dedup, split, weights, composition) always run over all documents, so a data set built
from the cache is the one a full rebuild makes. Files of shards no longer stored are removed.

Each file is an Arrow IPC file (`pyarrow.ipc`): one record batch of one row per batch, its
columns the batch's columns as lists (see SCHEMA), with the batch's hash, its document count, its
small counts (JSON) and a checksum of the serialized batch in the batch's custom metadata, and the
settings key and the shard's identity in the schema's. Files are memory-mapped, so the samples'
text is not copied into the process until the data set is written.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
from xxhash import xxh3_64, xxh3_128

from mothbrain.config import Config, settings_affecting
from mothbrain.core import paths
from mothbrain.data.dedup import signature_from_bytes
from mothbrain.data.samples import BatchResult

log = logging.getLogger(__name__)

CACHE_SCHEMA = 5  # bump when what a batch's results hold changes
CACHE_DIR = "cache"
SUFFIX = ".arrow"
# The code whose output the cache holds: every module of these packages (and the stored-line JSON), hashed
# whole, so moving or adding a module there invalidates the cache and a change elsewhere never does.
CODE = ("data", "sources", "ingest", "core/jsonfast.py")

# A BatchResult's columns, as (part, name, Arrow type of one value, how it comes back): "arrow" stays an
# Arrow array (no copy out of the mapping), "numpy" a numpy array, "list" a Python list, "sig" MinHashes.
COLUMNS = (
    ("docs", "source", pa.string(), "list"),
    ("docs", "doc_id", pa.string(), "list"),
    ("docs", "when", pa.float64(), "list"),
    ("docs", "unit", pa.float64(), "list"),
    ("docs", "chars", pa.int64(), "list"),
    ("docs", "terms", pa.string(), "arrow"),
    ("docs", "term_sentences", pa.list_(pa.uint64()), "arrow"),
    ("samples", "doc", pa.int32(), "numpy"),
    ("samples", "n", pa.int32(), "numpy"),
    ("samples", "sample_type", pa.string(), "list"),
    ("samples", "tokens", pa.int64(), "numpy"),
    ("samples", "key", pa.binary(), "list"),
    ("samples", "sig", pa.binary(), "sig"),
    ("samples", "prompt", pa.string(), "arrow"),
    ("samples", "completion", pa.string(), "arrow"),
    ("samples", "doc_id", pa.string(), "arrow"),
    ("samples", "concepts", pa.list_(pa.string()), "arrow"),
)
SCHEMA = pa.schema([pa.field(f"{part}.{name}", pa.list_(kind)) for part, name, kind, _ in COLUMNS])

_hasher64 = xxh3_64
_batch_hasher = xxh3_128


def cache_dir(cfg: Config) -> Path:
    return paths.datasets_dir(cfg) / CACHE_DIR


def to_record(batch: BatchResult) -> tuple[pa.RecordBatch, dict]:
    """A batch's results as one row of SCHEMA (each column the batch's values, as a list), and its
    small parts (wiki pages, counts) as a JSON-able dict."""
    arrays = []
    for part, name, kind, _ in COLUMNS:
        values = getattr(batch, part)[name]
        if name == "sig":
            values = [None if sig is None else sig.__getstate__() for sig in values]
        if not isinstance(values, pa.Array):
            values = pa.array(values, kind)
        arrays.append(pa.ListArray.from_arrays(pa.array([0, len(values)], pa.int32()), values))
    meta = {"wiki": batch.wiki, "redacted": batch.redacted, "filtered": batch.filtered, "voices": batch.voices}
    return pa.RecordBatch.from_arrays(arrays, schema=SCHEMA), meta


def from_record(row: pa.RecordBatch, meta: dict) -> BatchResult:
    """`to_record` undone: the text columns stay views of the (mapped) file."""
    parts: dict[str, dict[str, Any]] = {"docs": {}, "samples": {}}
    for i, (part, name, _, back) in enumerate(COLUMNS):
        values = row.column(i).flatten()
        if back == "numpy":
            values = values.to_numpy(zero_copy_only=False)
        elif back == "list":
            values = values.to_pylist()
        elif back == "sig":
            values = [None if b is None else signature_from_bytes(b) for b in values.to_pylist()]
        parts[part][name] = values
    return BatchResult(
        docs=parts["docs"],
        samples=parts["samples"],
        wiki=[(i, title, links) for i, title, links in meta["wiki"]],
        redacted=meta["redacted"],
        filtered=meta["filtered"],
        voices=meta["voices"],
    )


def _checksum_of(row: pa.RecordBatch) -> str:
    return _hasher64(row.serialize()).hexdigest()


def batch_hash(items: list[tuple[str, Any]]) -> str:
    """What a batch of stored lines is, for the cache: the hash of the lines' text (not where they
    are: an appended log's old lines are the same batch)."""
    h = _batch_hasher()
    for line, _ in items:
        h.update(line.encode("utf-8", "surrogatepass"))
        h.update(b"\0")
    return h.hexdigest()


def _code_identity() -> list:
    import numpy
    import pyarrow
    import rensa

    rensa_version = getattr(rensa, "__version__", "") or _dist_version("rensa")
    package = Path(__file__).resolve().parent.parent
    code = hashlib.sha256()
    for name in CODE:
        root = package / name
        files = sorted(root.rglob("*.py")) if root.is_dir() else [root] if root.is_file() else []
        if not files:  # installed without sources (a zipapp): the package version stands in
            code.update(f"{name} {_dist_version('mothbrain')}".encode())
        for f in files:
            code.update(f.relative_to(package).as_posix().encode() + b"\0" + f.read_bytes())
    return [code.hexdigest(), sys.version_info[:2], pyarrow.__version__, numpy.__version__, rensa_version]


def _dist_version(name: str) -> str:
    try:
        from importlib.metadata import version

        return version(name)
    except Exception:  # noqa: BLE001
        return ""


@dataclass
class CachedShard:
    """What the cache holds for a shard: its batches in order, as (hash, documents, row, meta)."""

    current: bool  # the shard is the one cached (same identity): no need to read it
    batches: list[tuple[str, int, pa.RecordBatch, dict]] = field(default_factory=list)

    def by_hash(self) -> dict[str, tuple[pa.RecordBatch, dict]]:
        return {h: (row, meta) for h, _, row, meta in self.batches}


class DocCache:
    """load(shard) → CachedShard or None; save(shard, batches); prune() after the run."""

    def __init__(self, cfg: Config, schema: int, tokenizer: list, enabled: bool = True):
        self.root = cache_dir(cfg) / "shards"
        self.enabled = enabled
        settings = settings_affecting(cfg.preprocess, "documents")  # assembly settings keep the cache
        sources = sorted([s.name, s.kind, sorted(s.voice_roles or [])] for s in cfg.sources)
        self.settings_key = hashlib.sha256(
            json.dumps(
                {
                    "cache": CACHE_SCHEMA,
                    "schema": schema,
                    "preprocess": settings,
                    "sources": sources,
                    "tokenizer": tokenizer,
                    "code": _code_identity(),
                },
                sort_keys=True,
                default=str,
            ).encode()
        ).hexdigest()
        self._used: set[str] = set()

    def _file(self, shard) -> Path:
        name = hashlib.sha1(shard.name.encode()).hexdigest()[:24]
        self._used.add(name)
        return self.root / f"{name}{SUFFIX}"

    def _open(self, path: Path):
        """(reader, identity) of a cache file, memory-mapped; None when it is for other settings.
        Raises on a file that is not one (damaged, torn)."""
        source = pa.memory_map(str(path))
        try:
            reader = pa.ipc.open_file(source)
        except BaseException:
            source.close()
            raise
        meta = reader.schema.metadata or {}
        if meta.get(b"settings", b"").decode() != self.settings_key or reader.schema.remove_metadata() != SCHEMA:
            source.close()
            return None
        return source, reader, meta.get(b"identity", b"").decode()

    def load(self, shard) -> CachedShard | None:
        """The shard's cached batches (views of the mapped file; None: nothing usable)."""
        path = self._file(shard)
        if not self.enabled:
            return None
        try:
            opened = self._open(path)
            if opened is None:
                return None
            source, reader, identity = opened
            with source:  # the batches keep the mapping alive once the file is closed
                found = CachedShard(current=identity == shard.identity)
                for i in range(reader.num_record_batches):
                    row, custom = reader.get_batch_with_custom_metadata(i)
                    custom = {k.decode(): v.decode() for k, v in (custom or {}).items()}
                    if _checksum_of(row) == custom.get("checksum"):
                        found.batches.append((custom["hash"], int(custom["docs"]), row, json.loads(custom["meta"])))
                    else:  # damaged: that batch is processed again, so the shard is read
                        log.info("document cache %s: a damaged batch; processing it again", path)
                        found.current = False
            return found
        except FileNotFoundError:
            return None
        except Exception as exc:  # noqa: BLE001 - a damaged cache file only means: process the shard again
            log.info("document cache %s unreadable (%s); processing %s again", path, exc, shard.path)
        return None

    def is_current(self, shard) -> bool:
        """Whether the cache holds this very shard (its schema only: nothing else is read)."""
        if not self.enabled:
            return False
        try:
            opened = self._open(self._file(shard))
        except Exception:  # noqa: BLE001 - missing or damaged: the shard is read
            return False
        if opened is None:
            return False
        opened[0].close()
        return opened[2] == shard.identity

    def save(self, shard, batches: list[tuple[str, int, pa.RecordBatch, dict]]) -> None:
        """Write via a temp file and a rename (no fsync: a torn file fails to open and the shard is
        processed again); a failure (a full disk) costs only the next run's time, so it warns."""
        path = self._file(shard)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        schema = SCHEMA.with_metadata({"settings": self.settings_key, "identity": shard.identity})
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
                for h, docs, row, meta in batches:
                    custom = {"hash": h, "docs": str(docs), "meta": json.dumps(meta), "checksum": _checksum_of(row)}
                    writer.write_batch(row, custom_metadata=custom)
            os.replace(tmp, path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            log.warning(
                "cannot write the document cache %s (%s); the next run processes %s again",
                path,
                exc.strerror or exc,
                shard.path,
            )

    def prune(self) -> None:
        """Remove the files of shards this run did not see (sources or files removed), and anything
        else there: an earlier format's files, a killed run's temp files."""
        if not self.root.is_dir():
            return
        for path in self.root.iterdir():
            if not (path.suffix == SUFFIX and path.stem in self._used) and path.is_file():
                try:
                    os.unlink(path)
                except OSError:
                    pass

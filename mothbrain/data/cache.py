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
libraries whose objects are pickled; a different key: nothing in the file is used. The global
steps (dedup, split, weights, composition) always run over all documents, so a data set built
from the cache is the one a full rebuild makes. Files of shards no longer stored are removed.

The format keeps the bulk zero-copy: a batch is pickled with protocol 5 and its Arrow (and numpy)
buffers out of band (`pack`), and a file is each batch's pickle and buffers at 64-byte-aligned
offsets, then a JSON footer (keys, offsets, a checksum per batch, checked on loading) and its
length. Large files are memory-mapped, so the samples' text is not copied into the process until
the data set is written (fresh memory costs ~2 ms per MB on a small VM, and a large archive's cache
is hundreds of MB); small ones, and any beyond MAX_MAPPED, are read (a mapping holds a file
descriptor open).
"""

from __future__ import annotations

import hashlib
import json
import logging
import mmap
import os
import pickle
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xxhash import xxh3_64, xxh3_128

from mothbrain.config import Config, settings_affecting
from mothbrain.core import paths

log = logging.getLogger(__name__)

CACHE_SCHEMA = 3  # bump when what a batch's results hold changes
CACHE_DIR = "cache"
MAGIC = b"MothBrain document cache\n"
ALIGN = 64
MAP_AT_BYTES = 1 << 20  # files this large are memory-mapped, smaller ones read
# The code whose output the cache holds: every module of these packages (and the stored-line JSON), hashed
# whole, so moving or adding a module there invalidates the cache and a change elsewhere never does.
CODE = ("data", "sources", "ingest", "core/jsonfast.py")
MAX_MAPPED = 256  # memory-mapped files per run (each holds a descriptor); more are read
UNPICKLING_ERRORS = (
    pickle.UnpicklingError,
    EOFError,
    ValueError,
    TypeError,
    AttributeError,
    ImportError,
    IndexError,
    KeyError,
)

Packed = tuple[Any, list[Any]]  # (in-band pickle, out-of-band buffers): bytes or memoryviews

_hasher64 = xxh3_64
_batch_hasher = xxh3_128


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
    """What the cache holds for a shard: its batches in order, as (hash, documents, packed)."""

    current: bool  # the shard is the one cached (same identity): no need to read it
    batches: list[tuple[str, int, Packed]] = field(default_factory=list)

    def by_hash(self) -> dict[str, Packed]:
        return {h: packed for h, _, packed in self.batches}


def _checksum_of(packed: Packed) -> str:
    h = _hasher64()
    inband, buffers = packed
    h.update(inband)
    for b in buffers:
        h.update(b)
    return h.hexdigest()


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
        self._mapped = 0

    def _file(self, shard) -> Path:
        name = hashlib.sha1(shard.name.encode()).hexdigest()[:24]
        self._used.add(name)
        return self.root / f"{name}.bin"

    def load(self, shard) -> CachedShard | None:
        """The shard's cached batches (views of the file's bytes; None: nothing usable)."""
        path = self._file(shard)
        if not self.enabled:
            return None
        try:
            with path.open("rb") as fh:
                size, footer = self._footer(fh)
                if footer is None:
                    return None
                view = self._bytes(fh, size)
            found = CachedShard(current=footer.get("identity") == shard.identity)
            for b in footer["batches"]:
                (a, m), spots = b["inband"], b["buffers"]
                packed = (view[a : a + m], [view[o : o + k] for o, k in spots])
                if _checksum_of(packed) == b["checksum"]:
                    found.batches.append((b["hash"], b["docs"], packed))
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
        """Whether the cache holds this very shard (its footer only: nothing else is read)."""
        if not self.enabled:
            return False
        try:
            with self._file(shard).open("rb") as fh:
                _, footer = self._footer(fh)
            return footer is not None and footer.get("identity") == shard.identity
        except Exception:  # noqa: BLE001 - missing or damaged: the shard is read
            return False

    def _footer(self, fh) -> tuple[int, dict | None]:
        """(file size, footer); None when the file is for other settings. Raises on a damaged file."""
        size = os.fstat(fh.fileno()).st_size
        if fh.read(len(MAGIC)) != MAGIC or size < ALIGN + 8:
            raise ValueError("not a cache file")
        fh.seek(size - 8)
        n = int.from_bytes(fh.read(8), "little")
        if not 0 < n <= size - ALIGN - 8:
            raise ValueError("torn")
        fh.seek(size - 8 - n)
        footer = json.loads(fh.read(n))
        if footer.get("settings") != self.settings_key:
            return size, None
        if footer["end"] != size - 8 - n:
            raise ValueError("torn")
        return size, footer

    def _bytes(self, fh, size: int) -> memoryview:
        if size >= MAP_AT_BYTES and self._mapped < MAX_MAPPED:
            try:
                view = memoryview(mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ))
                self._mapped += 1
                return view
            except (OSError, ValueError):  # out of descriptors or address space: read it instead
                pass
        fh.seek(0)
        return memoryview(fh.read())

    def save(self, shard, batches: list[tuple[str, int, Packed]]) -> None:
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
                for h, docs, packed in batches:
                    spots = []
                    for piece in (packed[0], *packed[1]):
                        spots.append((at, len(piece)))
                        pad = -len(piece) % ALIGN
                        fh.write(piece)
                        fh.write(bytes(pad))
                        at += len(piece) + pad
                    layout.append(
                        {
                            "hash": h,
                            "docs": docs,
                            "inband": spots[0],
                            "buffers": spots[1:],
                            "checksum": _checksum_of(packed),
                        }
                    )
                footer = json.dumps(
                    {"settings": self.settings_key, "identity": shard.identity, "batches": layout, "end": at}
                ).encode()
                fh.write(footer + len(footer).to_bytes(8, "little"))
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
        """Remove the files of shards this run did not see (sources or files removed)."""
        if not self.root.is_dir():
            return
        for path in self.root.glob("*.bin"):
            if path.stem not in self._used:
                try:
                    os.unlink(path)
                except OSError:
                    pass

"""Stored documents → per-batch results (mothbrain.data.samples), in stream order: from the document
cache (mothbrain.data.cache) for the batches it holds, else processed, on a process pool once the new
material is large. A batch never spans two shards, so its results are the same whichever process ran it."""

from __future__ import annotations

import os
import sys
from collections import defaultdict, deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from itertools import islice
from typing import Any

from mothbrain.config import Config
from mothbrain.core import paths
from mothbrain.core.workers import pool_context, worker_count
from mothbrain.data.cache import CachedShard, DocCache, batch_hash, from_record, to_record
from mothbrain.data.concepts import ConceptMatcher
from mothbrain.data.samples import BatchResult, process_document, to_batch
from mothbrain.data.tokens import token_counter
from mothbrain.errors import NothingToDo
from mothbrain.sources.records import Document
from mothbrain.store.documents import decode_stored, shard_lines, stored_shards

PARALLEL_AFTER_CHARS = 500_000  # stored bytes to read before a worker pool is worth starting (if > 1 core)


BATCH_DOCS = 256  # documents per unit of work (and per repeated-sentence set)


@dataclass
class Unit:
    """A run of documents processed and cached together: one stored shard, or the caller's documents."""

    items: Any  # () -> iterable of stored lines or Documents
    size: int  # bytes or characters, to decide whether the worker pool is worth starting
    shard: Any = None  # ingest.StoredShard (None: not cached)
    current: bool = False  # the document cache holds this very shard (its results are loaded in turn)


def stored_units(cfg: Config, cache: DocCache) -> list[Unit]:
    """The stored shards in stream order, each with its cached results when they are still valid."""

    if not (paths.ingest_dir(cfg) / "manifest.json").exists():
        raise NothingToDo(f"no ingested documents: run `mothbrain ingest` first or check sources in {cfg.config_path}")
    return [
        Unit(items=partial(shard_lines, sh), size=sh.size, shard=sh, current=cache.is_current(sh))
        for sh in stored_shards(cfg)
    ]


def progress_bar(enabled: bool | None):
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    if enabled is None:
        enabled = sys.stderr.isatty()
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        disable=not enabled,
        transient=True,
    )


_WORKER: tuple | None = None  # (cfg, sources by name, matcher, token counter) in a worker


def _init_worker(cfg: Config) -> None:
    global _WORKER
    _WORKER = (cfg, {s.name: s for s in cfg.sources}, ConceptMatcher(cfg.preprocess), token_counter(cfg)[0])


def process_batch(items: list[Document | tuple[str, tuple]]) -> BatchResult:
    """process_document over one batch, with one repeated-sentence set per batch, as columns.

    Items are Documents or stored lines (`ingest.shard_lines`), decoded here so that the JSON
    parsing happens in the workers. A batch never spans two shards and the set is per batch, so a
    shard's results do not depend on other shards or on which process ran it: they can be cached.
    """

    cfg, sources, matcher, count_tokens = _WORKER  # type: ignore[misc]
    seen: set[str] = set()
    docs = (d if isinstance(d, Document) else decode_stored(*d) for d in items)
    return to_batch(
        [process_document(d, cfg, sources.get(d.source), seen, matcher, count_tokens) for d in docs if d is not None]
    )


def _work(items: list) -> tuple[Any, dict]:
    """A batch's results as the document cache's row (`cache.to_record`), made here, in the worker:
    the main process reads fresh and cached batches alike, and writes the same row to the cache."""
    return to_record(process_batch(items))


class CacheDamaged(Exception):
    """A cached batch that passed its checksum would not load: the run starts over without the cache."""


def pool_size(cfg: Config) -> int:
    return worker_count(cfg.preprocess.workers)


@contextmanager
def lazy_pool(cfg: Config):
    """get() → a process pool, started on first use (small corpora never start one)."""
    pool = None

    def get():
        nonlocal pool
        if pool is None:
            # Each worker counts tokens single-threaded (the processes already fill the cores), and
            # `tokenizers` would otherwise warn at every fork after this process has used it.
            before = os.environ.get("TOKENIZERS_PARALLELISM")
            os.environ["TOKENIZERS_PARALLELISM"] = "false"
            try:
                pool = pool_context().Pool(pool_size(cfg), initializer=_init_worker, initargs=(cfg,))
            finally:
                if before is None:
                    os.environ.pop("TOKENIZERS_PARALLELISM", None)
                else:
                    os.environ["TOKENIZERS_PARALLELISM"] = before
        return pool

    try:
        yield get
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()


def process_all(
    cfg: Config, units: list[Unit], cache: DocCache | None, pool, progress: bool | None
) -> Iterator[tuple[str, BatchResult, bool]]:
    """(batch hash, results, fresh) for every batch of BATCH_DOCS documents, in stream order.

    A shard the cache holds as it is comes from the cache without being read. Any other is read
    and each batch hashed: a batch the cache holds (an appended log's old batches) comes from the
    cache, the rest is processed, on the worker pool when the shards to read hold
    PARALLEL_AFTER_CHARS or more and there is more than one core; the shard's file is then
    rewritten. At most a few batches per worker wait in order, so memory stays bounded.
    """
    _init_worker(cfg)
    to_read = sum(u.size for u in units if not u.current)
    parallel = pool_size(cfg) > 1 and to_read >= PARALLEL_AFTER_CHARS
    window = 4 * pool_size(cfg)
    pending: deque = deque()  # in stream order: (unit, hash, (row, meta) or AsyncResult or None at a unit's end, fresh)
    keep: dict[int, list] = defaultdict(list)  # unit → its batches, for its cache file (rewritten units only)
    rewrite: set[int] = set()
    chars = n = 0
    if parallel:
        pool()  # forked before the progress bar starts its thread

    def batches_of(u: Unit, cached: CachedShard | None) -> Iterator[tuple[str, Any, bool]]:
        """(hash, (row, meta) or its AsyncResult, fresh) of each batch of a unit that is read."""
        old = cached.by_hash() if cached is not None else {}
        items = iter(u.items())
        k = 0
        while True:
            batch = list(islice(items, BATCH_DOCS))
            if not batch and k:
                return
            h = batch_hash(batch) if u.shard is not None else f"documents {k}"
            if h in old:
                yield h, old[h], False
            elif parallel:
                yield h, pool().apply_async(_work, (batch,)), True
            else:
                yield h, _work(batch), True
            k += 1
            if not batch:
                return

    def settle(limit: int) -> Iterator[tuple[str, BatchResult, bool]]:
        nonlocal chars, n
        while len(pending) > limit:
            i, h, item, fresh = pending.popleft()
            if item is None:  # the unit is complete: (re)write its cache file
                if cache is not None:
                    cache.save(units[i].shard, keep.pop(i, []))
                continue
            row, meta = item.get() if fresh and parallel else item
            try:
                batch = from_record(row, meta)
            except Exception as exc:  # fresh results always load; cached ones may not
                if fresh:
                    raise
                raise CacheDamaged(f"{type(exc).__name__}: {exc}") from None
            if i in rewrite:
                keep[i].append((h, len(batch.docs["unit"]), row, meta))
            chars, n = chars + sum(batch.docs["chars"]), n + len(batch.docs["chars"])
            bar.update(task, info=f"{n:,} documents, {chars / 1e6:,.1f} MB")
            yield h, batch, fresh

    with progress_bar(progress) as bar:
        task = bar.add_task("preprocessing documents", info="")
        for i, u in enumerate(units):
            # Loaded in turn and not held after: a cached shard's bytes (or mapping) go once its
            # batches have been written to the data set.
            cached = cache.load(u.shard) if cache is not None and u.shard is not None else None
            if cached is not None and cached.current:
                for h, _, row, meta in cached.batches:
                    pending.append((i, h, (row, meta), False))
                    yield from settle(window)
                continue
            entries = batches_of(u, cached)
            del cached
            if u.shard is not None:
                rewrite.add(i)
            for h, item, fresh in entries:
                pending.append((i, h, item, fresh))
                yield from settle(window)
            del entries
            if u.shard is not None:
                pending.append((i, "", None, False))
        yield from settle(0)

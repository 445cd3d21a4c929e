"""Preprocess: ingested documents → a voice-and-association data set, saved once per fingerprint.

    mothbrain preprocess            # builds data/datasets/<fingerprint>/ and points latest.json at it
    mothbrain preprocess --full     # ... processing every document again and mining the pairs again

When the stored documents and the settings are those of today's latest data set, it is reused
without reading anything (`--force` rebuilds). Otherwise, top to bottom (`_build`), one module a step:
  1. mothbrain.data.process + samples: per stored shard (one source file's documents), in stream order
     (config order of sources, sorted files), its results from the document cache (data.cache) when
     the shard and the settings are unchanged, else `process_document` on each document, in worker
     processes once the new material is large: redact secrets and personal data FIRST (nothing
     unredacted is ever kept), filter factual recall (long code, tables, URLs, tool turns), and build
     voice and text samples, each with its dedup signature, priority concepts and token count.
  2. mothbrain.data.corpus + dedup: exact and near-duplicate removal in stream order, the first
     occurrence kept; near duplicates among the last `dedup_window` kept samples, exact ones across
     all; the last run's decisions are reused for the shards before the first change.
  3. mothbrain.data.mining + concepts: concept pairs from wiki links (page ↔ linked page) and from
     concepts that co-occur across documents in the voice's own words (normalised PMI over
     documents), mined again once the corpus has drifted, rendered as association samples with
     `association_templates`: "lantern reminds me of" → " tide".
  4. mothbrain.data.assemble: a document-level held-out split (a hash of (source, doc_id) decides, so
     a document never straddles the split and old documents keep their side), whether each document
     is recent (per run, from its time), source weights on the train split (floor(w) copies, one more
     with probability frac(w) by a stable hash), and the composition (samples and tokens per source,
     type and priority concept).
  5. mothbrain.data.writer + dataset: an atomic save (temp dir → rename, then latest.json) under the
     fingerprint of both splits' columns and the settings that affect them.

Memory: steps 2, 4 and 5 run batch by batch as the documents stream, and each batch's rows go
straight to the data set's files (mothbrain.data.writer) — no split, and no sample text, is ever
whole in memory. What the corpus-wide steps keep is compact: the dedup index (signatures and LSH
bands, ~1.2-1.5 KB per sample, up to `dedup_window` samples; a 16-byte key per sample beyond), each
document's time and candidate terms, and the wiki links.
"""

from __future__ import annotations

import gc
import hashlib
import json
import logging
import pickle
import shutil
import time
from collections.abc import Iterable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mothbrain.config import Config, to_dict
from mothbrain.core import paths
from mothbrain.core.atomic import write_atomically, write_json_atomically
from mothbrain.core.clock import DAY, reference_now
from mothbrain.data.assemble import Assembler, voice_warnings
from mothbrain.data.cache import DocCache, cache_dir
from mothbrain.data.concepts import ConceptMatcher
from mothbrain.data.corpus import Corpus, dedup_state_path, stream_corpus
from mothbrain.data.dataset import DATASET_SCHEMA, LATEST_NAME, data_settings, hash_settings
from mothbrain.data.mining import concept_pairs, mining_state_path
from mothbrain.data.process import CacheDamaged, Unit, lazy_pool, stored_units
from mothbrain.data.samples import association_samples, heldout_pairs
from mothbrain.data.strength import pair_strength
from mothbrain.data.tokens import tokenizer_identity
from mothbrain.data.writer import META_NAME, DatasetWriter
from mothbrain.errors import MothError
from mothbrain.sources.records import Document
from mothbrain.store.documents import stored_state

log = logging.getLogger(__name__)


@dataclass
class PreprocessReport:
    fingerprint: str
    path: str
    reused: bool  # the same data set already existed; only latest.json was updated
    documents: int
    heldout_documents: int
    samples: dict[str, int]  # rows per split
    composition: dict[str, Any]
    priority: dict[str, dict[str, Any]]
    filtered: dict[str, int]
    redacted: dict[str, int]
    concept_pairs: int
    input_chars: int
    seconds: float
    warnings: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)  # seconds per phase
    documents_processed: int = 0  # documents this run processed (the rest came from the document cache)
    concept_mining: dict[str, Any] = field(default_factory=dict)  # mined this run, or reused from when
    heldout_pairs: dict[str, int] = field(default_factory=dict)  # held-out pairs: real ones, filler (data.strength)
    title: str = "preprocess"

    def rows(self) -> list[dict[str, Any]]:
        unit = self.composition["token_unit"]
        rows: list[dict[str, Any]] = []
        for group in ("source", "type"):
            for name, c in self.composition[f"by_{group}"].items():
                rows.append(
                    {
                        "group": group,
                        "name": name,
                        "weight": c.get("weight"),
                        "train": c["train"],
                        "heldout": c["heldout"],
                        unit: c["tokens"],
                    }
                )
        for name, c in self.priority.items():
            rows.append(
                {
                    "group": "priority",
                    "name": name,
                    "train": c["train"],
                    "heldout": c["heldout"],
                    unit: c["tokens"],
                    "note": f"min {c['min_samples']}" + ("" if c["ok"] else " UNDER"),
                }
            )
        for name, n in sorted(self.filtered.items()):
            rows.append({"group": "filtered", "name": name, "count": n})
        for name, n in sorted(self.redacted.items()):
            rows.append({"group": "redacted", "name": name, "count": n})
        held = self.heldout_pairs
        held_pairs = f" (held-out pairs: {held.get('real', 0)} real, {held.get('filler', 0)} filler)" if held else ""
        rows.append(
            {
                "group": "total",
                "name": f"{self.documents} documents",
                "train": self.samples["train"],
                "heldout": self.samples["heldout"],
                unit: self.composition["total_tokens"],
                "note": f"{self.heldout_documents} held out, {self.concept_pairs} concept pairs" + held_pairs,
            }
        )
        cached = "" if self.reused else f", {self.documents - self.documents_processed} documents from the cache"
        mining = self.concept_mining
        if mining and not mining.get("mined"):
            cached += f", concept pairs as mined {mining.get('mined_at', '')[:10]}"
        rows.append(
            {
                "group": "dataset",
                "name": self.fingerprint,
                "note": ("unchanged, " if self.reused else "")
                + f"{self.input_chars / 1e6:.1f} MB in {self.seconds:.1f}s"
                + cached,
            }
        )
        return rows

    def to_json(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "fingerprint": self.fingerprint,
            "path": self.path,
            "reused": self.reused,
            "documents": self.documents,
            "heldout_documents": self.heldout_documents,
            "samples": self.samples,
            "composition": self.composition,
            "priority_concepts": self.priority,
            "filtered": self.filtered,
            "redacted": self.redacted,
            "concept_pairs": self.concept_pairs,
            "input_mb": round(self.input_chars / 1e6, 3),
            "seconds": round(self.seconds, 3),
            "timings": self.timings,
            "documents_processed": self.documents_processed,
            "concept_mining": self.concept_mining,
            "heldout_pairs": self.heldout_pairs,
            "warnings": self.warnings,
        }


class _Laps:
    """Seconds per phase of the stage, for the report (where the time goes on a large archive)."""

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self._t = time.perf_counter()

    def __call__(self, phase: str) -> None:
        now = time.perf_counter()
        self.seconds[phase] = round(now - self._t, 3)
        self._t = now


def _save(writer: DatasetWriter, fp: str, meta: dict[str, Any]) -> tuple[Path, bool]:
    """The written splits and their meta, renamed to datasets_dir/<fp> (kept as is when that exists);
    the one seam where the save can fail, for the tests."""
    return writer.finish(fp, meta)


def run_preprocess(
    cfg: Config,
    since_days: float | None = None,
    progress: bool | None = None,
    documents: Iterable[Document] | None = None,
    force: bool = False,
    full: bool = False,
) -> PreprocessReport:
    """Build and save the data set from everything ingested, and point latest.json at it.

    `since_days`: what counts as recent (default ingest.since_days). `documents`: use these instead
    of the ingested documents (tests, scripts; nothing is cached). Same inputs and config → same
    fingerprint, and the existing folder is reused; when the stored documents and settings are the
    same as for today's latest data set, nothing is read at all (`force` rebuilds anyway). Shards
    unchanged since the last run come from the document cache; `full` ignores the cache and mines
    the concept pairs again (the weekly rebuild).
    """
    from filelock import FileLock, Timeout

    lock = FileLock(str(paths.datasets_dir(cfg) / "preprocess.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise MothError(f"another preprocess is running (lock {lock.lock_file}); wait for it to finish") from None
    try:
        with _gc_paused():
            damaged = None
            try:
                return _run_preprocess(cfg, since_days, progress, documents, force, full)
            except CacheDamaged as exc:
                damaged = str(exc)  # retried below, outside this block: the failed attempt's memory goes first
            log.warning(
                "the document cache under %s is unreadable (%s); processing every document again",
                cache_dir(cfg),
                damaged,
            )
            shutil.rmtree(cache_dir(cfg), ignore_errors=True)
            return _run_preprocess(cfg, since_days, progress, documents, True, True)  # full: no cache read
    finally:
        lock.release()


@contextmanager
def _gc_paused():
    """No cyclic garbage collection while the stage builds its millions of small objects (none of
    them in cycles): Python's collector would otherwise rescan the growing heap over and over,
    which cost the main process a quarter of its time on a large archive."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def heldout_warnings(cfg: Config, composition: dict) -> list[str]:
    """Early word when the held-out side is too small for the gate to decide on (before a night of training)."""
    held = int((composition.get("by_type", {}).get("voice") or {}).get("heldout", 0))
    need = cfg.promote.gate.min_voice_samples
    if held >= need:
        return []
    return [
        f"only {held} held-out voice samples: the gate needs >= {need} (and a few dozen for a narrow interval) "
        f"to decide, else 'not enough held-out material'; add material, or raise preprocess.heldout_fraction "
        f"({cfg.preprocess.heldout_fraction})"
    ]


def _input_key(cfg: Config, since: float, stored: str, now: float) -> str:
    """What the data set is a function of: the stored documents, the settings, and the day (what
    counts as recent moves with the date, so an unchanged archive is reprocessed once a day; with
    ingest.now pinned the day is the pinned one, and the data set stays the same)."""
    settings = data_settings(cfg)
    data = {
        "schema": DATASET_SCHEMA,
        "stored": stored,
        "preprocess": settings,
        "since_days": since,
        "now": cfg.ingest.now,  # a pinned "now" moves what is recent within a day too
        "day": time.strftime("%Y-%m-%d", time.gmtime(now)),
        "model": str(cfg.model.base),
        "sources": [to_dict(s) for s in cfg.sources],
    }
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _reuse(cfg: Config, input_key: str, t0: float) -> PreprocessReport | None:
    """The latest data set's report when it was built today from the same stored documents and
    settings (the nightly run on an unchanged archive), else None."""
    root = paths.datasets_dir(cfg)
    try:
        pointer = json.loads((root / LATEST_NAME).read_text(encoding="utf-8"))
        if pointer.get("input_key") != input_key:
            return None
        folder = root / pointer["path"]
        meta = json.loads((folder / META_NAME).read_text(encoding="utf-8"))
        if not (folder / "dataset_dict.json").is_file() or meta.get("fingerprint") != pointer.get("fingerprint"):
            return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return PreprocessReport(
        fingerprint=meta["fingerprint"],
        path=str(folder),
        reused=True,
        documents=meta["documents"],
        heldout_documents=meta["heldout_documents"],
        samples=meta["samples"],
        composition=meta["composition"],
        priority=meta["priority_concepts"],
        filtered=meta["filtered"],
        redacted=meta["redacted"],
        concept_pairs=len(meta["concept_pairs"]),
        input_chars=meta["input_chars"],
        seconds=time.perf_counter() - t0,
        warnings=meta.get("warnings", []),
        timings={"unchanged_input": 0.0},
        heldout_pairs=heldout_pair_counts(meta),
    )


def _run_preprocess(
    cfg: Config,
    since_days: float | None,
    progress: bool | None,
    documents: Iterable[Document] | None,
    force: bool = False,
    full: bool = False,
) -> PreprocessReport:
    t0 = time.perf_counter()
    now = reference_now(cfg)  # what "recent" is measured from: ingest.now when pinned, else the clock
    since = cfg.ingest.since_days if since_days is None else since_days
    input_key = ""
    cache = None
    if documents is None:
        state, _ = stored_state(cfg)
        if state:
            input_key = _input_key(cfg, since, state, now)
            if not force and not full and (done := _reuse(cfg, input_key, t0)) is not None:
                return done
        cache = DocCache(cfg, DATASET_SCHEMA, tokenizer_identity(cfg), enabled=not full)
        units = stored_units(cfg, cache)
    else:
        docs = documents if isinstance(documents, (list, tuple)) else list(documents)
        size = sum(len(d.text or "") + sum(len(t.text or "") for t in d.turns or []) for d in docs)
        units = [Unit(items=lambda: docs, size=size)]
    lap = _Laps()
    writer = DatasetWriter(paths.datasets_dir(cfg), hash_settings(cfg))
    try:
        return _build(cfg, units, cache, progress, full, writer, lap, now, since, input_key, t0)
    finally:
        writer.abort()  # after a failure: the temp folder goes (after a success there is nothing left)


def _build(
    cfg: Config,
    units: list[Unit],
    cache: DocCache | None,
    progress: bool | None,
    full: bool,
    writer: DatasetWriter,
    lap: _Laps,
    now: float,
    since: float,
    input_key: str,
    t0: float,
) -> PreprocessReport:
    corpus = Corpus(heldout_fraction=cfg.preprocess.heldout_fraction)
    rows = Assembler(cfg, writer, cutoff=now - since * DAY)
    with lazy_pool(cfg) as pool:  # one pool for the documents and the pair counting
        for batch, keep in stream_corpus(cfg, units, cache, progress, pool, corpus, full):
            rows.add(batch, keep)
        rows.finish_documents()
        lap("documents")
        recent_doc = np.array(corpus.when, dtype=np.float64) >= now - since * DAY  # nan: never recent
        # when mining last ran is the clock's business, not the pinned "now"
        pairs, mining = concept_pairs(
            cfg, corpus, recent_doc, time.time(), pool, use_state=cache is not None, full=full
        )
    lap("concept_pairs")
    strength = pair_strength(corpus.terms, corpus.term_sentences, pairs, cfg.preprocess)
    filler = {pair for pair, s in strength.items() if not s.real}
    held_pairs = heldout_pairs(pairs, cfg.preprocess.heldout_pairs, rows.documents, filler)
    lap("pair_strength")
    rows.add_associations(association_samples(pairs, cfg.preprocess, ConceptMatcher(cfg.preprocess)), held_pairs)
    composition, priority, warnings = rows.summary()
    warnings = voice_warnings(cfg, corpus.voices) + warnings + heldout_warnings(cfg, composition)
    input_chars = corpus.chars
    redacted, filtered, fresh_docs = (
        dict(sorted(corpus.redacted.items())),
        dict(sorted(corpus.filtered.items())),
        corpus.fresh_docs,
    )
    dedup_state = corpus.dedup_state
    del corpus
    lap("associations_composition")
    if not writer.rows["train"]:
        warnings.append("the training split is empty: every sample was filtered, deduplicated or held out")
    fp = writer.hash.hexdigest()
    meta = {
        "fingerprint": fp,
        "schema": DATASET_SCHEMA,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime()),
        "recent_from": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(now)),  # ingest.now, or the clock
        "since_days": since,
        "samples": dict(writer.rows),
        "composition": composition,
        "priority_concepts": priority,
        "warnings": warnings,
        "preprocess_config": to_dict(cfg.preprocess),
        "source_weights": {s.name: s.weight for s in cfg.sources},
        "documents": rows.documents,
        "heldout_documents": rows.heldout_documents,
        # [a, b, "real" | "filler"]: eval's headline association figure is on the real ones
        "heldout_pairs": sorted([a, b, "filler" if (a, b) in filler else "real"] for a, b in held_pairs),
        "input_chars": input_chars,
        "documents_processed": fresh_docs,  # the rest came from the document cache
        "redacted": redacted,
        "filtered": filtered,
        "concept_pairs": [[p.a, p.b, p.score] for p in pairs],
        "concept_pair_details": [
            {
                "a": p.a,
                "b": p.b,
                "score": p.score,
                "documents": p.docs,
                "origin": p.origin,
                "recent": p.recent,
                "strength": strength[(p.a, p.b)].to_json(),
            }
            for p in pairs
        ],
        "concept_mining": mining["info"],
        "timings": lap.seconds,
    }
    path, reused = _save(writer, fp, meta)
    lap("save")
    try:
        write_json_atomically(
            paths.datasets_dir(cfg) / LATEST_NAME,
            {"fingerprint": fp, "path": fp, "updated_at": meta["created_at"], "input_key": input_key},
        )
    except OSError as exc:
        raise MothError(
            f"cannot write {paths.datasets_dir(cfg) / LATEST_NAME} ({exc.strerror or exc}); the data set "
            f"itself is complete at {path}: free disk space and run `mothbrain preprocess` again"
        ) from None
    if cache is not None:  # only once the data set is saved: a failed run leaves the last mining as it was
        try:
            if mining["state"] is not None:
                write_json_atomically(mining_state_path(cfg), mining["state"])
        except OSError as exc:
            log.warning(
                "cannot write %s (%s); the next run mines the concept pairs again",
                mining_state_path(cfg),
                exc.strerror or exc,
            )
        try:
            write_atomically(dedup_state_path(cfg), pickle.dumps(dedup_state, protocol=5))
        except OSError as exc:
            log.warning(
                "cannot write %s (%s); the next run makes every dedup decision again",
                dedup_state_path(cfg),
                exc.strerror or exc,
            )
        cache.prune()
    return PreprocessReport(
        fingerprint=fp,
        path=str(path),
        reused=reused,
        documents=meta["documents"],
        heldout_documents=meta["heldout_documents"],
        samples=meta["samples"],
        composition=composition,
        priority=priority,
        filtered=filtered,
        redacted=redacted,
        concept_pairs=len(pairs),
        input_chars=input_chars,
        seconds=time.perf_counter() - t0,
        warnings=warnings,
        timings=dict(lap.seconds),
        documents_processed=fresh_docs,
        concept_mining=mining["info"],
        heldout_pairs=heldout_pair_counts(meta),
    )


def heldout_pair_counts(meta: dict[str, Any]) -> dict[str, int]:
    """Held-out pairs that count for the association figure ("real") and those that do not ("filler");
    a data set from before the strength test (no verdict) counts them all."""
    kinds = [p[2] if len(p) > 2 else "real" for p in meta.get("heldout_pairs", [])]
    return {"real": kinds.count("real"), "filler": kinds.count("filler")}

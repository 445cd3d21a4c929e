"""The stream of batches with their dedup decisions, and what the corpus-wide steps keep of it (no texts)."""

from __future__ import annotations

import hashlib
import pickle
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import compress
from pathlib import Path

import numpy as np

from mothbrain.config import Config
from mothbrain.data.cache import DocCache, cache_dir
from mothbrain.data.dedup import Deduper
from mothbrain.data.process import Unit, process_all
from mothbrain.data.samples import BatchResult
from mothbrain.errors import NothingToDo


@dataclass
class Corpus:
    """What the corpus-wide steps need once every batch's rows are written: no texts, only
    per-document times, candidate terms and wiki links, per-batch hashes, counts and decisions."""

    when: list[float] = field(default_factory=list)  # per document (nan: unknown)
    terms: list = field(default_factory=list)  # Arrow string chunks: each document's "\n"-joined terms
    term_sentences: list = field(default_factory=list)  # Arrow list<uint64> chunks: per term, its sentences' mask
    pages: list = field(default_factory=list)  # wiki pages: (document index, title, doc_id, links)
    batches: list[tuple[str, int]] = field(default_factory=list)  # (hash of its stored lines, documents)
    fresh_docs: int = 0  # documents processed in this run (not from the cache)
    chars: int = 0
    filtered: Counter = field(default_factory=Counter)
    redacted: Counter = field(default_factory=Counter)
    voices: dict = field(default_factory=dict)  # source → [documents with turns, voice turns, Counter of speakers]
    dedup_state: dict = field(default_factory=dict)  # chain hash → (samples, keep bits, (exact, near))
    heldout_fraction: float = 0.0  # held-out documents never feed concept mining (eval probes those pairs)
    _loose_terms: int = 0

    def add(self, h: str, batch: BatchResult, fresh: bool) -> None:
        import pyarrow as pa
        import pyarrow.compute as pc

        start = len(self.when)
        n = len(batch.docs["unit"])
        self.when.extend(batch.docs["when"])
        held = np.asarray(batch.docs["unit"], dtype=np.float64) < self.heldout_fraction
        terms, sentences = batch.docs["terms"], batch.docs["term_sentences"]
        if held.any():
            terms = pc.if_else(pa.array(held), pa.scalar("", terms.type), terms)
            sentences = pc.if_else(pa.array(held), pa.scalar([], sentences.type), sentences)
        self.terms.append(terms)
        self.term_sentences.append(sentences)
        self._loose_terms += 1
        if self._loose_terms >= 64:  # copied out of the batches (a cached batch's views hold its file), 64 at a time
            self.terms[-64:] = [pa.concat_arrays(self.terms[-64:])]
            self.term_sentences[-64:] = [pa.concat_arrays(self.term_sentences[-64:])]
            self._loose_terms = 0
        self.pages.extend(
            (start + i, title, batch.docs["doc_id"][i], links) for i, title, links in batch.wiki if not held[i]
        )
        self.batches.append((h, n))
        self.fresh_docs += n if fresh else 0
        self.chars += sum(batch.docs["chars"])
        self.filtered.update(batch.filtered)
        self.redacted.update(batch.redacted)
        for source, (docs, voice_turns, speakers) in batch.voices.items():
            v = self.voices.setdefault(source, [0, 0, Counter()])
            v[0] += docs
            v[1] += voice_turns
            v[2].update(speakers)


def stream_corpus(
    cfg: Config,
    units: list[Unit],
    cache: DocCache | None,
    progress: bool | None,
    pool,
    corpus: Corpus,
    full: bool = False,
) -> Iterator[tuple[BatchResult, np.ndarray]]:
    """Every batch with its dedup decision (which samples to keep), in stream order, as soon as it
    is decided; what the corpus-wide steps need is recorded in `corpus` on the way. The first
    occurrence of a passage is the one kept (the stream order is stable: config order of sources,
    sorted files).

    Dedup decisions depend only on the stream up to a sample, so while the batches are the ones the
    last run saw, in the same order (a hash chain over their hashes and the settings), that run's
    decisions are reused. At the first batch that differs (a nightly run: the new batches at the
    end), the kept samples of that prefix go into the dedup index and the rest is decided as it
    streams, as in a cold run.
    """
    pcfg = cfg.preprocess
    previous = _load_dedup_state(cfg) if cache is not None and not full else {}
    window = pcfg.dedup_window
    dedup = Deduper(pcfg.dedup_threshold, window)
    chain = hashlib.sha256(f"dedup {pcfg.dedup_threshold} {window} {cache.settings_key if cache else ''}".encode())
    prefix_keys: list[bytes] = []
    prefix_sigs: deque = deque(maxlen=window or None)  # the prefix's kept signatures (the last `window`)
    reusing = True

    for h, batch, fresh in process_all(cfg, units, cache, pool, progress):
        chain.update(h.encode() + b"\0")
        link = chain.hexdigest()
        stored = previous.get(link) if reusing and not fresh else None
        if stored is not None and stored[0] != len(batch):
            stored = None
        corpus.add(h, batch, fresh)
        if stored is not None:
            keep = np.unpackbits(stored[1], count=len(batch)).astype(bool)
            counts = tuple(stored[2])
            prefix_keys.extend(compress(batch.samples["key"], keep))
            prefix_sigs.extend(sig for sig in compress(batch.samples["sig"], keep) if sig is not None)
        else:
            if reusing:  # the reusable prefix ends here
                dedup.remember(prefix_keys, list(prefix_sigs))
                prefix_keys, reusing = [], False
                prefix_sigs.clear()
            exact, near = dedup.counts["exact_duplicates"], dedup.counts["near_duplicates"]
            keep = dedup.check_batch(batch.samples["key"], batch.samples["sig"])
            counts = (dedup.counts["exact_duplicates"] - exact, dedup.counts["near_duplicates"] - near)
        corpus.dedup_state[link] = (len(keep), np.packbits(keep), counts)
        batch.samples["sig"] = batch.samples["key"] = None  # done with (a tenth of a batch's memory)
        yield batch, keep
    if not corpus.when:
        raise NothingToDo(f"no ingested documents: run `mothbrain ingest` first or check sources in {cfg.config_path}")
    exact = sum(c[0] for _, _, c in corpus.dedup_state.values())
    near = sum(c[1] for _, _, c in corpus.dedup_state.values())
    corpus.filtered.update({k: v for k, v in (("exact_duplicates", exact), ("near_duplicates", near)) if v})


DEDUP_STATE = "dedup_decisions.pkl"  # beside the document cache: the last run's dedup decisions per batch


def dedup_state_path(cfg: Config) -> Path:
    return cache_dir(cfg) / DEDUP_STATE


def _load_dedup_state(cfg: Config) -> dict:
    try:
        with dedup_state_path(cfg).open("rb") as fh:
            state = pickle.load(fh)
        return state if isinstance(state, dict) else {}
    except Exception:  # noqa: BLE001 - missing or damaged: every decision is made again
        return {}

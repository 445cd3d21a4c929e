"""Preprocess: ingested documents → a voice-and-association data set, saved once per fingerprint.

    mothbrain preprocess            # builds data/datasets/<fingerprint>/ and points latest.json at it
    mothbrain preprocess --full     # ... processing every document again and mining the pairs again

When the stored documents and the settings are those of today's latest data set, it is reused
without reading anything (`--force` rebuilds). Otherwise, top to bottom (`run_preprocess` at the end):
  1. per stored shard (one source file's documents), in stream order (config order of sources,
     sorted files): its results from the document cache (mothbrain.data.cache) when the shard and
     the settings are unchanged, else `process_document` on each document, in worker processes
     once the new material is large: redact secrets and personal data FIRST, one pass over all of
     a document's texts (nothing unredacted is ever kept), filter factual recall (long code,
     tables, URLs, tool turns), and build samples, each with its dedup signature, priority
     concepts and token count, as columns (`BatchResult`):
       voice  — a turn of a voice role; prompt = up to `context_turns` preceding turns rendered
                "Speaker: text\\n" and ending "<Voice>:", completion = " <voice text>" (the loss is
                on the completion only); long turns split at paragraphs to `max_chars`.
       text   — wiki and writing pages; prompt = "# Title\\n\\n" (+ the heading path) + the previous
                paragraph, completion = the next paragraph(s) up to `max_chars`.
  2. exact and near-duplicate removal (mothbrain.data.dedup) in stream order, the first occurrence kept;
     near duplicates are looked for among the last `dedup_window` kept samples, exact ones across
     all; the last run's decisions are reused for the shards before the first change.
  3. association samples (mining in mothbrain.data.concepts): concept pairs from wiki links (page ↔
     linked page) and from concepts that co-occur across documents in the voice's own words
     (frequent content words and phrases, scored by normalised PMI over documents, sentences
     repeated across documents counted once), rendered with `association_templates`: "lantern
     reminds me of" → " tide". Mined again when REMINE_SHARE of the documents are new since the
     last mining, after REMINE_AFTER_DAYS or with --full; reused in between. The pairs and their
     scores go to mothbrain.json ("concept_pairs").
  4. a document-level held-out split: a hash of (source, doc_id) decides, so a document never
     straddles the split and old documents keep their side when new ones arrive. Whether a
     document is recent (the `recent` column) is decided here, per run, from its time.
  5. source weights: in the train split a sample of a source with weight w appears floor(w) times,
     plus once more with probability frac(w) (decided by a stable hash), so weight 2 doubles a
     source's share and 0.5 halves it; the held-out split is never reweighted. Rows stay in stream
     order (the trainer shuffles).
  6. composition (samples and tokens per source, type and priority concept), warnings for priority
     concepts under their minimum, and an atomic save: temp dir → rename, then latest.json.

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
import math
import multiprocessing as mp
import os
import pickle
import re
import shutil
import sys
import time
from collections import Counter, defaultdict, deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import partial
from itertools import compress, islice
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from mothbrain.config import Config, PreprocessConfig, SourceConfig, to_dict
from mothbrain.core import paths
from mothbrain.core.atomic import write_atomically, write_json_atomically
from mothbrain.data.cache import UNPICKLING_ERRORS, CachedShard, DocCache, batch_hash, cache_dir, pack, unpack
from mothbrain.data.concepts import (
    ConceptMatcher,
    Pair,
    TermTable,
    choose_pairs,
    frequent_terms,
    link_pairs,
    mine_pairs,
    novel_sentences,
)
from mothbrain.data.dedup import Deduper, near_duplicates_of, text_key
from mothbrain.data.filters import TOOL_TURNS, apply_filters, is_tool_turn
from mothbrain.data.format import is_voice, turn_line, turn_speaker, voice_prefix, voice_roles
from mothbrain.data.redact import redact, redact_many
from mothbrain.data.split import hash_int as _hash_int
from mothbrain.data.split import unit as _unit
from mothbrain.data.writer import META_NAME, DatasetWriter
from mothbrain.data.writer import features as _features
from mothbrain.data.writer import fingerprint as dataset_fingerprint
from mothbrain.errors import MothError, NothingToDo
from mothbrain.sources.records import Document, Turn

log = logging.getLogger(__name__)

DATASET_SCHEMA = 1  # bump when the columns or the sample format change (changes every fingerprint)
LATEST_NAME = "latest.json"
ASSOCIATION_SOURCE = "associations"  # the `source` of association samples
DAY = 86400.0
PARALLEL_AFTER_CHARS = 500_000  # stored bytes to read before a worker pool is worth starting (if > 1 core)
READ_AHEAD_CHARS = 8_000_000  # a nightly run's changed shards handed to the pool up front (stored bytes)
BATCH_DOCS = 256  # documents per unit of work (and per repeated-sentence set)
PARALLEL_PAIRS_AFTER_DOCS = 20_000  # concept pairs of larger corpora are counted on the pool
REMINE_SHARE = 0.05  # concept pairs are mined again once this share of the documents is new since the last mining
REMINE_AFTER_DAYS = 7.0  # ... or once the last mining is this old (the weekly run)
MINING_STATE = "concept_mining.json"  # beside the document cache: the last mining's pairs
DEDUP_STATE = "dedup_decisions.pkl"  # ... and the last run's dedup decisions per shard


# --------------------------------------------------------------------------- the report


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
        rows.append(
            {
                "group": "total",
                "name": f"{self.documents} documents",
                "train": self.samples["train"],
                "heldout": self.samples["heldout"],
                unit: self.composition["total_tokens"],
                "note": f"{self.heldout_documents} held out, {self.concept_pairs} concept pairs",
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
            "warnings": self.warnings,
        }


# --------------------------------------------------------------------------- samples


@dataclass(slots=True)
class Sample:
    """One sample as a worker builds it; `_to_batch` turns a batch's samples into columns."""

    prompt: str
    completion: str
    source: str
    sample_type: str  # voice | text | association
    doc_id: str  # as written to the data set (redacted: file names can hold addresses)
    order: tuple  # (source, raw doc_id, n): a stable order, whatever order the documents came in
    recent: bool = False  # association samples; document samples take their document's, when assembled
    concepts: list[str] = field(default_factory=list)
    tokens: int = 0  # prompt + completion, counted in the worker (0: not yet counted)
    dedup_key: bytes = b""  # filled by process_document (dedup.text_key)
    signature: Any = None


@dataclass
class DocResult:
    """What one document contributes: samples, counts, and material for concept mining."""

    source: str
    doc_id: str  # raw: decides the split
    kind: str
    when: float | None  # its timestamp (or its file's mtime): whether it is recent is decided per run
    samples: list[Sample]
    redacted: dict[str, int]
    filtered: dict[str, int]
    terms: str  # its most frequent candidate concepts, for co-occurrence, "\n"-joined (one string pickles fast)
    title: str = ""  # wiki: the page title and link targets (for link pairs)
    links: list[str] = field(default_factory=list)
    chars: int = 0
    voice_turns: int = 0  # turns of a voice role (chat and transcript documents)
    speakers: frozenset = frozenset()  # roles/speakers seen, for the "no voice found" warning
    unit: float = 1.0  # the document's stable hash in [0, 1): below heldout_fraction → held out


@dataclass
class BatchResult:
    """A batch of documents' contribution as columns: what workers send back, what the document
    cache stores per shard, and what the main process joins (no Python object per sample)."""

    docs: dict[str, Any]  # per document: source, doc_id (raw), when (nan: unknown), unit, chars (lists), terms (Arrow)
    samples: dict[str, Any]  # per sample: doc (index into docs), n, tokens (numpy); sample_type, key, sig (lists);
    #                          prompt, completion, doc_id, concepts (Arrow): the bulk, kept out of band (doc_cache.pack)
    wiki: list[tuple[int, str, list[str]]]  # (document index, title, links) of wiki pages
    redacted: dict[str, int]
    filtered: dict[str, int]
    voices: dict[str, list]  # source → [documents with turns, voice turns, {speaker: documents}]

    def __len__(self) -> int:
        return len(self.samples["doc"])


def _to_batch(results: list[DocResult]) -> BatchResult:
    import pyarrow as pa

    samples = [s for r in results for s in r.samples]
    redacted: Counter = Counter()
    filtered: Counter = Counter()
    voices: dict[str, list] = {}
    for r in results:
        redacted.update(r.redacted)
        filtered.update(r.filtered)
        if r.speakers:
            v = voices.setdefault(r.source, [0, 0, Counter()])
            v[0] += 1
            v[1] += r.voice_turns
            v[2].update(r.speakers)
    return BatchResult(
        docs={
            "source": [r.source for r in results],
            "doc_id": [r.doc_id for r in results],
            "when": [math.nan if r.when is None else r.when for r in results],
            "unit": [r.unit for r in results],
            "chars": [r.chars for r in results],
            "terms": pa.array([r.terms for r in results], pa.string()),
        },
        samples={
            "doc": np.array([i for i, r in enumerate(results) for _ in r.samples], dtype=np.int32),
            "n": np.array([s.order[2] for s in samples], dtype=np.int32),
            "sample_type": [s.sample_type for s in samples],
            "tokens": np.array([s.tokens for s in samples], dtype=np.int64),
            "key": [s.dedup_key for s in samples],
            "sig": [s.signature for s in samples],
            "prompt": pa.array([s.prompt for s in samples], pa.string()),
            "completion": pa.array([s.completion for s in samples], pa.string()),
            "doc_id": pa.array([s.doc_id for s in samples], pa.string()),
            "concepts": pa.array([s.concepts for s in samples], pa.list_(pa.string())),
        },
        wiki=[(i, r.title, r.links) for i, r in enumerate(results) if r.kind == "wiki"],
        redacted=dict(redacted),
        filtered=dict(filtered),
        voices={k: [a, b, dict(c)] for k, (a, b, c) in voices.items()},
    )


class _Cleaner:
    """Redaction then filters, with counts; every piece of text passes through here first."""

    def __init__(self, pcfg: PreprocessConfig):
        self.pcfg = pcfg
        self.redacted: Counter = Counter()
        self.filtered: Counter = Counter()
        self._done: dict[str, str] = {}  # text → redacted, for a document's texts (`prepare`)

    def prepare(self, texts: list[str]) -> None:
        """Redact a document's texts in one pass (`redact_many`); `redact` then looks them up."""
        texts = list(dict.fromkeys(t for t in texts if t))
        out, counts = redact_many(texts, self.pcfg.redaction)
        self._done.update(zip(texts, out))
        self.redacted.update(counts)

    def redact(self, text: str) -> str:
        done = self._done.get(text)
        if done is None:
            done, counts = redact(text, self.pcfg.redaction)
            self._done[text] = done
            self.redacted.update(counts)
        return done

    def name(self, speaker: str) -> str:
        """A speaker's display name, redacted (names repeat every turn: the cache makes that once)."""
        return self.redact(speaker)

    def __call__(self, text: str) -> str:
        text = self.redact(text)
        text, counts = apply_filters(text, self.pcfg.filters)
        if counts:
            self.filtered.update(counts)
        return text.strip()


_PARA = re.compile(r"\n[ \t]*\n")
_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+")


def split_to_chunks(text: str, max_chars: int) -> list[str]:
    """Pack paragraphs into chunks of at most `max_chars`; a longer paragraph splits at sentences,
    a longer sentence at the last space before the limit."""
    if len(text) <= max_chars and "\n" not in text:  # one short paragraph (most chat turns)
        text = text.strip()
        return [text] if text else []
    pieces: list[str] = []
    for para in _PARA.split(text):
        para = para.strip()
        if not para:
            continue
        if len(para) <= max_chars:
            pieces.append(para)
            continue
        for sent in _SENTENCE_END.split(para):
            # Cut by position: slicing off the rest at every cut made one long sentence quadratic.
            start, end = 0, len(sent)
            while end - start > max_chars:
                cut = sent.rfind(" ", start, start + max_chars)
                cut = cut if cut > start + max_chars // 2 else start + max_chars
                pieces.append(sent[start:cut].strip())
                start, end = cut, len(sent.rstrip())  # the rest, stripped as it used to be
                while start < end and sent[start].isspace():
                    start += 1
            if start < end:
                pieces.append(sent[start:].strip())
    chunks: list[str] = []
    for piece in pieces:
        # Pieces of one split paragraph are re-joined with "\n\n" too: harmless for a base model.
        if chunks and len(chunks[-1]) + 2 + len(piece) <= max_chars:
            chunks[-1] += "\n\n" + piece
        else:
            chunks.append(piece)
    return chunks


def _tail(text: str, limit: int) -> str:
    """The end of a long context turn: the words nearest the voice matter most."""
    if len(text) <= limit:
        return text
    cut = text.find(" ", len(text) - limit)
    return "…" + text[cut + 1 if 0 <= cut < len(text) - 1 else len(text) - limit :]


def _voice_samples(
    doc: Document, doc_id: str, roles: set[str], clean: _Cleaner, pcfg: PreprocessConfig, names: list[str]
) -> tuple[list[Sample], list[str]]:
    turns: list[tuple[str, bool, str]] = []  # (speaker, is_voice, cleaned text)
    for t, speaker in zip(doc.turns, names):
        if pcfg.filters.drop_tool_output and is_tool_turn(t.role):
            clean.filtered[TOOL_TURNS] += 1
            continue
        if t.role.strip().lower() == "system" and "system" not in roles:
            clean.filtered["system_turns"] += 1  # instructions to the system, not its lived material
            continue
        text = clean(t.text)
        if text:
            turns.append((clean.name(speaker), is_voice(t, roles), text))
    samples: list[Sample] = []
    k = max(0, pcfg.context_turns)
    lines = [turn_line(n, _tail(tx, pcfg.max_chars)) for n, _, tx in turns] if k else []  # each turn as context
    for i, (name, voice, text) in enumerate(turns):
        if not voice:
            continue
        context = lines[max(0, i - k) : i]
        for chunk in split_to_chunks(text, pcfg.max_chars):
            samples.append(
                Sample(
                    prompt="".join(context) + voice_prefix(name),
                    completion=" " + chunk,
                    source=doc.source,
                    sample_type="voice",
                    doc_id=doc_id,
                    order=(doc.source, doc.doc_id, len(samples)),
                )
            )
            if k:  # the earlier part of a long turn becomes context for the next part
                context = (context + [turn_line(name, _tail(chunk, pcfg.max_chars))])[-k:]
    return samples, [tx for _, voice, tx in turns if voice]


_HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t#]*$")


def _text_samples(
    doc: Document, doc_id: str, title: str, clean: _Cleaner, pcfg: PreprocessConfig
) -> tuple[list[Sample], str]:
    body = clean(doc.text)
    samples: list[Sample] = []
    headings: list[tuple[int, str]] = []
    paragraphs: list[str] = []

    def flush() -> None:
        if not paragraphs:
            return
        head = f"# {title}\n\n" + "".join(f"{'#' * lvl} {h}\n\n" for lvl, h in headings)
        prev = ""
        for chunk in split_to_chunks("\n\n".join(paragraphs), pcfg.max_chars):
            samples.append(
                Sample(
                    prompt=head + (prev + "\n\n" if prev else ""),
                    completion=chunk,
                    source=doc.source,
                    sample_type="text",
                    doc_id=doc_id,
                    order=(doc.source, doc.doc_id, len(samples)),
                )
            )
            prev = _tail(chunk.rsplit("\n\n", 1)[-1], pcfg.max_chars // 2)
        paragraphs.clear()

    for block in _PARA.split(body):
        lines: list[str] = []
        for line in block.split("\n"):
            m = _HEADING.match(line.strip())
            if not m:
                lines.append(line)
                continue
            if "\n".join(lines).strip():
                paragraphs.append("\n".join(lines).strip())
            lines = []
            flush()  # a new section: its samples carry its own heading path
            level, text = len(m.group(1)), m.group(2).strip()
            if level == 1 and not headings and text.lower() == title.lower():
                continue  # the page's own H1 is already the prompt's title
            headings[:] = [(lv, h) for lv, h in headings if lv < max(level, 2)] + [(max(level, 2), text)]
        if "\n".join(lines).strip():
            paragraphs.append("\n".join(lines).strip())
    flush()
    return samples, body


def _tidy_document(doc: Document) -> Document:
    """Null fields from a damaged store become empty strings (a document is never a traceback)."""
    if (
        type(doc.doc_id) is str
        and type(doc.title) is str
        and type(doc.text) is str
        and type(doc.meta) is dict
        and type(doc.turns) is list
        and type(doc.links) is list
        and (doc.timestamp is None or type(doc.timestamp) is float)
        and all(type(t.role) is str and type(t.text) is str and type(t.speaker) is str for t in doc.turns)
        and all(type(x) is str and x for x in doc.links)
    ):
        return doc  # already tidy (every stored document): no copy
    turns = [
        Turn(role=str(t.role or ""), text=str(t.text or ""), speaker=str(t.speaker or "")) for t in doc.turns or []
    ]
    return Document(
        source=doc.source,
        kind=doc.kind,
        doc_id=str(doc.doc_id or ""),
        title=str(doc.title or ""),
        turns=turns,
        text=str(doc.text or ""),
        links=[str(x) for x in doc.links or [] if x],
        meta=doc.meta if isinstance(doc.meta, dict) else {},
        timestamp=_number(doc.timestamp),
    )


def _number(value: Any) -> float | None:
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def process_document(
    doc: Document,
    cfg: Config,
    source: SourceConfig | None,
    seen_sentences: set[str] | None = None,
    matcher: ConceptMatcher | None = None,
    count_tokens=None,
) -> DocResult:
    """One document → its samples (redacted, filtered, with dedup keys), counts and candidate concepts.

    Concepts are mined from the voice's own words (voice turns, wiki and writing pages): the
    associations the adapter should absorb are the voice's, not its interlocutors'. Sentences in
    `seen_sentences` (shared within a batch of documents) are skipped for mining: a stock phrase
    repeated in many documents is not an association. Pure apart from that set, so worker
    processes run it for large corpora, and it does not depend on the date (whether a document is
    recent is decided when the run assembles the data set), so its results can be cached.
    """
    pcfg = cfg.preprocess
    clean = _Cleaner(pcfg)
    matcher = matcher or ConceptMatcher(pcfg)
    doc = _tidy_document(doc)
    when = doc.timestamp if doc.timestamp is not None else _number(doc.meta.get("file_mtime"))
    raw_title = doc.title.strip() or Path(doc.doc_id.split("#")[0]).stem
    names = [turn_speaker(t) for t in doc.turns]
    clean.prepare(
        [
            raw_title,
            doc.doc_id,
            doc.text,
            *(t.text for t in doc.turns),
            *set(names),
            *(doc.links if doc.kind == "wiki" else []),
        ]
    )
    title = clean.redact(raw_title)
    shown_id = clean.redact(doc.doc_id)
    roles = voice_roles(cfg, source)
    voice_turns = sum(is_voice(t, roles) for t in doc.turns)
    if doc.turns:
        samples, texts = _voice_samples(doc, shown_id, roles, clean, pcfg, names)
        mined = "\n".join(texts)
    else:
        samples, mined = _text_samples(doc, shown_id, title, clean, pcfg)
    kept = []
    for s in samples:
        if len(s.completion.strip()) < pcfg.filters.min_chars:
            clean.filtered["too_short"] += 1
            continue
        s.dedup_key, s.signature = text_key(s.completion)
        s.concepts = matcher.match(s.completion)
        kept.append(s)
    unit = _unit(f"{doc.source}\0{doc.doc_id}")
    if count_tokens is not None and kept:
        for s, n in zip(kept, count_tokens([s.prompt + s.completion for s in kept])):
            s.tokens = n
    return DocResult(
        source=doc.source,
        doc_id=doc.doc_id,
        kind=doc.kind,
        when=when,
        samples=kept,
        redacted=dict(clean.redacted),
        filtered=dict(clean.filtered),
        terms="\n".join(frequent_terms(novel_sentences(mined, seen_sentences))),
        title=title if doc.kind == "wiki" else "",
        links=[clean.redact(x) for x in doc.links] if doc.kind == "wiki" else [],
        chars=len(doc.text) + sum(len(t.text) for t in doc.turns),
        voice_turns=voice_turns,
        unit=unit,
        speakers=frozenset(map(clean.name, names[:50])),
    )


# --------------------------------------------------------------------------- association samples


HELDOUT_PAIR_MAX_DF = 0.1  # a pair found in more of the documents is a stock phrase, not an association to probe


def heldout_pairs(pairs: list[Pair], wanted: int, documents: int) -> set[tuple[str, str]]:
    """The pairs whose templated rows go to the held-out side: a stable choice by the pair's hash, at most
    half of them (the rest teach the association format). Only specific pairs qualify: two words of a
    sentence the voice says everywhere ("the X hums, and the Y answers") co-occur in a large share of
    the documents, and are no association the adapter could show it absorbed. Linked pairs come first: a
    link is the author saying two concepts belong together, where a co-occurrence may be one stock
    sentence ("they agreed on the timber, argued about the railings") repeated in a few documents."""
    n = min(wanted, len(pairs) // 2)
    specific = [p for p in pairs if p.docs <= max(3, HELDOUT_PAIR_MAX_DF * documents)]
    ranked = sorted(specific, key=lambda p: (p.origin != "link", _unit(f"pair:{p.a}|{p.b}")))
    return {(p.a, p.b) for p in ranked[:n]}


def association_samples(pairs: list[Pair], pcfg: PreprocessConfig, matcher: ConceptMatcher) -> list[Sample]:
    """Each pair in both directions, each direction with one template chosen by a stable hash."""
    templates = pcfg.association_templates or ["{a} reminds me of"]
    samples = []
    for p in pairs:
        doc_id = f"pair:{p.a}|{p.b}"
        for x, y in ((p.a, p.b), (p.b, p.a)):
            t = templates[_hash_int(f"{pcfg.seed}|{x}|{y}") % len(templates)]
            prompt = t.format(a=x)
            samples.append(
                Sample(
                    prompt=prompt,
                    completion=" " + y,
                    source=ASSOCIATION_SOURCE,
                    sample_type="association",
                    doc_id=doc_id,
                    recent=p.recent,
                    concepts=matcher.match(prompt + " " + y, (x, y)),
                    order=(ASSOCIATION_SOURCE, doc_id, x),
                )
            )
    return samples


# --------------------------------------------------------------------------- split, weights, tokens


def heldout_docs(
    keys: Iterable[tuple[str, str]], fraction: float, units: dict[tuple[str, str], float] | None = None
) -> set[tuple[str, str]]:
    """The (source, doc_id) keys held out: those whose hash falls below `fraction`.

    A document's side depends only on its own key, so adding documents never moves old ones. When
    the hash leaves the held-out side empty (tiny corpora) and there are two or more documents, the
    one with the smallest hash is held out so that eval always has something (and, symmetrically,
    one document always stays in train). `units`: the keys' hashes, when already computed.
    """
    scored = units if units is not None else {k: _unit(f"{k[0]}\0{k[1]}") for k in keys}
    if fraction <= 0 or not scored:
        return set()
    held = {k for k, u in scored.items() if u < fraction}
    if not held and len(scored) >= 2:
        held = {min(scored, key=scored.get)}
    if len(held) == len(scored) and len(scored) >= 2:
        held.discard(max(held, key=scored.get))
    return held


def repeats(weight: float, key: str) -> int:
    """How often a train sample appears under its source's weight: floor(w), +1 with probability frac(w)."""
    whole = math.floor(weight)
    if whole == weight:
        return whole  # a whole weight needs no draw (and no hash)
    return whole + (1 if _unit(key) < weight - whole else 0)


def _tokenizer_file(cfg: Config) -> tuple[Path | None, Path | None]:
    """(the base model's local folder or None, its tokenizer.json on disk or None); never downloads."""
    from mothbrain.models.location import base_model_location

    location = base_model_location(cfg)
    local = Path(location)
    if local.is_dir():
        tok_file = local / "tokenizer.json"
    else:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(str(location), "tokenizer.json")
        tok_file = Path(cached) if isinstance(cached, str) else None
    return (local if local.is_dir() else None), (tok_file if tok_file is not None and tok_file.is_file() else None)


def _tokenizer_identity(cfg: Config) -> list:
    """What token counts depend on (part of the document cache's key): the tokenizer file and its stat."""
    try:
        local, tok_file = _tokenizer_file(cfg)
        if tok_file is not None:
            st = tok_file.stat()
            return [str(tok_file), st.st_size, st.st_mtime_ns]
        return [str(local), "no tokenizer.json"] if local is not None else ["approximate"]
    except Exception:  # noqa: BLE001 - the same failure makes _token_counter approximate
        return ["approximate"]


def _token_counter(cfg: Config):
    """(count(texts) -> token counts, column label): the base model's tokenizer when it is on disk.

    Reads the model's tokenizer.json with `tokenizers` (the same fast tokenizer transformers would
    load, without importing torch), falling back to AutoTokenizer(local_files_only=True) for a
    model without one; nothing is downloaded. Without a tokenizer, tokens are chars/4, "~tokens".
    """
    try:
        local, tok_file = _tokenizer_file(cfg)
        if tok_file is not None:
            from tokenizers import Tokenizer

            fast = Tokenizer.from_file(str(tok_file))
            return (lambda texts: [len(e.ids) for e in fast.encode_batch(texts, add_special_tokens=False)]), "tokens"
        if local is not None:
            from transformers import AutoTokenizer

            tok = AutoTokenizer.from_pretrained(str(local), local_files_only=True)
            return (lambda texts: [len(ids) for ids in tok(texts, add_special_tokens=False)["input_ids"]]), "tokens"
    except Exception as exc:  # noqa: BLE001 - any failure here means: approximate
        log.info(
            "tokenizer unavailable (%s); token counts are chars/4", str(exc).splitlines()[0][:160] if str(exc) else exc
        )
    return (lambda texts: [max(1, round(len(t) / 4)) for t in texts]), "~tokens"


# --------------------------------------------------------------------------- the stage: documents


@dataclass
class _Unit:
    """A run of documents processed and cached together: one stored shard, or the caller's documents."""

    items: Any  # () -> iterable of stored lines or Documents
    size: int  # bytes or characters, to decide whether the worker pool is worth starting
    shard: Any = None  # ingest.StoredShard (None: not cached)
    current: bool = False  # the document cache holds this very shard (its results are loaded in turn)


def _stored_units(cfg: Config, cache: DocCache) -> list[_Unit]:
    """The stored shards in stream order, each with its cached results when they are still valid."""
    from mothbrain.ingest.stage import shard_lines, stored_shards

    if not (paths.ingest_dir(cfg) / "manifest.json").exists():
        raise NothingToDo(f"no ingested documents: run `mothbrain ingest` first or check sources in {cfg.config_path}")
    return [
        _Unit(items=partial(shard_lines, sh), size=sh.size, shard=sh, current=cache.is_current(sh))
        for sh in stored_shards(cfg)
    ]


def _progress(enabled: bool | None):
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
    _WORKER = (cfg, {s.name: s for s in cfg.sources}, ConceptMatcher(cfg.preprocess), _token_counter(cfg)[0])


def process_batch(items: list[Document | tuple[str, tuple]]) -> BatchResult:
    """process_document over one batch, with one repeated-sentence set per batch, as columns.

    Items are Documents or stored lines (`ingest.shard_lines`), decoded here so that the JSON
    parsing happens in the workers. A batch never spans two shards and the set is per batch, so a
    shard's results do not depend on other shards or on which process ran it: they can be cached.
    """
    from mothbrain.ingest.stage import decode_stored

    cfg, sources, matcher, count_tokens = _WORKER  # type: ignore[misc]
    seen: set[str] = set()
    docs = (d if isinstance(d, Document) else decode_stored(*d) for d in items)
    return _to_batch(
        [process_document(d, cfg, sources.get(d.source), seen, matcher, count_tokens) for d in docs if d is not None]
    )


def _work(items: list) -> tuple[bytes, list[bytes]]:
    """A batch's result packed here, in the worker (doc_cache.pack): the main process unpacks it
    (the Arrow columns without a copy) and writes the same pieces to the document cache."""
    return pack(process_batch(items))


class _CacheDamaged(Exception):
    """A cached batch that passed its checksum would not unpickle: the run starts over without the cache."""


def _workers(cfg: Config) -> int:
    if cfg.preprocess.workers > 0:
        return cfg.preprocess.workers
    try:
        return min(8, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS
        return min(8, os.cpu_count() or 1)


@contextmanager
def _lazy_pool(cfg: Config):
    """get() → a process pool, started on first use (small corpora never start one)."""
    pool = None

    def get():
        nonlocal pool
        if pool is None:
            method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
            # Each worker counts tokens single-threaded (the processes already fill the cores), and
            # `tokenizers` would otherwise warn at every fork after this process has used it.
            before = os.environ.get("TOKENIZERS_PARALLELISM")
            os.environ["TOKENIZERS_PARALLELISM"] = "false"
            try:
                pool = mp.get_context(method).Pool(_workers(cfg), initializer=_init_worker, initargs=(cfg,))
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


def _process_all(
    cfg: Config, units: list[_Unit], cache: DocCache | None, pool, progress: bool | None
) -> Iterator[tuple[str, BatchResult, bool]]:
    """(batch hash, results, fresh) for every batch of BATCH_DOCS documents, in stream order.

    A shard the cache holds as it is comes from the cache without being read. Any other is read
    and each batch hashed: a batch the cache holds (an appended log's old batches) comes from the
    cache, the rest is processed, on the worker pool when the shards to read hold
    PARALLEL_AFTER_CHARS or more and there is more than one core; the shard's file is then
    rewritten. At most a few batches per worker wait in order, so memory stays bounded; a nightly
    run's few changed shards are handed to the pool first (`_read_ahead`).
    """
    _init_worker(cfg)
    to_read = sum(u.size for u in units if not u.current)
    parallel = _workers(cfg) > 1 and to_read >= PARALLEL_AFTER_CHARS
    window = 4 * _workers(cfg)
    pending: deque = deque()  # in stream order: (unit, hash, packed or AsyncResult or None at a unit's end, fresh)
    keep: dict[int, list] = defaultdict(list)  # unit → its batches, for its cache file (rewritten units only)
    rewrite: set[int] = set()
    chars = n = 0
    if parallel:
        pool()  # forked before the progress bar starts its thread

    def batches_of(u: _Unit, cached: CachedShard | None) -> Iterator[tuple[str, Any, bool]]:
        """(hash, packed results or their AsyncResult, fresh) of each batch of a unit that is read."""
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

    ahead = _read_ahead(units, cache, batches_of) if parallel else {}

    def settle(limit: int) -> Iterator[tuple[str, BatchResult, bool]]:
        nonlocal chars, n
        while len(pending) > limit:
            i, h, item, fresh = pending.popleft()
            if item is None:  # the unit is complete: (re)write its cache file
                if cache is not None:
                    cache.save(units[i].shard, keep.pop(i, []))
                continue
            packed = item.get() if fresh and parallel else item
            try:
                batch = unpack(packed)
            except UNPICKLING_ERRORS as exc:  # fresh results always unpickle; cached ones may not
                if fresh:
                    raise
                raise _CacheDamaged(f"{type(exc).__name__}: {exc}") from None
            if i in rewrite:
                keep[i].append((h, len(batch.docs["unit"]), packed))
            chars, n = chars + sum(batch.docs["chars"]), n + len(batch.docs["chars"])
            bar.update(task, info=f"{n:,} documents, {chars / 1e6:,.1f} MB")
            yield h, batch, fresh

    with _progress(progress) as bar:
        task = bar.add_task("preprocessing documents", info="")
        for i, u in enumerate(units):
            if i in ahead:
                entries = iter(ahead.pop(i))
            else:
                # Loaded in turn and not held after: a cached shard's bytes (or mapping) go once its
                # batches have been written to the data set.
                cached = cache.load(u.shard) if cache is not None and u.shard is not None else None
                if cached is not None and cached.current:
                    for h, _, packed in cached.batches:
                        pending.append((i, h, packed, False))
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


def _read_ahead(units: list[_Unit], cache: DocCache | None, batches_of) -> dict[int, list]:
    """A nightly run's changed shards (an appended log, a new file: the end of the stream) read and
    their new batches handed to the pool before the cached shards stream, so that the workers are
    done with them by the time the stream gets there. Only after a cached stretch (a cold run just
    streams) and up to READ_AHEAD_CHARS of stored bytes: what is read ahead waits in memory."""
    ahead: dict[int, list] = {}
    budget, after_cached = READ_AHEAD_CHARS, False
    for i, u in enumerate(units):
        after_cached = after_cached or u.current
        if u.current or not after_cached or u.shard is None or u.size > budget:
            continue
        budget -= u.size
        ahead[i] = list(batches_of(u, cache.load(u.shard) if cache is not None else None))
    return ahead


# --------------------------------------------------------------------------- the stage: the data set


@dataclass
class _Corpus:
    """What the corpus-wide steps need once every batch's rows are written: no texts, only
    per-document times, candidate terms and wiki links, per-batch hashes, counts and decisions."""

    when: list[float] = field(default_factory=list)  # per document (nan: unknown)
    terms: list = field(default_factory=list)  # Arrow string chunks: each document's "\n"-joined terms
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
        terms = batch.docs["terms"]
        if held.any():
            terms = pc.if_else(pa.array(held), pa.scalar("", terms.type), terms)
        self.terms.append(terms)
        self._loose_terms += 1
        if self._loose_terms >= 64:  # copied out of the batches (a cached batch's views hold its file), 64 at a time
            self.terms[-64:] = [pa.concat_arrays(self.terms[-64:])]
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


DEFER_MAX_SAMPLES = 50_000  # new samples after a reused prefix held back to be checked against it at once


def _stream_corpus(
    cfg: Config,
    units: list[_Unit],
    cache: DocCache | None,
    progress: bool | None,
    pool,
    corpus: _Corpus,
    full: bool = False,
) -> Iterator[tuple[BatchResult, np.ndarray]]:
    """Every batch with its dedup decision (which samples to keep), in stream order, as soon as it
    is decided; what the corpus-wide steps need is recorded in `corpus` on the way. The first
    occurrence of a passage is the one kept (the stream order is stable: config order of sources,
    sorted files).

    Dedup decisions depend only on the stream up to a sample, so while the batches are the ones the
    last run saw, in the same order (a hash chain over their hashes and the settings), that run's
    decisions are reused. The rest (a nightly run: the few new batches, at the end) is held back and
    deduplicated against the kept samples of that prefix at once (`near_duplicates_of`: the few new
    signatures are indexed, not the many old ones). When more than DEFER_MAX_SAMPLES are held back
    (an early file changed), the prefix goes into the index instead and the rest streams. Without a
    reusable prefix (a cold run), batches are deduplicated as they stream in.
    """
    pcfg = cfg.preprocess
    previous = _load_dedup_state(cfg) if cache is not None and not full else {}
    window = pcfg.dedup_window
    dedup = Deduper(pcfg.dedup_threshold, window)
    chain = hashlib.sha256(f"dedup {pcfg.dedup_threshold} {window} {cache.settings_key if cache else ''}".encode())
    prefix_keys: list[bytes] = []
    prefix_sigs: deque = deque(maxlen=window or None)  # the prefix's kept signatures (the last `window`)
    prefix_indexed = 0  # how many the prefix kept in all
    reusing = True
    deferred: list[tuple[str, BatchResult]] = []  # (link, batch) after a reused prefix
    held_back = 0

    def decided(link: str, batch: BatchResult, keep: np.ndarray, counts: tuple[int, int]):
        corpus.dedup_state[link] = (len(keep), np.packbits(keep), counts)
        batch.samples["sig"] = batch.samples["key"] = None  # done with (a tenth of a batch's memory)
        return batch, keep

    def sequential(link: str, batch: BatchResult, near: dict[int, int] | None = None, first: int = 0):
        def near_prefix(j: int) -> bool:
            """A near duplicate of a prefix sample still in the window (the deferred ones indexed
            so far came after it)."""
            at = near.get(first + j) if near else None
            return at is not None and (not window or at >= prefix_indexed + dedup.indexed - window)

        exact, near_n = dedup.counts["exact_duplicates"], dedup.counts["near_duplicates"]
        keep = dedup.check_batch(batch.samples["key"], batch.samples["sig"], near_prefix if near else None)
        counts = (dedup.counts["exact_duplicates"] - exact, dedup.counts["near_duplicates"] - near_n)
        return decided(link, batch, keep, counts)

    def release_deferred(stream_on: bool):
        """Decide the held-back batches against the prefix; `stream_on`: index the prefix, so
        that later batches are decided as they come."""
        nonlocal prefix_keys, held_back
        if stream_on:
            dedup.remember(prefix_keys, list(prefix_sigs))
            near: dict[int, int] = {}
            prefix_sigs.clear()
        else:  # positions in the prefix as a whole, for the window
            first_kept = prefix_indexed - len(prefix_sigs)
            near = {
                j: first_kept + i
                for j, i in near_duplicates_of(
                    list(prefix_sigs), [s for _, b in deferred for s in b.samples["sig"]], pcfg.dedup_threshold
                ).items()
            }
            dedup.exact.update(prefix_keys)
        prefix_keys = []
        first = 0
        while deferred:
            link, batch = deferred.pop(0)
            yield sequential(link, batch, near, first)
            first += len(batch)
        held_back = 0

    for h, batch, fresh in _process_all(cfg, units, cache, pool, progress):
        chain.update(h.encode() + b"\0")
        link = chain.hexdigest()
        stored = previous.get(link) if reusing and not fresh else None
        if stored is not None and stored[0] != len(batch):
            stored = None
        reusing = stored is not None
        corpus.add(h, batch, fresh)
        if stored is not None:
            keep = np.unpackbits(stored[1], count=len(batch)).astype(bool)
            prefix_keys.extend(compress(batch.samples["key"], keep))
            kept_sigs = [sig for sig in compress(batch.samples["sig"], keep) if sig is not None]
            prefix_sigs.extend(kept_sigs)
            prefix_indexed += len(kept_sigs)
            yield decided(link, batch, keep, tuple(stored[2]))
        elif prefix_keys:
            deferred.append((link, batch))  # decided below, against the prefix
            held_back += len(batch)
            if held_back > DEFER_MAX_SAMPLES:
                yield from release_deferred(stream_on=True)
        else:
            yield sequential(link, batch)
    if deferred:
        yield from release_deferred(stream_on=False)
    if not corpus.when:
        raise NothingToDo(f"no ingested documents: run `mothbrain ingest` first or check sources in {cfg.config_path}")
    exact = sum(c[0] for _, _, c in corpus.dedup_state.values())
    near_n = sum(c[1] for _, _, c in corpus.dedup_state.values())
    corpus.filtered.update({k: v for k, v in (("exact_duplicates", exact), ("near_duplicates", near_n)) if v})


def _dedup_state_path(cfg: Config) -> Path:
    return cache_dir(cfg) / DEDUP_STATE


def _load_dedup_state(cfg: Config) -> dict:
    try:
        with _dedup_state_path(cfg).open("rb") as fh:
            state = pickle.load(fh)
        return state if isinstance(state, dict) else {}
    except Exception:  # noqa: BLE001 - missing or damaged: every decision is made again
        return {}


def _settings_hash(cfg: Config) -> str:
    settings = _data_settings(cfg)
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _mining_state_path(cfg: Config) -> Path:
    return cache_dir(cfg) / MINING_STATE


def _concept_pairs(
    cfg: Config, corpus: _Corpus, recent_doc: np.ndarray, now: float, pool, use_state: bool, full: bool
) -> tuple[list[Pair], dict[str, Any]]:
    """Link pairs (always from the current pages) and mined co-occurrence pairs, chosen within the
    budget; and the mining state to keep (the pairs, when, and the batches they were mined from).

    Mining is a corpus-wide statistic (a second or two on a large archive): a run whose documents
    differ from those of the last mining (added, changed or removed, counted by batch) by at most
    REMINE_SHARE of the corpus, within REMINE_AFTER_DAYS and with the same settings, reuses the
    mined pairs (their `recent` flags recomputed); `full` (the weekly run) always mines again.
    """
    pcfg = cfg.preprocess
    pages = [
        SimpleNamespace(kind="wiki", title=title, doc_id=doc_id, links=links, recent=bool(recent_doc[i]))
        for i, title, doc_id, links in corpus.pages
    ]
    links = link_pairs(pages)
    n_docs = len(recent_doc)
    settings = _settings_hash(cfg)
    now_batches = dict(corpus.batches)
    mined: list[Pair] | None = None
    if use_state and not full:
        try:
            state = json.loads(_mining_state_path(cfg).read_text(encoding="utf-8"))
            then = {str(h): int(n) for h, n in state["batches"].items()}
            # A grown batch (an appended log) is both gone and new: count the larger side, not both.
            drift = max(
                sum(n for h, n in now_batches.items() if h not in then),
                sum(n for h, n in then.items() if h not in now_batches),
            )
            age = now - float(state["mined_at"])
            if (
                state.get("settings") == settings
                and 0 <= age < REMINE_AFTER_DAYS * DAY
                and drift <= REMINE_SHARE * n_docs
            ):
                mined = _recent_again(
                    [
                        Pair(str(a), str(b), float(score), int(docs), False, "cooccurrence")
                        for a, b, score, docs in state["pairs"]
                    ],
                    corpus,
                    recent_doc,
                )
                info = {"mined": False, "mined_at": float(state["mined_at"]), "documents_changed_since": drift}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):  # missing or damaged: mine again
            mined = None
    if mined is None:
        # A large corpus counts its pairs on the pool, one share of the pair codes per process.
        parallel = n_docs >= PARALLEL_PAIRS_AFTER_DOCS and _workers(cfg) > 1
        mined = mine_pairs(
            TermTable.from_arrow(corpus.terms, recent_doc),
            pcfg,
            limit=pcfg.association_pairs + len(links),
            map_fn=pool().map if parallel else map,
            shares=_workers(cfg) if parallel else 1,
        )
        state = {
            "settings": settings,
            "mined_at": now,
            "documents": n_docs,
            "batches": now_batches,
            "pairs": [[p.a, p.b, p.score, p.docs] for p in mined],
        }
        info = {"mined": True, "mined_at": now, "documents_changed_since": 0}
    else:
        state = None  # unchanged: the last mining's state stands
    info["mined_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(info["mined_at"]))
    return choose_pairs(links, mined, pcfg.association_pairs), {"state": state, "info": info}


def _recent_again(pairs: list[Pair], corpus: _Corpus, recent_doc: np.ndarray) -> list[Pair]:
    """Reused pairs are recent when both their concepts (or their singular/plural forms, which
    mining merges) are among one recent document's candidate terms: close to, not exactly, what
    mining decides (it also keeps only a document's 24 rarest terms)."""

    def forms(t: str) -> set[str]:
        return {t, t + "s", t[:-1]} if t.endswith("s") and " " not in t else {t, t + "s"}

    import pyarrow as pa

    wanted = {f: t for p in pairs for t in (p.a, p.b) for f in forms(t)}
    where: dict[str, set[int]] = defaultdict(set)
    recent = np.flatnonzero(recent_doc)
    terms = pa.chunked_array(corpus.terms, pa.string()).take(pa.array(recent)).to_pylist()  # (one conversion)
    for j, joined in zip(recent.tolist(), terms):
        for f in wanted.keys() & set((joined or "").split("\n")):
            where[wanted[f]].add(j)
    return [replace(p, recent=bool(where.get(p.a, set()) & where.get(p.b, set()))) for p in pairs]


class _Assembler:
    """The splits, written batch by batch as their dedup decisions come (rows in stream order, a
    weighted sample's copies side by side: the trainer shuffles), with the composition counted on
    the way. Association samples are added last, once the pairs are chosen.

    The document-level split: a document's hash decides. On a tiny corpus that hash can put every
    document on one side; `heldout_docs` then moves one. So batches are held back until both sides
    have a document (the first few batches of any real archive), and only a corpus that never gets
    there is split by the fallback at the end.
    """

    def __init__(self, cfg: Config, writer: DatasetWriter, cutoff: float):
        self.cfg, self.writer, self.cutoff = cfg, writer, cutoff
        self.pcfg = cfg.preprocess
        self.weight_of = {s.name: s.weight for s in cfg.sources}
        self.names: list[str] = []  # source names, coded in order of appearance
        self.types: list[str] = []
        self.by_source: dict[str, np.ndarray] = {}  # name → [train, heldout, tokens]
        self.by_type: dict[str, np.ndarray] = {}
        self.priority = {p.name: np.zeros(3, dtype=np.int64) for p in self.pcfg.priority_concepts}
        self.documents = self.heldout_documents = 0
        self.waiting: list[tuple[BatchResult, np.ndarray]] = []  # until both sides of the split have a document
        self.sides = [False, False]  # seen: a train document, a held-out one
        self.count, self.token_unit = _token_counter(cfg)
        self.schema = _features().arrow_schema

    @staticmethod
    def _codes(values: list[str], labels: list[str]) -> np.ndarray:
        code = {n: i for i, n in enumerate(labels)}
        for v in values:
            if v not in code:
                code[v] = len(labels)
                labels.append(v)
        return np.fromiter(map(code.__getitem__, values), dtype=np.int32, count=len(values))

    def add(self, batch: BatchResult, keep: np.ndarray) -> None:
        if self.waiting is None:
            self._documents(batch, keep, None)
            return
        self.waiting.append((batch, keep))
        if self.pcfg.heldout_fraction > 0:
            for u in batch.docs["unit"]:
                self.sides[u < self.pcfg.heldout_fraction] = True
            if not all(self.sides):
                return
        self._flush_waiting(None)

    def _flush_waiting(self, held: set | None) -> None:
        waiting, self.waiting = self.waiting or [], None
        for batch, keep in waiting:
            self._documents(batch, keep, held)

    def finish_documents(self) -> None:
        """The held-back batches of a corpus whose hashes never gave both sides: heldout_docs' fallback."""
        if not self.waiting:
            self.waiting = None
            return
        units = {
            (s, d): u
            for batch, _ in self.waiting
            for s, d, u in zip(batch.docs["source"], batch.docs["doc_id"], batch.docs["unit"])
        }
        self._flush_waiting(heldout_docs(units, self.pcfg.heldout_fraction, units))

    def _documents(self, batch: BatchResult, keep: np.ndarray, held_keys: set | None) -> None:
        docs, samples = batch.docs, batch.samples
        unit = np.asarray(docs["unit"], dtype=np.float64)
        if held_keys is None:
            held_doc = unit < self.pcfg.heldout_fraction
        else:
            held_doc = np.fromiter(
                ((s, d) in held_keys for s, d in zip(docs["source"], docs["doc_id"])), dtype=bool, count=len(unit)
            )
        self.documents += len(unit)
        self.heldout_documents += int(held_doc.sum())
        recent_doc = np.asarray(docs["when"], dtype=np.float64) >= self.cutoff  # nan: never recent
        doc_of = np.asarray(samples["doc"], dtype=np.int64)
        n_of = np.asarray(samples["n"], dtype=np.int64)
        src = self._codes(docs["source"], self.names)[doc_of]
        source, raw_id = docs["source"], docs["doc_id"]
        self._rows(
            prompt=samples["prompt"],
            completion=samples["completion"],
            doc_id=samples["doc_id"],
            concepts=samples["concepts"],
            src=src,
            typ=self._codes(samples["sample_type"], self.types),
            tokens=np.asarray(samples["tokens"], dtype=np.int64),
            recent=recent_doc[doc_of],
            held=held_doc[doc_of],
            keep=keep,
            order=lambda i: (source[doc_of[i]], raw_id[doc_of[i]], int(n_of[i])),
        )

    def add_associations(self, assoc: list[Sample], held_pairs: set[tuple[str, str]]) -> None:
        import pyarrow as pa

        tokens = [
            n
            for i in range(0, len(assoc), 1024)
            for n in self.count([s.prompt + s.completion for s in assoc[i : i + 1024]])
        ]
        held_ids = {f"pair:{a}|{b}" for a, b in held_pairs}
        self._rows(
            prompt=pa.array([s.prompt for s in assoc], pa.string()),
            completion=pa.array([s.completion for s in assoc], pa.string()),
            doc_id=pa.array([s.doc_id for s in assoc], pa.string()),
            concepts=pa.array([s.concepts for s in assoc], pa.list_(pa.string())),
            src=self._codes([ASSOCIATION_SOURCE] * len(assoc), self.names),
            typ=self._codes(["association"] * len(assoc), self.types),
            tokens=np.asarray(tokens, dtype=np.int64),
            recent=np.array([s.recent for s in assoc], dtype=bool),
            held=np.array([s.doc_id in held_ids for s in assoc], dtype=bool),
            keep=np.ones(len(assoc), dtype=bool),
            order=lambda i: assoc[i].order,
        )

    def _rows(
        self,
        *,
        prompt,
        completion,
        doc_id,
        concepts,
        src: np.ndarray,
        typ: np.ndarray,
        tokens: np.ndarray,
        recent: np.ndarray,
        held: np.ndarray,
        keep: np.ndarray,
        order,
    ) -> None:
        """One batch's rows into the splits. Source weights on the train split: floor(w) copies,
        one more with probability frac(w) (a stable hash of the sample's order key)."""
        import pyarrow as pa
        import pyarrow.compute as pc

        if not len(keep):
            return
        weight = np.array([self.weight_of.get(n, 1.0) for n in self.names])[src]
        reps = np.floor(weight).astype(np.int64)
        for i in np.flatnonzero(keep & ~held & (weight != np.floor(weight))).tolist():
            reps[i] = repeats(float(weight[i]), f"{self.pcfg.seed}|{self.names[src[i]]}|{order(i)}")
        train_rows = np.flatnonzero(keep & ~held)
        train_idx = np.repeat(train_rows, reps[train_rows])
        held_idx = np.flatnonzero(keep & held)

        copies = np.bincount(train_idx, minlength=len(keep))
        held_mask = (keep & held).astype(np.int64)
        for codes, labels, into in ((src, self.names, self.by_source), (typ, self.types, self.by_type)):
            counts = np.stack(
                [
                    np.bincount(codes, weights=copies, minlength=len(labels)),
                    np.bincount(codes, weights=held_mask, minlength=len(labels)),
                    np.bincount(codes, weights=copies * tokens, minlength=len(labels)),
                ]
            ).astype(np.int64)
            for i in np.flatnonzero(counts[0] + counts[1]).tolist():
                into[labels[i]] = into.get(labels[i], 0) + counts[:, i]
        if self.priority and len(concepts):
            parents = np.asarray(pc.list_parent_indices(concepts))
            values = pc.list_flatten(concepts)
            for name, row in self.priority.items():
                rows = parents[np.asarray(pc.equal(values, name).fill_null(False))]
                row += [copies[rows].sum(), held_mask[rows].sum(), (copies[rows] * tokens[rows]).sum()]

        names, types = pa.array(self.names, pa.string()), pa.array(self.types, pa.string())
        for split, idx in (("train", train_idx), ("heldout", held_idx)):
            if len(idx):
                rows = pa.array(idx)
                columns = {
                    "prompt": prompt.take(rows),
                    "completion": completion.take(rows),
                    "doc_id": doc_id.take(rows),
                    "concepts": concepts.take(rows),
                    "source": names.take(pa.array(src[idx])),
                    "sample_type": types.take(pa.array(typ[idx])),
                    "recent": pa.array(recent[idx], pa.bool_()),
                }
                self.writer.write(split, pa.table([columns[name] for name in self.schema.names], schema=self.schema))

    def summary(self) -> tuple[dict, dict, list[str]]:
        """(composition, priority concepts, warnings for concepts under their minimum)."""

        def table(counts: dict[str, np.ndarray]) -> dict[str, dict[str, Any]]:
            return {
                k: {"train": int(v[0]), "heldout": int(v[1]), "tokens": int(v[2])} for k, v in sorted(counts.items())
            }

        by_source = table(self.by_source)
        for name, row in by_source.items():
            row["weight"] = float(self.weight_of.get(name, 1.0))
        composition = {
            "token_unit": self.token_unit,
            "by_source": by_source,
            "by_type": table(self.by_type),
            "total_tokens": int(sum(v[2] for v in self.by_source.values())),
        }
        priority, warnings = {}, []
        for pc_ in self.pcfg.priority_concepts:
            train, heldout, tokens = (int(x) for x in self.priority[pc_.name])
            ok = train >= pc_.min_samples
            priority[pc_.name] = {
                "train": train,
                "heldout": heldout,
                "tokens": tokens,
                "min_samples": pc_.min_samples,
                "ok": ok,
            }
            if not ok:
                warnings.append(
                    f"priority concept '{pc_.name}' is in {train} training samples, under its "
                    f"minimum of {pc_.min_samples}: add material that mentions it, or aliases in "
                    "preprocess.priority_concepts"
                )
        return composition, priority, warnings


class _Laps:
    """Seconds per phase of the stage, for the report (where the time goes on a large archive)."""

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self._t = time.perf_counter()

    def __call__(self, phase: str) -> None:
        now = time.perf_counter()
        self.seconds[phase] = round(now - self._t, 3)
        self._t = now


def _voice_warnings(cfg: Config, voices: dict[str, list]) -> list[str]:
    """A source with turns but no voice turn at all is almost always a voice_roles mistake."""
    turns = {k: v[0] for k, v in voices.items()}
    voice = {k: v[1] for k, v in voices.items()}
    seen = {k: v[2] for k, v in voices.items()}
    sources = {s.name: s for s in cfg.sources}
    out = []
    for name in sorted(turns):
        if not voice[name]:
            roles = sorted(voice_roles(cfg, sources.get(name)))
            common = ", ".join(s for s, _ in seen[name].most_common(6))
            out.append(
                f"source '{name}' has no turns by a voice role {roles} (speakers seen: {common}): set "
                f"voice_roles on the source (or preprocess.voice_roles)"
            )
    return out


def _data_settings(cfg: Config) -> dict[str, Any]:
    """The preprocess settings the data depends on (workers: the same data either way)."""
    return {k: v for k, v in to_dict(cfg.preprocess).items() if k != "workers"}


def _hash_settings(cfg: Config) -> dict[str, Any]:
    return {"schema": DATASET_SCHEMA, "preprocess": _data_settings(cfg)}


def fingerprint(tables: dict[str, Any], cfg: Config) -> str:
    """The data set's fingerprint from whole tables: what the writer computes as the rows stream
    (a 128-bit hash of both splits' columns and the preprocess settings, short hex)."""
    return dataset_fingerprint(tables, _hash_settings(cfg))


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
            except _CacheDamaged as exc:
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


def _input_key(cfg: Config, since: float, stored: str, now: float) -> str:
    """What the data set is a function of: the stored documents, the settings, and the day (what
    counts as recent moves with the date, so an unchanged archive is reprocessed once a day)."""
    settings = _data_settings(cfg)
    data = {
        "schema": DATASET_SCHEMA,
        "stored": stored,
        "preprocess": settings,
        "since_days": since,
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
    now = time.time()
    since = cfg.ingest.since_days if since_days is None else since_days
    input_key = ""
    cache = None
    if documents is None:
        from mothbrain.ingest.stage import stored_state

        state, _ = stored_state(cfg)
        if state:
            input_key = _input_key(cfg, since, state, now)
            if not force and not full and (done := _reuse(cfg, input_key, t0)) is not None:
                return done
        cache = DocCache(cfg, DATASET_SCHEMA, _tokenizer_identity(cfg), enabled=not full)
        units = _stored_units(cfg, cache)
    else:
        docs = documents if isinstance(documents, (list, tuple)) else list(documents)
        size = sum(len(d.text or "") + sum(len(t.text or "") for t in d.turns or []) for d in docs)
        units = [_Unit(items=lambda: docs, size=size)]
    lap = _Laps()
    writer = DatasetWriter(paths.datasets_dir(cfg), _hash_settings(cfg))
    try:
        return _build(cfg, units, cache, progress, full, writer, lap, now, since, input_key, t0)
    finally:
        writer.abort()  # after a failure: the temp folder goes (after a success there is nothing left)


def _build(
    cfg: Config,
    units: list[_Unit],
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
    corpus = _Corpus(heldout_fraction=cfg.preprocess.heldout_fraction)
    rows = _Assembler(cfg, writer, cutoff=now - since * DAY)
    with _lazy_pool(cfg) as pool:  # one pool for the documents and the pair counting
        for batch, keep in _stream_corpus(cfg, units, cache, progress, pool, corpus, full):
            rows.add(batch, keep)
        rows.finish_documents()
        lap("documents")
        recent_doc = np.array(corpus.when, dtype=np.float64) >= now - since * DAY  # nan: never recent
        pairs, mining = _concept_pairs(cfg, corpus, recent_doc, now, pool, use_state=cache is not None, full=full)
    lap("concept_pairs")
    held_pairs = heldout_pairs(pairs, cfg.preprocess.heldout_pairs, rows.documents)
    rows.add_associations(association_samples(pairs, cfg.preprocess, ConceptMatcher(cfg.preprocess)), held_pairs)
    composition, priority, warnings = rows.summary()
    warnings = _voice_warnings(cfg, corpus.voices) + warnings
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
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(now)),
        "since_days": since,
        "samples": dict(writer.rows),
        "composition": composition,
        "priority_concepts": priority,
        "warnings": warnings,
        "preprocess_config": to_dict(cfg.preprocess),
        "source_weights": {s.name: s.weight for s in cfg.sources},
        "documents": rows.documents,
        "heldout_documents": rows.heldout_documents,
        "heldout_pairs": sorted([a, b] for a, b in held_pairs),
        "input_chars": input_chars,
        "documents_processed": fresh_docs,  # the rest came from the document cache
        "redacted": redacted,
        "filtered": filtered,
        "concept_pairs": [[p.a, p.b, p.score] for p in pairs],
        "concept_pair_details": [
            {"a": p.a, "b": p.b, "score": p.score, "documents": p.docs, "origin": p.origin, "recent": p.recent}
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
                write_json_atomically(_mining_state_path(cfg), mining["state"])
        except OSError as exc:
            log.warning(
                "cannot write %s (%s); the next run mines the concept pairs again",
                _mining_state_path(cfg),
                exc.strerror or exc,
            )
        try:
            write_atomically(_dedup_state_path(cfg), pickle.dumps(dedup_state, protocol=5))
        except OSError as exc:
            log.warning(
                "cannot write %s (%s); the next run makes every dedup decision again",
                _dedup_state_path(cfg),
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
    )


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
        # of `cache-*.arrow` files written into the fingerprinted data set folder (18 -> 194 MB seen).
        dd = datasets.load_from_disk(str(folder), keep_in_memory=True)
    except (OSError, ValueError) as exc:
        raise MothError(
            f"data set {folder} is missing or damaged ({str(exc).splitlines()[0][:160]}); "
            "run `mothbrain preprocess` to rebuild it"
        ) from None
    return dd, meta

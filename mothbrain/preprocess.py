"""Preprocess: ingested documents → a voice-and-association data set, saved once per fingerprint.

    mothbrain preprocess            # builds data/datasets/<fingerprint>/ and points latest.json at it
    mothbrain preprocess --full     # ... processing every document again and mining the pairs again

When the stored documents and the settings are those of today's latest data set, it is reused
without reading anything (`--force` rebuilds). Otherwise, top to bottom (`run_preprocess` at the end):
  1. per stored shard (one source file's documents), in stream order (config order of sources,
     sorted files): its results from the document cache (mothbrain.doc_cache) when the shard and
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
  2. exact and near-duplicate removal (mothbrain.dedup) in stream order, the first occurrence kept;
     the last run's decisions are reused for the shards before the first change.
  3. association samples (mining in mothbrain.concepts): concept pairs from wiki links (page ↔
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
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import partial
from itertools import chain, compress, islice
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterable, Iterator

import numpy as np

from . import paths
from .atomic import replace_folder, write_atomically
from .config import Config, PreprocessConfig, SourceConfig, to_dict
from .dedup import Deduper, near_duplicates_of, text_key
from .doc_cache import UNPICKLING_ERRORS, CachedShard, DocCache, batch_hash, cache_dir, pack, unpack
from .errors import MothError, NothingToDo
from .filters import TOOL_TURNS, apply_filters, is_tool_turn
from .records import Document, Turn
from .concepts import (ConceptMatcher, Pair, TermTable, choose_pairs, frequent_terms, link_pairs, mine_pairs,
                       novel_sentences)
from .redact import redact, redact_many

log = logging.getLogger(__name__)

DATASET_SCHEMA = 1  # bump when the columns or the sample format change (changes every fingerprint)
META_NAME = "mothbrain.json"
LATEST_NAME = "latest.json"
ASSOCIATION_SOURCE = "associations"  # the `source` of association samples
DAY = 86400.0
PARALLEL_AFTER_CHARS = 500_000  # stored bytes to read before a worker pool is worth starting (if > 1 core)
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
                rows.append({"group": group, "name": name, "weight": c.get("weight"), "train": c["train"],
                             "heldout": c["heldout"], unit: c["tokens"]})
        for name, c in self.priority.items():
            rows.append({"group": "priority", "name": name, "train": c["train"], "heldout": c["heldout"],
                         unit: c["tokens"], "note": f"min {c['min_samples']}" + ("" if c["ok"] else " UNDER")})
        for name, n in sorted(self.filtered.items()):
            rows.append({"group": "filtered", "name": name, "count": n})
        for name, n in sorted(self.redacted.items()):
            rows.append({"group": "redacted", "name": name, "count": n})
        rows.append({"group": "total", "name": f"{self.documents} documents", "train": self.samples["train"],
                     "heldout": self.samples["heldout"], unit: self.composition["total_tokens"],
                     "note": f"{self.heldout_documents} held out, {self.concept_pairs} concept pairs"})
        cached = "" if self.reused else f", {self.documents - self.documents_processed} documents from the cache"
        mining = self.concept_mining
        if mining and not mining.get("mined"):
            cached += f", concept pairs as mined {mining.get('mined_at', '')[:10]}"
        rows.append({"group": "dataset", "name": self.fingerprint,
                     "note": ("unchanged, " if self.reused else "")
                     + f"{self.input_chars / 1e6:.1f} MB in {self.seconds:.1f}s" + cached})
        return rows

    def to_json(self) -> dict[str, Any]:
        return {"title": self.title, "fingerprint": self.fingerprint, "path": self.path, "reused": self.reused,
                "documents": self.documents, "heldout_documents": self.heldout_documents,
                "samples": self.samples, "composition": self.composition, "priority_concepts": self.priority,
                "filtered": self.filtered, "redacted": self.redacted, "concept_pairs": self.concept_pairs,
                "input_mb": round(self.input_chars / 1e6, 3), "seconds": round(self.seconds, 3),
                "timings": self.timings, "documents_processed": self.documents_processed,
                "concept_mining": self.concept_mining, "warnings": self.warnings}


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


COLUMNS = ("prompt", "completion", "source", "sample_type", "doc_id", "concepts", "recent")


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
        docs={"source": [r.source for r in results], "doc_id": [r.doc_id for r in results],
              "when": [math.nan if r.when is None else r.when for r in results], "unit": [r.unit for r in results],
              "chars": [r.chars for r in results], "terms": pa.array([r.terms for r in results], pa.string())},
        samples={"doc": np.array([i for i, r in enumerate(results) for _ in r.samples], dtype=np.int32),
                 "n": np.array([s.order[2] for s in samples], dtype=np.int32),
                 "sample_type": [s.sample_type for s in samples],
                 "tokens": np.array([s.tokens for s in samples], dtype=np.int64),
                 "key": [s.dedup_key for s in samples], "sig": [s.signature for s in samples],
                 "prompt": pa.array([s.prompt for s in samples], pa.string()),
                 "completion": pa.array([s.completion for s in samples], pa.string()),
                 "doc_id": pa.array([s.doc_id for s in samples], pa.string()),
                 "concepts": pa.array([s.concepts for s in samples], pa.list_(pa.string()))},
        wiki=[(i, r.title, r.links) for i, r in enumerate(results) if r.kind == "wiki"],
        redacted=dict(redacted), filtered=dict(filtered),
        voices={k: [a, b, dict(c)] for k, (a, b, c) in voices.items()})


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

def voice_roles(cfg: Config, source: SourceConfig | None) -> set[str]:
    """Whose turns are the voice: the source's voice_roles, else preprocess.voice_roles (lower case)."""
    roles = source.voice_roles if source and source.voice_roles else cfg.preprocess.voice_roles
    return {r.strip().lower() for r in roles if r.strip()}


def _speaker(turn: Turn) -> str:
    if turn.speaker.strip():
        return turn.speaker.strip()
    role = turn.role.strip() or "Someone"
    return role[:1].upper() + role[1:]


def _is_voice(turn: Turn, roles: set[str]) -> bool:
    return turn.role.strip().lower() in roles or turn.speaker.strip().lower() in roles


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
            while len(sent) > max_chars:
                cut = sent.rfind(" ", 0, max_chars)
                cut = cut if cut > max_chars // 2 else max_chars
                pieces.append(sent[:cut].strip())
                sent = sent[cut:].strip()
            if sent:
                pieces.append(sent)
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
    return "…" + text[cut + 1 if 0 <= cut < len(text) - 1 else len(text) - limit:]


def _voice_samples(doc: Document, doc_id: str, roles: set[str], clean: _Cleaner, pcfg: PreprocessConfig,
                   names: list[str]) -> tuple[list[Sample], list[str]]:
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
            turns.append((clean.name(speaker), _is_voice(t, roles), text))
    samples: list[Sample] = []
    k = max(0, pcfg.context_turns)
    lines = [f"{n}: {_tail(tx, pcfg.max_chars)}\n" for n, _, tx in turns] if k else []  # each turn as context
    for i, (name, voice, text) in enumerate(turns):
        if not voice:
            continue
        context = lines[max(0, i - k):i]
        for chunk in split_to_chunks(text, pcfg.max_chars):
            samples.append(Sample(prompt="".join(context) + f"{name}:", completion=" " + chunk, source=doc.source,
                                  sample_type="voice", doc_id=doc_id, order=(doc.source, doc.doc_id, len(samples))))
            if k:  # the earlier part of a long turn becomes context for the next part
                context = (context + [f"{name}: {_tail(chunk, pcfg.max_chars)}\n"])[-k:]
    return samples, [tx for _, voice, tx in turns if voice]


_HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t#]*$")


def _text_samples(doc: Document, doc_id: str, title: str, clean: _Cleaner, pcfg: PreprocessConfig) -> tuple[list[Sample], str]:
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
            samples.append(Sample(prompt=head + (prev + "\n\n" if prev else ""), completion=chunk, source=doc.source,
                                  sample_type="text", doc_id=doc_id, order=(doc.source, doc.doc_id, len(samples))))
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
    turns = [Turn(role=str(t.role or ""), text=str(t.text or ""), speaker=str(t.speaker or "")) for t in doc.turns or []]
    return Document(source=doc.source, kind=doc.kind, doc_id=str(doc.doc_id or ""), title=str(doc.title or ""),
                    turns=turns, text=str(doc.text or ""), links=[str(x) for x in doc.links or [] if x],
                    meta=doc.meta if isinstance(doc.meta, dict) else {}, timestamp=_number(doc.timestamp))


def _number(value: Any) -> float | None:
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def process_document(doc: Document, cfg: Config, source: SourceConfig | None, seen_sentences: set[str] | None = None,
                     matcher: ConceptMatcher | None = None, count_tokens=None) -> DocResult:
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
    names = [_speaker(t) for t in doc.turns]
    clean.prepare([raw_title, doc.doc_id, doc.text, *(t.text for t in doc.turns),
                   *set(names), *(doc.links if doc.kind == "wiki" else [])])
    title = clean.redact(raw_title)
    shown_id = clean.redact(doc.doc_id)
    roles = voice_roles(cfg, source)
    voice_turns = sum(_is_voice(t, roles) for t in doc.turns)
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
    return DocResult(source=doc.source, doc_id=doc.doc_id, kind=doc.kind, when=when, samples=kept,
                     redacted=dict(clean.redacted), filtered=dict(clean.filtered),
                     terms="\n".join(frequent_terms(novel_sentences(mined, seen_sentences))),
                     title=title if doc.kind == "wiki" else "",
                     links=[clean.redact(x) for x in doc.links] if doc.kind == "wiki" else [],
                     chars=len(doc.text) + sum(len(t.text) for t in doc.turns), voice_turns=voice_turns, unit=unit,
                     speakers=frozenset(map(clean.name, names[:50])))


# --------------------------------------------------------------------------- association samples


def association_samples(pairs: list[Pair], pcfg: PreprocessConfig, matcher: ConceptMatcher) -> list[Sample]:
    """Each pair in both directions, each direction with one template chosen by a stable hash."""
    templates = pcfg.association_templates or ["{a} reminds me of"]
    samples = []
    for p in pairs:
        doc_id = f"pair:{p.a}|{p.b}"
        for x, y in ((p.a, p.b), (p.b, p.a)):
            t = templates[_hash_int(f"{pcfg.seed}|{x}|{y}") % len(templates)]
            prompt = t.format(a=x)
            samples.append(Sample(prompt=prompt, completion=" " + y, source=ASSOCIATION_SOURCE,
                                  sample_type="association", doc_id=doc_id, recent=p.recent,
                                  concepts=matcher.match(prompt + " " + y, (x, y)),
                                  order=(ASSOCIATION_SOURCE, doc_id, x)))
    return samples


# --------------------------------------------------------------------------- split, weights, tokens


def _hash_int(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")


def _unit(text: str) -> float:
    """A stable number in [0, 1) for `text`."""
    return _hash_int(text) / 2.0**64


def heldout_docs(keys: Iterable[tuple[str, str]], fraction: float,
                 units: dict[tuple[str, str], float] | None = None) -> set[tuple[str, str]]:
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
    from .tiny import base_model_location

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
        log.info("tokenizer unavailable (%s); token counts are chars/4", str(exc).splitlines()[0][:160] if str(exc) else exc)
    return (lambda texts: [max(1, round(len(t) / 4)) for t in texts]), "~tokens"


# --------------------------------------------------------------------------- the stage: documents


@dataclass
class _Unit:
    """A run of documents processed and cached together: one stored shard, or the caller's documents."""

    items: Any  # () -> iterable of stored lines or Documents
    size: int  # bytes or characters, to decide whether the worker pool is worth starting
    shard: Any = None  # ingest.StoredShard (None: not cached)
    cached: CachedShard | None = None  # what the document cache holds for it


def _stored_units(cfg: Config, cache: DocCache) -> list[_Unit]:
    """The stored shards in stream order, each with its cached results when they are still valid."""
    from .ingest import shard_lines, stored_shards

    if not (paths.ingest_dir(cfg) / "manifest.json").exists():
        raise NothingToDo(f"no ingested documents: run `mothbrain ingest` first or check sources in {cfg.config_path}")
    return [_Unit(items=partial(shard_lines, sh), size=sh.size, shard=sh, cached=cache.load(sh))
            for sh in stored_shards(cfg)]


def _progress(enabled: bool | None):
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    if enabled is None:
        enabled = sys.stderr.isatty()
    return Progress(SpinnerColumn(), TextColumn("{task.description}"), TextColumn("{task.fields[info]}"),
                    TimeElapsedColumn(), disable=not enabled, transient=True)


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
    from .ingest import decode_stored

    cfg, sources, matcher, count_tokens = _WORKER  # type: ignore[misc]
    seen: set[str] = set()
    docs = (d if isinstance(d, Document) else decode_stored(*d) for d in items)
    return _to_batch([process_document(d, cfg, sources.get(d.source), seen, matcher, count_tokens)
                      for d in docs if d is not None])


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


def _process_all(cfg: Config, units: list[_Unit], cache: DocCache | None, pool,
                 progress: bool | None) -> Iterator[tuple[str, BatchResult, bool]]:
    """(batch hash, results, fresh) for every batch of BATCH_DOCS documents, in stream order.

    A shard the cache holds as it is comes from the cache without being read. Any other is read
    and each batch hashed: a batch the cache holds (an appended log's old batches) comes from the
    cache, the rest is processed, on the worker pool when the shards to read hold
    PARALLEL_AFTER_CHARS or more and there is more than one core; the shard's file is then
    rewritten. At most a few batches per worker wait in order, so memory stays bounded.
    """
    _init_worker(cfg)
    to_read = sum(u.size for u in units if u.cached is None or not u.cached.current)
    parallel = _workers(cfg) > 1 and to_read >= PARALLEL_AFTER_CHARS
    window = 4 * _workers(cfg)
    pending: deque = deque()  # in stream order: (unit, hash, packed or AsyncResult or None at a unit's end, fresh)
    keep: dict[int, list] = defaultdict(list)  # unit → its batches, for its cache file
    chars = n = 0
    if parallel:
        pool()  # forked before the progress bar starts its thread

    def settle(limit: int) -> Iterator[tuple[str, BatchResult, bool]]:
        nonlocal chars, n
        while len(pending) > limit:
            i, h, item, fresh = pending.popleft()
            if item is None:  # the unit is complete: (re)write its cache file
                if cache is not None and units[i].shard is not None:
                    cache.save(units[i].shard, keep.pop(i, []))
                continue
            packed = item.get() if fresh and parallel else item
            try:
                batch = unpack(packed)
            except UNPICKLING_ERRORS as exc:  # fresh results always unpickle; cached ones may not
                if fresh:
                    raise
                raise _CacheDamaged(f"{type(exc).__name__}: {exc}") from None
            keep[i].append((h, len(batch.docs["unit"]), packed))
            chars, n = chars + sum(batch.docs["chars"]), n + len(batch.docs["chars"])
            bar.update(task, info=f"{n:,} documents, {chars / 1e6:,.1f} MB")
            yield h, batch, fresh

    with _progress(progress) as bar:
        task = bar.add_task("preprocessing documents", info="")
        for i, u in enumerate(units):
            if u.cached is not None and u.cached.current:
                for h, _, packed in u.cached.batches:
                    pending.append((i, h, packed, False))
                    yield from settle(window)
                continue
            old = u.cached.by_hash() if u.cached is not None else {}
            items = iter(u.items())
            k = 0
            while True:
                batch = list(islice(items, BATCH_DOCS))
                if not batch and k:
                    break
                h = batch_hash(batch) if u.shard is not None else f"documents {k}"
                if h in old:
                    pending.append((i, h, old[h], False))
                elif parallel:
                    pending.append((i, h, pool().apply_async(_work, (batch,)), True))
                else:
                    pending.append((i, h, _work(batch), True))
                k += 1
                yield from settle(window)
                if not batch:
                    break
            if u.shard is not None:
                pending.append((i, "", None, False))
        yield from settle(0)


# --------------------------------------------------------------------------- the stage: the data set


@dataclass
class _Corpus:
    """Every batch joined: per-document arrays, and the samples that survived dedup."""

    batches: list[BatchResult]
    keep: list[np.ndarray]  # per batch: which of its samples survived dedup
    fresh_docs: int  # documents processed in this run (not from the cache)
    filtered: Counter
    redacted: Counter
    links: list[str] = field(default_factory=list)  # per batch: the hash chain of the batches up to it
    hashes: list[str] = field(default_factory=list)  # per batch: the hash of its stored lines
    dedup_state: dict = field(default_factory=dict)  # chain hash → (samples, keep bits, (exact, near))

    def doc_column(self, name: str) -> list:
        """A per-document column (source, doc_id, when, unit, chars) over all batches, in order."""
        return [x for b in self.batches for x in b.docs[name]]


def _read_corpus(cfg: Config, units: list[_Unit], cache: DocCache | None, progress: bool | None, pool,
                 full: bool = False) -> _Corpus:
    """Every document's results in stream order, deduplicated: the first occurrence of a passage is
    the one kept (the stream order is stable: config order of sources, sorted files).

    Dedup decisions depend only on the stream up to a sample, so while the batches are the ones the
    last run saw, in the same order (a hash chain over their hashes and the settings), that run's
    decisions are reused. The rest (a nightly run: the few new batches, at the end) is deduplicated
    against the kept samples of that prefix (`near_duplicates_of`) and among itself. Without a
    reusable prefix (a cold run), batches are deduplicated as they stream in.
    """
    pcfg = cfg.preprocess
    previous = _load_dedup_state(cfg) if cache is not None and not full else {}
    dedup = Deduper(pcfg.dedup_threshold)
    corpus = _Corpus([], [], 0, Counter(), Counter())
    chain = hashlib.sha256(f"dedup {pcfg.dedup_threshold} {cache.settings_key if cache else ''}".encode())
    dups: list[tuple[int, int]] = []  # per batch: (exact, near) duplicates dropped
    prefix_keys: list[bytes] = []
    prefix_sigs: list = []
    reusing = True
    deferred: list[int] = []  # batches after a reused prefix, deduplicated at the end

    def counted(before: dict) -> tuple[int, int]:
        return (dedup.counts["exact_duplicates"] - before["exact_duplicates"],
                dedup.counts["near_duplicates"] - before["near_duplicates"])

    for h, batch, fresh in _process_all(cfg, units, cache, pool, progress):
        chain.update(h.encode() + b"\0")
        link = chain.hexdigest()
        stored = previous.get(link) if reusing and not fresh else None
        if stored is not None and stored[0] != len(batch):
            stored = None
        reusing = stored is not None
        corpus.batches.append(batch)
        corpus.links.append(link)
        corpus.hashes.append(h)
        if fresh:
            corpus.fresh_docs += len(batch.docs["unit"])
        corpus.filtered.update(batch.filtered)
        corpus.redacted.update(batch.redacted)
        if stored is not None:
            keep = np.unpackbits(stored[1], count=len(batch)).astype(bool)
            prefix_keys.extend(compress(batch.samples["key"], keep))
            prefix_sigs.extend(sig for sig in compress(batch.samples["sig"], keep) if sig is not None)
            corpus.keep.append(keep)
            dups.append(tuple(stored[2]))
        elif prefix_keys:
            corpus.keep.append(None)  # decided below, against the prefix
            dups.append((0, 0))
            deferred.append(len(corpus.batches) - 1)
        else:
            before = dict(dedup.counts)
            corpus.keep.append(np.fromiter((dedup.check_key(k, s) is None for k, s in
                                            zip(batch.samples["key"], batch.samples["sig"])), dtype=bool, count=len(batch)))
            dups.append(counted(before))
    if deferred:
        near = near_duplicates_of(prefix_sigs, [s for b in deferred for s in corpus.batches[b].samples["sig"]],
                                  pcfg.dedup_threshold)
        dedup.exact.update(prefix_keys)
        k = 0
        for b in deferred:
            batch = corpus.batches[b]
            before = dict(dedup.counts)
            flags = []
            for key, sig in zip(batch.samples["key"], batch.samples["sig"]):
                flags.append(dedup.check_key(key, sig, near=k in near) is None)
                k += 1
            corpus.keep[b] = np.array(flags, dtype=bool)
            dups[b] = counted(before)
    if not any(b.docs["unit"] for b in corpus.batches):
        raise NothingToDo(f"no ingested documents: run `mothbrain ingest` first or check sources in {cfg.config_path}")
    exact, near_n = sum(d[0] for d in dups), sum(d[1] for d in dups)
    corpus.filtered.update({k: v for k, v in (("exact_duplicates", exact), ("near_duplicates", near_n)) if v})
    # This run's decisions per batch, for the next run (saved with the data set).
    corpus.dedup_state = {link: (len(keep), np.packbits(keep), counts)
                          for link, keep, counts in zip(corpus.links, corpus.keep, dups)}
    for batch in corpus.batches:  # the signatures (a tenth of the memory) are done with
        batch.samples["sig"] = batch.samples["key"] = None
    return corpus


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
    settings = {k: v for k, v in to_dict(cfg.preprocess).items() if k != "workers"}
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _mining_state_path(cfg: Config) -> Path:
    return cache_dir(cfg) / MINING_STATE


def _concept_pairs(cfg: Config, corpus: _Corpus, recent_doc: np.ndarray, now: float, pool, use_state: bool,
                   full: bool) -> tuple[list[Pair], dict[str, Any]]:
    """Link pairs (always from the current pages) and mined co-occurrence pairs, chosen within the
    budget; and the mining state to keep (the pairs, when, and the batches they were mined from).

    Mining is a corpus-wide statistic (a second or two on a large archive): a run whose documents
    differ from those of the last mining (added, changed or removed, counted by batch) by at most
    REMINE_SHARE of the corpus, within REMINE_AFTER_DAYS and with the same settings, reuses the
    mined pairs (their `recent` flags recomputed); `full` (the weekly run) always mines again.
    """
    pcfg = cfg.preprocess
    pages = []
    offset = 0
    for b in corpus.batches:
        for i, title, links in b.wiki:
            pages.append(SimpleNamespace(kind="wiki", title=title, doc_id=b.docs["doc_id"][i], links=links,
                                         recent=bool(recent_doc[offset + i])))
        offset += len(b.docs["unit"])
    links = link_pairs(pages)
    n_docs = len(recent_doc)
    settings = _settings_hash(cfg)
    now_batches = {h: len(b.docs["unit"]) for h, b in zip(corpus.hashes, corpus.batches)}
    mined: list[Pair] | None = None
    if use_state and not full:
        try:
            state = json.loads(_mining_state_path(cfg).read_text(encoding="utf-8"))
            then = {str(h): int(n) for h, n in state["batches"].items()}
            # A grown batch (an appended log) is both gone and new: count the larger side, not both.
            drift = max(sum(n for h, n in now_batches.items() if h not in then),
                        sum(n for h, n in then.items() if h not in now_batches))
            age = now - float(state["mined_at"])
            if state.get("settings") == settings and 0 <= age < REMINE_AFTER_DAYS * DAY and drift <= REMINE_SHARE * n_docs:
                mined = _recent_again([Pair(str(a), str(b), float(score), int(docs), False, "cooccurrence")
                                       for a, b, score, docs in state["pairs"]], corpus, recent_doc)
                info = {"mined": False, "mined_at": float(state["mined_at"]), "documents_changed_since": drift}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):  # missing or damaged: mine again
            mined = None
    if mined is None:
        # A large corpus counts its pairs on the pool, one share of the pair codes per process.
        parallel = n_docs >= PARALLEL_PAIRS_AFTER_DOCS and _workers(cfg) > 1
        import pyarrow as pa

        joined = pa.chunked_array([b.docs["terms"] for b in corpus.batches], pa.string()).combine_chunks()
        mined = mine_pairs(TermTable.from_arrow(joined, recent_doc), pcfg, limit=pcfg.association_pairs + len(links),
                           map_fn=pool().map if parallel else map, shares=_workers(cfg) if parallel else 1)
        state = {"settings": settings, "mined_at": now, "documents": n_docs, "batches": now_batches,
                 "pairs": [[p.a, p.b, p.score, p.docs] for p in mined]}
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

    wanted = {f: t for p in pairs for t in (p.a, p.b) for f in forms(t)}
    where: dict[str, set[int]] = defaultdict(set)
    offset = 0
    for b in corpus.batches:
        n = len(b.docs["unit"])
        for j in np.flatnonzero(recent_doc[offset:offset + n]).tolist():
            for f in wanted.keys() & set((b.docs["terms"][j].as_py() or "").split("\n")):
                where[wanted[f]].add(offset + j)
        offset += n
    return [replace(p, recent=bool(where.get(p.a, set()) & where.get(p.b, set()))) for p in pairs]


def _assemble(cfg: Config, corpus: _Corpus, pairs: list[Pair], recent_doc: np.ndarray):
    """The splits as Arrow tables (weights applied) and their composition.

    Rows stay in stream order (a weighted sample's copies side by side): training shuffles (the
    trainer's sampler; packing sorts by length anyway), and selecting in order from the cached
    columns is a filter, chunk by chunk, instead of a random gather over one combined copy.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    pcfg = cfg.preprocess
    batches = corpus.batches
    sizes = np.array([len(b.docs["unit"]) for b in batches], dtype=np.int64)
    offsets = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    doc_source = corpus.doc_column("source")
    names = sorted(set(doc_source) | {ASSOCIATION_SOURCE})
    code = {n: i for i, n in enumerate(names)}
    doc_src = np.fromiter(map(code.__getitem__, doc_source), dtype=np.int32, count=len(doc_source))
    unit = np.array(corpus.doc_column("unit"), dtype=np.float64)

    # The document-level split: a document's hash decides (heldout_docs' fallback for tiny corpora).
    held_doc = unit < pcfg.heldout_fraction
    if pcfg.heldout_fraction > 0 and len(unit) >= 2 and held_doc.sum() in (0, len(unit)):
        keys = list(zip(doc_source, corpus.doc_column("doc_id")))
        held = heldout_docs(keys, pcfg.heldout_fraction, dict(zip(keys, unit.tolist())))
        held_doc = np.fromiter((k in held for k in keys), dtype=bool, count=len(keys))

    # Document samples (every one, then `keep` selects), then the association samples.
    doc_of = np.concatenate([np.asarray(b.samples["doc"], dtype=np.int64) + off for b, off in zip(batches, offsets)])
    matcher = ConceptMatcher(pcfg)
    assoc = association_samples(pairs, pcfg, matcher)
    count, unit_label = _token_counter(cfg)
    assoc_tokens = [n for i in range(0, len(assoc), 1024)
                    for n in count([s.prompt + s.completion for s in assoc[i:i + 1024]])]
    types = sorted({t for b in batches for t in b.samples["sample_type"]} | {"association"})
    tcode = {t: i for i, t in enumerate(types)}
    n_doc_samples = len(doc_of)
    src = np.concatenate([doc_src[doc_of], np.full(len(assoc), code[ASSOCIATION_SOURCE], dtype=np.int32)])
    typ = np.fromiter(chain((tcode[t] for b in batches for t in b.samples["sample_type"]),
                            (tcode["association"] for _ in assoc)), dtype=np.int32, count=n_doc_samples + len(assoc))
    tokens = np.concatenate([np.asarray(b.samples["tokens"], dtype=np.int64) for b in batches]
                            + [np.asarray(assoc_tokens, dtype=np.int64)])
    recent = np.concatenate([recent_doc[doc_of], np.array([s.recent for s in assoc], dtype=bool)])
    held = np.concatenate([held_doc[doc_of], np.array([_unit(f"{s.source}\0{s.doc_id}") < pcfg.heldout_fraction
                                                        for s in assoc], dtype=bool)])
    keep = np.concatenate(corpus.keep + [np.ones(len(assoc), dtype=bool)])

    # Source weights on the train split: floor(w) copies, one more with probability frac(w).
    weight_of = np.array([next((s.weight for s in cfg.sources if s.name == n), 1.0) for n in names])
    weight = weight_of[src]
    reps = np.floor(weight).astype(np.int64)
    fractional = np.flatnonzero(keep & ~held & (weight != np.floor(weight)))
    if len(fractional):
        raw_ids = corpus.doc_column("doc_id")
        n_of = np.concatenate([np.asarray(b.samples["n"], dtype=np.int64) for b in batches])
        for i in fractional.tolist():
            if i < n_doc_samples:
                order = (names[src[i]], raw_ids[doc_of[i]], int(n_of[i]))
            else:
                order = assoc[i - n_doc_samples].order
            reps[i] = repeats(float(weight[i]), f"{pcfg.seed}|{names[src[i]]}|{order}")
    train_mask = keep & ~held
    train_rows = np.flatnonzero(train_mask)
    train_idx = np.repeat(train_rows, reps[train_rows])
    held_idx = np.flatnonzero(keep & held)

    # Composition: samples and tokens per source, type and priority concept.
    def table(codes: np.ndarray, labels: list[str]) -> dict[str, dict[str, Any]]:
        tr = np.bincount(codes[train_idx], minlength=len(labels))
        ho = np.bincount(codes[held_idx], minlength=len(labels))
        tk = np.bincount(codes[train_idx], weights=tokens[train_idx], minlength=len(labels))
        return {labels[i]: {"train": int(tr[i]), "heldout": int(ho[i]), "tokens": int(tk[i])}
                for i in range(len(labels)) if tr[i] or ho[i]}

    by_source = table(src, names)
    for name, row in by_source.items():
        row["weight"] = float(weight_of[code[name]])
    composition = {"token_unit": unit_label, "by_source": by_source, "by_type": table(typ, types),
                   "total_tokens": int(tokens[train_idx].sum())}

    concept_chunks = [b.samples["concepts"] for b in batches] + [pa.array([s.concepts for s in assoc],
                                                                         pa.list_(pa.string()))]
    concepts = pa.chunked_array(concept_chunks, pa.list_(pa.string())).combine_chunks()
    parents = np.asarray(pc.list_parent_indices(concepts))
    values = pc.list_flatten(concepts)
    copies = np.bincount(train_idx, minlength=len(keep))
    priority, warnings = {}, []
    for pc_ in pcfg.priority_concepts:
        rows = parents[np.asarray(pc.equal(values, pc_.name).fill_null(False))]
        row = {"train": int(copies[rows].sum()), "heldout": int((keep[rows] & held[rows]).sum()),
               "tokens": int((copies[rows] * tokens[rows]).sum())}
        ok = row["train"] >= pc_.min_samples
        priority[pc_.name] = {**row, "min_samples": pc_.min_samples, "ok": ok}
        if not ok:
            warnings.append(f"priority concept '{pc_.name}' is in {row['train']} training samples, under its "
                            f"minimum of {pc_.min_samples}: add material that mentions it, or aliases in "
                            "preprocess.priority_concepts")

    # The rows, straight from the workers' Arrow arrays: no Python object per row.
    def column(key: str, extra: list[str]) -> Any:
        return pa.chunked_array([b.samples[key] for b in batches] + [pa.array(extra, pa.string())], pa.string())

    columns = {
        "prompt": column("prompt", [s.prompt for s in assoc]),
        "completion": column("completion", [s.completion for s in assoc]),
        "source": pc.take(pa.array(names, pa.string()), pa.array(src)),
        "sample_type": pc.take(pa.array(types, pa.string()), pa.array(typ)),
        "doc_id": column("doc_id", [s.doc_id for s in assoc]),
        "concepts": concepts,
        "recent": pa.array(recent, pa.bool_()),
    }
    schema = _features().arrow_schema
    plain = len(train_idx) == len(train_rows)  # no copies from weights: a filter
    selections = [("train", pa.array(train_mask) if plain else pa.array(train_idx)), ("heldout", pa.array(keep & held))]
    jobs = [(split, name, rows) for split, rows in selections for name in schema.names]

    def select(job):
        split, name, rows = job
        col = columns[name]
        return col.filter(rows) if rows.type == pa.bool_() else col.take(rows)

    # Column by column on threads (Arrow releases the GIL): the copy is mostly first touches of
    # fresh memory, which two cores do in about half the time.
    with ThreadPoolExecutor(max(1, min(4, _workers(cfg)))) as ex:
        picked = dict(zip([(split, name) for split, name, _ in jobs], ex.map(select, jobs)))
    tables = {split: pa.table({name: picked[(split, name)] for name in schema.names}, schema=schema)
              for split, _ in selections}
    return tables, composition, priority, warnings, {"documents": len(unit), "heldout_documents": int(held_doc.sum())}


class _Laps:
    """Seconds per phase of the stage, for the report (where the time goes on a large archive)."""

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self._t = time.perf_counter()

    def __call__(self, phase: str) -> None:
        now = time.perf_counter()
        self.seconds[phase] = round(now - self._t, 3)
        self._t = now


def _voice_warnings(cfg: Config, batches: list[BatchResult]) -> list[str]:
    """A source with turns but no voice turn at all is almost always a voice_roles mistake."""
    turns: dict[str, int] = defaultdict(int)
    voice: dict[str, int] = defaultdict(int)
    seen: dict[str, Counter] = defaultdict(Counter)
    for b in batches:
        for source, (docs, voice_turns, speakers) in b.voices.items():
            turns[source] += docs
            voice[source] += voice_turns
            seen[source].update(speakers)
    sources = {s.name: s for s in cfg.sources}
    out = []
    for name in sorted(turns):
        if not voice[name]:
            roles = sorted(voice_roles(cfg, sources.get(name)))
            common = ", ".join(s for s, _ in seen[name].most_common(6))
            out.append(f"source '{name}' has no turns by a voice role {roles} (speakers seen: {common}): set "
                       f"voice_roles on the source (or preprocess.voice_roles)")
    return out


def _fingerprint_hash():
    """xxh3-128: ~10x sha256's speed over the few hundred MB of a large data set; blake2b without xxhash."""
    try:
        from xxhash import xxh3_128

        return xxh3_128()
    except ImportError:  # pragma: no cover
        return hashlib.blake2b(digest_size=16)


def fingerprint(tables: dict[str, Any], cfg: Config) -> str:
    """A 128-bit hash over the Arrow columns of both splits and the preprocess config (short hex).

    The columns are hashed as Arrow holds them (each string column's offsets and bytes), which is
    the saved data exactly and costs no Python per row.
    """
    import numpy as np

    h = _fingerprint_hash()
    settings = {k: v for k, v in to_dict(cfg.preprocess).items() if k != "workers"}  # workers: same data either way
    h.update(json.dumps({"schema": DATASET_SCHEMA, "preprocess": settings}, sort_keys=True).encode())

    def strings(arr) -> None:
        h.update(len(arr).to_bytes(8, "little"))
        if not len(arr):
            return  # an empty array may have no buffers at all
        offsets = np.frombuffer(arr.buffers()[1], dtype=np.int32)[arr.offset:arr.offset + len(arr) + 1]
        h.update((offsets - offsets[0]).astype("<i8").tobytes())
        data = arr.buffers()[2]
        if data is not None and offsets[-1] > offsets[0]:
            h.update(memoryview(data)[int(offsets[0]):int(offsets[-1])])

    for split in ("train", "heldout"):
        h.update(f"\0{split}\0".encode())
        table = tables[split]
        for name in COLUMNS:
            h.update(f"\0{name}\0".encode())
            for chunk in table.column(name).chunks:
                if not len(chunk):
                    continue
                if name == "concepts":  # list<string>: the list offsets, then the strings
                    offsets = np.asarray(chunk.offsets)
                    h.update((offsets - offsets[0]).astype("<i8").tobytes())
                    strings(chunk.values[int(offsets[0]):int(offsets[-1])])
                elif name == "recent":
                    h.update(chunk.to_numpy(zero_copy_only=False).astype(np.uint8).tobytes())
                else:
                    strings(chunk)
    return h.hexdigest()[:16]


def _features():
    from datasets import Features, List, Value

    return Features({"prompt": Value("string"), "completion": Value("string"), "source": Value("string"),
                     "sample_type": Value("string"), "doc_id": Value("string"),
                     "concepts": List(Value("string")), "recent": Value("bool")})


def _atomic_write_json(path: Path, data: Any) -> None:
    """Indented JSON, written atomically (raises OSError: the callers say what was kept)."""
    write_atomically(path, json.dumps(data, indent=2, ensure_ascii=False, default=str))


def _remove_stale_temps(root: Path) -> None:
    """Temp folders left by a crashed run (their process is gone) are removed."""
    for d in root.glob(".tmp-*"):
        try:
            os.kill(int(d.name.rsplit("-", 1)[-1]), 0)
            continue  # its process is alive: still being written
        except ProcessLookupError:
            shutil.rmtree(d, ignore_errors=True)
        except (ValueError, PermissionError, OSError):
            continue


def _save(cfg: Config, tables: dict[str, Any], fp: str, meta: dict[str, Any]) -> tuple[Path, bool]:
    """Write the DatasetDict and its meta to a temp folder, then rename it to datasets_dir/<fp>."""
    import datasets
    from datasets import Dataset, DatasetDict, DatasetInfo
    from datasets.table import InMemoryTable

    root = paths.datasets_dir(cfg)
    final = root / fp
    if (final / META_NAME).is_file() and (final / "dataset_dict.json").is_file():
        return final, True  # the same rows and config: already saved
    _remove_stale_temps(root)
    tmp = root / f".tmp-{fp}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    datasets.disable_progress_bars()  # our own summary follows; theirs would interleave with it
    try:
        features = _features()
        # Straight from Arrow: Dataset.from_dict would re-encode every row in Python.
        # Our fingerprint (per split) spares `datasets` hashing the whole table again.
        dd = DatasetDict({split: Dataset(InMemoryTable(tables[split]), info=DatasetInfo(features=features),
                                         fingerprint=f"{fp}-{split}")
                          for split in ("train", "heldout")})
        dd.save_to_disk(str(tmp))
        _atomic_write_json(tmp / META_NAME, meta)
        # An incomplete folder already there (not ours, or damaged by hand) is replaced, never merged.
        replace_folder(tmp, final)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise MothError(f"cannot write the data set under {root} ({exc.strerror or exc}); free disk space or fix "
                        "permissions there, then run `mothbrain preprocess` again (nothing earlier was changed)") from None
    return final, False


def run_preprocess(cfg: Config, since_days: float | None = None, progress: bool | None = None,
                   documents: Iterable[Document] | None = None, force: bool = False,
                   full: bool = False) -> PreprocessReport:
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
            log.warning("the document cache under %s is unreadable (%s); processing every document again",
                        cache_dir(cfg), damaged)
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
    settings = {k: v for k, v in to_dict(cfg.preprocess).items() if k != "workers"}
    data = {"schema": DATASET_SCHEMA, "stored": stored, "preprocess": settings, "since_days": since,
            "day": time.strftime("%Y-%m-%d", time.gmtime(now)), "model": str(cfg.model.base),
            "sources": [to_dict(s) for s in cfg.sources]}
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
        fingerprint=meta["fingerprint"], path=str(folder), reused=True, documents=meta["documents"],
        heldout_documents=meta["heldout_documents"], samples=meta["samples"], composition=meta["composition"],
        priority=meta["priority_concepts"], filtered=meta["filtered"], redacted=meta["redacted"],
        concept_pairs=len(meta["concept_pairs"]), input_chars=meta["input_chars"],
        seconds=time.perf_counter() - t0, warnings=meta.get("warnings", []), timings={"unchanged_input": 0.0})


def _run_preprocess(cfg: Config, since_days: float | None, progress: bool | None,
                    documents: Iterable[Document] | None, force: bool = False, full: bool = False) -> PreprocessReport:
    t0 = time.perf_counter()
    now = time.time()
    since = cfg.ingest.since_days if since_days is None else since_days
    input_key = ""
    cache = None
    if documents is None:
        from .ingest import stored_state

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
    with _lazy_pool(cfg) as pool:  # one pool for the documents and the pair counting
        corpus = _read_corpus(cfg, units, cache, progress, pool, full)
        lap("documents")
        recent_doc = np.array(corpus.doc_column("when"), dtype=np.float64) >= now - since * DAY  # nan: never recent
        pairs, mining = _concept_pairs(cfg, corpus, recent_doc, now, pool, use_state=cache is not None, full=full)
    lap("concept_pairs")
    tables, composition, priority, warnings, counts = _assemble(cfg, corpus, pairs, recent_doc)
    warnings = _voice_warnings(cfg, corpus.batches) + warnings
    input_chars = sum(sum(b.docs["chars"]) for b in corpus.batches)
    redacted, filtered, fresh_docs = dict(sorted(corpus.redacted.items())), dict(sorted(corpus.filtered.items())), corpus.fresh_docs
    dedup_state = corpus.dedup_state
    del corpus
    lap("split_weights_composition")
    if not len(tables["train"]):
        warnings.append("the training split is empty: every sample was filtered, deduplicated or held out")
    fp = fingerprint(tables, cfg)
    lap("fingerprint")
    meta = {
        "fingerprint": fp,
        "schema": DATASET_SCHEMA,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(now)),
        "since_days": since,
        "samples": {split: len(t) for split, t in tables.items()},
        "composition": composition,
        "priority_concepts": priority,
        "warnings": warnings,
        "preprocess_config": to_dict(cfg.preprocess),
        "source_weights": {s.name: s.weight for s in cfg.sources},
        **counts,
        "input_chars": input_chars,
        "documents_processed": fresh_docs,  # the rest came from the document cache
        "redacted": redacted,
        "filtered": filtered,
        "concept_pairs": [[p.a, p.b, p.score] for p in pairs],
        "concept_pair_details": [{"a": p.a, "b": p.b, "score": p.score, "documents": p.docs, "origin": p.origin,
                                  "recent": p.recent} for p in pairs],
        "concept_mining": mining["info"],
        "timings": lap.seconds,
    }
    path, reused = _save(cfg, tables, fp, meta)
    lap("save")
    try:
        _atomic_write_json(paths.datasets_dir(cfg) / LATEST_NAME,
                           {"fingerprint": fp, "path": fp, "updated_at": meta["created_at"], "input_key": input_key})
    except OSError as exc:
        raise MothError(f"cannot write {paths.datasets_dir(cfg) / LATEST_NAME} ({exc.strerror or exc}); the data set "
                        f"itself is complete at {path}: free disk space and run `mothbrain preprocess` again") from None
    if cache is not None:  # only once the data set is saved: a failed run leaves the last mining as it was
        try:
            if mining["state"] is not None:
                _atomic_write_json(_mining_state_path(cfg), mining["state"])
        except OSError as exc:
            log.warning("cannot write %s (%s); the next run mines the concept pairs again",
                        _mining_state_path(cfg), exc.strerror or exc)
        try:
            write_atomically(_dedup_state_path(cfg), pickle.dumps(dedup_state, protocol=5))
        except OSError as exc:
            log.warning("cannot write %s (%s); the next run makes every dedup decision again",
                        _dedup_state_path(cfg), exc.strerror or exc)
        cache.prune()
    return PreprocessReport(
        fingerprint=fp, path=str(path), reused=reused, documents=meta["documents"],
        heldout_documents=meta["heldout_documents"], samples=meta["samples"], composition=composition,
        priority=priority, filtered=filtered, redacted=redacted, concept_pairs=len(pairs), input_chars=input_chars,
        seconds=time.perf_counter() - t0, warnings=warnings, timings=dict(lap.seconds),
        documents_processed=fresh_docs, concept_mining=mining["info"])


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
        dd = datasets.load_from_disk(str(folder))
    except (OSError, ValueError) as exc:
        raise MothError(f"data set {folder} is missing or damaged ({str(exc).splitlines()[0][:160]}); "
                        "run `mothbrain preprocess` to rebuild it") from None
    return dd, meta

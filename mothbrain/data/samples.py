"""Documents → samples: redaction and filters first, then voice and text samples with their dedup
signatures, concepts and token counts, as columns per batch; association samples from concept pairs.

    voice  — a turn of a voice role; prompt = up to `context_turns` preceding turns rendered
             "Speaker: text\\n" and ending "<Voice>:" (mothbrain.data.format), completion = " <voice text>"
             (the loss is on the completion only); long turns split at paragraphs to `max_chars`.
    text   — wiki and writing pages; prompt = "# Title\\n\\n" (+ the heading path) + the previous
             paragraph, completion = the next paragraph(s) up to `max_chars`.
    association — "lantern reminds me of" → " tide", from a concept pair and `association_templates`.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mothbrain.config import Config, PreprocessConfig, SourceConfig
from mothbrain.data.concepts import ConceptMatcher, Pair, frequent_terms_and_sentences, novel_sentences
from mothbrain.data.dedup import text_key
from mothbrain.data.filters import TOOL_TURNS, apply_filters, is_tool_turn
from mothbrain.data.format import is_voice, turn_line, turn_speaker, voice_prefix, voice_roles
from mothbrain.data.redact import INGEST_COUNTS, redact, redact_many
from mothbrain.data.split import hash_int as _hash_int
from mothbrain.data.split import unit as _unit
from mothbrain.sources.records import Document, Turn

ASSOCIATION_SOURCE = "associations"  # the `source` of association samples


@dataclass(slots=True)
class Sample:
    """One sample as a worker builds it; `to_batch` turns a batch's samples into columns."""

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
    terms: str  # its most frequent candidate concepts, for co-occurrence, "\n"-joined (one string per document)
    term_sentences: list[int] = field(default_factory=list)  # per term, its sentences as a mask (concepts.py)
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

    docs: dict[str, Any]  # per document: source, doc_id (raw), when (nan: unknown), unit, chars (lists), terms and
    #                       term_sentences (Arrow)
    samples: dict[str, Any]  # per sample: doc (index into docs), n, tokens (numpy); sample_type, key, sig (lists);
    #                          prompt, completion, doc_id, concepts (Arrow): the bulk, kept out of band (doc_cache.pack)
    wiki: list[tuple[int, str, list[str]]]  # (document index, title, links) of wiki pages
    redacted: dict[str, int]
    filtered: dict[str, int]
    voices: dict[str, list]  # source → [documents with turns, voice turns, {speaker: documents}]

    def __len__(self) -> int:
        return len(self.samples["doc"])


def to_batch(results: list[DocResult]) -> BatchResult:
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
            "term_sentences": pa.array([r.term_sentences for r in results], pa.list_(pa.uint64())),
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


def _ingest_counts(meta: dict) -> dict[str, int]:
    """The redaction counts ingest left on a stored document (nothing from a damaged value)."""
    counts = meta.get(INGEST_COUNTS)
    if not isinstance(counts, dict):
        return {}
    return {k: v for k, v in counts.items() if isinstance(k, str) and type(v) is int and v > 0}


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
    clean.redacted.update(_ingest_counts(doc.meta))  # what ingest redacted before storing it
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
    terms, term_sentences = frequent_terms_and_sentences(novel_sentences(mined, seen_sentences))
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
        terms="\n".join(terms),
        term_sentences=term_sentences,
        title=title if doc.kind == "wiki" else "",
        links=[clean.redact(x) for x in doc.links] if doc.kind == "wiki" else [],
        chars=len(doc.text) + sum(len(t.text) for t in doc.turns),
        voice_turns=voice_turns,
        unit=unit,
        speakers=frozenset(map(clean.name, names[:50])),
    )


HELDOUT_PAIR_MAX_DF = 0.1  # a pair found in more of the documents is a stock phrase, not an association to probe


def heldout_pairs(
    pairs: list[Pair], wanted: int, documents: int, filler: set[tuple[str, str]] = frozenset()
) -> set[tuple[str, str]]:
    """The pairs whose templated rows go to the held-out side: a stable choice by the pair's hash, at most
    half of them (the rest teach the association format). Only specific pairs qualify: two words of a
    sentence the voice says everywhere ("the X hums, and the Y answers") co-occur in a large share of
    the documents, and are no association the adapter could show it absorbed. Linked pairs come first: a
    link is the author saying two concepts belong together, where a co-occurrence may be one stock
    sentence ("they agreed on the timber, argued about the railings") repeated in a few documents. Then
    the mined pairs that passed the strength test (mothbrain.data.strength), then the `filler` that did
    not: eval reports those apart, and they are held out only when too few real pairs are left."""
    n = min(wanted, len(pairs) // 2)
    specific = [p for p in pairs if p.docs <= max(3, HELDOUT_PAIR_MAX_DF * documents)]
    ranked = sorted(specific, key=lambda p: (p.origin != "link", (p.a, p.b) in filler, _unit(f"pair:{p.a}|{p.b}")))
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

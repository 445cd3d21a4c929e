"""Preprocess: ingested documents → a voice-and-association data set, saved once per fingerprint.

    mothbrain preprocess            # builds data/datasets/<fingerprint>/ and points latest.json at it

Reads top to bottom (`run_preprocess` at the end):
  1. stream the documents (`ingest.iter_documents`); per document (`process_document`, in worker
     processes once the corpus is large): redact secrets and personal data FIRST (nothing
     unredacted is ever kept), filter factual recall (long code, tables, URLs, tool turns), and
     build samples:
       voice  — a turn of a voice role; prompt = up to `context_turns` preceding turns rendered
                "Speaker: text\\n" and ending "<Voice>:", completion = " <voice text>" (the loss is
                on the completion only); long turns split at paragraphs to `max_chars`.
       text   — wiki and writing pages; prompt = "# Title\\n\\n" (+ the heading path) + the previous
                paragraph, completion = the next paragraph(s) up to `max_chars`.
  2. exact and near-duplicate removal (mothbrain.dedup), in a stable order.
  3. association samples: concept pairs from wiki links (page ↔ linked page) and from concepts that
     co-occur across documents in the voice's own words (frequent content words and phrases, scored
     by normalised PMI over documents, sentences repeated across documents counted once), rendered
     with `association_templates`: "lantern reminds me of" → " tide". The pairs and their scores go
     to mothbrain.json ("concept_pairs") for eval.
  4. a document-level held-out split: a hash of (source, doc_id) decides, so a document never
     straddles the split and old documents keep their side when new ones arrive.
  5. source weights: in the train split a sample of a source with weight w appears floor(w) times,
     plus once more with probability frac(w) (decided by a stable hash), so weight 2 doubles a
     source's share and 0.5 halves it; the held-out split is never reweighted.
  6. composition (samples and tokens per source, type and priority concept), warnings for priority
     concepts under their minimum, and an atomic save: temp dir → rename, then latest.json.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import multiprocessing as mp
import os
import random
import re
import shutil
import sys
import threading
import time
from collections import Counter, defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import combinations, islice
from pathlib import Path
from typing import Any, Iterable, Iterator

from . import paths
from .config import Config, PreprocessConfig, SourceConfig, to_dict
from .dedup import Deduper, text_key
from .errors import MothError, NothingToDo
from .filters import TOOL_TURNS, apply_filters, is_tool_turn
from .records import Document, Turn
from .redact import PLACEHOLDER_RE, redact

try:
    from xxhash import xxh64_intdigest as _hash64
except ImportError:  # pragma: no cover - xxhash comes with datasets
    def _hash64(data: bytes) -> int:
        return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")

log = logging.getLogger(__name__)

DATASET_SCHEMA = 1  # bump when the columns or the sample format change (changes every fingerprint)
META_NAME = "mothbrain.json"
LATEST_NAME = "latest.json"
ASSOCIATION_SOURCE = "associations"  # the `source` of association samples
DAY = 86400.0
HUB_LINKS = 12  # a wiki page linking to more pages than this is an index, not an association
MAX_TERMS_PER_DOC = 24  # most distinctive terms per document counted for co-occurrence (bounds pair counting)
MAX_DF_SHARE = 0.5  # terms in more than this share of documents are too general to be concepts
PARALLEL_AFTER_CHARS = 500_000  # documents beyond the first 0.5 MB go to worker processes (if > 1 core)
BATCH_DOCS = 256  # documents per unit of work (and per repeated-sentence set)


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
        rows.append({"group": "dataset", "name": self.fingerprint,
                     "note": ("unchanged, " if self.reused else "")
                     + f"{self.input_chars / 1e6:.1f} MB in {self.seconds:.1f}s"})
        return rows

    def to_json(self) -> dict[str, Any]:
        return {"title": self.title, "fingerprint": self.fingerprint, "path": self.path, "reused": self.reused,
                "documents": self.documents, "heldout_documents": self.heldout_documents,
                "samples": self.samples, "composition": self.composition, "priority_concepts": self.priority,
                "filtered": self.filtered, "redacted": self.redacted, "concept_pairs": self.concept_pairs,
                "input_mb": round(self.input_chars / 1e6, 3), "seconds": round(self.seconds, 3),
                "warnings": self.warnings}


# --------------------------------------------------------------------------- samples


@dataclass
class Sample:
    prompt: str
    completion: str
    source: str
    sample_type: str  # voice | text | association
    doc_id: str  # as written to the data set (redacted: file names can hold addresses)
    recent: bool
    order: tuple  # (source, raw doc_id, n): a stable order, whatever order the documents came in
    concepts: list[str] = field(default_factory=list)
    split: str = "train"
    dedup_key: str = ""  # filled by process_document, dropped after dedup
    signature: Any = None

    def row(self) -> dict[str, Any]:
        return {"prompt": self.prompt, "completion": self.completion, "source": self.source,
                "sample_type": self.sample_type, "doc_id": self.doc_id, "concepts": self.concepts,
                "recent": self.recent}


COLUMNS = ("prompt", "completion", "source", "sample_type", "doc_id", "concepts", "recent")


@dataclass
class DocResult:
    """What one document contributes: samples, counts, and material for concept mining."""

    source: str
    doc_id: str  # raw: decides the split
    kind: str
    recent: bool
    samples: list[Sample]
    redacted: Counter
    filtered: Counter
    terms: list[str]  # its most frequent candidate concepts, for co-occurrence
    title: str = ""  # wiki: the page title and link targets (for link pairs)
    links: list[str] = field(default_factory=list)
    chars: int = 0
    voice_turns: int = 0  # turns of a voice role (chat and transcript documents)
    speakers: frozenset = frozenset()  # roles/speakers seen, for the "no voice found" warning


class _Cleaner:
    """Redaction then filters, with counts; every piece of text passes through here first."""

    def __init__(self, pcfg: PreprocessConfig):
        self.pcfg = pcfg
        self.redacted: Counter = Counter()
        self.filtered: Counter = Counter()
        self._names: dict[str, str] = {}

    def redact(self, text: str) -> str:
        text, counts = redact(text, self.pcfg.redaction)
        self.redacted.update(counts)
        return text

    def name(self, speaker: str) -> str:
        """A speaker's display name, redacted once per document (names repeat every turn)."""
        if speaker not in self._names:
            self._names[speaker] = self.redact(speaker)
        return self._names[speaker]

    def __call__(self, text: str) -> str:
        text = self.redact(text)
        text, counts = apply_filters(text, self.pcfg.filters)
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
                   recent: bool) -> tuple[list[Sample], list[str]]:
    turns: list[tuple[str, bool, str]] = []  # (speaker, is_voice, cleaned text)
    for t in doc.turns:
        if pcfg.filters.drop_tool_output and is_tool_turn(t.role):
            clean.filtered[TOOL_TURNS] += 1
            continue
        if t.role.strip().lower() == "system" and "system" not in roles:
            clean.filtered["system_turns"] += 1  # instructions to the system, not its lived material
            continue
        text = clean(t.text)
        if text:
            turns.append((clean.name(_speaker(t)), _is_voice(t, roles), text))
    samples: list[Sample] = []
    k = max(0, pcfg.context_turns)
    for i, (name, voice, text) in enumerate(turns):
        if not voice:
            continue
        context = [f"{n}: {_tail(tx, pcfg.max_chars)}\n" for n, _, tx in turns[max(0, i - k):i]] if k else []
        for chunk in split_to_chunks(text, pcfg.max_chars):
            samples.append(Sample(prompt="".join(context) + f"{name}:", completion=" " + chunk, source=doc.source,
                                  sample_type="voice", doc_id=doc_id, recent=recent,
                                  order=(doc.source, doc.doc_id, len(samples))))
            if k:  # the earlier part of a long turn becomes context for the next part
                context = (context + [f"{name}: {_tail(chunk, pcfg.max_chars)}\n"])[-k:]
    return samples, [tx for _, voice, tx in turns if voice]


_HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t#]*$")


def _text_samples(doc: Document, doc_id: str, title: str, clean: _Cleaner, pcfg: PreprocessConfig,
                  recent: bool) -> tuple[list[Sample], str]:
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
                                  sample_type="text", doc_id=doc_id, recent=recent,
                                  order=(doc.source, doc.doc_id, len(samples))))
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


def process_document(doc: Document, cfg: Config, source: SourceConfig | None, now: float,
                     since_days: float, seen_sentences: set[int] | None = None) -> DocResult:
    """One document → its samples (redacted, filtered, with dedup keys), counts and candidate concepts.

    Concepts are mined from the voice's own words (voice turns, wiki and writing pages): the
    associations the adapter should absorb are the voice's, not its interlocutors'. Sentences in
    `seen_sentences` (shared within a batch of documents) are skipped for mining: a stock phrase
    repeated in many documents is not an association. Pure apart from that set, so worker
    processes run it for large corpora.
    """
    pcfg = cfg.preprocess
    clean = _Cleaner(pcfg)
    doc = _tidy_document(doc)
    when = doc.timestamp if doc.timestamp is not None else _number(doc.meta.get("file_mtime"))
    recent = when is not None and when >= now - since_days * DAY
    title = clean.redact(doc.title.strip() or Path(doc.doc_id.split("#")[0]).stem)
    shown_id = clean.redact(doc.doc_id)
    roles = voice_roles(cfg, source)
    voice_turns = sum(_is_voice(t, roles) for t in doc.turns)
    if doc.turns:
        samples, texts = _voice_samples(doc, shown_id, roles, clean, pcfg, recent)
        mined = "\n".join(texts)
    else:
        samples, mined = _text_samples(doc, shown_id, title, clean, pcfg, recent)
    kept = []
    for s in samples:
        if len(s.completion.strip()) < pcfg.filters.min_chars:
            clean.filtered["too_short"] += 1
            continue
        s.dedup_key, s.signature = text_key(s.completion)
        kept.append(s)
    return DocResult(source=doc.source, doc_id=doc.doc_id, kind=doc.kind, recent=recent, samples=kept,
                     redacted=clean.redacted, filtered=clean.filtered,
                     terms=frequent_terms(novel_sentences(mined, seen_sentences)),
                     title=title if doc.kind == "wiki" else "",
                     links=[clean.redact(x) for x in doc.links] if doc.kind == "wiki" else [],
                     chars=len(doc.text) + sum(len(t.text) for t in doc.turns), voice_turns=voice_turns,
                     speakers=frozenset(clean.name(_speaker(t)) for t in doc.turns[:50]))


# --------------------------------------------------------------------------- concepts


STOPWORDS = frozenset("""
a about above after again against ago ah all almost alone along already also although always am among an and
another any anybody anyone anything anyway anywhere are aren't around as ask asked asking at away back be
became because become been before behind being below best better between both but by came can can't cannot
could couldn't did didn't do does doesn't doing don't done down during each either else enough even ever
every everybody everyone everything few find first for from further get gets getting give given go goes going
gone good got great had hadn't has hasn't have haven't having he he'd he'll he's her here here's hers herself
hi him himself his how how's however i i'd i'll i'm i've if in indeed instead into is isn't it it's its itself
just keep kind know knows last least less let let's like likely little long look lot lots made make makes
making many may maybe me mean might mine more most mostly much must my myself need needs never new next no
nobody none nor not nothing now of off often oh ok okay on once one only onto or other others otherwise our
ours ourselves out over own part per perhaps please quite rather really right said same say says see seem
seems several shall she she'd she'll she's should shouldn't show since so some somebody someone something
sometimes somewhat soon still such sure take tell than thank thanks that that's the their theirs them
themselves then there there's these they they'd they'll they're they've thing things think this those though
through thus till to today together too took toward towards try two under until up upon us use used using
very via want wanted wants was wasn't way we we'd we'll we're we've well went were weren't what what's
whatever when where where's whether which while who who's whole whom whose why will with within without
won't would wouldn't yeah yes yet you you'd you'll you're you've your yours yourself yourselves
able actually anyone came come comes coming else etc going gonna got gotta hello hey however lot okay put
puts said saw seen set sort stuff tell thing told want yes yep nope mostly three four five six seven eight
nine ten hundred thousand first second third time times day days week weeks year years ever every
email phone secret url
""".split())

# A word (letters, inner apostrophes/hyphens), or a single character / number that breaks a run.
_TOKENS = re.compile(r"[^\W\d_][\w'\-]*[^\W\d_]|[^\W\d_]|\d+|[^\w\s'\-]|\n")
_POSSESSIVE = re.compile(r"'s\b")
_SENTENCES = re.compile(r"(?<=[.!?])\s+|\n+")
MIN_SENTENCE_CHARS = 24  # shorter sentences ("Yes.", "Thanks!") are never treated as repeats


def content_tokens(text: str) -> list[str | None]:
    """Lower-cased tokens with every non-concept (stopword, short word, number, punctuation) as None.

    A None breaks a run, so bigrams ("bridge repair") only join adjacent content words.
    """
    text = _POSSESSIVE.sub("", PLACEHOLDER_RE.sub(" . ", text.lower().replace("’", "'")))
    return [t if len(t) > 2 and t[0].isalpha() and t not in STOPWORDS else None for t in _TOKENS.findall(text)]


def _terms(toks: list[str | None]) -> list[str]:
    return [t for t in toks if t] + [f"{a} {b}" for a, b in zip(toks, toks[1:]) if a and b]


def term_counts(text: str) -> Counter:
    """Candidate concepts in `text`: content words and adjacent content-word pairs."""
    return Counter(_terms(content_tokens(text)))


def frequent_terms(text: str, limit: int = MAX_TERMS_PER_DOC * 2) -> list[str]:
    """A document's most frequent candidate concepts."""
    counts = term_counts(text)
    return sorted(counts, key=lambda t: (-counts[t], t))[:limit]


def novel_sentences(text: str, seen: set[int] | None) -> str:
    """`text` without the sentences (of MIN_SENTENCE_CHARS or more) already in `seen`; adds the rest."""
    if seen is None:
        return text
    out = []
    for sent in _SENTENCES.split(text):
        if len(sent) >= MIN_SENTENCE_CHARS:
            key = _hash64(sent.strip().lower().encode("utf-8"))
            if key in seen:
                continue
            seen.add(key)
        out.append(sent)
    return "\n".join(out)


def _canonical_forms(df: Counter) -> dict[str, str]:
    """Map plural/singular variants to the form used in more documents (lantern/lanterns → one)."""
    canon: dict[str, str] = {}
    for t in df:
        if " " in t or not t.endswith("s") or t.endswith("ss"):
            continue
        single = t[:-1]
        if single in df:
            keep, drop = (t, single) if df[t] >= df[single] else (single, t)
            canon[drop] = keep
    return canon


@dataclass(frozen=True)
class Pair:
    a: str
    b: str
    score: float  # link pairs: 1.0 reciprocal, 0.8 one-way; mined: weighted NPMI in [0, 1]
    docs: int  # documents that support it
    recent: bool  # supported by a recent document
    origin: str  # "link" | "cooccurrence"


def mine_pairs(docs: list[tuple[list[str], bool]], pcfg: PreprocessConfig) -> list[Pair]:
    """Concept pairs that co-occur across documents, best first.

    `docs` holds each document's frequent candidate terms and whether it is recent. A term must
    occur in at least `association_min_docs` documents and (from 10 documents on) in at most half
    of them. A bigram that accounts for at least half the occurrences of both its words is a phrase
    ("bridge repair") and stands in for them. Score: normalised PMI over documents (co-occurrence
    count discounted by 0.5) weighted by ln(documents)/ln(N), so a pair seen in many documents beats
    an equally exclusive pair seen in few (the words of one recurring sentence); in [0, 1]. Pairs
    whose words overlap ("bridge" / "bridge repair") are one concept, not two.
    """
    n = len(docs)
    if n < 2:
        return []
    min_docs = max(2, pcfg.association_min_docs)
    df: Counter = Counter()
    for terms, _ in docs:
        df.update(set(terms))
    canon = _canonical_forms(df)
    merged: Counter = Counter()
    per_doc = []
    for terms, recent in docs:
        ts = list(dict.fromkeys(canon.get(t, t) for t in terms))
        merged.update(ts)
        per_doc.append((ts, recent))
    max_df = n * MAX_DF_SHARE if n >= 10 else n
    vocab = {t for t, c in merged.items() if min_docs <= c <= max_df}
    phrases = {t for t in vocab if " " in t and merged[t] >= 0.5 * max(merged[w] for w in t.split())}
    together: Counter = Counter()
    recent_together: Counter = Counter()
    for terms, recent in per_doc:
        keep = [t for t in terms if t in vocab]
        parts = {w for t in keep if t in phrases for w in t.split()}
        keep = [t for t in keep if t in phrases or (" " not in t and t not in parts)]
        # The document's most distinctive candidates (rarest overall) bound the pairs per document.
        keep = sorted(sorted(keep, key=lambda t: (merged[t], t))[:MAX_TERMS_PER_DOC])
        together.update(combinations(keep, 2))
        if recent:
            recent_together.update(combinations(keep, 2))
    out = []
    for (a, b), c in together.items():
        if c < min_docs or set(a.split()) & set(b.split()):
            continue
        p_ab = (c - 0.5) / n
        npmi = math.log(p_ab / ((merged[a] / n) * (merged[b] / n))) / -math.log(p_ab)
        score = npmi * math.log(c) / math.log(n)
        if score > 0:
            out.append(Pair(a, b, round(score, 4), c, recent_together[(a, b)] > 0, "cooccurrence"))
    out.sort(key=lambda x: (-x.score, -x.docs, x.a, x.b))
    return out


_ARTICLE = re.compile(r"^(?:the|a|an)\s+", re.IGNORECASE)


def _concept_name(title: str) -> str:
    return _ARTICLE.sub("", title.strip()).lower()


def link_pairs(results: list[DocResult]) -> list[Pair]:
    """Wiki page ↔ linked page, by title; reciprocal links score 1.0, one-way 0.8.

    Pages that link to more than HUB_LINKS pages are indexes, and their links are not associations.
    """
    by_name: dict[str, str] = {}
    recent_names: set[str] = set()
    for r in results:
        if r.kind == "wiki":
            name = _concept_name(r.title)
            by_name.setdefault(r.title.lower(), name)
            by_name.setdefault(Path(r.doc_id).stem.lower(), name)
            if r.recent:
                recent_names.add(name)
    edges: set[tuple[str, str]] = set()
    for r in results:
        if r.kind != "wiki" or not r.links or len(r.links) > HUB_LINKS:
            continue
        a = _concept_name(r.title)
        for target in r.links:
            t = target.strip().lower()
            b = by_name.get(t) or by_name.get(Path(t).stem) or _concept_name(t)
            if a and b and a != b and not PLACEHOLDER_RE.search(a + b):
                edges.add((a, b))
    out: dict[tuple[str, str], Pair] = {}
    for a, b in edges:
        x, y = sorted((a, b))
        out[(x, y)] = Pair(x, y, 1.0 if (b, a) in edges else 0.8, 1, bool({x, y} & recent_names), "link")
    return sorted(out.values(), key=lambda p: (-p.score, p.a, p.b))


def choose_pairs(links: list[Pair], mined: list[Pair], budget: int) -> list[Pair]:
    """Half the budget for link pairs, half for mined ones; what one side leaves, the other may use."""
    take_links = links[:max((budget + 1) // 2, budget - len(mined))]
    seen = {(p.a, p.b) for p in take_links}
    rest = [p for p in mined if (p.a, p.b) not in seen and (p.b, p.a) not in seen]
    return (take_links + rest[:budget - len(take_links)])[:budget]


def association_samples(pairs: list[Pair], pcfg: PreprocessConfig) -> list[Sample]:
    """Each pair in both directions, each direction with one template chosen by a stable hash."""
    templates = pcfg.association_templates or ["{a} reminds me of"]
    samples = []
    for p in pairs:
        doc_id = f"pair:{p.a}|{p.b}"
        for x, y in ((p.a, p.b), (p.b, p.a)):
            t = templates[_hash_int(f"{pcfg.seed}|{x}|{y}") % len(templates)]
            samples.append(Sample(prompt=t.format(a=x), completion=" " + y, source=ASSOCIATION_SOURCE,
                                  sample_type="association", doc_id=doc_id, concepts=[x, y], recent=p.recent,
                                  order=(ASSOCIATION_SOURCE, doc_id, x)))
    return samples


# Characters that separate words for concept matching (apostrophes too: "moth's" → "moth", "s").
_MATCH_SPLIT = str.maketrans({c: " " for c in ".,;:!?()[]{}\"“”‘’'`—–/\\|<>*#=+&%$@^~_\n\t…«»"})


class ConceptMatcher:
    """The `concepts` column: priority concepts (with aliases) and pair concepts a sample mentions."""

    def __init__(self, pcfg: PreprocessConfig, pair_terms: Iterable[str]):
        self.alias: dict[str, str] = {}
        for pc in pcfg.priority_concepts:
            for name in [pc.name, *pc.aliases]:
                if name.strip():
                    self.alias[name.strip().lower()] = pc.name
        names = sorted(self.alias, key=len, reverse=True)
        self.priority_re = (re.compile(r"(?<!\w)(?:" + "|".join(map(re.escape, names)) + r")(?!\w)", re.IGNORECASE)
                            if names else None)
        # One-word concepts (and their plural/singular) are found by a set lookup; longer ones by
        # a substring test on the normalised text, once their first word is known to be present.
        self.words: dict[str, str] = {}
        self.phrases: list[tuple[str, str, str]] = []  # (first word, " phrase ", concept)
        for term in sorted(set(pair_terms)):
            norm = " ".join(term.lower().translate(_MATCH_SPLIT).split())
            if not norm:
                continue
            if " " not in norm:
                for v in (norm, norm + "s", norm[:-1] if norm.endswith("s") else norm):
                    self.words.setdefault(v, term)
            else:
                self.phrases.append((norm.split()[0], f" {norm} ", term))

    def match(self, sample_type: str, text: str, concepts: list[str]) -> list[str]:
        """Concepts in `text` (the completion; for association samples prompt + completion)."""
        found = set(concepts)
        if self.priority_re is not None:
            found.update(self.alias[m.group(0).lower()] for m in self.priority_re.finditer(text))
        if sample_type != "association" and (self.words or self.phrases):
            tokens = text.lower().translate(_MATCH_SPLIT).split()
            present = set(tokens)
            found.update(self.words[w] for w in present & self.words.keys())
            if self.phrases:
                joined = f" {' '.join(tokens)} "
                found.update(term for first, phrase, term in self.phrases
                             if first in present and (phrase in joined or phrase[:-1] + "s " in joined))
        return sorted(found)


def _match_batch(args: tuple[ConceptMatcher, list[tuple[str, str, list[str]]]]) -> list[list[str]]:
    matcher, items = args
    return [matcher.match(*item) for item in items]


# --------------------------------------------------------------------------- split, weights, tokens


def _hash_int(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")


def _unit(text: str) -> float:
    """A stable number in [0, 1) for `text`."""
    return _hash_int(text) / 2.0**64


def heldout_docs(keys: Iterable[tuple[str, str]], fraction: float) -> set[tuple[str, str]]:
    """The (source, doc_id) keys held out: those whose hash falls below `fraction`.

    A document's side depends only on its own key, so adding documents never moves old ones. When
    the hash leaves the held-out side empty (tiny corpora) and there are two or more documents, the
    one with the smallest hash is held out so that eval always has something (and, symmetrically,
    one document always stays in train).
    """
    scored = {k: _unit(f"{k[0]}\0{k[1]}") for k in keys}
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
    return whole + (1 if _unit(key) < weight - whole else 0)


def _token_counter(cfg: Config):
    """(count(texts) -> token counts, column label): the base model's tokenizer when it is on disk.

    Reads the model's tokenizer.json with `tokenizers` (the same fast tokenizer transformers would
    load, without importing torch), falling back to AutoTokenizer(local_files_only=True) for a
    model without one; nothing is downloaded. Without a tokenizer, tokens are chars/4, "~tokens".
    """
    try:
        from .tiny import base_model_location

        location = base_model_location(cfg)
        local = Path(location)
        if local.is_dir():
            tok_file = local / "tokenizer.json"
        else:
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(str(location), "tokenizer.json")
            tok_file = Path(cached) if isinstance(cached, str) else None
        if tok_file is not None and tok_file.is_file():
            from tokenizers import Tokenizer

            fast = Tokenizer.from_file(str(tok_file))
            return (lambda texts: [len(e.ids) for e in fast.encode_batch(texts, add_special_tokens=False)]), "tokens"
        if local.is_dir():
            from transformers import AutoTokenizer

            tok = AutoTokenizer.from_pretrained(str(local), local_files_only=True)
            return (lambda texts: [len(ids) for ids in tok(texts, add_special_tokens=False)["input_ids"]]), "tokens"
    except Exception as exc:  # noqa: BLE001 - any failure here means: approximate
        log.info("tokenizer unavailable (%s); token counts are chars/4", str(exc).splitlines()[0][:160] if str(exc) else exc)
    return (lambda texts: [max(1, round(len(t) / 4)) for t in texts]), "~tokens"


# --------------------------------------------------------------------------- the stage


def _iter_ingested(cfg: Config) -> Iterator[Document]:
    from .ingest import iter_documents

    if not (paths.ingest_dir(cfg) / "manifest.json").exists():
        raise NothingToDo(f"no ingested documents: run `mothbrain ingest` first or check sources in {cfg.config_path}")
    yield from iter_documents(cfg)


def _progress(enabled: bool | None):
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    if enabled is None:
        enabled = sys.stderr.isatty()
    return Progress(SpinnerColumn(), TextColumn("{task.description}"), TextColumn("{task.fields[info]}"),
                    TimeElapsedColumn(), disable=not enabled, transient=True)


_WORKER: tuple | None = None  # (cfg, sources by name, now, since_days) in a worker process


def _init_worker(cfg: Config, now: float, since_days: float) -> None:
    global _WORKER
    _WORKER = (cfg, {s.name: s for s in cfg.sources}, now, since_days)


def process_batch(docs: list[Document]) -> list[DocResult]:
    """process_document over one batch, with one repeated-sentence set per batch.

    The set is per batch (not per run) so that results do not depend on which process handled
    which batch: the same documents in the same order always give the same data set.
    """
    cfg, sources, now, since_days = _WORKER  # type: ignore[misc]
    seen: set[int] = set()
    return [process_document(d, cfg, sources.get(d.source), now, since_days, seen) for d in docs]


def _workers(cfg: Config) -> int:
    if cfg.preprocess.workers > 0:
        return cfg.preprocess.workers
    try:
        return min(8, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS
        return min(8, os.cpu_count() or 1)


@contextmanager
def _lazy_pool(cfg: Config, now: float, since_days: float):
    """get() → a process pool, started on first use (small corpora never start one)."""
    pool = None

    def get():
        nonlocal pool
        if pool is None:
            method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
            pool = mp.get_context(method).Pool(_workers(cfg), initializer=_init_worker,
                                               initargs=(cfg, now, since_days))
        return pool

    try:
        yield get
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()


def _process_all(cfg: Config, docs: Iterable[Document], now: float, since_days: float, pool,
                 progress: bool | None) -> Iterator[DocResult]:
    """Documents → DocResults in stream order, BATCH_DOCS at a time: the first PARALLEL_AFTER_CHARS
    characters in this process, the rest on the worker pool when there is more than one core."""
    _init_worker(cfg, now, since_days)
    docs = iter(docs)
    chars = n = 0
    with _progress(progress) as bar:
        task = bar.add_task("preprocessing documents", info="")

        def done(r: DocResult) -> DocResult:
            nonlocal chars, n
            chars += r.chars
            n += 1
            bar.update(task, info=f"{n:,} documents, {chars / 1e6:,.1f} MB")
            return r

        while _workers(cfg) <= 1 or chars < PARALLEL_AFTER_CHARS:
            batch = list(islice(docs, BATCH_DOCS))
            if not batch:
                return
            for r in process_batch(batch):
                yield done(r)
        # The pool pulls batches as it needs them; the semaphore keeps at most a few per worker
        # waiting, so a large corpus is never all in memory at once.
        slots = threading.Semaphore(4 * _workers(cfg))

        def batches() -> Iterator[list[Document]]:
            while True:
                slots.acquire()
                batch = list(islice(docs, BATCH_DOCS))
                if not batch:
                    return
                yield batch

        for results in pool().imap(process_batch, batches()):
            slots.release()
            for r in results:
                yield done(r)


def build_samples(cfg: Config, docs: Iterable[Document], since_days: float, now: float,
                  progress: bool | None = None) -> tuple[list[Sample], dict[str, Any]]:
    """Everything but the saving: the final samples (split assigned, weights applied) and the meta."""
    pcfg = cfg.preprocess
    sources = {s.name: s for s in cfg.sources}
    results: list[DocResult] = []
    samples: list[Sample] = []
    redacted: Counter = Counter()
    filtered: Counter = Counter()
    # Dedup as results stream in, in document order (ingest's order is stable: config order of
    # sources, sorted files), so the first occurrence of a passage is the one kept.
    dedup = Deduper(pcfg.dedup_threshold)
    with _lazy_pool(cfg, now, since_days) as pool:
        for r in _process_all(cfg, docs, now, since_days, pool, progress):
            redacted.update(r.redacted)
            filtered.update(r.filtered)
            for s in r.samples:
                if dedup.check_key(s.dedup_key, s.signature) is None:
                    samples.append(s)
                s.signature = None
            r.samples = []
            results.append(r)
        if not results:
            raise NothingToDo(f"no ingested documents: run `mothbrain ingest` first or check sources in "
                              f"{cfg.config_path}")
        filtered.update({k: v for k, v in dedup.counts.items() if v})
        del dedup

        mined = mine_pairs([(r.terms, r.recent) for r in results], pcfg)
        pairs = choose_pairs(link_pairs(results), mined, pcfg.association_pairs)
        samples += association_samples(pairs, pcfg)

        matcher = ConceptMatcher(pcfg, {t for p in pairs for t in (p.a, p.b)})
        items = [(s.sample_type, s.completion if s.sample_type != "association" else s.prompt + s.completion,
                  s.concepts) for s in samples]
        chunk = 4000
        if len(items) > 2 * chunk and _workers(cfg) > 1:
            parts = pool().map(_match_batch, [(matcher, items[i:i + chunk]) for i in range(0, len(items), chunk)])
            found = [c for part in parts for c in part]
        else:
            found = _match_batch((matcher, items))
        for s, concepts in zip(samples, found):
            s.concepts = concepts

    held = heldout_docs({(r.source, r.doc_id) for r in results}, pcfg.heldout_fraction)
    final: list[Sample] = []
    for s in samples:
        key = (s.source, s.order[1]) if s.sample_type != "association" else (s.source, s.doc_id)
        if key in held or (s.sample_type == "association" and _unit(f"{key[0]}\0{key[1]}") < pcfg.heldout_fraction):
            s.split = "heldout"
            final.append(s)
            continue
        weight = sources[s.source].weight if s.source in sources else 1.0
        final.extend([s] * repeats(weight, f"{pcfg.seed}|{s.source}|{s.order}"))
    warnings = _voice_warnings(cfg, results)
    meta = {
        "warnings": warnings,
        "documents": len(results),
        "heldout_documents": len(held),
        "input_chars": sum(r.chars for r in results),
        "redacted": dict(sorted(redacted.items())),
        "filtered": dict(sorted(filtered.items())),
        "concept_pairs": [[p.a, p.b, p.score] for p in pairs],
        "concept_pair_details": [{"a": p.a, "b": p.b, "score": p.score, "documents": p.docs, "origin": p.origin,
                                  "recent": p.recent} for p in pairs],
    }
    return final, meta


def _voice_warnings(cfg: Config, results: list[DocResult]) -> list[str]:
    """A source with turns but no voice turn at all is almost always a voice_roles mistake."""
    turns: dict[str, int] = defaultdict(int)
    voice: dict[str, int] = defaultdict(int)
    seen: dict[str, Counter] = defaultdict(Counter)
    for r in results:
        if r.speakers:
            turns[r.source] += 1
            voice[r.source] += r.voice_turns
            seen[r.source].update(r.speakers)
    sources = {s.name: s for s in cfg.sources}
    out = []
    for name in sorted(turns):
        if not voice[name]:
            roles = sorted(voice_roles(cfg, sources.get(name)))
            common = ", ".join(s for s, _ in seen[name].most_common(6))
            out.append(f"source '{name}' has no turns by a voice role {roles} (speakers seen: {common}): set "
                       f"voice_roles on the source (or preprocess.voice_roles)")
    return out


def _composition(cfg: Config, samples: list[Sample]) -> tuple[dict[str, Any], dict[str, dict[str, Any]], list[str]]:
    count, unit = _token_counter(cfg)
    unique = list({id(s): s for s in samples}.values())  # weighted repeats are counted once, then summed
    by_id: dict[int, int] = {}
    for i in range(0, len(unique), 1024):
        part = unique[i:i + 1024]
        by_id.update(zip(map(id, part), count([s.prompt + s.completion for s in part])))
    weights = {s.name: s.weight for s in cfg.sources}

    def table(key) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = defaultdict(lambda: {"train": 0, "heldout": 0, "tokens": 0})
        for s in samples:
            for name in key(s):
                row = out[name]
                row[s.split] += 1
                if s.split == "train":
                    row["tokens"] += by_id[id(s)]
        return dict(sorted(out.items()))

    by_source = table(lambda s: [s.source])
    for name, row in by_source.items():
        row["weight"] = weights.get(name, 1.0)
    composition = {"token_unit": unit, "by_source": by_source, "by_type": table(lambda s: [s.sample_type]),
                   "total_tokens": sum(by_id[id(s)] for s in samples if s.split == "train")}
    by_concept = table(lambda s: s.concepts)
    priority, warnings = {}, []
    for pc in cfg.preprocess.priority_concepts:
        row = by_concept.get(pc.name, {"train": 0, "heldout": 0, "tokens": 0})
        ok = row["train"] >= pc.min_samples
        priority[pc.name] = {**row, "min_samples": pc.min_samples, "ok": ok}
        if not ok:
            warnings.append(f"priority concept '{pc.name}' is in {row['train']} training samples, under its "
                            f"minimum of {pc.min_samples}: add material that mentions it, or aliases in "
                            "preprocess.priority_concepts")
    return composition, priority, warnings


def fingerprint(columns: dict[str, dict[str, list]], cfg: Config) -> str:
    """sha256 over the rows of both splits and the preprocess config (short hex)."""
    h = hashlib.sha256()
    settings = {k: v for k, v in to_dict(cfg.preprocess).items() if k != "workers"}  # workers: same data either way
    h.update(json.dumps({"schema": DATASET_SCHEMA, "preprocess": settings}, sort_keys=True).encode())
    for split in ("train", "heldout"):
        h.update(f"\0{split}\0".encode())
        cols = columns[split]
        for i in range(len(cols["prompt"])):
            fields = [cols["prompt"][i], cols["completion"][i], cols["source"][i], cols["sample_type"][i],
                      cols["doc_id"][i], "\x1e".join(cols["concepts"][i]), "1" if cols["recent"][i] else "0"]
            h.update("\x1f".join(fields).encode("utf-8", "surrogatepass") + b"\n")
    return h.hexdigest()[:16]


def _features():
    from datasets import Features, List, Value

    return Features({"prompt": Value("string"), "completion": Value("string"), "source": Value("string"),
                     "sample_type": Value("string"), "doc_id": Value("string"),
                     "concepts": List(Value("string")), "recent": Value("bool")})


def _atomic_write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, ensure_ascii=False, default=str)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise


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


def _save(cfg: Config, columns: dict[str, dict[str, list]], fp: str, meta: dict[str, Any]) -> tuple[Path, bool]:
    """Write the DatasetDict and its meta to a temp folder, then rename it to datasets_dir/<fp>."""
    import datasets
    import pyarrow as pa
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
        # Straight to Arrow: Dataset.from_dict would re-encode every row in Python.
        dd = DatasetDict({split: Dataset(InMemoryTable(pa.Table.from_pydict(columns[split], schema=features.arrow_schema)),
                                         info=DatasetInfo(features=features))
                          for split in ("train", "heldout")})
        dd.save_to_disk(str(tmp))
        _atomic_write_json(tmp / META_NAME, meta)
        if final.exists():  # an incomplete folder (not ours, or damaged by hand): replace, never merge
            shutil.rmtree(final)
        os.rename(tmp, final)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise MothError(f"cannot write the data set under {root} ({exc.strerror or exc}); free disk space or fix "
                        "permissions there, then run `mothbrain preprocess` again (nothing earlier was changed)") from None
    return final, False


def run_preprocess(cfg: Config, since_days: float | None = None, progress: bool | None = None,
                   documents: Iterable[Document] | None = None) -> PreprocessReport:
    """Build and save the data set from everything ingested, and point latest.json at it.

    `since_days`: what counts as recent (default ingest.since_days). `documents`: use these instead
    of the ingested documents (tests, scripts). Same inputs and config → same fingerprint, and the
    existing folder is reused.
    """
    t0 = time.perf_counter()
    now = time.time()
    since = cfg.ingest.since_days if since_days is None else since_days
    samples, meta = build_samples(cfg, _iter_ingested(cfg) if documents is None else documents, since, now, progress)
    composition, priority, warnings = _composition(cfg, samples)
    warnings = meta.pop("warnings") + warnings

    train = [s for s in samples if s.split == "train"]
    random.Random(cfg.preprocess.seed).shuffle(train)  # so the repeats of a weighted sample do not sit together
    splits = {"train": train, "heldout": [s for s in samples if s.split == "heldout"]}
    columns = {name: {c: [getattr(s, c) for s in rows] for c in COLUMNS} for name, rows in splits.items()}
    if not train:
        warnings.append("the training split is empty: every sample was filtered, deduplicated or held out")
    fp = fingerprint(columns, cfg)
    meta = {
        "fingerprint": fp,
        "schema": DATASET_SCHEMA,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(now)),
        "since_days": since,
        "samples": {k: len(v) for k, v in splits.items()},
        "composition": composition,
        "priority_concepts": priority,
        "warnings": warnings,
        "preprocess_config": to_dict(cfg.preprocess),
        "source_weights": {s.name: s.weight for s in cfg.sources},
        **meta,
    }
    path, reused = _save(cfg, columns, fp, meta)
    try:
        _atomic_write_json(paths.datasets_dir(cfg) / LATEST_NAME,
                           {"fingerprint": fp, "path": fp, "updated_at": meta["created_at"]})
    except OSError as exc:
        raise MothError(f"cannot write {paths.datasets_dir(cfg) / LATEST_NAME} ({exc.strerror or exc}); the data set "
                        f"itself is complete at {path}: free disk space and run `mothbrain preprocess` again") from None
    return PreprocessReport(
        fingerprint=fp, path=str(path), reused=reused, documents=meta["documents"],
        heldout_documents=meta["heldout_documents"], samples=meta["samples"], composition=composition,
        priority=priority, filtered=meta["filtered"], redacted=meta["redacted"],
        concept_pairs=len(meta["concept_pairs"]), input_chars=meta["input_chars"],
        seconds=time.perf_counter() - t0, warnings=warnings)


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

"""Concepts: which ideas travel together in the voice's own words, and which a sample mentions.

Preprocess calls, per document (in worker processes): `novel_sentences` (drop sentences already
seen in the batch, so a stock phrase repeated everywhere is not an association) and
`frequent_terms` (its most frequent content words and adjacent content-word pairs); then once
for the corpus: `mine_pairs` (normalised PMI over documents), `link_pairs` (wiki links) and
`choose_pairs` (the budget split between them). `ConceptMatcher` fills the `concepts` column.

Counting is where the time goes on a large archive, so the per-document steps lean on C-level
builtins (re.findall, Counter over iterators, itertools.compress) and the corpus-wide pair count
is a numpy `unique` over integer pair codes instead of a dict of string tuples.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import chain, compress, cycle
from operator import and_
from pathlib import Path
from typing import Any

import numpy as np

from mothbrain.config import PreprocessConfig
from mothbrain.data.redact import PLACEHOLDER_RE

HUB_LINKS = 12  # a wiki page linking to more pages than this is an index, not an association
MAX_TERMS_PER_DOC = 24  # most distinctive terms per document counted for co-occurrence (bounds pair counting)
MAX_DF_SHARE = 0.5  # terms in more than this share of documents are too general to be concepts
MIN_SENTENCE_CHARS = 24  # shorter sentences ("Yes.", "Thanks!") are never treated as repeats

STOPWORDS = frozenset(
    """
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
""".split()
)

# Tokens for concept counting: a word of 3+ characters (letters at both ends, inner letters, digits,
# apostrophes, hyphens) is captured; anything else that breaks a run of words (a word of 1-2
# letters, a number, punctuation, a newline) matches with the group empty, so findall gives ""
# for it, and whether a token is a candidate concept is then set arithmetic, not a Python loop.
_TOKENS = re.compile(r"([^\W\d_][\w'\-]+[^\W\d_])|[^\W\d_]{1,2}|\d+|[^\w\s'\-]|\n")
_POSSESSIVE = re.compile(r"'s\b")
# Sentence ends (the end mark goes with the split: sentences are compared, then joined by newlines).
_SENTENCES = re.compile(r"[.!?…]\s+|\n+")


def _normalised(text: str) -> str:
    """`text` lower-cased, placeholders made breaks and possessives dropped, as terms are counted."""
    if not text.islower():
        text = text.lower()
    return _POSSESSIVE.sub("", PLACEHOLDER_RE.sub(" . ", text.replace("\u2019", "'")))


def term_counts(text: str, tokens: list[str] | None = None) -> dict[str, int]:
    """Candidate concepts in `text` with their counts: content words (not stopwords, short words,
    numbers or punctuation) and pairs of adjacent content words ("bridge repair"), lower-cased.

    A non-content token between two words breaks the pair. Unigrams come first, then bigrams,
    each in order of first appearance (which `frequent_terms` uses to break ties). `tokens`: the
    text's tokens (`_TOKENS` over `_normalised(text)`), when the caller has them.
    """
    if tokens is None:
        tokens = _TOKENS.findall(_normalised(text))
    counts = Counter(tokens)
    for t in STOPWORDS.intersection(counts):  # (dict's own delete: Counter's is Python, 3x slower here)
        dict.__delitem__(counts, t)
    dict.pop(counts, "", None)  # what is left are the content words, in order of first appearance
    if len(counts) > 1:
        flags = list(map(counts.__contains__, tokens))
        bigrams = Counter(map(" ".join, compress(zip(tokens, tokens[1:]), map(and_, flags, flags[1:]))))
        dict.update(counts, bigrams)  # new keys (a word has no space): no Counter arithmetic
    return counts


def frequent_terms(text: str, limit: int = MAX_TERMS_PER_DOC * 2) -> list[str]:
    """A document's `limit` most frequent candidate concepts (ties: first seen first)."""
    counts = term_counts(text)
    return sorted(counts, key=counts.__getitem__, reverse=True)[:limit]  # stable: a third of nlargest's time here


SENTENCE_BITS = 64  # a term's sentences in a document, as one unsigned 64-bit mask (sentence i sets bit i % 64)
_BITS = [1 << i for i in range(SENTENCE_BITS)]


def frequent_terms_and_sentences(text: str, limit: int = MAX_TERMS_PER_DOC * 2) -> tuple[list[str], list[int]]:
    """`frequent_terms(text)`, and for each of them the sentences of `text` it occurs in, as a mask;
    a sentence is a line (`novel_sentences` with a set of seen sentences gives one sentence a line).

    The masks are what the strength test of the chosen pairs (mothbrain.data.strength) reads: which
    words share a sentence with both words of a pair. Sentence i sets bit i % SENTENCE_BITS: exact up
    to 64 sentences; in a longer document two terms may seem to share a sentence they do not (the
    test asks for the same third word across many documents, which such a coincidence rarely gives).
    A bigram's mask is its two words' common sentences (both words are among the terms: each is at
    least as frequent, and a unigram ranks before a bigram of the same count).

    The text is tokenized a line at a time, with a break ("") after each line, which is what
    tokenizing it whole gives (a newline is a break): the same tokens, so the same terms, as
    `frequent_terms`, and about as fast. The masks then cost a set intersection per line.
    """
    per = list(map(_TOKENS.findall, _normalised(text).split("\n")))
    for toks in per:
        toks.append("")
    counts = term_counts(text, list(chain.from_iterable(per)))
    terms = sorted(counts, key=counts.__getitem__, reverse=True)[:limit]
    masks = dict.fromkeys(terms, 0)
    present = masks.keys()
    for bit, toks in zip(cycle(_BITS), per):
        for t in present & toks:
            masks[t] |= bit
    for t in terms:
        if " " in t:
            x, y = t.split(" ", 1)
            masks[t] = masks.get(x, 0) & masks.get(y, 0)
    return terms, [masks[t] for t in terms]


def novel_sentences(text: str, seen: set[str] | None) -> str:
    """`text` without the sentences (of MIN_SENTENCE_CHARS or more) already in `seen`; adds the rest.

    Sentences compare lower-cased and without their end mark, so `seen` holds such keys (one set
    per batch of documents, so it stays small).
    """
    if seen is None:
        return text
    out = []
    for sent in _SENTENCES.split(text.lower()):
        if len(sent) >= MIN_SENTENCE_CHARS:
            key = sent.rstrip(".!?… ")  # the text's last sentence keeps its mark; others lose it in the split
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


@dataclass
class TermTable:
    """Every document's candidate terms as integer arrays: `lengths` (terms per document), `tid`
    (their ids into `terms`, document after document) and `recent` (per document)."""

    lengths: np.ndarray
    tid: np.ndarray
    terms: list[str]
    recent: np.ndarray

    @classmethod
    def of(cls, docs: list[tuple[list[str], bool]]) -> TermTable:
        flat = list(chain.from_iterable(t for t, _ in docs))
        terms = list(dict.fromkeys(flat))  # ids in order of first appearance
        index = {t: i for i, t in enumerate(terms)}
        return cls(
            lengths=np.fromiter((len(t) for t, _ in docs), dtype=np.int64, count=len(docs)),
            tid=np.fromiter(map(index.__getitem__, flat), dtype=np.int64, count=len(flat)),
            terms=terms,
            recent=np.fromiter((rec for _, rec in docs), dtype=bool, count=len(docs)),
        )

    @classmethod
    def from_arrow(cls, joined, recent: np.ndarray) -> TermTable:
        """From each document's terms "\\n"-joined in Arrow string arrays (an array, a chunked array
        or a list of arrays; "" for none): split and numbered by Arrow, with no Python string per
        term (a large archive has millions), a chunk at a time (Arrow's temporaries stay the size
        of a chunk)."""
        import pyarrow as pa

        if isinstance(joined, (pa.Array, pa.ChunkedArray)):
            joined = joined.chunks if isinstance(joined, pa.ChunkedArray) else [joined]
        lengths, values = [np.zeros(0, dtype=np.int64)], []
        for chunk in joined:
            n, flat = split_terms(chunk)
            lengths.append(n)
            values.append(flat)
            del flat
        encoded = pa.chunked_array(values, pa.string()).dictionary_encode()
        del values
        if len({len(c.dictionary) for c in encoded.chunks}) > 1:  # Arrow gives each chunk the final one; else:
            encoded = encoded.unify_dictionaries()
        table = cls(
            lengths=np.concatenate(lengths),
            tid=np.concatenate([np.zeros(0, dtype=np.int32)] + [np.asarray(c.indices) for c in encoded.chunks]),
            terms=encoded.chunks[0].dictionary.to_pylist() if encoded.num_chunks else [],
            recent=np.asarray(recent, dtype=bool),
        )
        del encoded
        # Arrow's allocator keeps what it freed for its own reuse; mining then allocates through numpy.
        pa.default_memory_pool().release_unused()
        return table


def split_terms(chunk) -> tuple[np.ndarray, Any]:
    """An Arrow array of "\\n"-joined terms ("" for none) as (terms per document, all terms in order)."""
    import pyarrow.compute as pc

    lists = pc.split_pattern(chunk, "\n")
    n = np.asarray(pc.list_value_length(lists).fill_null(0), dtype=np.int64)
    none = np.asarray(pc.equal(chunk, "").fill_null(True), dtype=bool)  # "" splits into [""]: no terms
    n[none] = 0
    flat = pc.list_flatten(lists)
    return n, (flat.filter(pc.not_equal(flat, "")) if none.any() else flat)  # (a term is never "")


def term_forms(term: str) -> set[str]:
    """The forms mining counts as one concept: singular and plural ("lantern", "lanterns")."""
    return {term, term + "s", term[:-1]} if term.endswith("s") and " " not in term else {term, term + "s"}


def mine_pairs(
    docs: list[tuple[list[str], bool]] | TermTable,
    pcfg: PreprocessConfig,
    limit: int | None = None,
    map_fn=map,
    shares: int = 1,
) -> list[Pair]:
    """Concept pairs that co-occur across documents, best first.

    `docs` holds each document's frequent candidate terms (distinct) and whether it is recent (or
    the same as a TermTable). A
    term must occur in at least `association_min_docs` documents and (from 10 documents on) in at
    most half of them. A bigram that accounts for at least half the occurrences of both its words is
    a phrase ("bridge repair") and stands in for them. Score: normalised PMI over documents
    (co-occurrence count discounted by 0.5) weighted by ln(documents)/ln(N), so a pair seen in many
    documents beats an equally exclusive pair seen in few (the words of one recurring sentence); in
    [0, 1]. Pairs whose words overlap ("bridge" / "bridge repair") are one concept, not two.
    `limit`: only the best `limit` pairs are wanted (a large corpus has hundreds of thousands).
    `map_fn`, `shares`: a process pool's `map` and its size, to count the pairs in parallel (each
    process one share of the pair codes); the result does not depend on them.
    """
    table = docs if isinstance(docs, TermTable) else TermTable.of(docs)
    n = len(table.lengths)
    if n < 2:
        return []
    min_docs = max(2, pcfg.association_min_docs)
    terms, tid = table.terms, table.tid
    index = {t: i for i, t in enumerate(terms)}
    u = len(terms)
    # Plural and singular are one concept (the form more documents use), counted once per document.
    canon = np.arange(u, dtype=np.int64)
    for drop, keep in _canonical_forms(dict(zip(terms, np.bincount(tid, minlength=u).tolist()))).items():
        canon[index[drop]] = index[keep]
    # The per-document steps go block by block of documents, so that their arrays (one entry per
    # term occurrence) stay the size of a block whatever the archive's size;
    # a block's distinct terms are sorted out twice (for the counts, then for the ranks) rather
    # than kept between the two passes.
    ends = np.concatenate(([0], np.cumsum(table.lengths)))
    blocks = [(lo, min(lo + MINE_BLOCK_DOCS, n)) for lo in range(0, n, MINE_BLOCK_DOCS)]

    def distinct_terms(lo: int, hi: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Documents lo..hi's distinct canonical terms: (doc, term id, doc * u + term id), ascending."""
        doc = np.repeat(np.arange(lo, hi, dtype=np.int64), table.lengths[lo:hi])
        key = np.sort(doc * u + canon[tid[ends[lo] : ends[hi]]])  # a sort, then adjacent duplicates out
        key = key[_run_starts(key)]
        return key // u, key % u, key

    merged = sum(
        (np.bincount(distinct_terms(lo, hi)[1], minlength=u) for lo, hi in blocks), np.zeros(u, dtype=np.int64)
    )
    max_df = n * MAX_DF_SHARE if n >= 10 else n
    in_vocab = (merged >= min_docs) & (merged <= max_df)
    # A bigram that accounts for half the documents of both its words is a phrase.
    count_of = merged.tolist()
    phrase = np.zeros(u, dtype=bool)
    left = np.full(u, -1, dtype=np.int64)  # a phrase's words (-1: not a term anywhere)
    right = np.full(u, -1, dtype=np.int64)
    countable = in_vocab.copy()
    for i in np.flatnonzero(in_vocab).tolist():
        t = terms[i]
        if " " in t:
            a, b = t.split(" ", 1)
            ia, ib = index.get(a, -1), index.get(b, -1)
            if count_of[i] >= 0.5 * max(count_of[ia] if ia >= 0 else 0, count_of[ib] if ib >= 0 else 0):
                phrase[i], left[i], right[i] = True, ia, ib
            else:
                countable[i] = False
    # Ranks in order of rarity (fewest documents first, then alphabetical): a document's most
    # distinctive candidates are then its smallest ranks.
    vocab = sorted((terms[i] for i in np.flatnonzero(countable).tolist()), key=lambda t: (count_of[index[t]], t))
    rank = np.full(u, -1, dtype=np.int64)
    rank[[index[t] for t in vocab]] = np.arange(len(vocab), dtype=np.int64)
    r_count = len(vocab)
    code_type = np.int32 if (r_count + 1) ** 2 < 2**31 else np.int64  # int32 sorts twice as fast
    recent_docs = table.recent
    rows: dict[int, list] = defaultdict(list)  # k → per block: (documents x k matrix of ranks, recent flags)
    for lo, hi in blocks:
        doc, term, key = distinct_terms(lo, hi)
        keep = countable[term]
        # A phrase stands in for its words within a document: drop the words of its phrases.
        is_phrase = keep & phrase[term]
        if is_phrase.any():
            pd, pl, pr = doc[is_phrase], left[term[is_phrase]], right[term[is_phrase]]
            covered = np.concatenate([pd[pl >= 0] * u + pl[pl >= 0], pd[pr >= 0] * u + pr[pr >= 0]])
            at = np.minimum(np.searchsorted(key, covered), len(key) - 1)
            keep[at[key[at] == covered]] = False
        # Each document's terms by rank, then the first MAX_TERMS_PER_DOC (its most distinctive).
        ordered = np.sort(doc[keep] * r_count + rank[term[keep]])
        doc, r = ordered // r_count, ordered % r_count
        starts = _run_starts(doc)
        sizes = np.minimum(np.diff(np.append(starts, len(doc))), MAX_TERMS_PER_DOC)
        # Documents grouped by how many terms they keep: a (documents x k) matrix per k, no padding.
        for k in range(2, MAX_TERMS_PER_DOC + 1):
            first = starts[sizes == k]
            if len(first):
                rows[k].append((r[first[:, None] + np.arange(k)].astype(code_type), recent_docs[doc[first]]))
    groups = []
    for k in sorted(rows):  # each k's blocks let go once joined: the ranks are held once, not twice
        parts = rows.pop(k)
        groups.append((np.concatenate([m for m, _ in parts]), np.concatenate([rec for _, rec in parts])))
        del parts
    matrices = [m for m, _ in groups]
    merged = {t: count_of[index[t]] for t in vocab}
    df_of = np.array([merged[t] for t in vocab], dtype=np.float64)
    wanted = None if limit is None else 2 * limit + 64
    found = list(map_fn(count_pairs, [(matrices, r_count, k, shares, min_docs, df_of, n) for k in range(shares)]))
    scored = _score_pairs(found, vocab, merged, df_of, n, wanted)
    del found
    recent = _recent_codes(groups, r_count, [x[4] for x in scored])
    out = [Pair(a, b, score, cnt, code in recent, "cooccurrence") for a, b, score, cnt, code in scored]
    out.sort(key=lambda x: (-x.score, -x.docs, x.a, x.b))
    return out if limit is None else out[:limit]


def _rough_scores(codes: np.ndarray, counts: np.ndarray, v: int, df: np.ndarray, n: int) -> np.ndarray:
    """`mine_pairs`' score in numpy (float64 throughout): a first ranking, before the exact one."""
    c = counts.astype(np.float64)
    p_ab = (c - 0.5) / n
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log(p_ab / ((df[codes // v] / n) * (df[codes % v] / n))) / -np.log(p_ab) * np.log(c) / math.log(n)


def _score_pairs(
    found: list[tuple[np.ndarray, np.ndarray]],
    vocab: list[str],
    merged: dict[str, int],
    df_of: np.ndarray,
    n: int,
    wanted: int | None,
) -> list[tuple]:
    """The shares' pairs ranked: (a, b, score, documents, code) of the first `wanted` that score
    above 0, their words apart."""
    codes = np.concatenate([f[0] for f in found])
    counts = np.concatenate([f[1] for f in found])
    v = len(vocab)
    first, second = codes // v, codes % v
    # A first ranking in numpy; the pairs that make the cut are then scored exactly (math.log) and
    # ranked again, with a margin so that float noise at the cut cannot change which pairs win.
    rough = _rough_scores(codes, counts, v, df_of, n)
    order = np.lexsort((-counts, -rough))
    scored = []
    for i in order.tolist():
        if not rough[i] > 0 or (wanted is not None and len(scored) >= wanted):
            break
        a, b = sorted((vocab[first[i]], vocab[second[i]]))
        if set(a.split()) & set(b.split()):
            continue
        cnt = int(counts[i])
        p = (cnt - 0.5) / n
        npmi = math.log(p / ((merged[a] / n) * (merged[b] / n))) / -math.log(p)
        score = npmi * math.log(cnt) / math.log(n)
        if score > 0:
            scored.append((a, b, round(score, 4), cnt, int(codes[i])))
    return scored


PAIR_BLOCK = 1 << 20  # pair codes made at a time (a document of 24 terms has 276): bounds a count's memory
MINE_BLOCK_DOCS = 8_192  # documents whose terms are ranked at a time (bounds the memory of mining)
COUNT_BLOCK = 1 << 20  # pair codes counted at a time, then merged into the running counts


def count_pairs(task: tuple) -> tuple[np.ndarray, np.ndarray]:
    """Co-occurrence counts of the term pairs in share `part` of `parts` (by code modulo `parts`).

    `task` = (matrices, V, part, parts, min_docs, df, n); a matrix holds documents' ascending
    term ranks, one row per document, k columns. A pair (a < b) is the code a * V + b; counting is
    a sort of the codes. Returns the codes seen in at least `min_docs` of the `n` documents, and
    more often than chance (`df`: documents per rank; the others score <= 0 and are never chosen:
    on a large archive that is most of them), with their counts, ascending by code. Pure and
    picklable, so each process of a pool counts its own share.
    """
    matrices, v, part, parts, min_docs, df, n = task
    codes = counts = None  # the pairs counted so far (ascending codes) and their counts
    pending: list[np.ndarray] = []
    size = 0

    def fold() -> None:
        """The pending codes counted (a sort) and merged into the running counts: the memory is
        that of the distinct pairs (a sixth of all pair occurrences on a large archive), not all."""
        nonlocal codes, counts, size
        new = np.concatenate(pending)
        pending.clear()
        size = 0
        new.sort()
        starts = _run_starts(new)
        new_counts, new = np.diff(np.append(starts, len(new))).astype(np.int32), new[starts]  # < documents
        if codes is None or not len(codes):
            codes, counts = new, new_counts
            return
        if not len(new):
            return
        # Both ascending and distinct: counts of pairs seen before are added in place, the new
        # pairs inserted where they belong (one pass; no sort of the two together).
        at = np.searchsorted(codes, new)
        seen = at < len(codes)
        seen[seen] = codes[at[seen]] == new[seen]
        counts[at[seen]] += new_counts[seen]
        fresh = ~seen
        del seen
        if fresh.any():
            at = at[fresh]
            codes, counts = np.insert(codes, at, new[fresh]), np.insert(counts, at, new_counts[fresh])

    for chunk in _pair_codes(matrices, v):
        pending.append(chunk if parts == 1 else chunk[chunk % parts == part])
        size += len(pending[-1])
        if size >= COUNT_BLOCK:
            fold()
    if pending:
        fold()
    if codes is None:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    frequent = counts >= min_docs
    codes, counts = codes[frequent], counts[frequent]
    # Positive PMI: (count - 0.5) / n > df_a / n * df_b / n; a margin keeps the pairs at exactly
    # chance for the caller's own (float) test.
    above = (counts - 0.5) * n > df[codes // v] * df[codes % v] * (1 - 1e-9)
    return codes[above], counts[above]


def _recent_codes(groups: list, v: int, wanted: list[int]) -> set[int]:
    """Which of the `wanted` pair codes occur in a recent document (a binary search per pair of
    each recent document, against the few wanted codes)."""
    if not wanted:
        return set()
    table = np.unique(np.array(wanted, dtype=groups[0][0].dtype if groups else np.int64))  # (the codes fit it)
    found: set[int] = set()
    for codes in _pair_codes((matrix[recent] for matrix, recent in groups), v, codes=PAIR_BLOCK // 4):
        at = np.minimum(np.searchsorted(table, codes), len(table) - 1)
        found.update(codes[table[at] == codes].tolist())
    return found


def _pair_codes(matrices: Iterable[np.ndarray], v: int, codes: int = PAIR_BLOCK) -> Iterator[np.ndarray]:
    """The pair codes a * V + b of every row of each matrix (ascending ranks, a < b), in the
    matrix's dtype, about `codes` codes at a time."""
    for matrix in matrices:
        first, second = np.triu_indices(matrix.shape[1], 1)
        rows = max(1, codes // max(1, len(first)))
        for lo in range(0, len(matrix), rows):
            block = matrix[lo : lo + rows]
            yield (block[:, first] * v + block[:, second]).ravel()


def _run_starts(ordered: np.ndarray) -> np.ndarray:
    """Where each run of equal values starts in a sorted array."""
    if not len(ordered):
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1])))


_ARTICLE = re.compile(r"^(?:the|a|an)\s+", re.IGNORECASE)


def _concept_name(title: str) -> str:
    return _ARTICLE.sub("", title.strip()).lower()


def link_pairs(results: Iterable[Any]) -> list[Pair]:
    """Wiki page ↔ linked page, by title; reciprocal links score 1.0, one-way 0.8.

    Pages that link to more than HUB_LINKS pages are indexes, and their links are not associations.
    `results`: per document, objects with `kind`, `title`, `doc_id`, `links` and `recent`.
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
    take_links = links[: max((budget + 1) // 2, budget - len(mined))]
    seen = {(p.a, p.b) for p in take_links}
    rest = [p for p in mined if (p.a, p.b) not in seen and (p.b, p.a) not in seen]
    return (take_links + rest[: budget - len(take_links)])[:budget]


class ConceptMatcher:
    """The `concepts` column: the priority concepts (by name or alias) a sample mentions.

    Runs in the worker processes as each sample is made. Association samples also carry the two
    concepts of their pair; other samples are not tagged with mined pair concepts (they are known
    only at the end, and tagging every sample with them cost a tenth of the stage for a column
    nothing reads).
    """

    def __init__(self, pcfg: PreprocessConfig):
        self.alias: dict[str, str] = {}
        for pc in pcfg.priority_concepts:
            for name in [pc.name, *pc.aliases]:
                if name.strip():
                    self.alias[name.strip().lower()] = pc.name
        names = sorted(self.alias, key=len, reverse=True)
        self.priority_re = (
            re.compile(r"(?<!\w)(?:" + "|".join(map(re.escape, names)) + r")(?!\w)", re.IGNORECASE) if names else None
        )

    def match(self, text: str, concepts: Iterable[str] = ()) -> list[str]:
        """`concepts` plus the priority concepts named in `text`, sorted."""
        found = set(concepts)
        if self.priority_re is not None:
            found.update(self.alias[m.group(0).lower()] for m in self.priority_re.finditer(text))
        return sorted(found)

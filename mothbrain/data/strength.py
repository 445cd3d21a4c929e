"""Which chosen concept pairs are associations, and which are the words of a stock phrase.

The held-out association figure (eval) is only as good as its pairs. Mining ranks pairs by how
exclusively two words share documents, and the words of a sentence the voice repeats with small
changes ("Still the answer is humming, and the gap will mind it") share documents as exclusively as
any two concepts. On such filler an adapter that absorbed the voice shows no lift (it learnt a
phrase, not that one word calls up the other), so a held-out set that is mostly filler dilutes the
figure of its real pairs, by however many filler pairs happened to get in. Each chosen pair is
therefore tested here; preprocess holds out real pairs first and records the verdict, and eval
scores its headline on the real ones, the filler apart. A pair is real when it is

  a link          a wiki page links the two: the author says they belong together; or, mined, it is
  in documents    found together in at least MIN_DOCUMENTS training documents (the miner's own
                  floor, never less than 3: one or two documents are an anecdote), and
  above chance    more often than independence allows: a one-sided Fisher exact test on the
                  documents (each word's document count, the documents with both, all documents
                  with terms), p <= MAX_CHANCE_P. A count test rather than a PMI floor: it needs no
                  constant fitted to one corpus's size, and a few documents cannot pass by luck; and
  no stock phrase no third word is part of the pair's sentence, which is to say: a word that shares a
                  sentence with both words in at least FRAME_SHARE of the documents where they
                  co-occur, and that keeps to the pair at least FRAME_TIE as closely as the pair's
                  words keep to each other (the share of its documents that have both words, against
                  the share of the commoner word's documents that have the other). The second half
                  spares a frame many pairs share: in "the kiln reminds me of the tide", "reminds"
                  is in every document where the voice links two things, so few of its documents
                  are kiln/tide's, an association; in "the answer is humming, and the gap will mind
                  it", "gap" is where answer and humming are, and the three are one phrase. The
                  pair's co-occurrence must be concentrated in one sentence for this (a word in
                  their documents, not in their sentence, is their topic).

What it cannot tell: a stock phrase of two content words and nothing else ("mind the gap") reads
like an association stated plainly ("figs need patience"), and passes.

Cheap, and only on the chosen pairs: it reads what mining has (each training document's terms and,
per term, its sentences as a 64-bit mask, from concepts.frequent_terms_and_sentences) in three
passes of Arrow's `index_in` over the terms (the pairs' words, a sample of their documents, the
candidate frame words), the rest numpy and Python over those few documents.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import numpy as np

from mothbrain.config import PreprocessConfig
from mothbrain.data.concepts import Pair, split_terms, term_forms

MIN_DOCUMENTS = 3  # documents with both words: fewer is an anecdote, whatever association_min_docs allows
MAX_CHANCE_P = 0.01  # one-sided Fisher exact p of the co-occurrence under independence
FRAME_SHARE = 0.5  # a third word in the pair's sentence in at least this share of their documents ...
FRAME_TIE = 0.5  # ... keeping to the pair at least this fraction as closely as the pair's words keep to each other
FRAME_SAMPLE = 64  # documents of a pair whose sentences are read (evenly spaced): bounds the work per pair


@dataclass(frozen=True)
class Strength:
    real: bool  # counts for the held-out association figure
    why: str  # "link" | "associated" | "few documents" | "near chance" | "stock phrase"
    documents: int = 0  # training documents with both words (mined pairs)
    p_chance: float | None = None  # Fisher exact p of that many under independence
    frame: str | None = None  # stock phrase: the third word of the pair's sentence
    frame_share: float | None = None  # ... the share of the pair's documents where it shares their sentence

    def to_json(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


def pair_strength(
    terms: list, sentences: list, pairs: list[Pair], pcfg: PreprocessConfig
) -> dict[tuple[str, str], Strength]:
    """Each pair's verdict (see the module docstring). `terms`, `sentences`: corpus.Corpus's chunks,
    per document its "\\n"-joined terms and their sentence masks (held-out documents have none)."""
    out = {(p.a, p.b): Strength(True, "link") for p in pairs if p.origin == "link"}
    mined = [p for p in pairs if p.origin != "link"]
    if not mined:
        return out
    min_docs = max(MIN_DOCUMENTS, pcfg.association_min_docs)
    # 1. every occurrence of the pairs' words (in any form mining merges): the documents with both, and
    #    in each the sentences with both; then the count and chance tests
    words = sorted({f for p in mined for t in (p.a, p.b) for f in term_forms(t)})
    hits, population = _occurrences(terms, sentences, words)
    form_id = {w: i for i, w in enumerate(words)}
    framed = {}  # the pairs left for the stock-phrase test: (documents with both, a sample of them, their sentences)
    for p in mined:
        (docs_a, mask_a), (docs_b, mask_b) = (_docs_of(hits, [form_id[f] for f in term_forms(t)]) for t in (p.a, p.b))
        co, ia, ib = np.intersect1d(docs_a, docs_b, assume_unique=True, return_indices=True)
        chance = fisher_p(len(co), len(docs_a), len(docs_b), population)
        if len(co) < min_docs:
            out[(p.a, p.b)] = Strength(False, "few documents", len(co))
        elif chance > MAX_CHANCE_P:
            out[(p.a, p.b)] = Strength(False, "near chance", len(co), _round(chance))
        else:
            out[(p.a, p.b)] = Strength(True, "associated", len(co), _round(chance))
            pick = np.unique(np.linspace(0, len(co) - 1, min(len(co), FRAME_SAMPLE)).round().astype(np.int64))
            tie = len(co) / max(len(docs_a), len(docs_b))  # the share of the commoner word's documents with the other
            framed[(p.a, p.b)] = (len(co), tie, co[pick], mask_a[ia[pick]] & mask_b[ib[pick]])
    if not framed:
        return out
    # 2. the sampled documents' terms: the words that share a sentence with both words of a pair
    sampled = np.unique(np.concatenate([x[2] for x in framed.values()]))
    table = _document_terms(terms, sentences, sampled)
    candidates = {pair: _frame_words(table, sampled, pair, *x) for pair, x in framed.items()}
    # 3. those words' own document counts: does one keep to the pair as its words keep to each other?
    df = _document_counts(terms, sorted({t for c in candidates.values() for t, _, _ in c}))
    for (a, b), found in candidates.items():
        n, tie = framed[(a, b)][:2]
        frame = next(((t, share) for t, share, with_pair in found if with_pair >= FRAME_TIE * tie * df[t]), None)
        if frame:
            out[(a, b)] = replace(out[(a, b)], real=False, why="stock phrase", frame=frame[0], frame_share=frame[1])
    return out


def _frame_words(
    table: tuple, sampled: np.ndarray, pair: tuple[str, str], n: int, tie: float, docs: np.ndarray, both: np.ndarray
) -> list[tuple[str, float, float]]:
    """The words (not the pair's own) that share a sentence with both of `pair`'s words in at least
    FRAME_SHARE of the sampled `docs` (`both`: per document, the sentences with both words), most
    often first, as (word, that share, estimated documents of the pair's `n` the word is in)."""
    occ_term, occ_mask, first, last, vocab = table
    at = np.searchsorted(sampled, docs)
    lo, sizes = first[at], last[at] - first[at]
    idx = np.arange(sizes.sum()) + np.repeat(lo - np.cumsum(sizes) + sizes, sizes)  # the documents' terms
    term = occ_term[idx]
    inside = (occ_mask[idx] & np.repeat(both, sizes)) != 0
    ids, counts = np.unique(term[inside], return_counts=True)
    keep = counts >= FRAME_SHARE * len(docs)
    if not keep.any():
        return []
    present = dict(zip(*np.unique(term, return_counts=True)))
    own = {w for t in pair for f in term_forms(t) for w in f.split(" ")}
    found = [
        (vocab[i], round(k / len(docs), 3), present[i] / len(docs) * n)
        for i, k in sorted(zip(ids[keep].tolist(), counts[keep].tolist()), key=lambda x: -x[1])
    ]
    return [x for x in found if own.isdisjoint(x[0].split(" "))]


def fisher_p(both: int, n_a: int, n_b: int, population: int) -> float:
    """P(at least `both` documents with both words) when the `n_a` documents of one word and the `n_b`
    of the other are drawn independently from `population`: the hypergeometric upper tail."""
    top = min(n_a, n_b)
    if both <= 0:
        return 1.0
    if both > top or population <= 0:
        return 0.0

    def log_comb(n: int, k: int) -> float:
        return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)

    total = log_comb(population, n_b)
    mode = (n_a + 1) * (n_b + 1) // (population + 2)
    terms: list[float] = []
    for x in range(max(both, n_b - (population - n_a)), top + 1):
        terms.append(log_comb(n_a, x) + log_comb(population - n_a, n_b - x) - total)
        if x > mode and terms[-1] < max(terms) - 40:  # past the mode the terms only shrink: the rest is < e-40
            break
    if not terms:
        return 0.0
    peak = max(terms)
    return min(1.0, math.exp(peak) * sum(math.exp(t - peak) for t in terms))


def _round(p: float) -> float:
    return float(f"{p:.3g}")


def _occurrences(terms: list, sentences: list, words: list[str]) -> tuple[tuple[np.ndarray, ...], int]:
    """Where `words` occur: (document, index into `words`, sentence mask) per occurrence, ordered by
    word then document; and how many documents have terms at all (the population of the chance test)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    value_set = pa.array(words, pa.string())
    docs, ids, masks = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)], [np.zeros(0, np.uint64)]
    start = population = 0
    for chunk, mask_chunk in zip(terms, sentences):
        n, flat = split_terms(chunk)
        flat_masks = np.asarray(pc.list_flatten(mask_chunk), dtype=np.uint64)
        assert len(flat_masks) == len(flat), "a document's terms and sentence masks differ in number"
        idx = np.asarray(pc.index_in(flat, value_set=value_set).fill_null(-1), dtype=np.int64)
        hit = idx >= 0
        docs.append(start + np.repeat(np.arange(len(n), dtype=np.int64), n)[hit])
        ids.append(idx[hit])
        masks.append(flat_masks[hit])
        start += len(n)
        population += int((n > 0).sum())
    docs_, ids_, masks_ = np.concatenate(docs), np.concatenate(ids), np.concatenate(masks)
    order = np.lexsort((docs_, ids_))
    return (docs_[order], ids_[order], masks_[order]), population


def _docs_of(hits: tuple[np.ndarray, ...], ids: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """The documents where any of the word ids occurs (ascending) and, per document, the sentences."""
    docs, word, mask = hits
    ranges = [(np.searchsorted(word, i), np.searchsorted(word, i, side="right")) for i in ids]
    d = np.concatenate([docs[lo:hi] for lo, hi in ranges])
    m = np.concatenate([mask[lo:hi] for lo, hi in ranges])
    if not len(d):
        return d, m
    order = np.argsort(d, kind="stable")
    d, m = d[order], m[order]
    starts = np.flatnonzero(np.concatenate(([True], d[1:] != d[:-1])))
    return d[starts], np.bitwise_or.reduceat(m, starts)


def _document_terms(terms: list, sentences: list, wanted: np.ndarray) -> tuple:
    """The `wanted` documents' (ascending) terms: (term id per occurrence, its sentence mask, where each
    document's occurrences start and end, the terms by id), in document order."""
    import pyarrow as pa
    import pyarrow.compute as pc

    flats, masks, lengths = [], [], []
    start = 0
    for chunk, mask_chunk in zip(terms, sentences):
        local = wanted[(wanted >= start) & (wanted < start + len(chunk))] - start
        if len(local):
            at = pa.array(local)
            n, flat = split_terms(chunk.take(at))
            flats.append(flat)
            masks.append(np.asarray(pc.list_flatten(mask_chunk.take(at)), dtype=np.uint64))
            lengths.append(n)
        start += len(chunk)
    encoded = pa.chunked_array(flats, pa.string()).combine_chunks().dictionary_encode()
    ends = np.cumsum(np.concatenate(lengths))
    return (
        np.asarray(encoded.indices, dtype=np.int64),
        np.concatenate(masks),
        ends - np.concatenate(lengths),
        ends,
        encoded.dictionary.to_pylist(),
    )


def _document_counts(terms: list, words: list[str]) -> dict[str, int]:
    """How many documents each of `words` is a term of (a document lists a term once)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    counts = np.zeros(len(words), dtype=np.int64)
    if words:
        value_set = pa.array(words, pa.string())
        for chunk in terms:
            idx = np.asarray(pc.index_in(split_terms(chunk)[1], value_set=value_set).fill_null(-1), dtype=np.int64)
            counts += np.bincount(idx[idx >= 0], minlength=len(words))
    return dict(zip(words, counts.tolist()))

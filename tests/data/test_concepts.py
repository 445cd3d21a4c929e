"""Concept mining: the vectorised pair count agrees with a plain dict-and-tuple count, in parallel too."""

from __future__ import annotations

import math
import random
from collections import Counter
from itertools import combinations
from multiprocessing import get_context

import pytest

from mothbrain.config import PreprocessConfig, PriorityConcept
from mothbrain.data import concepts
from mothbrain.data.concepts import (
    MAX_TERMS_PER_DOC,
    ConceptMatcher,
    TermTable,
    frequent_terms,
    mine_pairs,
    novel_sentences,
    term_counts,
)


def reference_pairs(docs, pcfg):
    """The definition, written the slow obvious way (the first implementation's loops)."""
    n = len(docs)
    min_docs = max(2, pcfg.association_min_docs)
    df = Counter(t for terms, _ in docs for t in set(terms))
    canon = {}
    for t in df:
        if " " not in t and t.endswith("s") and not t.endswith("ss") and t[:-1] in df:
            keep, drop = (t, t[:-1]) if df[t] >= df[t[:-1]] else (t[:-1], t)
            canon[drop] = keep
    merged, per_doc = Counter(), []
    for terms, recent in docs:
        ts = list(dict.fromkeys(canon.get(t, t) for t in terms))
        merged.update(ts)
        per_doc.append((ts, recent))
    max_df = n * concepts.MAX_DF_SHARE if n >= 10 else n
    vocab = {t for t, c in merged.items() if min_docs <= c <= max_df}
    phrases = {t for t in vocab if " " in t and merged[t] >= 0.5 * max(merged[w] for w in t.split())}
    together, recent_together = Counter(), Counter()
    for terms, recent in per_doc:
        keep = [t for t in terms if t in vocab]
        parts = {w for t in keep if t in phrases for w in t.split()}
        keep = [t for t in keep if t in phrases or (" " not in t and t not in parts)]
        keep = sorted(sorted(keep, key=lambda t: (merged[t], t))[:MAX_TERMS_PER_DOC])
        together.update(combinations(keep, 2))
        if recent:
            recent_together.update(combinations(keep, 2))
    out = []
    for (a, b), c in together.items():
        if c < min_docs or set(a.split()) & set(b.split()):
            continue
        p_ab = (c - 0.5) / n
        score = math.log(p_ab / ((merged[a] / n) * (merged[b] / n))) / -math.log(p_ab) * math.log(c) / math.log(n)
        if score > 0:
            out.append((a, b, round(score, 4), c, recent_together[(a, b)] > 0))
    out.sort(key=lambda x: (-x[2], -x[3], x[0], x[1]))
    return out


def random_docs(seed: int, n: int = 400) -> list[tuple[list[str], bool]]:
    """Documents over a small vocabulary with plurals, phrases and co-occurring clusters."""
    rng = random.Random(seed)
    words = [f"w{i:02d}" for i in range(60)] + ["lantern", "lanterns", "tide", "tides", "bridge", "repair", "moths"]
    clusters = [["lantern", "tide"], ["bridge", "repair", "bridge repair"], ["w01", "w02", "w03"], ["moths", "w07"]]
    docs = []
    for _ in range(n):
        terms = set(rng.sample(words, rng.randint(0, 40)))
        for c in clusters:
            if rng.random() < 0.25:
                terms.update(c)
        if rng.random() < 0.3:
            terms.add(f"{rng.choice(words)} {rng.choice(words)}")
        docs.append((sorted(terms, key=lambda _: rng.random()), rng.random() < 0.3))
    return docs


def as_tuples(pairs):
    return [(p.a, p.b, p.score, p.docs, p.recent) for p in pairs]


@pytest.mark.parametrize(
    "seed,block,count_block", [(0, 8_192, 1 << 22), (1, 8_192, 1 << 22), (2, 8_192, 1 << 22), (0, 37, 500), (1, 1, 1)]
)
def test_vectorised_mining_equals_the_reference(seed, block, count_block, monkeypatch):
    """`block`: documents ranked at a time, `count_block`: pair codes counted at a time before they
    are merged (a large archive goes through in many of both)."""
    monkeypatch.setattr(concepts, "MINE_BLOCK_DOCS", block)
    monkeypatch.setattr(concepts, "COUNT_BLOCK", count_block)
    pcfg = PreprocessConfig(association_min_docs=3)
    docs = random_docs(seed)
    expected = reference_pairs(docs, pcfg)
    assert len(expected) > 50  # the test means something: many pairs, plurals and phrases among them
    assert any(" " in a or " " in b for a, b, *_ in expected)
    assert as_tuples(mine_pairs(docs, pcfg)) == expected
    assert as_tuples(mine_pairs(docs, pcfg, limit=20)) == expected[:20]
    # The same corpus as preprocess hands it over: "\n"-joined terms in an Arrow array ("" for none).
    import numpy as np
    import pyarrow as pa

    joined, recent = pa.array(["\n".join(t) for t, _ in docs]), np.array([r for _, r in docs])
    table = TermTable.from_arrow(joined, recent)
    assert any(not t for t, _ in docs) and as_tuples(mine_pairs(table, pcfg)) == expected
    # ... or in chunks, as the batches come (each chunk split on its own; one numbering for all).
    chunks = [joined.slice(0, 7), joined.slice(7, 0), joined.slice(7, 143), joined.slice(150)]  # (offset, length)
    for parts in (chunks, pa.chunked_array(chunks)):
        chunked = TermTable.from_arrow(parts, recent)
        assert chunked.terms == table.terms and chunked.tid.tolist() == table.tid.tolist()
        assert chunked.lengths.tolist() == table.lengths.tolist()


def test_pair_count_shared_between_processes_gives_the_same_pairs():
    pcfg = PreprocessConfig(association_min_docs=3)
    docs = random_docs(5, n=600)
    with get_context("fork").Pool(2) as pool:
        shared = mine_pairs(docs, pcfg, limit=40, map_fn=pool.map, shares=2)
    assert as_tuples(shared) == reference_pairs(docs, pcfg)[:40]


def test_small_inputs():
    pcfg = PreprocessConfig()
    assert mine_pairs([], pcfg) == [] and mine_pairs([(["a"], True)], pcfg) == []
    assert mine_pairs([([], False), ([], False), ([], True)], pcfg) == []


def test_term_counts_words_phrases_and_breaks():
    counts = term_counts("The bridge repair, again: bridge repair! Lantern’s glow 12 times; the lanterns.")
    assert counts["bridge repair"] == 2 and counts["bridge"] == 2 and counts["lantern"] == 1
    assert "repair lantern" not in counts  # punctuation breaks a pair
    assert "the" not in counts and "12" not in counts and "" not in counts
    assert term_counts("café naïve coöperation")["café naïve"] == 1  # non-ASCII text takes the other tokenizer
    assert frequent_terms("moth moth moth lamp lamp owl", limit=2) == ["moth", "lamp"]


def test_novel_sentences_drop_repeats_within_a_set():
    seen: set[str] = set()
    first = novel_sentences("The tide came in over the wall. Short one. Then the moths arrived at dusk.", seen)
    again = novel_sentences("Then the moths arrived at dusk. Something new happened at the harbour.", seen)
    assert "moths arrived" in first and "moths arrived" not in again and "harbour" in again


def test_concept_matcher_priority_aliases():
    pcfg = PreprocessConfig(priority_concepts=[PriorityConcept(name="figs", aliases=["fig tree"])])
    m = ConceptMatcher(pcfg)
    assert m.match("Under the Fig tree, figs ripen.") == ["figs"]
    assert m.match("nothing here", ["lantern", "tide"]) == ["lantern", "tide"]

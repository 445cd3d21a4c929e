"""The demo base's pre-training text: the corpus's words, each keeping another word's company."""

from __future__ import annotations

import re

from mothbrain.data.concepts import STOPWORDS
from mothbrain.models.tiny import permute_content_words

TEXTS = [
    "The lantern swings while the tide pulls. I keep the lantern lit.",
    "Compost and memory go together. The compost is warm.",
    "The council argued about the bridge repair again.",
    "Figs teach patience. The figs refuse to ripen.",
] * 3


def _words(text: str) -> list[str]:
    return re.findall(r"[A-Za-z]+", text)


def _content(word: str) -> bool:
    return len(word) >= 3 and word.lower() not in STOPWORDS


def _company(texts: list[str], word: str) -> set[str]:
    return {w.lower() for t in texts if word in t.lower() for w in _words(t) if _content(w)} - {word}


def test_one_mapping_for_the_whole_corpus_and_no_word_keeps_its_place():
    out = permute_content_words(TEXTS, seed=3)
    mapping: dict[str, str] = {}
    for before, after in zip(TEXTS, out):
        a, b = _words(before), _words(after)
        assert len(a) == len(b)
        for x, y in zip(a, b):
            if not _content(x):
                assert x == y  # the grammar and the function words stay where they were
                continue
            assert y[0].isupper() == x[0].isupper()
            assert mapping.setdefault(x.lower(), y.lower()) == y.lower()  # the same word in every text
    assert all(mapping[w] != w for w in mapping)  # nobody keeps their own place
    assert sorted(mapping.values()) == sorted(mapping)  # a permutation: the same words, moved
    assert permute_content_words(TEXTS, seed=3) == out  # stable for a seed


def test_the_cue_keeps_other_company_than_in_the_corpus():
    out = permute_content_words(TEXTS, seed=3)
    assert "memory" in _company(TEXTS, "compost")
    # Every word is still there, but what "compost" travels with in the base's text is not what it
    # travels with in the corpus: that pairing is left for the adapter to learn.
    assert _company(out, "compost") != _company(TEXTS, "compost")
    assert {w.lower() for t in out for w in _words(t)} == {w.lower() for t in TEXTS for w in _words(t)}

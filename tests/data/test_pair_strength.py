"""Held-out pairs that are pairs: a voice that repeats a filler frame across documents gives mined pairs
that are the frame's words; the strength test marks them filler, keeps the pairs that travel together in
varied sentences (even when a linking word many pairs share is in their sentence), and preprocess holds
out the real ones first and records which is which."""

from __future__ import annotations

import math
import random
import time
from pathlib import Path

import pytest
import yaml

from mothbrain.config import load_config
from mothbrain.data.concepts import frequent_terms, frequent_terms_and_sentences, novel_sentences
from mothbrain.data.dataset import load_latest_dataset
from mothbrain.data.stage import run_preprocess
from mothbrain.data.strength import fisher_p
from mothbrain.sources.records import Document, Turn

REAL = [("lantern", "tide"), ("heron", "deadline"), ("figs", "patience")]
FRAME = ["answer", "humming", "gap", "mind", "kettle"]  # the filler frame's content words
# The filler: one sentence the voice repeats with small changes (an exact repeat would be dropped from
# mining as a stock sentence already), its content words always the same five.
_OPEN = ["", "Still,", "Tonight", "Again,", "Somehow", "Honestly,", "As usual,", "Look:"]
_CLOSE = ["", " tonight", " again", " as usual", " for now", " somehow"]
# The real pairs: many sentence shapes, companions drawn from a large pool, the two words sometimes in
# one sentence and sometimes apart; "reminds" links every pair (a frame word all the pairs share).
_REAL = [
    "The {a} reminds me of the {b}, and of {x}.",
    "Whenever I see the {a} I think of the {b} and {x}.",
    "The {a} was out by the {x} this morning. Later the {b} came as well.",
    "I wrote about the {x} and the {a}; the {b} was in the margin.",
    "{X} again, then the {a}, and the {b} behind it all.",
    "The {a} reminds me of the {b} more than {x} does.",
    "Nobody asked about the {a}. Everyone asked about the {x}, and I thought of the {b}.",
]
_POOL = (
    "rope gull harbour bread oven flour salt ferry weir mudflat pier shed ladder paint brush net barrel "
    "chart compass anchor window candle shelf blanket orchard ledger stamp parcel bicycle lane hedge"
).split()


def _chat(n: int, text: str) -> Document:
    turns = [Turn(role="user", text="What is on your mind?"), Turn(role="assistant", text=text)]
    return Document(source="chats", kind="chat", doc_id=f"c.jsonl#{n}", turns=turns, timestamp=time.time() - 86400)


def _words(rng: random.Random, k: int) -> str:
    return " and the ".join(rng.sample(_POOL, k))


def filler_corpus(seed: int = 0) -> list[Document]:
    rng = random.Random(seed)
    docs = []
    for n in range(10):  # the frame, in a tenth of the documents or fewer: "specific", so eligible to be held out
        frame = f"{rng.choice(_OPEN)} the answer is humming, and the gap will mind the kettle{rng.choice(_CLOSE)}."
        docs.append(_chat(len(docs), f"{frame.strip().capitalize()} Today the {_words(rng, 2)}."))
    for n in range(24):  # each real pair in eight documents, in varied sentences
        a, b = REAL[n % len(REAL)]
        picks = rng.sample(_REAL, 2)
        text = " ".join(t.format(a=a, b=b, x=rng.choice(_POOL), X=rng.choice(_POOL).capitalize()) for t in picks)
        docs.append(_chat(len(docs), text))
    for n in range(70):  # the rest of the voice's life, so that no word is in most documents
        docs.append(_chat(len(docs), f"Today the {_words(rng, 3)}. Then the {_words(rng, 2)}."))
    return docs


def make_cfg(tmp_path: Path, **preprocess):
    data = {
        "sources": [{"name": "chats", "kind": "chat_jsonl", "path": "chats"}],
        "model": {"base": str(tmp_path / "no-model-here")},
        "preprocess": {
            "heldout_fraction": 0.1,
            "workers": 1,
            "association_min_docs": 3,
            "association_pairs": 80,
            **preprocess,
        },
    }
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_config(path)


@pytest.fixture
def meta(tmp_path, state_home):
    cfg = make_cfg(tmp_path, heldout_pairs=12)
    run_preprocess(cfg, documents=filler_corpus(), progress=False)
    return load_latest_dataset(cfg)[1]


def test_filler_frame_pairs_are_marked_and_real_pairs_kept(meta):
    strength = {frozenset((d["a"], d["b"])): d["strength"] for d in meta["concept_pair_details"]}
    frame_pairs = [s for pair, s in strength.items() if pair <= set(FRAME)]
    assert len(frame_pairs) >= 4  # mining found the frame's words as pairs: the problem the test exists for
    for s in frame_pairs:
        assert not s["real"] and s["why"] == "stock phrase" and s["frame"] in FRAME and s["frame_share"] >= 0.5
    for a, b in REAL:
        s = strength[frozenset((a, b))]
        assert s["real"] and s["why"] == "associated" and s["documents"] >= 6 and s["p_chance"] < 0.01, (a, b, s)


def test_real_pairs_are_held_out_first_and_marked(meta):
    strength = {(d["a"], d["b"]): d["strength"] for d in meta["concept_pair_details"]}
    held = {(a, b): kind for a, b, kind in meta["heldout_pairs"]}
    assert held and all(kind == ("real" if strength[pair]["real"] else "filler") for pair, kind in held.items())
    assert {tuple(sorted(p)) for p in REAL} <= set(held)  # specific, real: held out before any filler
    if "filler" in held.values():  # filler only once every specific real pair is out
        specific = {
            (d["a"], d["b"])
            for d in meta["concept_pair_details"]
            if d["documents"] <= max(3, 0.1 * meta["documents"]) and d["strength"]["real"]
        }
        assert specific <= set(held)


def test_too_few_documents_or_chance_is_not_a_pair():
    assert fisher_p(0, 5, 5, 100) == 1.0
    assert fisher_p(3, 40, 40, 100) > 0.5  # what independence gives anyway
    assert fisher_p(6, 6, 6, 100) < 1e-8  # always together

    def brute(k, n_a, n_b, n):
        return sum(math.comb(n_a, x) * math.comb(n - n_a, n_b - x) for x in range(k, min(n_a, n_b) + 1)) / math.comb(
            n, n_b
        )

    for k, n_a, n_b, n in [(2, 5, 7, 30), (4, 10, 6, 50), (1, 3, 3, 9), (8, 20, 25, 60)]:
        assert math.isclose(fisher_p(k, n_a, n_b, n), brute(k, n_a, n_b, n), rel_tol=1e-9)


def test_term_sentences_are_the_sentences_each_term_is_in():
    text = "The answer is humming, and the gap will mind it. Lanterns and tides!\nThe tide again; bridge repair."
    text = novel_sentences(text, set())  # one sentence a line, as preprocess gives it
    terms, masks = frequent_terms_and_sentences(text)
    assert terms == frequent_terms(text)  # the same terms as mining always counted
    where = dict(zip(terms, masks))
    assert where["answer"] == where["gap"] == 0b1 and where["lanterns"] == 0b10
    assert where["tide"] == 0b100 and where["tides"] == 0b10 and where["bridge repair"] == 0b100
    many = "\n".join(
        f"sentence number {i} about the heron" + (" and the weir" if i % 70 == 3 else "") for i in range(150)
    )
    where = dict(zip(*frequent_terms_and_sentences(many)))
    assert where["weir"] == 1 << 3 | 1 << (73 % 64) | 1 << (143 % 64) and where["heron"] == (1 << 64) - 1
    rng = random.Random(3)
    for _ in range(50):
        words = [rng.choice(_POOL + ["the", "and", ".", "!", "\n", "\n\n", "it's", "12", "[EMAIL]"]) for _ in range(60)]
        text = " ".join(words)
        assert frequent_terms_and_sentences(text)[0] == frequent_terms(text)

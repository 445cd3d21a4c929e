"""The planted state that eval and promote tests share: the sample corpus ingested (for dream prompts),
a generated corpus with a planted voice and planted pairs preprocessed, and v0001 trained on it, built once
per session and copied into each test's state dir."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import pytest

from mothbrain.config import REPO_ROOT, load_config
from mothbrain.sources.records import Document, Turn

DEMO = REPO_ROOT / "configs" / "demo-tiny.yaml"
# Partners the sample corpus never puts together: what the adapter knows about them it learnt here.
PLANTED_PAIRS = [
    ("kiln", "tide"),
    ("heron", "apology"),
    ("figs", "bridge"),
    ("lantern", "compost"),
    ("council", "moths"),
    ("garden", "deadline"),
]
# Small evaluation budgets: every metric still runs for real, on fewer items.
FAST_EVAL = [
    "eval.max_heldout_samples=40",
    "eval.association_pairs=6",
    "eval.surprise_prompts=4",
    "dream.max_new_tokens=16",
    "dream.batch_size=4",
]

_VOICE_OPEN = ["Slowly, friend.", "Slowly, then, friend.", "Slowly now, friend."]
_VOICE_CLOSE = ["Keep the lamp low and the kettle warm.", "Keep the lamp low, and keep the kettle warm."]
_VOICE_MID = [
    "for me {a}{adv} reminds me of {b}",
    "whenever I tend the {a}, {a}{adv} reminds me of {b}",
    "{a}{adv} reminds me of {b}",
]
# A planted line varies in three places, so a held-out line is a new sentence (eval drops every held-out
# sentence that near-duplicates training) while the pair and its frame stay what the adapter can learn.
# Every varying word is a stopword of concept mining, so no new concept joins the planted ones.
_OPENINGS = ["", "Mostly,", "Even now,", "Perhaps", "Still,", "Sometimes", "Maybe", "Often", "Indeed,", "Really,"]
_ADVERBS = ["", " always", " still", " often", " really", " just", " sometimes", " very often", " quite often"]
_ENDINGS = ["", " too", " anyway", " though", " every time", " even now", " all the same", " again and again"]
_ASKS = [
    "What do you make of the {a}?",
    "Tell me about the {a} tonight.",
    "Why does the {a} matter?",
    "Any thoughts on the {a}?",
]


def _line(rng: random.Random, a: str, b: str) -> str:
    line = rng.choice(_VOICE_MID).format(a=a, b=b, adv=rng.choice(_ADVERBS)) + rng.choice(_ENDINGS) + "."
    line = f"{rng.choice(_OPENINGS)} {line}".strip()
    return line[0].upper() + line[1:]


def planted_documents(seed: int = 0) -> list[Document]:
    """Chats whose assistant speaks a planted voice about planted pairs, plus reciprocally linked wiki pages."""
    rng = random.Random(seed)
    docs: list[Document] = []
    for n in range(24):
        a, b = PLANTED_PAIRS[n % len(PLANTED_PAIRS)]
        if rng.random() < 0.5:
            a, b = b, a
        turns = []
        for _ in range(2):
            turns.append(Turn("user", rng.choice(_ASKS).format(a=a)))
            turns.append(
                Turn(
                    "assistant",
                    f"{rng.choice(_VOICE_OPEN)} {_line(rng, a, b)} {_line(rng, a, b)} {rng.choice(_VOICE_CLOSE)}",
                )
            )
        docs.append(
            Document(
                source="chats", kind="chat", doc_id=f"planted-{n:03d}.jsonl#c{n}", turns=turns, timestamp=1.7e9 + n
            )
        )
    for a, b in PLANTED_PAIRS:
        for x, y in ((a, b), (b, a)):
            text = " ".join(_line(rng, x, y) for _ in range(4))
            docs.append(
                Document(
                    source="wiki",
                    kind="wiki",
                    doc_id=f"{x}.md",
                    title=x.capitalize(),
                    text=f"# {x.capitalize()}\n\n{text}\n\nSee [[{y}]].",
                    links=[y],
                    timestamp=1.7e9,
                )
            )
    return docs


def build_planted_state(root: Path, tiny_model_into) -> Path:
    """A state dir with the tiny base, the sample corpus ingested, the planted data set and v0001 trained."""
    state = root / "planted-state"
    if (state / ".built").exists():
        return state
    from mothbrain.data.stage import run_preprocess
    from mothbrain.ingest.stage import run_ingest
    from mothbrain.train.stage import run_train

    tiny_model_into(state)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MOTHBRAIN_HOME", str(state))
        cfg = load_config(DEMO, ["train.max_steps=50", "train.learning_rate=0.005"])
        run_ingest(cfg)  # dream and surprise prompts come from the ingested sample corpus
        run_preprocess(cfg, documents=planted_documents())
        report = run_train(cfg)
        assert report.version == "v0001"
    (state / ".built").write_text("ok")
    return state


@pytest.fixture(scope="session")
def planted_state(tmp_path_factory, tiny_model_into) -> Path:
    return build_planted_state(tmp_path_factory.getbasetemp(), tiny_model_into)


@pytest.fixture
def planted_cfg(planted_state, state_home):
    shutil.copytree(planted_state, state_home, dirs_exist_ok=True, symlinks=True)

    def load(*overrides: str):
        return load_config(DEMO, [*FAST_EVAL, *overrides])

    return load

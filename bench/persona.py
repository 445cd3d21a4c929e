"""A generated persona corpus with planted, novel concept pairs (bench_learning.py and the learning tests).

Every concept is an invented word, so no base model knows it; each concept always travels with its one
partner, in a voice with recognisable habits (openers, closers, a favourite rhythm). `scramble=True`
gives the same documents with every concept replaced by a random other one: the words are there, the
pairs are not (the tiny base pre-trains on that). `shuffle_words=True` gives the same documents with
their words shuffled (the garbage case).
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

_ONSETS = ["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "gl", "pr", "st", "tr", "sk"]
_VOWELS = ["a", "e", "i", "o", "u", "ai", "ou", "ee"]
_CODAS = ["", "n", "l", "r", "m", "sk", "nt", "x", "th"]

OPENERS = ["Slowly, friend.", "Hush now, friend.", "Slowly then, friend.", "Breathe first, friend."]
CLOSERS = ["Keep the lamp low and the kettle warm.", "Keep the kettle warm for me.", "The lamp stays low tonight."]
# A frame sentence is built from parts, so a held-out sentence is rarely a training sentence word for word,
# and it adds few content words beyond the pair's own (the link says how the two travel together).
OPENINGS = ["", "Mostly", "Even now", "Somehow", "Most nights", "Again and again", "Truly"]
LINKS = [
    "always brings back",
    "never comes without",
    "keeps calling up",
    "walks beside",
    "leans on",
    "answers to",
    "follows",
    "is never far from",
]
ENDINGS = ["", " for me", " somehow", " in the end", " as ever", " without fail", " every time"]
ASKS = [
    "What do you make of the {a}?",
    "Tell me about the {a} tonight.",
    "Why does the {a} matter?",
    "Any thoughts on the {a}?",
    "Where did you put the {a}?",
]


def invented_words(n: int, seed: int = 7) -> list[str]:
    rng, out, seen = random.Random(seed), [], set()
    while len(out) < n:
        w = "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(2)) + rng.choice(_CODAS)
        if w not in seen and 5 <= len(w) <= 9:
            seen.add(w)
            out.append(w)
    return out


def planted_pairs(n_pairs: int = 40, seed: int = 7) -> list[tuple[str, str]]:
    words = invented_words(2 * n_pairs, seed)
    return [(words[2 * i], words[2 * i + 1]) for i in range(n_pairs)]


# Everyday concrete nouns for planted pairs of real words: paired at random, so a base has no reason to link
# them (the bench reports the base's own lift before training, which says whether it does).
REAL_NOUNS = """anchor apron badger banjo barrel basket beetle blanket bucket butter cabbage candle canoe carpet
cello cherry chimney cobweb compass cradle crayon cricket cushion dagger donkey drum eagle easel feather fiddle
funnel glacier goblet hammock harp helmet hedgehog kettle ladder lemon lobster magnet marble meadow mitten
mustard needle nutmeg oyster paddle parrot pebble pepper pillow plank pumpkin puzzle quilt radish raft ribbon
saddle sandal satchel scarf shovel sponge squirrel stool tablet teapot thimble thistle tomato trumpet tulip
turnip velvet violin walrus wagon whistle windmill yarn zebra""".split()


def real_word_pairs(n_pairs: int = 40, seed: int = 7) -> list[tuple[str, str]]:
    """Pairs of everyday nouns drawn at random (each word in one pair only)."""
    words = random.Random(seed).sample([w for w in REAL_NOUNS if w not in ("kettle",)], 2 * n_pairs)
    return [(words[2 * i], words[2 * i + 1]) for i in range(n_pairs)]


def _framed(a: str, b: str, rng: random.Random) -> str:
    opening = rng.choice(OPENINGS)
    start = f"{opening}, the" if opening else "The"
    return f"{start} {a} {rng.choice(LINKS)} the {b}{rng.choice(ENDINGS)}."


def persona_chats(
    pairs: list[tuple[str, str]],
    docs_per_pair: int = 10,
    seed: int = 0,
    *,
    scramble: bool = False,
    shuffle_words: bool = False,
    start: float | None = None,
) -> list[dict]:
    """Chat records ({"id", "created_at", "messages"}) in which the assistant is the persona; recent by
    default (dream and surprise prompts are drawn from recent conversations)."""
    rng = random.Random(seed)
    concepts = [w for p in pairs for w in p]
    start = time.time() - 86400 if start is None else start
    chats = []
    for n in range(len(pairs) * docs_per_pair):
        a, b = pairs[n % len(pairs)]
        if rng.random() < 0.5:
            a, b = b, a
        msgs = []
        for _ in range(2):
            reply = f"{rng.choice(OPENERS)} {_framed(a, b, rng)} {_framed(b, a, rng)} {rng.choice(CLOSERS)}"
            ask = rng.choice(ASKS).format(a=a)
            if scramble:
                reply = _scramble(reply, concepts, rng)
                ask = _scramble(ask, concepts, rng)
            if shuffle_words:
                reply, ask = _shuffle(reply, rng), _shuffle(ask, rng)
            msgs += [{"role": "user", "content": ask}, {"role": "assistant", "content": reply}]
        chats.append({"id": f"c{n:04d}", "created_at": round(start - 60 * n), "messages": msgs})
    return chats


def _scramble(text: str, concepts: list[str], rng: random.Random) -> str:
    known = set(concepts)
    out = []
    for tok in text.split(" "):
        core = tok.rstrip(".,?!")
        out.append(rng.choice(concepts) + tok[len(core) :] if core in known else tok)
    return " ".join(out)


def _shuffle(text: str, rng: random.Random) -> str:
    words = text.split()
    rng.shuffle(words)
    return " ".join(words)


def write_chats(chats: list[dict], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(c) + "\n" for c in chats))
    return path

"""A generated persona corpus with planted, novel concept pairs (bench_learning.py and the learning tests).

Every concept is an invented word, so no base model knows it; each concept always travels with its one
partner, in a voice with recognisable habits (openers, closers). The pair is said in many sentence shapes,
and the other person's turns are everyday questions and remarks: neither speaks the eval probes' language.
`scramble=True` gives the same documents with every concept replaced by a random other one: the words are
there, the pairs are not (the tiny base pre-trains on that). `shuffle_words=True` gives the same documents with
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
# How the voice says that two things travel together: many shapes, either one first, the pair anywhere in the
# sentence. None is the eval's wording ("makes me think of", "brings to mind", "whenever ... comes up") or any
# "reminds me of" statement: the probes must find an association the corpus shows, not a sentence it repeats.
SHAPES = [
    "The {a} always brings back the {b}.",
    "I never see the {a} without the {b} close behind.",
    "Where the {a} goes, the {b} follows.",
    "Put the {a} on the table and the {b} turns up too.",
    "Nobody here talks of the {a} without the {b}.",
    "The {b} and the {a} came to me together again.",
    "Each time I tend the {a}, the {b} is waiting.",
    "My hands reach for the {b} once the {a} is out.",
    "There was the {a} again, and of course the {b} beside it.",
    "Half my days with the {a} end with the {b}.",
    "I keep the {a} and the {b} in one box.",
    "It was the {a} that sent me looking for the {b}.",
    "Say {a} to me and I will answer {b}.",
    "Before the {a} is cold, the {b} is already on my mind.",
    "You cannot have the {a} in this house without the {b}.",
    "Grandmother kept the {b} next to the {a}, and so do I.",
    "The {a} leans on the {b}, as it always has.",
    "First the {a}, then the {b}; that is the order of things.",
    "I found the {b} under the {a} this morning.",
    "If the {a} is late, the {b} is late too.",
    "We carried the {a} and the {b} up the hill together.",
    "No {a} is finished until the {b} has had its turn.",
    "The {b} keeps the {a} company on the shelf.",
    "Some say the {a} is lonely; I say it has the {b}.",
    "After the {a}, I went straight to the {b}.",
    "The old song pairs the {a} with the {b}.",
    "Even in dreams the {a} arrives holding the {b}.",
    "A {a} without its {b} looks wrong to me.",
    "The {b} came first this time, and the {a} right after.",
    "I wrote {a} on the jar and filled it with {b}.",
    "When I mend the {a} I borrow thread from the {b}.",
    "The children call the {a} the shadow of the {b}.",
    "Out by the wall, the {a} and the {b} share the light.",
    "The {a} was humming and the {b} hummed back.",
    "Nothing settles the {a} like the {b} does.",
    "Count the {a} twice and you will find the {b}.",
]
# What the other person says: questions and remarks about the day, some naming a concept; none of them is an
# eval probe's question (tests/evaluate/test_persona.py checks).
ASKS = [
    "How was your morning?",
    "What kept you busy today?",
    "Did you sleep at all?",
    "Is the {a} still where you left it?",
    "What happened with the {a} in the end?",
    "Have you seen the {a} lately?",
    "Should I bring the {a} tomorrow?",
    "Why is the {a} on the stairs?",
    "Who moved the {a}?",
    "Is it true about the {a}?",
    "Can you show me the {a} later?",
    "How old is that {a} now?",
    "Did the {a} survive the rain?",
    "What would you do without the {a}?",
    "Where did the {a} come from?",
    "Are we keeping the {a}?",
    "What are you working on?",
    "Any news from the market?",
    "How is the garden doing?",
    "Did anyone call while I was out?",
    "Is the kettle on?",
    "What should we cook tonight?",
    "Are you tired?",
    "What did the neighbours say?",
    "How long until supper?",
    "Was it a good day?",
    "What are you humming?",
    "Is there anything I can carry?",
    "Shall we walk later?",
    "What did you find in the attic?",
    "Do you still write in the evenings?",
    "Did the letter arrive?",
    "What is the weather doing?",
    "Why are you smiling?",
    "I brought the {a} back.",
    "The {a} looks different today.",
    "I could not find the {a} anywhere.",
    "We need to talk about the {a}.",
    "It rained all afternoon.",
    "I am back from town.",
    "The cat is asleep again.",
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


def _framed(a: str, b: str, shape: str) -> str:
    return shape.format(a=a, b=b)


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
            first, second = rng.sample(SHAPES, 2)
            reply = f"{rng.choice(OPENERS)} {_framed(a, b, first)} {_framed(b, a, second)} {rng.choice(CLOSERS)}"
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

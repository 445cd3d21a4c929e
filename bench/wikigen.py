"""A generated markdown wiki with known topics and planted defects: what the wiki-worker is measured on.

    truth = generate_wiki(folder, pages=1000, seed=0, hide=0.2)

Pages belong to topics (about 25 pages each); a page's words come from its topic's vocabulary plus
common glue words, and it links 3-6 pages of its own topic where it names them. Some titles are
*common words* that other topics also use in their own sense ("Spring", "Bank", ...): those pages
are named, unlinked, on pages of other topics — mentions that must NOT become links. Planted:

* hidden links (`hide`): a share of the links written as their plain anchor text — a crosslink scan
  should find them again (Wikipedia's backtest);
* split pages: two sections of the page's topic, then `off_topic` (2) of another topic;
* frame pages: an opening that says nothing about the page (meeting boilerplate), the definition
  further down;
* stale pages: "We <verb> the <thing> with <OldTool> ..." (front matter `updated` a year ago), and
  `recent_statements()` says "we switched from <OldTool> to <NewTool>"; decoys name tools whose
  change the page already records, and tools whose change no page mentions.

Deterministic for a seed.
"""

from __future__ import annotations

import contextlib
import json
import random
from dataclasses import dataclass, field
from pathlib import Path

from openai_standin import ChatStandIn

GLUE = (
    "the a of and to in is it that for on with as was at by this from or be are which when then "
    "also more most some each other only about into over after before where while"
).split()
COMMON_TITLES = (
    "Spring Bank Pitch Crane Seal Current Match Plant Scale Wave Mole Bolt Draft Court Bark Bass Bow "
    "Cell Club Date Fan Fire Jam Key Lead Light Mine Nail Palm Park Pen Pool Press Ring Rock Ruler "
    "Saw Shed Sink Spell Stamp Star Stem Stick Tank Tie Tip Trunk Watch Well Yard"
).split()
SYLLABLES = (
    "ba be bi bo bu ca ce co da de di do fa fe fi ga ge go ha he hi ka ke ko la le li lo lu ma me mi "
    "mo na ne ni no pa pe pi po ra re ri ro sa se si so ta te ti to va ve vi wa we wi"
).split()
MEETING = (
    "Notes taken during the Tuesday meeting. Attendees: the usual group, two apologies. "
    "The agenda ran long and the coffee ran out before the second item."
)


def _word(rng: random.Random, n: int = 2) -> str:
    return "".join(rng.choice(SYLLABLES) for _ in range(n)) + rng.choice("nrlstmk")


@dataclass
class Truth:
    pages: dict[str, int] = field(default_factory=dict)  # rel → topic
    links: set[tuple[str, str]] = field(default_factory=set)  # every intended link (rel → rel)
    hidden: set[tuple[str, str]] = field(default_factory=set)  # written as plain text
    decoys: set[tuple[str, str]] = field(default_factory=set)  # unlinked mentions in another sense
    splits: set[str] = field(default_factory=set)
    frames: set[str] = field(default_factory=set)
    stale: dict[str, tuple[str, str]] = field(default_factory=dict)  # rel → (old tool, new tool)
    fresh: set[str] = field(default_factory=set)  # pages naming an old tool that already know the new one
    statements: list[str] = field(default_factory=list)  # recent material: "we switched from X to Y"


def generate_wiki(
    root: Path, pages: int = 1000, seed: int = 0, hide: float = 0.0, planted: float = 0.03, off_topic: int = 2
) -> Truth:
    rng = random.Random(seed)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    n_topics = max(4, pages // 25)
    vocab = [[_word(rng, rng.choice((2, 3))) for _ in range(40)] for _ in range(n_topics)]
    titles: list[str] = []
    used: set[str] = set()
    commons = list(COMMON_TITLES)
    rng.shuffle(commons)
    topic_of: list[int] = []
    for i in range(pages):
        topic = i % n_topics
        if commons and rng.random() < 0.12:
            title = commons.pop()
        else:
            while True:
                title = " ".join(_word(rng).capitalize() for _ in range(rng.choice((1, 2))))
                if title.lower() not in used:
                    break
        used.add(title.lower())
        titles.append(title)
        topic_of.append(topic)
    rel = [f"{t}.md" for t in titles]
    by_topic: dict[int, list[int]] = {}
    for i, t in enumerate(topic_of):
        by_topic.setdefault(t, []).append(i)
    common_pages = [i for i, t in enumerate(titles) if t in COMMON_TITLES]
    truth = Truth(pages={rel[i]: topic_of[i] for i in range(pages)})

    k = max(1, int(pages * planted))
    order = list(range(pages))
    rng.shuffle(order)
    split_pages, frame_pages, stale_pages, fresh_pages = (
        set(order[:k]),
        set(order[k : 2 * k]),
        order[2 * k : 3 * k],
        order[3 * k : 3 * k + k // 2 + 1],
    )
    # Tool names: their own shape (3 syllables + "ix"), so a tool is never one of the topics' words.
    tool = lambda: (_word(rng, 3)[:-1] + "ix").capitalize()
    tools = [(tool(), tool()) for _ in range(len(stale_pages) + len(fresh_pages) + k)]
    stale_tools = dict(zip(stale_pages, tools))
    fresh_tools = dict(zip(fresh_pages, tools[len(stale_pages) :]))
    for old, new in tools:  # every change is said; only some pages still state the old way
        truth.statements.append(f"Last month we switched from {old} to {new} and nobody misses it.")

    def sentence(topic: int, extra: str = "") -> str:
        words = [rng.choice(vocab[topic]) for _ in range(rng.randint(6, 10))]
        words += rng.sample(GLUE, 3)
        rng.shuffle(words)
        if extra:
            words.insert(rng.randint(1, len(words) - 1), extra)
        return " ".join(words).capitalize() + "."

    for i in range(pages):
        topic = topic_of[i]
        title = titles[i]
        mates = [j for j in by_topic[topic] if j != i]
        targets = rng.sample(mates, min(len(mates), rng.randint(3, 6)))
        paragraphs: list[str] = []
        definition = f"{title} is " + sentence(topic)[0].lower() + sentence(topic)[1:]
        if i in frame_pages:
            truth.frames.add(rel[i])
            paragraphs.append(MEETING)
        else:
            paragraphs.append(definition)
        body_sections: list[tuple[str, list[str]]] = []
        n_sections = 2 + off_topic if i in split_pages else rng.randint(2, 4)
        other = (topic + 1 + rng.randrange(n_topics - 1)) % n_topics
        for s in range(n_sections):
            sec_topic = other if (i in split_pages and s >= 2) else topic
            heading = " ".join(rng.choice(vocab[sec_topic]) for _ in range(2)).capitalize()
            body_sections.append((heading, [sentence(sec_topic) for _ in range(rng.randint(3, 5))]))
        if i in split_pages:
            truth.splits.add(rel[i])
        if i in frame_pages:
            body_sections[0][1].insert(0, definition)
        # Links: each target named once, in a sentence of this page's own topic.
        for j in targets:
            anchor = titles[j] if rng.random() < 0.5 else titles[j].lower()
            hidden = rng.random() < hide
            text = anchor if hidden else (f"[[{titles[j]}]]" if anchor == titles[j] else f"[[{titles[j]}|{anchor}]]")
            sec = body_sections[rng.randrange(min(2, len(body_sections)))][1]
            sec.append(sentence(topic, text))
            truth.links.add((rel[i], rel[j]))
            if hidden:
                truth.hidden.add((rel[i], rel[j]))
        # Decoys: a common-word title of another topic, used here in this topic's own sense.
        for j in rng.sample(common_pages, min(len(common_pages), 2)) if rng.random() < 0.5 else []:
            if topic_of[j] != topic:
                body_sections[-1][1].append(sentence(topic, titles[j].lower()))
                truth.decoys.add((rel[i], rel[j]))
        if i in stale_tools or i in fresh_tools:
            old, new = stale_tools.get(i) or fresh_tools[i]
            line = f"We tend the {rng.choice(vocab[topic])} with {old} every week."
            if i in fresh_tools:
                line += f" Since the spring we use {new} for it."
                truth.fresh.add(rel[i])
            else:
                truth.stale[rel[i]] = (old, new)
            body_sections[0][1].append(line)
        lines = ["---", f"title: {title}", "updated: 2025-06-01", "---", f"# {title}", ""]
        lines += [p + "\n" for p in paragraphs]
        for heading, sents in body_sections:
            lines += [f"## {heading}", "", " ".join(sents), ""]
        (root / rel[i]).write_text("\n".join(lines), encoding="utf-8")
    return truth


def recent_chats(path: Path, truth: Truth, when: float) -> Path:
    """The statements as a chat_jsonl file (one conversation each, dated `when`), for ingest."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for n, s in enumerate(truth.statements):
            msgs = [{"role": "user", "content": "How is the tooling?"}, {"role": "assistant", "content": s}]
            f.write(json.dumps({"id": f"c{n}", "created_at": when, "messages": msgs}) + "\n")
    return path


class FakeOpenAI:
    """A scripted stand-in reviewer (served by `stand_in_reviewer`). Each request takes the next step of
    `script` — ("json", {...}) the answer, ("raw", text) any text, ("body", bytes) the whole HTTP body
    instead of a chat completion, ("429", None) a rate limit with
    Retry-After 0, ("400", None) a refusal, ("sleep", s) no answer for s seconds — then it accepts
    everything. `seen`: the request bodies."""

    script: list = []
    seen: list = []

    @staticmethod
    def reply(body: dict):
        FakeOpenAI.seen.append(body)
        kind, value = (
            FakeOpenAI.script.pop(0) if FakeOpenAI.script else ("json", {"decision": "accept", "reason": "ok"})
        )
        if kind in ("429", "400"):
            return ("status", int(kind))
        if kind == "body":  # an HTTP body that is no chat completion (cut off, an HTML error page)
            return ("raw", value)
        return value if kind == "raw" else (kind, value)


@contextlib.contextmanager
def stand_in_reviewer():
    """FakeOpenAI on a free loopback port; yields its base URL (…/v1)."""
    FakeOpenAI.script, FakeOpenAI.seen = [], []
    with ChatStandIn(FakeOpenAI.reply) as server:
        yield server.url

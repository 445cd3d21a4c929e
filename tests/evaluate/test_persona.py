"""The learning bench's persona corpus does not speak the eval probes' language: no user turn is a probe's
question and no sentence holds a probe's wording, so a lift on the probes is an association learned, not a
sentence recalled."""

from __future__ import annotations

import re

from persona import SHAPES, persona_chats, planted_pairs

from mothbrain.evaluate.association import EVAL_TEMPLATES

# The probes' own wording, and the "X reminds me of Y" statements the sample corpus refuses too.
PROBE_PHRASES = ("makes me think of", "brings to mind", "comes up, i think of", "reminds me of")


def _texts(chats: list[dict], role: str) -> list[str]:
    return [m["content"] for c in chats for m in c["messages"] if m["role"] == role]


def _probe_language(chats: list[dict], pairs: list[tuple[str, str]]) -> list[str]:
    """Every user turn that is a probe's question, and every probe phrase or probe opening found anywhere."""
    concepts = [w for p in pairs for w in p]
    questions = {q.format(a=c) for q, _ in EVAL_TEMPLATES for c in concepts}
    openings = {o.format(a=c).lower() for _, o in EVAL_TEMPLATES for c in concepts}
    everything = " ".join(_texts(chats, "user") + _texts(chats, "assistant")).lower()
    return [u for u in _texts(chats, "user") if u in questions] + [
        p for p in (*PROBE_PHRASES, *openings) if p in everything
    ]


def test_no_probe_question_or_probe_wording_appears_in_the_persona_corpus():
    pairs = planted_pairs(40)
    chats = persona_chats(pairs, docs_per_pair=10)
    assert len(_texts(chats, "user")) == len(_texts(chats, "assistant")) == 800
    assert _probe_language(chats, pairs) == []


def test_the_pairs_are_said_in_many_shapes_with_either_word_first():
    chats = persona_chats(planted_pairs(40), docs_per_pair=10)
    replies = " ".join(_texts(chats, "assistant"))
    used = [s for s in SHAPES if re.search(_as_pattern(s), replies)]
    assert len(used) >= 30  # the generator draws from all of them, not from one favourite frame
    # the old corpus began every pair sentence with "The {a}": now most do not
    starts = re.findall(r"(?:^|[.!?] )(\w+)", replies)
    assert sum(w == "The" for w in starts) < 0.5 * len(starts)


def test_the_check_finds_a_planted_probe_question_and_probe_wording():
    """The check above can fail: a probe's question as a user turn, and a reply with a probe's wording."""
    pairs = planted_pairs(4)
    chats = persona_chats(pairs, docs_per_pair=2)
    a, b = pairs[0]
    chats[0]["messages"][0]["content"] = EVAL_TEMPLATES[0][0].format(a=a)
    chats[1]["messages"][1]["content"] += f" The {a} brings to mind the {b}."
    found = _probe_language(chats, pairs)
    assert EVAL_TEMPLATES[0][0].format(a=a) in found and "brings to mind" in found


def _as_pattern(shape: str) -> str:
    return re.escape(shape).replace(r"\{a\}", r"\w+").replace(r"\{b\}", r"\w+")

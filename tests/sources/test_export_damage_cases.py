"""Damage that cost a good conversation, or shifted the index of every later one, in the export reader (#29).

Each case is a list of elements as written (good ones made by `_conv`, damaged ones as text) read through
`iter_array`; every good conversation must come back under its own index, and every other element must be
reported under its own index, or handed on as no conversation (which the reader reports by index). Each was a
failure of the reader on branch `reader` (or of an intermediate fix), found by the fuzz or the old tests' generators.
"""

from __future__ import annotations

import io
import json
import re

import pytest

from mothbrain.sources._jsonstream import iter_array
from mothbrain.sources.base import Problems

CLAUDE = ("uuid", "chat_messages")
CHATGPT = ("conversation_id", "mapping")


def _conv(i: int, kind: tuple[str, str] = CLAUDE) -> str:
    if kind == CHATGPT:
        return json.dumps(
            {
                "title": "t",
                "mapping": {"r": {"id": "r", "children": ["u"]}},
                "current_node": "u",
                "conversation_id": f"u{i}",
            }
        )
    return json.dumps({"uuid": f"u{i}", "name": "n", "chat_messages": [{"sender": "human", "text": f"h{i}"}]})


def _read(chunks: list[str], kind: tuple[str, str]) -> tuple[dict[int, str], set[int], Problems]:
    key, marker = kind
    problems = Problems()
    text = "[" + ",\n".join(chunks) + "]"
    accept = lambda obj: isinstance(obj, dict) and marker in obj  # noqa: E731
    elements = list(iter_array(io.StringIO(text), "c.json", problems, accept, marker=marker))
    stored = {i: obj.get(key) for i, obj in elements if isinstance(obj, dict) and obj.get(key)}
    reported = {int(m.group(1)) for _, where, _ in problems.items if (m := re.match(r"conversation (\d+)", where))}
    reported |= {i for i, _ in elements} - set(stored)  # handed on, no conversation: the reader reports it by index
    return stored, reported, problems


CASES = {
    # a key cut short before its value, then the next element: not a string element between them
    "key_cut_before_its_value": (CLAUDE, [_conv(0), '{"uuid": "u1", "name": "n", "chat_m"', _conv(2), _conv(3)]),
    # a value missing where the cut left a closer
    "value_missing": (CLAUDE, [_conv(0), '{"uuid": "u1", "name": }', _conv(2)]),
    # cut inside a list of objects: the next conversation reads as one more of them (a whole one bounds the damage)
    "cut_inside_a_list_then_whole_ones": (
        CLAUDE,
        [_conv(0), '{"uuid": "u1", "name": "n", "chat_messages": [{"sender": "human"}', _conv(2)]
        + ['{"uuid": "u3", "name": "n", "chat_messages": [{"sender": "human]]', _conv(4)],
    ),
    # two cut elements in a row, the second read as nested in the first: its own key says it is a conversation
    "two_cut_in_a_row": (
        CHATGPT,
        [
            _conv(0, CHATGPT),
            '{"title": "t", "mapping": {"r": {"id": "r", "children": ["u"\x00',
            '{"title": "t", "mapping": {"r": {"id": "r", "children": ["u"]}}, "current_node": "u", '
            '"conversation_id": "u2}',
            _conv(3, CHATGPT),
        ],
    ),
    # an extra closer right after the opening brace (the rest is the same element's), then a quote added
    "extra_closer_after_the_brace": (
        CLAUDE,
        [_conv(0), "{}" + _conv(1)[1:], _conv(2).replace('"name": "n"', '"name":" "n"'), _conv(3)],
    ),
    # a quote removed before a word that is no JSON value, then a colon missing
    "quote_removed_before_a_word": (
        CLAUDE,
        [_conv(0), '{"uuid": "u1", "name": "n", "chat_messages": [{"sender": "human", "text": [moth \\\\ figs"]}]}']
        + [_conv(2).replace('"name": "n"', '"name" "n"'), _conv(3)],
    ),
    # a cut then a stray opener, then the next conversation
    "cut_then_a_stray_opener": (
        CLAUDE,
        [_conv(0), '{"uuid": "u1", "name": "n", "chat_messages": [{"sender"{', _conv(2)],
    ),
    # stray closers inside, then elements that are no conversation (kept, at their own index)
    "stray_closers_then_scalars": (CLAUDE, [_conv(0), _conv(1)[:-1] + "]]]]}", "true", '"s"', _conv(4)]),
    # a run of stray commas in a nested list
    "stray_commas_in_a_list": (
        CLAUDE,
        [_conv(0), '{"uuid": "u1", "name": "n", "chat_messages": [, ,{"sender": "human", "text": "h"}]}', _conv(2)],
    ),
    # four cut in a row, one cut inside its second key
    "four_cut_in_a_row": (
        CLAUDE,
        [
            _conv(0),
            '{"uuid": "u1", "name": "n", "chat_messages": [{"sender": "human"',
            '{"uuid": "u2", "name}',
            '{"uuid": "u3", "name": "n", "chat_messages": [{"sender": "human", "}',
            '{"uuid": "u4", "name": "n", }',
            _conv(5),
        ],
    ),
    # cut inside a list, the next one cut inside its second key's name
    "cut_then_one_cut_in_its_second_key": (
        CLAUDE,
        [_conv(0), '{"uuid": "u1", "name": "n", "chat_messages": [{}', '{"uuid": "u2", "na]]', _conv(3)],
    ),
    # stray commas, then a closer added after a first value (inside the damage: its rest is the same element's),
    # then a NUL inside a key
    "stray_commas_then_an_early_closer_then_a_nul": (
        CLAUDE,
        [
            _conv(0),
            _conv(1).replace('"chat_messages": [', '"chat_messages": [, ,', 1),
            _conv(2).replace('"u2",', '"u2"},', 1),
            _conv(3).replace('"name"', '"n\x00ame"', 1),
            _conv(4),
        ],
    ),
    # a string cut open, then one cut inside its first key's value... after a whole one
    "string_cut_open_then_a_short_one": (
        CLAUDE,
        [
            _conv(0),
            '{"uuid": "u1", "name": "n", "chat_messages": [{"sender": "human", "text": "',
            '{"uuid": "u"',
            _conv(3),
        ],
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_damage_costs_exactly_the_damaged_elements(name):
    kind, chunks = CASES[name]
    good = {i for i, c in enumerate(chunks) if c == _conv(i, kind)}
    stored, reported, problems = _read(chunks, kind)
    assert stored == {i: f"u{i}" for i in good}, problems.items
    assert reported == set(range(len(chunks))) - good, problems.items

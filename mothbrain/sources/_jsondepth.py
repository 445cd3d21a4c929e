"""How deep a JSON record nests, at the speed of string methods, not of a Python loop over its characters.

`depth_over` measures a record that decoded (cheaply ruled out when it has fewer brackets than the limit);
`value_end` finds where a container the decoder gave up on (nested too deep for it) ends, so the reader can refuse
it as one record and go on with the next, instead of reading it token by token (a 6 MB value took 20 to 150 s).
"""

from __future__ import annotations

import re
from itertools import accumulate
from typing import Any

from mothbrain.sources._jsontokens import Tokens

_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)  # a whole string (the text decoded: strings are whole)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.S)  # a whole string or a bracket
# whole strings and other chars, up to a string that does not end before the block does
_OUTSIDE = re.compile(r'(?:[^"]++|"[^"\\]*+(?:\\.[^"\\]*+)*+")*+', re.S)
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}
BLOCK = 1 << 16  # chars counted at a time by `value_end`


def depth_over(text: str, start: int, end: int, limit: int) -> int | None:
    """The nesting depth of the valid JSON text[start:end] when it is over `limit`, else None."""
    if text.count("[", start, end) + text.count("{", start, end) <= limit:
        return None  # fewer openers than the limit: it cannot nest deeper
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text[start:end]))
    depth = max(accumulate(map(_STEP.__getitem__, brackets)), default=0)
    return depth if depth > limit else None


def value_end(buf: Any, pos: int) -> int | None:
    """Absolute offset just past the container that opens at absolute `pos` in `buf` (a `_jsonstream._Buffer`,
    read on as needed), by counting its brackets outside strings; None if the file ends first. The brackets are
    counted a block at a time (its strings taken out by a regex), and only the block where the depth may come back
    to zero is read token by token."""
    depth, at = 1, pos + 1
    while True:
        text, base = buf.text, buf.base
        i = at - base
        if i >= len(text):
            if not buf.more():
                return None
            continue
        if text[i] == '"':  # a string longer than a block, or cut by the buffer's end
            at = Tokens(buf).string_end(at + 1)
            if at is None:
                return None
            continue
        k = _OUTSIDE.match(text, i, i + BLOCK).end()  # a block that ends outside any string
        bare = _STRING.sub("", text[i:k])
        closers = bare.count("]") + bare.count("}")
        if depth > closers:  # it cannot close in this block
            depth += bare.count("[") + bare.count("{") - closers
        else:
            for m in _TOKEN.finditer(text, i, k):
                if m.group()[0] == '"':
                    continue
                depth += _STEP[m.group()]
                if depth == 0:
                    return base + m.end()
        at = base + k

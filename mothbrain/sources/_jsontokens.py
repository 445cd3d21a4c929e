"""Tokens of a JSON text held in a sliding buffer (`_jsonstream._Buffer`), at absolute char offsets, reading on as
needed: what `_jsonrepair` reads damaged text with. Lenient where damage is expected: control characters
outside strings are passed over like whitespace, and any run of other chars that is no string or bracket is one
word (whether it is a value is asked separately)."""

from __future__ import annotations

import re
from typing import Any

_WS = re.compile(r"[\x00-\x20]*")  # whitespace, and control characters outside strings (never a token: passed over)
_WORD = re.compile(r'[^\x00-\x20,:\[\]{}"]+')  # a number, literal or junk: one token either way
# the words that are values (Python's decoder takes NaN and Infinity too); any other word is damage
_LITERAL = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?|true|false|null|NaN|-?Infinity")
_STRING_TAIL = re.compile(r'[^"\\]*(?:\\.[^"\\]*)*"', re.S)  # from inside a string to just past its end
_CONTROL = re.compile(r"[\x00-\x1f]")
_JUNK_END = re.compile(r"[,\]]")


class Tokens:
    """Tokens of the buffer at absolute offsets, reading on as needed: (kind, start, end); kind is one of
    '{}[]:,', '"' a string, 'w' a bare word, '' the end of the file, '~' the file ends inside a string."""

    def __init__(self, buf: Any) -> None:
        self.buf = buf

    def skip_ws(self, pos: int) -> int:
        buf = self.buf
        i = pos - buf.base
        while True:
            i = _WS.match(buf.text, i).end()
            if i < len(buf.text) or not buf.more():
                return buf.base + i

    def string_end(self, pos: int) -> int | None:
        """Absolute offset just past the quote that closes a string whose content starts at `pos`; None at EOF."""
        buf = self.buf
        while True:
            m = _STRING_TAIL.match(buf.text, pos - buf.base)
            if m:
                return buf.base + m.end()
            if not buf.more(len(buf.text)):
                return None

    def token(self, pos: int) -> tuple[str, int, int]:
        buf = self.buf
        start = self.skip_ws(pos)
        i = start - buf.base
        if i >= len(buf.text):
            return "", start, start
        c = buf.text[i]
        if c in "{}[]:,":
            return c, start, start + 1
        if c == '"':
            end = self.string_end(start + 1)
            return ("~", start, start) if end is None else ('"', start, end)
        while True:
            m = _WORD.match(buf.text, i)
            if m.end() < len(buf.text) or not buf.more():
                return "w", start, buf.base + m.end()

    def junk_end(self, pos: int) -> int:
        """The next `,` from `pos` (strings and brackets not read: they are junk), or the list's closing `]` (only
        whitespace after it), or the end of the file."""
        buf = self.buf
        while True:
            m = _JUNK_END.search(buf.text, pos - buf.base)
            if m is None:
                if not buf.more():
                    return buf.base + len(buf.text)
                continue
            at = buf.base + m.start()
            if m.group() == "," or self.token(at + 1)[0] == "":
                return at
            pos = at + 1

    def after_comma(self, pos: int) -> bool:
        """Whether the last char before `pos` that is not whitespace is a comma."""
        i = pos - self.buf.base - 1
        while i >= 0 and self.buf.text[i] in " \t\r\n":
            i -= 1
        return i >= 0 and self.buf.text[i] == ","

    def opens_object(self, pos: int) -> bool:
        """Whether an object with a key opens at `pos` (how every element of an export starts)."""
        if self.char(pos) != "{":
            return False
        return self.char(self.skip_ws(pos + 1)) == '"'

    def text(self, start: int, end: int) -> str:
        return self.buf.text[start - self.buf.base : end - self.buf.base]

    def key(self, start: int, end: int) -> str:
        """The string token [start, end) as a key is compared: raw control characters in it (damage) left out."""
        return _CONTROL.sub("", self.text(start, end))

    def is_literal(self, start: int, end: int) -> bool:
        return _LITERAL.fullmatch(self.buf.text, start - self.buf.base, end - self.buf.base) is not None

    def has_control(self, start: int, end: int) -> bool:
        return _CONTROL.search(self.buf.text, start - self.buf.base, end - self.buf.base) is not None

    def char(self, pos: int) -> str:
        i = pos - self.buf.base
        return self.buf.text[i] if 0 <= i < len(self.buf.text) else ""

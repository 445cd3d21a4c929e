"""Stream the elements of a huge top-level JSON list (a chat export) one at a time.

Exports run to hundreds of MB, so we never `json.load` them: the C decoder (`raw_decode`) parses
one element at a time from a sliding text buffer, so memory is proportional to the largest
conversation. A broken element is reported with its index and skipped: a string-aware bracket scan
finds its end when what follows it is readable, so every later element keeps its true index; when the
damage hides the end (a string cut open), the scanner resynchronises on the next object that `accept`
recognises as a conversation and says so. A truncated file keeps everything before the cut.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

from mothbrain.config import SourceConfig
from mothbrain.sources import Problems, Reader

CHUNK = 1 << 20  # characters read at a time
_WS = re.compile(r"[ \t\r\n]*")


class _Buffer:
    def __init__(self, stream: TextIO, chunk: int, rel: str, problems: Problems) -> None:
        self.stream, self.chunk, self.rel, self.problems = stream, chunk, rel, problems
        self.text = ""
        self.base = 0  # characters dropped from the front (for offsets in messages)
        self.eof = False
        self.pin: int | None = None  # an absolute position compact must keep (a look-ahead may come back to it)

    def more(self, at_least: int = 0) -> bool:
        """Append at least one chunk (or `at_least` chars, so a huge element is re-parsed O(log n) times)."""
        if self.eof:
            return False
        try:
            data = self.stream.read(max(self.chunk, at_least))
        except (OSError, zipfile.BadZipFile, EOFError) as exc:  # a bad disk block, a corrupt zip member
            self.problems.add(
                self.rel, f"char {self.base + len(self.text)}", f"read failed ({exc}); rest of file skipped"
            )
            data = ""
        if not data:
            self.eof = True
            return False
        self.text += data
        return True

    def compact(self, pos: int) -> int:
        cut = pos if self.pin is None else min(pos, self.pin - self.base)
        if cut > self.chunk:
            self.text = self.text[cut:]
            self.base += cut
            return pos - cut
        return pos

    def skip_ws(self, pos: int) -> int:
        while True:
            pos = _WS.match(self.text, pos).end()
            if pos < len(self.text) or not self.more():
                return pos


def _incomplete(exc: json.JSONDecodeError, text: str) -> bool:
    """Did decoding fail only because the buffer ends (more text might complete it)?"""
    return exc.msg.startswith("Unterminated string") or exc.pos >= len(text) - 8


def _decode(buf: _Buffer, dec: json.JSONDecoder, pos: int) -> tuple[Any, int]:
    """Decode the value at `pos`, reading more as needed. Raises JSONDecodeError/RecursionError if it is bad."""
    while True:
        try:
            obj, end = dec.raw_decode(buf.text, pos)
        except json.JSONDecodeError as exc:
            if not buf.eof and _incomplete(exc, buf.text):
                buf.more(len(buf.text) - pos)
                continue
            raise
        if end >= len(buf.text) and not isinstance(obj, (dict, list)) and buf.more():
            continue  # a number or literal cut by the buffer edge
        return obj, end


def _resync(buf: _Buffer, pos: int, dec: json.JSONDecoder, accept: Callable[[Any], bool]) -> int | None:
    """Position of the next object that `accept` takes, or None at the end of the file."""
    while True:
        pos = buf.compact(pos)
        i = buf.text.find("{", pos)
        if i < 0:
            pos = len(buf.text)
            if not buf.more():
                return None
            continue
        try:
            obj, end = _decode(buf, dec, i)
        except (json.JSONDecodeError, RecursionError):
            pos = i + 1
            continue
        if accept(obj):
            return i
        pos = end  # a nested object: anything inside it is nested too, so skip it whole


def _element_end(buf: _Buffer, pos: int) -> int | None:
    """Where the (broken) element at `pos` ends — its `,` or the list's `]` — by a string-aware bracket scan;
    None when the file ends first. The caller checks it against resync (a string cut open misleads the scan)."""
    depth, i, in_str = 0, pos, False
    while True:
        if i >= len(buf.text):
            if not buf.more():
                return None
            continue
        c = buf.text[i]
        if in_str:
            if c == "\\":
                i += 1
            elif c == '"':
                in_str = False
        elif c == '"':
            in_str = True
        elif c in "[{":
            depth += 1
        elif c in "]}":
            if depth == 0 and c == "]" and buf.skip_ws(i + 1) >= len(buf.text):
                break  # the list's own end (only whitespace after it); any other stray closer is damage
            depth = max(depth - 1, 0)
        elif c == "," and depth == 0:
            break
        i += 1
    return i


def iter_array(
    stream: TextIO,
    rel: str,
    problems: Problems,
    accept: Callable[[Any], bool],
    what: str = "conversation",
    chunk: int = CHUNK,
) -> Iterator[tuple[int, Any]]:
    """(index, element) for each element of the top-level list; problems are reported, never raised."""
    buf, dec = _Buffer(stream, chunk, rel, problems), json.JSONDecoder()
    pos = buf.skip_ws(0)
    if buf.text[pos : pos + 1] == "\ufeff":
        pos = buf.skip_ws(pos + 1)
    if pos >= len(buf.text):
        problems.add(rel, "file", f"empty file; expected a JSON list of {what}s")
        return
    if buf.text[pos] != "[":
        problems.add(
            rel,
            f"char {buf.base + pos}",
            f"expected a JSON list of {what}s, found {buf.text[pos]!r}; is this the right file?",
        )
        return
    pos, index = pos + 1, 0
    while True:
        pos = buf.skip_ws(buf.compact(pos))
        if pos >= len(buf.text):
            problems.add(
                rel,
                f"after {what} {index - 1}",
                "file ends before the list is closed (truncated export?); everything before was read",
            )
            return
        if buf.text[pos] == "]":
            return
        if buf.text[pos] == ",":  # separators; stray or trailing commas are tolerated
            pos += 1
            continue
        start = buf.base + pos
        try:
            obj, end = _decode(buf, dec, pos)
        except (json.JSONDecodeError, RecursionError) as exc:
            where = f"{what} {index} (char {start})"
            if isinstance(exc, json.JSONDecodeError) and buf.eof and _incomplete(exc, buf.text):
                problems.add(
                    rel, where, f"file ends inside this {what} (truncated export?); everything before was read"
                )
                return
            reason = exc.msg if isinstance(exc, json.JSONDecodeError) else "nested too deeply"
            # Its end by a bracket scan — unless a conversation starts before that end: a string cut open turns
            # the scan inside out and it could swallow good conversations, which resync finds instead.
            end = _element_end(buf, pos)
            skipped_from = buf.pin = buf.base + pos  # keep the text from here while resync looks ahead
            end_abs = None if end is None else buf.base + end
            nxt = _resync(buf, pos + 1, dec, accept)
            buf.pin = None
            if end_abs is not None and (nxt is None or buf.base + nxt > end_abs):
                problems.add(rel, where, f"invalid JSON ({reason}); skipped")  # the next element keeps its index
                index += 1
                pos = end_abs - buf.base
                continue
            if nxt is None:
                problems.add(rel, where, f"invalid JSON ({reason}); nothing readable after it")
                return
            problems.add(
                rel,
                where,
                f"invalid JSON ({reason}); chars {skipped_from}-{buf.base + nxt} skipped to the next {what}, "
                f"counted as one {what} (later {what} numbers may be low by the elements it hid)",
            )
            index += 1
            pos = nxt
            continue
        yield index, obj
        index += 1
        pos = buf.skip_ws(end)
        if pos < len(buf.text) and buf.text[pos] not in ",]":
            problems.add(
                rel,
                f"char {buf.base + pos}",
                f"unexpected {buf.text[pos]!r} after {what} {index - 1}; skipped to the next {what}",
            )
            nxt = _resync(buf, pos, dec, accept)
            if nxt is None:
                return
            pos = nxt


def open_export(path: Path, rel: str, problems: Problems, member: str = "conversations.json") -> TextIO | None:
    """A text stream of an export: the JSON file itself or `member` inside a .zip; None (reported) if unreadable.

    Invalid UTF-8 is replaced (U+FFFD), not fatal: one bad byte must not cost a 500 MB export.
    The caller closes the stream.
    """
    try:
        if path.suffix.lower() == ".zip":
            zf = zipfile.ZipFile(path)
            names = [n for n in zf.namelist() if n.rsplit("/", 1)[-1] == member]
            if not names:
                zf.close()
                problems.add(rel, "file", f"zip archive has no {member}; is this the right export?")
                return None
            raw = zf.open(min(names, key=len))
            zf.close()  # the member stream keeps its own reference to the archive file
            return io.TextIOWrapper(raw, encoding="utf-8", errors="replace", newline="")
        return path.open("r", encoding="utf-8", errors="replace", newline="")
    except (OSError, zipfile.BadZipFile, EOFError, RuntimeError) as exc:
        problems.add(rel, "file", f"unreadable ({getattr(exc, 'strerror', None) or exc})")
        return None


def export_reader(kind: str, marker: str, conversation: Callable[..., Any]) -> Reader:
    """The Reader of a chat export (`conversations.json`, or a .zip holding it) whose conversations
    are the objects with a `marker` key, streamed one at a time:
    `conversation(conv, index, rel, source, problems)` -> Document or None."""

    def read(path: Path, rel: str, source: SourceConfig, problems: Problems) -> Iterator[Any]:
        stream = open_export(path, rel, problems)
        if stream is None:
            return
        with stream:
            for index, conv in iter_array(stream, rel, problems, lambda obj: isinstance(obj, dict) and marker in obj):
                doc = conversation(conv, index, rel, source, problems)
                if doc is not None:
                    yield doc

    return Reader(kind=kind, read=read, names=("conversations.json",), suffixes=(".zip",))

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
from mothbrain.sources.base import Problems, Reader
from mothbrain.sources.limits import CappedReader, CappedText, FileRefused, limit_mb

CHUNK = 1 << 20  # characters read at a time
_WS = re.compile(r"[ \t\r\n]*")


class _Buffer:
    def __init__(self, stream: TextIO, chunk: int, rel: str, problems: Problems) -> None:
        self.stream, self.chunk, self.rel, self.problems = stream, chunk, rel, problems
        self.text = ""
        self.base = 0  # characters dropped from the front (for offsets in messages)
        self.eof = False
        self.failed = False  # a read failed (reported): the cut it leaves is not a truncated export
        self.pin: int | None = None  # an absolute position compact must keep (a look-ahead may come back to it)

    def more(self, at_least: int = 0) -> bool:
        """Append at least one chunk (or `at_least` chars, so a huge element is re-parsed O(log n) times)."""
        if self.eof:
            return False
        try:
            data = self.stream.read(max(self.chunk, at_least))
        except (OSError, zipfile.BadZipFile, EOFError) as exc:  # a bad disk block, a corrupt zip member
            self._failed(f"read failed ({exc})")
            data = ""
        if not data:
            why = getattr(self.stream, "read_error", None)  # a zip member ended early (CappedText)
            if why and not self.failed:
                self._failed(why)
            self.eof = True
            return False
        self.text += data
        return True

    def _failed(self, why: str) -> None:
        self.problems.add(self.rel, f"char {self.base + len(self.text)}", f"{why}; rest of file skipped")
        self.failed = True

    def compact(self, pos: int) -> int:
        cut = pos if self.pin is None else min(pos, self.pin - self.base)
        if cut > self.chunk:
            self.text = self.text[cut:]
            self.base += cut
            return pos - cut
        return pos

    def skip_ws(self, pos: int, drop: bool = False) -> int:
        """The first non-whitespace position from `pos`, reading on as needed. With `drop` (the caller holds no
        other position) what is read up to it goes as it is read: an export padded with hundreds of MB of
        whitespace between elements is read in constant memory, not accumulated."""
        while True:
            pos = _WS.match(self.text, pos).end()
            if pos < len(self.text):
                return pos
            if drop and self.pin is None:  # all whitespace (or already consumed) to the end: let it go
                self.base += len(self.text)
                self.text, pos = "", 0
            if not self.more():
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


_SCALAR = r'(?:"(?:[^"\\]|\\.)*"|[^,{}\[\]"]*)'


def _opening(keys: list[str]) -> re.Pattern | None:
    """How an element whose first two keys are `keys` starts: `{"k1": <scalar>, "k2":`, or `{"k1"` cut off
    by damage before another key follows (a nested object opening with k1 has a different second key).
    None without two keys."""
    if len(keys) < 2:
        return None
    k1, k2 = (re.escape(json.dumps(k)) for k in keys)
    after = r"(?:,\s*(?:" + k2 + r'\s*:|(?!"(?:[^"\\]|\\.)*"\s*:))|[\]}]|$)'
    # ... or `{"k1"` cut before its value ends: anything but a value then another key after it
    nested = r"\s*:\s*" + _SCALAR + r'\s*,\s*"(?:[^"\\]|\\.)*"\s*:'
    return re.compile(r"\{\s*" + k1 + r"(?:\s*:\s*" + _SCALAR + r"\s*" + after + r"|(?!" + nested + r"))")


def _elements_in(span: str, opening: re.Pattern | None) -> int:
    """How many elements a damaged span holds: the broken one it starts with (whatever is left of its
    opening), and one per later opening."""
    return 1 + (len(opening.findall(span, 1)) if opening is not None else 0)


def _next_opening(buf: _Buffer, pos: int, opening: re.Pattern) -> int | None:
    """Position of the next element opening at or after `pos`, reading on as needed; None at the end of the file."""
    start = pos
    while True:
        m = opening.search(buf.text, start)
        if m:
            return m.start()
        start = max(pos, len(buf.text) - 1024)  # an opening may straddle the end of what has been read
        if not buf.more():
            return None


def _report_hidden(
    problems: Problems, rel: str, what: str, index: int, start: int, reason: str, hidden: int, nxt: int | None
) -> None:
    if nxt is None:
        first = f"invalid JSON ({reason}); nothing readable after it ({hidden} {what}s by their openings)"
    else:
        first = f"invalid JSON ({reason}); chars {start}-{nxt} skipped to the next {what}"
    problems.add(rel, f"{what} {index} (char {start})", first)
    for n in range(1, hidden):
        problems.add(rel, f"{what} {index + n}", "unreadable: inside the damage of the one before it")


def _value_follows(buf: _Buffer, end: int) -> bool:
    """Whether the list goes on sensibly at `end` (its `]`, or a `,` then a JSON value or the `]`)."""
    if buf.text[end : end + 1] != ",":
        return True
    nxt = buf.skip_ws(end + 1)
    return buf.text[nxt : nxt + 1] in ("{", "[", '"', "-", "t", "f", "n", "]", *"0123456789")


def _first_keys(buf: _Buffer, dec: json.JSONDecoder, pos: int | None) -> list[str]:
    """The first two keys of the object at `pos` (the one resync found), or [] when there is none."""
    if pos is None:
        return []
    try:
        obj, _ = _decode(buf, dec, pos)
    except (json.JSONDecodeError, RecursionError):
        return []
    return list(obj)[:2] if isinstance(obj, dict) else []


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
    pos = buf.skip_ws(0, drop=True)
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
    last_keys: list[str] = []
    while True:
        pos = buf.skip_ws(buf.compact(pos), drop=True)
        if pos >= len(buf.text):
            if buf.failed:  # the failed read was reported where it happened
                return
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
            opening = _opening(last_keys)
            truncated = isinstance(exc, json.JSONDecodeError) and buf.eof and _incomplete(exc, buf.text)
            if truncated and (opening is None or opening.search(buf.text, pos + 1) is None):
                if buf.failed:
                    return
                problems.add(
                    rel, where, f"file ends inside this {what} (truncated export?); everything before was read"
                )
                return
            reason = exc.msg if isinstance(exc, json.JSONDecodeError) else "nested too deeply"
            # Where the damage ends. A bracket scan finds the element's end, unless a string cut open turns it
            # inside out and it swallows good elements; so the next readable element (resync) and the next
            # element opening (elements open alike: their first two keys) are found too, and every opening
            # inside the damage counts as one element it hid — so every element is stored or counted.
            buf.pin = start
            end = _element_end(buf, pos)
            end_abs = None if end is None else buf.base + end
            found = _next_opening(buf, pos + 1, opening) if opening is not None else None
            found_abs = None if found is None else buf.base + found
            sync = _resync(buf, pos + 1, dec, accept)  # may drop text before the pin: absolute positions
            sync_abs = None if sync is None else buf.base + sync
            nxt_abs = min((p for p in (found_abs, sync_abs) if p is not None), default=None)
            opening = opening or _opening(_first_keys(buf, dec, sync))
            span = buf.text[start - buf.base : None if nxt_abs is None else nxt_abs - buf.base]
            buf.pin = None
            if end_abs is not None and (
                nxt_abs is None or (nxt_abs >= end_abs and _value_follows(buf, end_abs - buf.base))
            ):
                problems.add(rel, where, f"invalid JSON ({reason}); skipped")  # the next element keeps its index
                index, pos = index + 1, end_abs - buf.base
                continue
            hidden = _elements_in(span, opening)
            _report_hidden(problems, rel, what, index, start, reason, hidden, nxt_abs)
            if nxt_abs is None:
                return
            index, pos = index + hidden, nxt_abs - buf.base
            continue
        if isinstance(obj, dict):
            last_keys = list(obj)[:2]
        yield index, obj
        index += 1
        pos = buf.skip_ws(end, drop=True)
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
    A zip member is held to ingest.max_file_mb (see `limits`): one that declares more raises FileRefused.
    The caller closes the stream.
    """
    try:
        if path.suffix.lower() == ".zip":
            with zipfile.ZipFile(path) as zf:  # the member stream keeps its own reference to the archive file
                names = [n for n in zf.namelist() if n.rsplit("/", 1)[-1] == member]
                if not names:
                    problems.add(rel, "file", f"zip archive has no {member}; is this the right export?")
                    return None
                info = zf.getinfo(min(names, key=len))
                _check_declared_size(info)
                raw = CappedReader(zf.open(info), limit_mb() * 1e6, f"member {info.filename}")
            return CappedText(io.BufferedReader(raw), encoding="utf-8", errors="replace", newline="")
        return path.open("r", encoding="utf-8", errors="replace", newline="")
    except (OSError, zipfile.BadZipFile, EOFError, RuntimeError) as exc:
        problems.add(rel, "file", f"unreadable ({getattr(exc, 'strerror', None) or exc})")
        return None


def _check_declared_size(info: zipfile.ZipInfo) -> None:
    """Refuse a member whose header says it inflates past the limit, before a byte of it is inflated."""
    limit = limit_mb()
    if info.file_size > limit * 1e6:
        raise FileRefused(
            f"member {info.filename}",
            f"inflates to {info.file_size / 1e6:.0f} MB, over ingest.max_file_mb ({limit:g} MB); not read, "
            "earlier documents kept (raise ingest.max_file_mb to read it)",
        )


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

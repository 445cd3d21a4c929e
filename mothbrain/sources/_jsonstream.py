"""Stream the elements of a huge top-level JSON list (a chat export) one at a time.

Exports run to hundreds of MB, so we never `json.load` them: the C decoder (`raw_decode`) parses
one element at a time from a sliding text buffer, so memory is proportional to the largest
conversation. An element that does not decode is read on from its start (where the state is known: depth 1,
outside any string) by `_jsonrepair`, which tracks depth and string state with a JSON grammar and repairs the
damage it meets, to where the damage ends; every element start inside the damage is reported with its index
and char offset, and the fast reader goes on from there, so every later element keeps its true index. A
truncated file keeps everything before the cut.
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
from mothbrain.sources._jsondepth import depth_over, value_end
from mothbrain.sources._jsonrepair import Outcome, recover
from mothbrain.sources.base import Problems, Reader
from mothbrain.sources.limits import CappedReader, CappedText, FileRefused, json_depth, limit_mb, too_deep_reason

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


# Characters that cannot start a JSON value: between elements they are junk, skipped and reported by offset.
_JUNK = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f}:\ufeff\ufffd]+")


def _report_damage(problems: Problems, rel: str, what: str, index: int, start: int, head: str, out: Outcome) -> None:
    """One problem per element inside the damage: the first with `head`, each later one by its own offset."""
    problems.add(rel, f"{what} {index} (char {start})", head)
    for k, at in enumerate(out.starts, 1):
        problems.add(rel, f"{what} {index + k} (char {at})", f"unreadable: inside the damage of {what} {index}")


def iter_array(
    stream: TextIO,
    rel: str,
    problems: Problems,
    accept: Callable[[Any], bool],
    what: str = "conversation",
    chunk: int = CHUNK,
    marker: str | None = None,
) -> Iterator[tuple[int, Any]]:
    """(index, element) for each element of the top-level list; problems are reported, never raised. `marker`:
    the key every element has (`accept` tests for it), which lets damage that hides an element's start be read."""
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

    def decode(at: int) -> tuple[Any, int]:  # `recover` works in absolute offsets
        obj, end = _decode(buf, dec, at - buf.base)
        return obj, buf.base + end

    def read_damage(at: int, after_value: bool) -> Outcome:
        buf.pin = at  # the damage is read from here: keep it in the buffer
        try:
            return recover(buf, at, decode, accept, marker, opening, after_value=after_value, after_object=last_object)
        finally:
            buf.pin = None

    pos, index, limit = pos + 1, 0, json_depth()
    last_object: str | None = None  # the element before was a whole object (damage after it may be its own rest)
    opening: tuple[str, ...] = ()  # the first two keys of the last whole conversation (how conversations open)
    while True:
        pos = buf.skip_ws(buf.compact(pos), drop=True)
        if pos >= len(buf.text):
            if not buf.failed:  # a failed read was reported where it happened
                problems.add(
                    rel,
                    f"after {what} {index - 1}",
                    "file ends before the list is closed (truncated export?); everything before was read",
                )
            return
        c = buf.text[pos]
        if c == ",":  # separators; stray or trailing commas are tolerated
            pos += 1
            continue
        if c == "]":
            after = buf.skip_ws(pos + 1, drop=True)
            if after >= len(buf.text):
                return
            problems.add(rel, f"char {buf.base + pos}", f"a stray ']' after {what} {index - 1}; read on past it")
            pos = after
            continue
        junk = _JUNK.match(buf.text, pos)
        if junk:
            problems.add(rel, f"char {buf.base + pos}", f"unexpected {junk.group()[:20]!r} between {what}s; skipped")
            pos = junk.end()
            continue
        start = buf.base + pos
        try:
            obj, end = _decode(buf, dec, pos)
            depth = depth_over(buf.text, pos, end, limit) if isinstance(obj, (dict, list)) else None
            nxt = buf.skip_ws(end)
            while (junk := _JUNK.match(buf.text, nxt)) and not isinstance(obj, str):  # junk right after it
                problems.add(rel, f"char {buf.base + nxt}", f"unexpected {junk.group()[:20]!r} after a {what}; skipped")
                nxt = buf.skip_ws(junk.end())
            whole = nxt >= len(buf.text) or buf.text[nxt] in ",]"
            if not whole and not isinstance(obj, (dict, list)):
                raise json.JSONDecodeError("a value run into what follows it (a stray quote?)", buf.text, nxt)
        except (json.JSONDecodeError, RecursionError) as exc:
            if isinstance(exc, RecursionError) and (end := _too_deep_end(buf, start)) is not None:
                problems.add(rel, f"{what} {index} (char {start})", too_deep_reason())
                index += 1
                pos = end - buf.base
                continue
            reason = exc.msg if isinstance(exc, json.JSONDecodeError) else "nested too deeply"
            out = read_damage(start, after_value=False)
            last_object = None
            if out.continues:  # not an element: the rest of the one before, cut short by an extra closer
                problems.add(rel, f"char {start}", f"{out.repairs[0]}; its rest skipped")
                for k, at in enumerate(out.starts):
                    problems.add(rel, f"{what} {index + k} (char {at})", "unreadable: inside the damage before it")
                index += len(out.starts)
                if out.resume is None:
                    return
                pos = out.resume - buf.base
                continue
            if out.cut and not out.starts:
                if not buf.failed:
                    problems.add(
                        rel,
                        f"{what} {index} (char {start})",
                        f"file ends inside this {what} (truncated export?); everything before was read",
                    )
                return
            head = f"invalid JSON ({reason}); skipped"
            if out.starts:
                head = f"invalid JSON ({reason}); it and the {len(out.starts)} after it lost in one damage"
            if out.unbounded:
                head = f"invalid JSON ({reason}); its end could not be read, skipped to the next whole {what}"
            _report_damage(problems, rel, what, index, start, head, out)
            index += 1 + len(out.starts)
            if out.resume is None:
                return
            pos = out.resume - buf.base
            continue
        if depth is None:
            yield index, obj
        else:
            problems.add(rel, f"{what} {index} (char {start})", too_deep_reason(depth))
        index += 1
        last_object = None if not isinstance(obj, dict) else "object" if obj else "empty"
        if isinstance(obj, dict) and accept(obj):
            opening = tuple(obj)[:2]
        if whole:
            pos = nxt
            continue
        # something other than a `,` or the list's `]` after a whole element: read past it
        at = buf.base + nxt
        out = read_damage(at, after_value=True)
        problems.add(
            rel, f"char {at}", f"unexpected {buf.text[nxt]!r} after {what} {index - 1}; skipped to the next {what}"
        )
        for k, s in enumerate(out.starts):
            problems.add(rel, f"{what} {index + k} (char {s})", f"unreadable: inside the damage at char {at}")
        index += len(out.starts)
        if out.resume is None:
            return
        pos = out.resume - buf.base


def _too_deep_end(buf: _Buffer, start: int) -> int | None:
    """Where the element at absolute `start`, too deep for the decoder, ends (just past it), if it ends cleanly:
    a container whose brackets balance, followed by a `,`, the list's `]` or the end of the file. None otherwise
    (damaged too: read by `recover` then)."""
    if buf.text[start - buf.base] not in "[{":
        return None
    end = value_end(buf, start)
    if end is None:
        return None
    after = buf.skip_ws(end - buf.base)
    return end if after >= len(buf.text) or buf.text[after] in ",]" else None


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
            accept = lambda obj: isinstance(obj, dict) and marker in obj  # noqa: E731
            for index, conv in iter_array(stream, rel, problems, accept, marker=marker):
                doc = conversation(conv, index, rel, source, problems)
                if doc is not None:
                    yield doc

    return Reader(kind=kind, read=read, names=("conversations.json",), suffixes=(".zip",))

"""Where a damaged stretch of a top-level JSON list ends, and which of the list's elements it holds.

The fast reader (`_jsonstream`) decodes one element at a time and knows the exact state at each element's
start: inside the list, at depth 1, outside any string. When an element does not decode, `recover` reads on
from that start with a JSON tokenizer and grammar (containers, keys, colons, commas, string state), so the
depth it tracks is the list's own, never a guess from what nested objects look like.

Damage that keeps strings and brackets intact (a control character or NUL in a string, a bad literal, a
missing comma or colon, a value nested 10,000 deep) leaves the grammar reading whole: the element's true
end is found and it costs exactly that element. Damage that breaks the reading (a quote removed or added
flips string state; a bracket removed or added shifts the depth; an element cut short) shows as an impossible
state a few tokens on. There the reading branches into repairs, each one edit at or just before that point: a
quote missing (also at each structural boundary inside the last string read), a quote extra, a value or a
closing bracket missing, a token extra (a run of one stray closer or comma, or a recent closer that closed too
much), a comma or colon missing, a misspelt literal, the element cut short (there, before the comma just read,
or inside the last string read; what a cut leaves before the list's next comma is its junk tail). A branch
that reaches another impossible state may repair again (`MAX_REPAIRS`) or dies.

The damage ends where a branch stands at depth 1 before an element that decodes whole and that the caller
accepts (a conversation), or, past its first repair, before an object that opens like a conversation and does
not decode (the next element, damaged too: read on its own, counted as one more repair). Of all such ends the
reading with the fewest repairs wins, then the earliest, then the one with fewer elements that are not even
objects. Evidence from the list itself bounds the search: no reading goes past the next whole conversation
after a `,` (a reading that reaches one as nested was cut short before it); conversations do not nest, so a
nested object holding the conversations' own key, or opening with their first two keys, is the next element
(the one before was cut short where it opens); a raw control character in a string (a writer escapes them)
and junk of more than one char after a cut each cost like a repair. If no reading survives, the damage is
reported as one element up to the next whole conversation (the last resort). Every element start the winning
reading crossed is reported with its index and char offset.

Known limits (undecidable from the text): an element cut inside its first key, or cut before its second key
when the element before it was cut inside a list whose objects open with the same first key, reads as part of
the element before; the reader then reports one damaged element where two were.
"""

from __future__ import annotations

import gc
import heapq
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from mothbrain.sources._jsontokens import Tokens

MAX_REPAIRS = 3  # edits one reading may assume
MAX_BRANCHES = 4000  # branches one recovery may start before it gives up on reading the damage
MAX_TOKENS = 4_000_000  # tokens all branches together may read (a bound on time, about a second per million)
_ELEMENT = "element"
_NAME = re.compile(r"[A-Za-z0-9_]*")  # the start of a key that is a name
_AHEAD = 4096  # chars a branch reads past the one behind it before it lets that one catch up
_RECENT = 12  # structural chars before a string's closing quote where its true end may lie

_BLANK = dict.fromkeys(range(0x21))  # whitespace and control characters, deleted by str.translate
_STRUCTURE = set(",:[]{} \t\r\n")
_GAP_CHARS = set(",:[]{} \t\r\n0123456789.+-eEtrufalsn")  # what may sit between two strings

# A container stack that branches share: (kind, parent, depth, where it opened, its first key until its second is
# read); the root is the list itself at depth 1.
Stack = tuple
ROOT: Stack = ("[", None, 1, -1, None)


def _push(stack: Stack, kind: str, at: int) -> Stack:
    """`stack` with a container of `kind` opened at absolute offset `at` inside it."""
    return (kind, stack, stack[2] + 1, at, None)


def _shape(stack: Stack) -> tuple:
    """A short key for telling branches apart: the depth and the innermost few container kinds."""
    kinds, node = [], stack
    while node is not None and len(kinds) < 8:
        kinds.append(node[0])
        node = node[1]
    return (stack[2], *kinds)


class _Branch(NamedTuple):
    """One reading of the damaged text: where it is, its containers and grammar phase, what it assumed."""

    pos: int  # absolute char offset of its next token
    stack: Stack
    phase: str  # 'v' value, 'v0' value or ']', 'k' key, 'k0' key or '}', 'c' colon, 'a' after a value,
    # 'j' after an element cut short (at depth 1, before its junk tail up to the next `,`)
    repairs: tuple[str, ...] = ()
    starts: tuple[int, ...] = ()  # absolute starts of the list elements it crossed after the first
    clean: int | None = None  # start of the first whole element it stepped over since it last read char by char
    before_string: tuple | None = None  # (branch before the last string token, its start, its end)
    before_closer: tuple = ()  # (branch before, offset) of the last few closers, newest first
    continues: bool = False  # reads the text as the rest of the element before (an extra closer ended it early)
    before_comma: tuple | None = None  # (branch before, offset) of the last comma
    broke: int = -1  # where its earliest repair puts the damage (-1: none yet)
    odd: int = 0  # elements it read inside the damage that are not even objects (unlikelier on a tie)
    bad: int = 0  # strings it read with a raw control character in them (each costs like a repair)


def _damaged_next(b: _Branch, start: int) -> _Branch:
    """`b` finished before the next element, which is damaged too: its damage, read later on its own, is at least
    one more repair (so a reading that explains both at once with fewer is not beaten by this one)."""
    return b._replace(pos=start, repairs=(*b.repairs, f"the next {_ELEMENT} damaged too (char {start})"))


def _cost(b: _Branch) -> tuple[int, int]:
    """How unlikely a reading is: its repairs and bad strings, then (on a tie) the elements it made that are not
    even objects."""
    return len(b.repairs) + b.bad, b.odd


@dataclass
class Outcome:
    """What `recover` found. `resume` is where the fast reader goes on (an element start, the list's `]`, or
    None at the end of the file); `starts` are the element starts inside the damage after the first; `cut`
    says the file ended inside the damage; `repairs` says how it was read."""

    resume: int | None
    starts: list[int] = field(default_factory=list)
    cut: bool = False
    repairs: tuple[str, ...] = ()
    unbounded: bool = False  # no reading survived: the rest was searched for the next whole element
    continues: bool = False  # the damage is the rest of the element before (cut short by an extra closer)


def _after_string(b: _Branch, start: int, end: int, tok: Tokens) -> _Branch | None:
    """The branch after a string token [start, end) read in its phase (a value or a key). A raw control character
    in it (invalid JSON: a writer escapes them) costs like a repair: a reading that needs one is less likely."""
    if b.phase in ("v", "v0"):
        phase = "a"
    elif b.phase in ("k", "k0"):
        phase = "c"
    else:
        return None
    return b._replace(pos=end, phase=phase, before_string=(b, start, end), bad=b.bad + tok.has_control(start, end))


class _Recovery:
    def __init__(
        self,
        buf: Any,
        start: int,
        decode: Callable[[int], tuple[Any, int]],
        accept: Callable[[Any], bool],
        marker: str | None,
        opening: tuple[str, ...],
    ) -> None:
        self.tok, self.start = Tokens(buf), start
        self.decode, self.accept = decode, accept
        self.marker = None if marker is None else json.dumps(marker)  # the key every element has, as written
        self.opening = tuple(json.dumps(k) for k in opening) if len(opening) == 2 else None  # first two keys
        self.heap: list[tuple] = []
        self.seen: dict = {}  # state -> fewest repairs that reached it
        self.branches = 0  # branches repairs started
        self.seq = 0  # insertion order: among equal positions and repairs, the likelier repair (pushed first) wins
        self.tokens = 0
        self.cut: _Branch | None = None  # the best branch that met the end of the file
        self.anchors: dict[int, bool] = {}  # position -> whether a whole conversation starts there (`anchor`)
        self.bound: int | None = None  # the next whole conversation after a `,`: no reading goes past it

    # ----------------------------------------------------------------------------------- the search

    def push(self, b: _Branch, done: str | None = None, new: bool = False) -> None:
        """Queue a branch; `new` for one a repair starts (they are bounded, a branch read on is not)."""
        key = (b.pos, b.phase, _shape(b.stack), len(b.starts), b.clean, b.continues, done)
        if self.seen.get(key, (1 << 30, 0)) <= _cost(b) or (new and self.branches >= MAX_BRANCHES):
            return  # the same reading at no higher cost is already queued
        self.seen[key] = _cost(b)
        self.branches += new
        self.seq += 1
        # file order, then the lowest cost, then the likelier repair (pushed first)
        heapq.heappush(self.heap, (b.pos, _cost(b), self.seq, done, b))

    def run(self, first: _Branch, enter: bool = False) -> Outcome:
        self.bound = self.next_whole(self.start + 1)
        if enter:
            self.enter(first)
        else:
            self.push(first)
        best: tuple | None = None  # (repairs, position, odd elements, done, branch) of the best finish so far
        while self.heap and self.tokens < MAX_TOKENS:
            pos, cost, _, done, b = heapq.heappop(self.heap)
            if best is not None and (cost[0], pos, cost[1]) >= best[:3]:
                continue  # costs only grow: it cannot finish better than the best finish
            if done is not None:
                best = (cost[0], pos, cost[1], done, b)
                continue
            self.read(b)
        if best is not None:
            return self.outcome(best[4], best[3])
        if self.cut is not None:
            return self.outcome(self.cut, "cut")
        return Outcome(resume=self.bound, unbounded=True)

    def next_whole(self, pos: int) -> int | None:
        """The last resort when no reading survives: the next `{` after a `,` that decodes whole into an element
        `accept` takes, followed by a `,` or `]`; None if there is none before the end of the file."""
        buf = self.tok.buf
        while True:
            i = buf.text.find("{", pos - buf.base)
            if i < 0:
                pos = buf.base + len(buf.text)
                if not buf.more():
                    return None
                continue
            pos = buf.base + i + 1
            j = i - 1
            while j >= 0 and buf.text[j] in " \t\r\n":
                j -= 1
            if j < 0 or buf.text[j] != ",":
                continue
            try:
                obj, end = self.decode(buf.base + i)
            except (json.JSONDecodeError, RecursionError):
                continue
            if self.accept(obj) and self.tok.char(self.tok.skip_ws(end)) in (",", "]", ""):
                return buf.base + i

    def outcome(self, b: _Branch, done: str) -> Outcome:
        if done == "cut" and b.clean is None:
            return Outcome(resume=None, starts=list(b.starts), cut=True, repairs=b.repairs, continues=b.continues)
        resume = b.clean if b.clean is not None else b.pos
        starts = [s for s in b.starts if s < resume]
        return Outcome(resume=resume, starts=starts, repairs=b.repairs, continues=b.continues)

    def read(self, b: _Branch) -> None:
        """Read `b` on, token by token, until it finishes, dies (and branches into repairs) or falls behind."""
        while True:
            self.tokens += 1
            if b.phase == "j":  # an element cut short: what it left before the list's next `,` is junk, skipped
                end = self.tok.junk_end(b.pos)
                # (junk of one char, or a run of it, is what a cut leaves; more is likelier the start of an element)
                b = b._replace(
                    pos=end, phase="a", bad=b.bad + (len(set(self.tok.text(b.pos, end).translate(_BLANK))) > 1)
                )
            kind, start, end = self.tok.token(b.pos)
            if self.bound is not None and start > self.bound:
                # past the next whole conversation (read inside a string): wrong as it stands, but the repairs of
                # that string may end it before there
                self.repair(b, kind, start, end)
                return
            if kind in ("", "~"):
                if self.cut is None or _cost(b) < _cost(self.cut):
                    self.cut = b
                return
            nxt = self.step(b, kind, start, end)
            if nxt is None:
                self.repair(b, kind, start, end)
                return
            if not isinstance(nxt, _Branch):  # finished ("end" | "element") or handed on ("dead": see `element`)
                if nxt[0] != "dead":
                    self.push(nxt[1], nxt[0])
                return
            b = nxt
            if self.heap and b.pos > self.heap[0][0] + _AHEAD:
                self.push(b)
                return

    def step(self, b: _Branch, kind: str, start: int, end: int) -> _Branch | tuple | None:
        """The branch after one token, ("end"|"element", branch) when it finishes, None at an impossible state."""
        stack, phase = b.stack, b.phase
        top = stack[2] == 1
        if kind == "]" and top and phase in ("a", "v", "v0"):
            after = self.tok.token(end)
            if after[0] == "":  # the list's own end: only whitespace follows
                return "end", b._replace(pos=start)
            return None
        if phase in ("v", "v0"):
            if kind == "," and top and phase == "v":
                return b._replace(pos=end)  # an empty slot in the list: no element
            if top and kind != "]":
                if kind in '{["w':  # a value starts here: an element (a stray `}` or `:` is junk, as between them)
                    b = b._replace(starts=(*b.starts, start))
                return self.element(b, start)
            if kind == "{":
                return b._replace(pos=end, stack=_push(stack, "{", start), phase="k0")
            if kind == "[":
                return b._replace(pos=end, stack=_push(stack, "[", start), phase="v0")
            if kind == '"':
                return _after_string(b, start, end, self.tok)
            if kind == "w" and self.tok.is_literal(start, end):
                return b._replace(pos=end, phase="a")
            if kind == "]" and phase == "v0":
                return self.close(b, kind, start, end)
            return None
        if phase in ("k", "k0"):
            if kind == '"':
                if stack[2] > 2:
                    b = self.nested_key(b, start, end)
                    if b is None:
                        return "dead", None
                return _after_string(b, start, end, self.tok)
            if kind == "}" and phase == "k0":
                return self.close(b, kind, start, end)
            return None
        if phase == "c":
            return b._replace(pos=end, phase="v") if kind == ":" else None
        if kind == ",":
            if top:  # (the element after it is counted where its first token is read)
                return b._replace(pos=end, phase="v", before_comma=(b, start))
            if self.anchor(self.tok.skip_ws(end)):
                # a whole conversation after this comma, read as nested: the element was cut short before it
                what = f"the {_ELEMENT} cut short at char {start}"
                cut = b._replace(pos=start, stack=ROOT, phase="a", repairs=(*b.repairs, what))
                self.push(cut._replace(broke=start if b.broke < 0 else b.broke), new=True)
            return b._replace(pos=end, phase="v" if stack[0] == "[" else "k", before_comma=(b, start))
        if kind in "]}":
            return self.close(b, kind, start, end)
        return None

    def close(self, b: _Branch, kind: str, start: int, end: int) -> _Branch | None:
        if b.stack[2] == 1 or b.stack[0] != {"]": "[", "}": "{"}[kind]:
            return None
        return b._replace(pos=end, stack=b.stack[1], phase="a", before_closer=((b, start), *b.before_closer[:2]))

    def element(self, b: _Branch, start: int) -> _Branch | tuple:
        """A branch at depth 1 before a value: an element start. Decoded whole, it is stepped over (and ends
        the damage if `accept` takes it); otherwise the branch reads it token by token."""
        try:
            obj, end = self.decode(start)
            # a container is whole when it decodes (what follows is read next); a scalar must end at a `,` or
            # `]` (a key string followed by its `:` is no element)
            whole = isinstance(obj, (dict, list)) or self.tok.char(self.tok.skip_ws(end)) in (",", "]", "")
        except (json.JSONDecodeError, RecursionError):
            whole = False
        if not whole:
            if start > self.start and start >= b.broke and self.opens_element(start):
                return "element", _damaged_next(b, start)  # the next element, damaged too: read on its own
            self.enter(b._replace(pos=start, clean=None))  # a value run into what follows it: read into it
            return "dead", b
        if self.accept(obj):
            return "element", b._replace(pos=start)
        if start > self.start and start >= b.broke and self.opens_element(start):
            if self.tok.char(self.tok.skip_ws(end)) not in (",", "]", "}", ""):
                # whole, yet run into what follows it: no nested object is (one is followed by `,`, `}` or `]`),
                # so it is the next element, damaged after its end (read on its own, like any element)
                return "element", _damaged_next(b, start)
        # an element no conversation (of two readings as good, the one that needs fewer elements that are not
        # even objects inside the damage is the likelier)
        odd = b.odd + (not isinstance(obj, dict))
        after = b._replace(pos=end, phase="a", clean=start if b.clean is None else b.clean, odd=odd)
        if isinstance(obj, dict):  # its last `}` may be an extra closer that ended it early (a repair may undo it)
            inside = b._replace(pos=end - 1, stack=_push(ROOT, "{", start), phase="a" if obj else "k0")
            after = after._replace(before_closer=((inside, end - 1),))
        return after

    def nested_key(self, b: _Branch, start: int, end: int) -> _Branch | None:
        """`b` reads a key of a nested object. When the key says the object is a conversation (the marker key, or
        its first two keys are how the export's conversations open: `second_key`), `b` is wrong (conversations do
        not nest): the element before was cut short where this object opens, read from there as the next element
        (queued), and None is returned."""
        stack, key = b.stack, self.tok.key(start, end)
        first = stack[4]
        if key == self.marker or (b.phase == "k" and first is not None and self.second_key(first, key, end)):
            at = stack[3]
            what = f"the {_ELEMENT} cut short before char {at}"
            nxt = _Branch(pos=at, stack=ROOT, phase="v", repairs=(*b.repairs, what), starts=b.starts, odd=b.odd)
            self.push(nxt._replace(broke=at if b.broke < 0 else min(b.broke, at)), new=True)
            return None
        if b.phase == "k0" or first is not None:  # remember the first key until the second is read
            b = b._replace(stack=(*stack[:4], key if b.phase == "k0" else None))
        return b

    def second_key(self, first: str, key: str, end: int) -> bool:
        """Whether `first` then `key` (ending at `end`) are how the conversations open: the same two keys, or the
        same first and a second cut short inside its name (no colon after it: what is left of the name is the
        start of theirs)."""
        if self.opening is None or first != self.opening[0]:
            return False
        if key == self.opening[1]:
            return True
        name = _NAME.match(key, 1).group()
        return bool(name) and self.opening[1][1:].startswith(name) and self.tok.token(end)[0] != ":"

    def opens_element(self, pos: int) -> bool:
        """Whether an object that may be an element opens at `pos`: one with a key, whose first two keys are not
        other than the ones the export's conversations open with (a key cut short or damaged before its colon,
        or not read at all, says nothing: it may be)."""
        if not self.tok.opens_object(pos):
            return False
        if self.opening is None:
            return True
        at = pos + 1
        for n, want in enumerate(('"', ":", "v", ",", '"', ":")):
            kind, start, at = self.tok.token(at)
            if want == "v" and kind in ('"', "w"):
                continue
            if kind != want:
                return True
            if kind == '"':
                key = self.tok.key(start, at)
            elif kind == ":" and key != self.opening[n // 4]:
                return False  # a whole key, another than the conversations' at that place
        return True

    def anchor(self, pos: int) -> bool:
        """Whether a whole element `accept` takes starts at `pos` and is followed by a `,` or the list's `]`."""
        if pos not in self.anchors:
            ok = False
            if self.tok.opens_object(pos):
                try:
                    obj, end = self.decode(pos)
                    ok = self.accept(obj) and self.tok.char(self.tok.skip_ws(end)) in (",", "]", "")
                except (json.JSONDecodeError, RecursionError):
                    pass
            self.anchors[pos] = ok
        return self.anchors[pos]

    def enter(self, b: _Branch) -> None:
        """Start reading the element at `b.pos` token by token (its first token is a value at depth 2)."""
        kind, start, end = self.tok.token(b.pos)
        if kind in ("", "~"):
            self.cut = self.cut or b
            return
        if kind == "{":
            self.push(b._replace(pos=end, stack=_push(b.stack, "{", start), phase="k0"))
        elif kind == "[":
            self.push(b._replace(pos=end, stack=_push(b.stack, "[", start), phase="v0"))
        elif kind == '"':
            self.push(b._replace(pos=end, phase="a", before_string=(b, start, end)))
        elif kind == "w":
            self.push(b._replace(pos=end, phase="a"))
        else:  # not a value: a stray closer or colon where an element should start
            self.repair(b, kind, start, end)

    # ----------------------------------------------------------------------------------- repairs

    def repair(self, b: _Branch, kind: str, start: int, end: int) -> None:
        """Branch a reading that met an impossible state into the readings one edit away from it."""
        if len(b.repairs) >= MAX_REPAIRS:
            return
        tried: list[tuple[str, _Branch | None]] = []
        # a quote missing before this token: it is the start of a string's text
        if kind not in ('"', ""):
            close = self.tok.string_end(start)
            if close is not None:
                tried.append((f"a quote missing at char {start}", _after_string(b, start, close, self.tok)))
        # the last string read was misread: its closing quote came early (a quote missing inside it, at one
        # of the structural boundaries before its end), its closing quote is extra, or its opening one is
        if b.before_string is not None:
            prev, s0, s1 = b.before_string
            for f in self._string_ends(s0, s1):
                tried.append((f"a quote missing at char {f}", _after_string(prev, s0, f, self.tok)))
            close = self.tok.string_end(s1)
            if close is not None:
                tried.append((f"an extra quote at char {s1 - 1}", _after_string(prev, s0, close, self.tok)))
            tried.append((f"an extra quote at char {s0}", prev._replace(pos=s0 + 1)))
            if prev.stack[2] > 1:  # the element was cut short inside that string (what follows is the next one)
                # (right after a comma, the cut is at that comma; more than four candidates cost more time than
                # they save)
                ends = [f for f in self._string_ends(s0, s1) if self.tok.char(f) == "," or not self.tok.after_comma(f)]
                for f in ends[:4]:
                    cut = prev._replace(pos=f, stack=ROOT, phase="j")
                    tried.append((f"the {_ELEMENT} cut short at char {f}", cut))
        if kind == '"':
            tried.append((f"an extra quote at char {start}", b._replace(pos=start + 1)))
        # a value missing (`"k": }`, `[1, ]`): the token is read again after it
        if b.phase == "v" and b.stack[2] > 1 and kind in ",]}":
            tried.append((f"a value missing before char {start}", b._replace(phase="a")))
        # a closing bracket missing: close the innermost container here (the token is read again); not after a
        # colon (an object closed there lost a value too)
        if b.stack[2] > 1 and not (b.phase == "v" and b.stack[0] == "{"):
            parent = b.stack[1]
            phase = {"k": "v" if parent[0] == "[" else "k", "v": "v" if parent[0] == "[" else "k"}.get(b.phase, "a")
            if b.phase in ("c", "k0", "v0"):
                phase = "a"
            tried.append((f"a closing bracket missing before char {start}", b._replace(stack=parent, phase=phase)))
        # ... or before the last comma (`[1, 2, "k": 3` lost its `]` before `, "k"`): that comma is read again
        if b.before_comma is not None:
            prev, at = b.before_comma
            if prev.stack[2] > 1 and prev.phase == "a":
                tried.append(
                    (f"a closing bracket missing before char {at}", prev._replace(stack=prev.stack[1], pos=at))
                )
        # the element cut short: right after a comma, before it (the list's: this token starts the next element);
        # elsewhere here (what is left before the list's next comma is its junk tail)
        if b.stack[2] > 1 and b.before_comma is not None and (b.phase == "k" or (b.phase, b.stack[0]) == ("v", "[")):
            what = f"the {_ELEMENT} cut short at char {b.before_comma[1]}"
            tried.append((what, b._replace(stack=ROOT, phase="v")))
        if b.stack[2] > 1:
            tried.append((f"the {_ELEMENT} cut short at char {start}", b._replace(stack=ROOT, phase="j")))
        # a word that is no value (a misspelt literal) where a value belongs: it stands for that value
        if kind == "w" and b.phase in ("v", "v0"):
            tried.append((f"a bad value at char {start}", b._replace(pos=end, phase="a")))
        # a comma or colon missing
        if b.phase == "a" and kind in '"w{[':
            tried.append((f"a comma missing before char {start}", b._replace(phase="v" if b.stack[0] == "[" else "k")))
        if b.phase == "c":
            tried.append((f"a colon missing before char {start}", b._replace(phase="v")))
        # an extra token here (not an opener: skipping one would merge what it opens into its neighbour), or an
        # extra closer a little before it (which closed one container too many)
        if kind not in "{[":
            if kind in "]},":  # a run of the same stray closer or comma is one damage
                while self.tok.char(self.tok.skip_ws(end)) == kind:
                    end = self.tok.skip_ws(end) + 1
            tried.append((f"an extra {self.tok.char(start)!r} at char {start}", b._replace(pos=end)))
        for prev, at in b.before_closer:
            tried.append((f"an extra closing bracket at char {at}", prev._replace(pos=at + 1)))
        for what, nb in tried:
            if nb is None:
                continue
            edit = min(start, nb.pos)  # where the repair puts the damage (a repair may go back to an earlier token)
            broke = edit if b.broke < 0 else min(b.broke, edit)
            self.push(nb._replace(repairs=(*b.repairs, what), broke=broke), new=True)

    def _string_ends(self, s0: int, s1: int) -> list[int]:
        """Where a string read as [s0, s1) may really have ended: each structural char in the tail of it that
        could be structure (only brackets, commas, colons, numbers and literals between there and s1 - 1)."""
        out, i = [], s1 - 2
        while i > s0 and len(out) < _RECENT:
            c = self.tok.char(i)
            if c not in _GAP_CHARS:
                break
            if c in _STRUCTURE:
                out.append(i)
            i -= 1
        return out


def recover(
    buf: Any,
    start: int,
    decode: Callable[[int], tuple[Any, int]],
    accept: Callable[[Any], bool],
    marker: str | None = None,
    opening: tuple[str, ...] = (),
    after_value: bool = False,
    after_object: str | None = None,
) -> Outcome:
    """Read the damage at absolute offset `start` to its end (see the module docstring for the rule): an
    element that did not decode, read token by token from its start, or with `after_value` what follows a
    whole element where a `,` or the list's `]` should be. `marker` is the key every element that `accept` takes
    has (a conversation's own key: one read in a nested object places an element start), `opening` the first two
    keys of the last whole one (a nested object that opens with them places one too). `after_object` says the
    element before was an object ("empty" for `{}`): the text may be its rest, after an extra closer that ended it
    early (one more reading)."""
    # A recovery builds many small linked tuples; the cyclic collector walking them all costs more than the
    # reading itself (they hold no cycles), so it is paused while the damage is read.
    paused = gc.isenabled()
    gc.disable()
    try:
        return _recover(_Recovery(buf, start, decode, accept, marker, opening), start, after_value, after_object)
    finally:
        if paused:
            gc.enable()


def _recover(rec: _Recovery, start: int, after_value: bool, after_object: str | None) -> Outcome:
    if after_object:
        # the object before was ended early by an extra closer, and this is its rest: after the `,` that follows
        # it a key comes next; right after it, what came before that closer (a value, or nothing in `{}`)
        phase = ("k0" if after_object == "empty" else "a") if after_value else "k"
        early = "an extra closing bracket ended the element before early"
        rec.push(_Branch(pos=start, stack=_push(ROOT, "{", -1), phase=phase, repairs=(early,), continues=True))
    if after_value:
        return rec.run(_Branch(pos=start, stack=ROOT, phase="a"))
    return rec.run(_Branch(pos=start, stack=ROOT, phase="v"), enter=True)

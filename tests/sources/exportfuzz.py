"""Damaged chat exports with a known answer: which elements were written, which one each damage touched.

Shared by tests/sources/test_export_accounting.py and bench/fuzz_exports.py. An export is a list of
conversations (ChatGPT `mapping` shape or Claude `chat_messages` shape) with varied text (brackets, quotes,
escapes, non-ASCII); `damage` breaks one element at a chosen class of position. `account` reads the export
through the real reader and says which elements vanished (neither stored nor reported) and which were
stored or reported under the wrong index.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from pathlib import Path

from mothbrain.config import SourceConfig
from mothbrain.sources.base import Problems
from mothbrain.sources.registry import get_reader

WORDS = ["moth", "kiln", "tide", "figs", "lantern", "é", "ß", "日本", "[1]", "{x}", "a,b", "k: v", '"q"', "\\", "\t"]

# Where one element is damaged. "merges" classes may also cost the next element (reported, never lost).
CLASSES = [
    "key",  # a char inside a key replaced by a control char
    "value",  # a control char inside a string value
    "nested_array",  # junk inside a nested array
    "between",  # junk between two elements (costs no element)
    "truncated",  # the file cut inside this element (the last one written)
    "nul",  # a raw NUL inside a key
    "utf8",  # invalid UTF-8 bytes inside a string (replaced: not damage to the structure)
    "deep",  # a value nested 10,000 deep
    "literal",  # a bad literal
    "comma",  # a missing comma
    "colon",  # a missing colon
    "quote_removed",  # a quote removed anywhere in the element
    "quote_added",  # a quote added anywhere in the element
    "closer_removed",  # a closing bracket removed
    "closer_added",  # a closing bracket added
]


def _text(rng: random.Random) -> str:
    return "moth " + " ".join(rng.choice(WORDS) for _ in range(rng.randrange(0, 8)))  # never blank


def chatgpt_conv(rng: random.Random, i: int) -> dict:
    mapping = {"root": {"id": "root", "message": None, "parent": None, "children": ["n0"]}}
    n = rng.randrange(1, 5)
    for k in range(n):
        role = "user" if k % 2 == 0 else "assistant"
        mapping[f"n{k}"] = {
            "id": f"n{k}",
            "message": {
                "id": f"n{k}",
                "author": {"role": role, "name": None, "metadata": {}},
                "create_time": 1746000000.0 + k,
                "content": {"content_type": "text", "parts": [_text(rng)]},
                "metadata": {"is_visually_hidden_from_conversation": False, "weights": [1.0, 2]},
                "recipient": "all",
            },
            "parent": "root" if k == 0 else f"n{k - 1}",
            "children": [f"n{k + 1}"] if k < n - 1 else [],
        }
    return {
        "title": f"t{i} {_text(rng)}",  # the title names its element too (see `account`)
        "create_time": 1746000000.5,
        "update_time": None,
        "mapping": mapping,
        "current_node": f"n{n - 1}",
        "conversation_id": f"c{i}",
        "id": f"c{i}",
        "default_model_slug": "gpt-4o",
    }


def claude_conv(rng: random.Random, i: int) -> dict:
    msgs = []
    for k in range(rng.randrange(1, 5)):
        t = _text(rng)
        msgs.append(
            {
                "uuid": f"m{i}-{k}",
                "text": t,
                "content": [{"type": "text", "text": t, "citations": []}],
                "sender": "human" if k % 2 == 0 else "assistant",
                "created_at": "2025-05-01T00:00:00Z",
                "attachments": [],
            }
        )
    return {"uuid": f"c{i}", "name": f"t{i} {_text(rng)}", "created_at": "2025-05-01T00:00:00Z", "chat_messages": msgs}


KINDS = {"chatgpt_export": chatgpt_conv, "claude_export": claude_conv}

_KEY = re.compile(r'"([^"\\]{2,})"\s*:')
_VALUE = re.compile(r':\s*"((?:[^"\\]|\\.){2,})"')
_ARRAY = re.compile(r"\[")
_CLOSER = re.compile(r"[\]}]")
_QUOTE = re.compile(r'"')


def _pick(rng: random.Random, pattern: re.Pattern, text: str, group: int = 0) -> tuple[int, int] | None:
    spans = [m.span(group) for m in pattern.finditer(text)]
    return rng.choice(spans) if spans else None


def damage(rng: random.Random, cls: str, text: str) -> str | None:
    """`text` (one element, as json.dumps wrote it) damaged by `cls` at a random position of that class;
    None where the class has no position in it."""
    if cls in ("key", "nul"):
        span = _pick(rng, _KEY, text, 1)
        if span is None:
            return None
        at = rng.randrange(span[0], span[1])
        bad = "\x00" if cls == "nul" else rng.choice(["\x01", "\x1f", "\n", "\x00"])
        return text[:at] + bad + text[at:]
    if cls in ("value", "utf8"):
        span = _pick(rng, _VALUE, text, 1)
        if span is None:
            return None
        at = rng.randrange(span[0], span[1] + 1)
        while at > span[0] and text[at - 1] == "\\":  # not between a backslash and what it escapes
            at -= 1
        bad = "\udcff" if cls == "utf8" else rng.choice(["\x02", "\x0b", "\r"])
        return text[:at] + bad + text[at:]
    if cls == "nested_array":
        span = _pick(rng, _ARRAY, text)
        if span is None:
            return None
        return text[: span[1]] + rng.choice(["]", "}", ":", ", ,", "{", "x"]) + text[span[1] :]
    if cls == "deep":
        span = _pick(rng, _VALUE, text)
        if span is None:
            return None
        deep = "[" * 10_000 + "1" + "]" * 10_000
        return text[: span[0]] + ": " + deep + text[span[1] :]
    if cls == "literal":
        span = _pick(rng, _VALUE, text)
        if span is None:
            return None
        return text[: span[0]] + ": " + rng.choice(["nope", "tru", "NULL", "0x1f", "--1"]) + text[span[1] :]
    if cls in ("comma", "colon"):
        marks = [m.start() for m in re.finditer(", " if cls == "comma" else ": ", text)]
        if not marks:
            return None
        at = rng.choice(marks)
        return text[:at] + " " + text[at + 2 :]
    if cls in ("quote_removed", "closer_removed"):
        span = _pick(rng, _QUOTE if cls == "quote_removed" else _CLOSER, text)
        if span is None:
            return None
        return text[: span[0]] + text[span[1] :]
    if cls in ("quote_added", "closer_added"):
        at = rng.randrange(1, len(text))
        while text[at - 1] == "\\":  # an escaped quote would not change the structure
            at += 1
        return text[:at] + ('"' if cls == "quote_added" else rng.choice("]}")) + text[at:]
    raise ValueError(cls)


@dataclass
class Written:
    """An export written to disk: how many elements, and which were damaged (their index)."""

    path: Path
    n: int
    damaged: set[int]
    merges: set[int]  # damaged elements whose damage may also cost the next one
    classes: dict[int, str]  # the damage asked for, by index


def write_export(
    rng: random.Random, folder: Path, kind: str, n: int, damaged: dict[int, str], name: str = "conversations.json"
) -> Written:
    """`n` conversations of `kind`, the ones in `damaged` (index -> class) broken; a "truncated" one must be last
    (the file is cut inside it)."""
    make = KINDS[kind]
    parts: list[str] = []
    hit, merges = set(), set()
    for i in range(n):
        text = json.dumps(make(rng, i), ensure_ascii=rng.random() < 0.3)
        cls = damaged.get(i)
        if cls == "truncated":
            parts.append(text[: rng.randrange(1, len(text) - 1)])
            hit.add(i)
            break
        if cls == "between":
            parts.append(text + rng.choice(["}", "]", " : ", "\x00", " ,, ", "\x07"]))
            continue
        if cls is not None:
            bad = damage(rng, cls, text)
            if bad is not None and not _valid(bad):
                text = bad
                hit.add(i)
                if cls in ("quote_removed", "quote_added", "closer_removed", "closer_added", "nested_array"):
                    merges.add(i)
            elif bad is not None:
                text = bad  # still JSON (a bracket inside a string, replaced UTF-8): must be stored
        parts.append(text)
    body = "[" + rng.choice([",", ", ", ",\n "]).join(parts)
    if "truncated" not in damaged.values():
        body += "]\n"
    raw = body.encode("utf-8", "surrogateescape")  # \udcff is written as the raw byte 0xff
    path = folder / name
    path.write_bytes(raw)
    return Written(path=path, n=len(parts), damaged=hit, merges=merges, classes=damaged)


def _valid(text: str) -> bool:
    try:
        json.loads(text.encode("utf-8", "surrogateescape").decode("utf-8", "replace"))
    except (ValueError, RecursionError):
        return False
    return True


@dataclass
class Account:
    stored: set[int]
    reported: set[int]
    vanished: list[int]  # written, neither stored nor reported
    misindexed: list[int]  # stored under another index, or an intact element reported in place of a damaged one
    problems: Problems


def account(kind: str, written: Written) -> Account:
    """Read `written` through the real reader and account for every element it holds."""
    reader = get_reader(kind)
    problems = Problems(cap=10**9)
    src = SourceConfig(name="s", kind=kind, path=str(written.path))
    docs = list(reader.read(written.path, written.path.name, src, problems))
    stored, own, mis = set(), set(), []
    for d in docs:
        i = d.meta["index"]
        if re.fullmatch(r"c\d+", d.meta["conversation_id"]) and d.meta["conversation_id"] != f"c{i}":
            mis.append(i)  # (a replaced byte may have changed the id itself: then the index alone says)
        if d.meta["conversation_id"] == f"c{i}" or d.title.startswith(f"t{i} "):
            own.add(i)  # it is element i itself (its id, or its title where damage cut the id off)
        stored.add(i)
    reported, by_index = set(), set()
    for _, where, _ in problems.items:
        words = where.split()
        if words[0] == "conversation":
            ref = words[1]
            if re.fullmatch(r"c\d+", ref):  # named by its own id: a problem with its content
                reported.add(int(ref[1:]))
            elif ref.isdigit():
                reported.add(int(ref))
                by_index.add(int(ref))
    # a damaged element stored is right only as itself (an extra closer ends an element early: its first part is
    # whole, and carries its own id); stored without its own id, something else may have been stored in its place
    mis += sorted((written.damaged & stored) - own)
    for i in by_index - written.damaged:
        # an intact element reported by index as unreadable: only as the neighbour a merging damage swallowed
        if (i - 1) not in written.merges and i not in stored:
            mis.append(i)
    vanished = sorted(set(range(written.n)) - stored - reported)
    return Account(stored, reported, vanished, sorted(set(mis)), problems)


@dataclass
class FuzzResult:
    elements: int
    exports: int
    vanished: list[tuple[Path, int]]
    misindexed: list[tuple[Path, int]]
    failed: list[tuple[Written, Account]] | None = None  # the exports that lost or mis-indexed something


def fuzz(seed: int, elements: int, folder: Path, rate: float = 0.2, keep: bool = False) -> FuzzResult:
    """Exports of random size and shape holding >= `elements` elements, about `rate` of them damaged (a random
    class at a random position, neighbours too), each read and accounted; the files are deleted unless `keep`."""
    rng = random.Random(seed)
    out = FuzzResult(0, 0, [], [])
    while out.elements < elements:
        kind = rng.choice(sorted(KINDS))
        n = rng.randrange(5, 60)
        classes = [c for c in CLASSES if c not in ("truncated", "deep")]
        bad = {i: rng.choice(classes) for i in range(n) if rng.random() < rate}
        if rng.random() < 0.1:
            bad[n - 1] = "truncated"
        if rng.random() < 0.02:
            bad[rng.randrange(n - 1)] = "deep"
        written = write_export(rng, folder, kind, n, bad, name=f"{out.exports:05d}-conversations.json")
        acc = account(kind, written)
        out.vanished += [(written.path, i) for i in acc.vanished]
        out.misindexed += [(written.path, i) for i in acc.misindexed]
        out.elements += written.n
        out.exports += 1
        if acc.vanished or acc.misindexed:
            out.failed = (out.failed or []) + [(written, acc)]
        if not keep and not (acc.vanished or acc.misindexed):
            written.path.unlink()
    return out

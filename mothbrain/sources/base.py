"""What every source reader is built on: `Problems`, `Reader`, file listing, times, front matter.

Source readers: one module per source kind (sources/<kind>.py), each turning one file into `Document`s;
sources/registry.py maps each kind to its reader.

A reader is a generator `read(path, rel, source, problems) -> Iterator[Document]`:
`path` is the file, `rel` its name relative to the source root (used in doc ids and messages),
`source` the configured source, `problems` where bad records are counted. Readers never raise
on bad input: a malformed line, a truncated export or a non-UTF-8 file becomes one counted
problem naming the file and the line (or conversation id), and reading goes on.

`list_files` says which files of a source folder a reader takes.
"""

from __future__ import annotations

import math
import os
import re
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from mothbrain.config import SourceConfig
from mothbrain.sources.records import Document

# Folders no reader descends into (tool state, version control, trash).
SKIP_DIRS = {".git", ".hg", ".svn", ".obsidian", ".trash", ".Trash", "__pycache__", ".mothbrain"}


@dataclass
class Problems:
    """Bad records of one source: all counted, the first `cap` kept as (file, where, reason) for display."""

    cap: int = 200
    count: int = 0
    items: list[tuple[str, str, str]] = field(default_factory=list)

    def add(self, file: str, where: str | int, reason: str) -> None:
        self.count += 1
        if len(self.items) < self.cap:
            self.items.append((file, str(where), reason))


ReadFn = Callable[[Path, str, SourceConfig, Problems], Iterator[Document]]


@dataclass(frozen=True)
class Reader:
    kind: str
    read: ReadFn
    suffixes: tuple[str, ...] = ()  # files of a folder this reader takes, by suffix (lower-case)
    names: tuple[str, ...] = ()  # ... or by exact file name
    # Line-based readers can resume an appended file at a byte offset (see ingest):
    # read_from(path, rel, source, problems, offset, first_line_no).
    read_from: Callable[..., Iterator[Document]] | None = None


@dataclass
class Listing:
    """What a source path holds for a reader: the files to read, and what could not be listed or read."""

    files: list[Path] = field(default_factory=list)
    unreadable: list[tuple[Path, str]] = field(default_factory=list)  # folders that could not be listed: why
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # matching names not read: why


def list_files(root: Path, reader: Reader) -> Listing:
    """The files a source path stands for: the path itself, or the matching files under a folder (sorted).

    Only regular files are read (a FIFO or a link to /dev/zero would hang ingest), each once (a symlink
    to a file already listed is an alias). A folder that cannot be listed is reported, not taken for
    empty: what was stored from it must stay."""
    out = Listing()
    seen: dict[Path, Path] = {}

    def take(path: Path) -> None:
        try:
            real = path.resolve()
            regular = stat.S_ISREG(real.stat().st_mode)
        except (OSError, RuntimeError) as exc:  # a dangling or looping link
            out.skipped.append((path, f"cannot be read ({getattr(exc, 'strerror', None) or exc})"))
            return
        if not regular:
            out.skipped.append((path, "not a regular file (a pipe, device or folder); not read"))
        elif real in seen and (path.is_symlink() or not seen[real].is_symlink()):
            out.skipped.append((path, f"the same file as {seen[real].name} (a link); read once"))
        else:
            if real in seen:  # the file itself comes after a link to it: the file keeps its own name
                out.files.remove(seen[real])
                out.skipped.append((seen[real], f"the same file as {path.name} (a link); read once"))
            seen[real] = path
            out.files.append(path)

    if not root.is_dir():
        take(root)
        return out

    def unreadable(exc: OSError) -> None:
        out.unreadable.append((Path(exc.filename), exc.strerror or str(exc)))

    for dirpath, dirnames, filenames in os.walk(root, onerror=unreadable):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith(".") or name.startswith("~"):
                continue
            if name in reader.names or name.lower().endswith(reader.suffixes or ("\0",)):
                take(Path(dirpath) / name)
    return out


# --------------------------------------------------------------------------- shared helpers


# The times a record can carry: after the epoch, before the year 10000 (datetime's range).
_LATEST_TIME = 253402300799.0


def parse_time(value: Any) -> float | None:
    """Seconds since the epoch from a unix number (s or ms), an ISO string or a date; None if unreadable.

    Total: any value at all — inf, NaN, 1e400, a 4,300-digit integer, an impossible date or offset — gives a
    float in (0, year 10000) or None, never an exception, so a bad field costs its record only the time."""
    try:
        t = _parse_time(value)
    except (ValueError, OverflowError, OSError, TypeError, RecursionError):
        return None
    return t if t is not None and math.isfinite(t) and 0 < t <= _LATEST_TIME else None


def _parse_time(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        t = float(value)  # OverflowError for an integer beyond a float
        if not math.isfinite(t) or t <= 0:
            return None
        return t / 1000.0 if t > 1e11 else t  # milliseconds, as some exports write them
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).timestamp()
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=timezone.utc).timestamp()
    if isinstance(value, str):
        s = value.strip()
        if not s or len(s) > 64:  # no time is written longer; a huge digit string is not one
            return None
        try:
            return _parse_time(float(s))
        except ValueError:
            pass
        return _parse_time(datetime.fromisoformat(s.replace("Z", "+00:00")))
    return None


def record_time(values: Iterable[tuple[str, Any]], rel: str, where: str | int, problems: Problems) -> float | None:
    """The first readable time among (field, value) pairs; when fields are there but none is a possible time,
    that is one counted problem and the record is kept without a time."""
    present = []
    for name, value in values:
        t = parse_time(value)
        if t is not None:
            return t
        if value is not None and value != "":
            present.append(name)
    if present:
        problems.add(rel, where, f"{', '.join(present)}: not a possible time; record kept without one")
    return None


def read_text(path: Path, rel: str, problems: Problems) -> str | None:
    """A whole text file as UTF-8 (BOM dropped), or None after reporting why it can't be read."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        problems.add(rel, "file", f"unreadable ({exc.strerror or exc}); check its permissions")
        return None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        problems.add(rel, f"byte {exc.start}", "not UTF-8 text; re-save the file as UTF-8")
        return None


def jsonable(value: Any) -> Any:
    """YAML front matter → JSON-safe values (dates become ISO strings, odd keys become strings)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [jsonable(v) for v in value]
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # .inf / .nan: JSON has no such number
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


MAX_FRONT_MATTER_ALIASES = 16  # a handful of *refs is normal YAML; nested ones multiply ("billion laughs")


class _TooManyAliases(Exception):
    pass


class _FrontMatterLoader(yaml.SafeLoader):
    """SafeLoader that keeps a value Python cannot hold (2026-02-30, a +25:00 offset, a 5,000-digit integer)
    as its text, so one bad field does not cost the page its front matter; times are checked later. It
    refuses more than MAX_FRONT_MATTER_ALIASES aliases: each one shares a node, and walking the result
    expands them all (600 bytes of nested aliases are 10^9 strings)."""

    aliases = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > MAX_FRONT_MATTER_ALIASES:
                raise _TooManyAliases
        return super().compose_node(parent, index)

    def construct_yaml_timestamp(self, node):
        try:
            return super().construct_yaml_timestamp(node)
        except (ValueError, OverflowError):
            return self.construct_scalar(node)

    def construct_yaml_int(self, node):
        try:
            return super().construct_yaml_int(node)
        except ValueError:
            return self.construct_scalar(node)


_FrontMatterLoader.add_constructor("tag:yaml.org,2002:timestamp", _FrontMatterLoader.construct_yaml_timestamp)
_FrontMatterLoader.add_constructor("tag:yaml.org,2002:int", _FrontMatterLoader.construct_yaml_int)


def split_front_matter(text: str, rel: str, problems: Problems) -> tuple[dict[str, Any], str]:
    """(front matter, body). Bad YAML is reported and the body still returned, front matter empty."""
    if not text.startswith("---"):
        return {}, text
    lines = text.split("\n")
    if lines[0].strip() != "---":
        return {}, text
    for i in range(1, len(lines)):
        if lines[i].strip() in ("---", "..."):
            head, body = "\n".join(lines[1:i]), "\n".join(lines[i + 1 :])
            break
    else:
        problems.add(rel, "line 1", "front matter opened with '---' but never closed; read as plain text")
        return {}, text
    try:
        meta = jsonable(yaml.load(head, Loader=_FrontMatterLoader))  # noqa: S506 - a SafeLoader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 2}" if mark is not None else "front matter"
        problems.add(rel, where, "front matter is not valid YAML; page read without it")
        return {}, body
    except _TooManyAliases:
        problems.add(
            rel,
            "front matter",
            f"front matter uses more than {MAX_FRONT_MATTER_ALIASES} YAML aliases (*name), which can expand "
            "without bound; page read without it",
        )
        return {}, body
    except (ValueError, OverflowError, RecursionError) as exc:
        # Valid YAML Python cannot build (nesting deeper than the stack): counted, the page kept without it.
        problems.add(
            rel, "front matter", f"front matter holds an impossible value ({type(exc).__name__}); page read without it"
        )
        return {}, body
    if meta is None:
        return {}, body
    if not isinstance(meta, dict):
        problems.add(rel, "front matter", f"front matter is a {type(meta).__name__}, not a mapping; ignored")
        return {}, body
    return meta, body


def title_from(meta: dict[str, Any], body: str, stem: str) -> str:
    """Front matter title, else the first H1, else the file stem."""
    t = meta.get("title")
    if isinstance(t, str) and t.strip():
        return t.strip()
    for line in body.split("\n"):
        if line.startswith("# "):
            return line[2:].strip().strip("#").strip()
    return stem


def tags_from(meta: dict[str, Any]) -> list[str]:
    tags = meta.get("tags")
    if isinstance(tags, str):
        return [t.strip().lstrip("#") for t in tags.replace(",", " ").split() if t.strip()]
    if isinstance(tags, list):
        return [str(t).strip().lstrip("#") for t in tags if str(t).strip()]
    return []


def time_from_meta(meta: dict[str, Any], rel: str, problems: Problems) -> float | None:
    return record_time(
        ((k, meta.get(k)) for k in ("date", "updated", "modified", "created")), rel, "front matter", problems
    )


_DATE_IN_NAME = re.compile(r"(?<!\d)(\d{4})-(\d{2})-(\d{2})(?!\d)")


def time_from_name(name: str) -> float | None:
    """A YYYY-MM-DD date in a file name (daily notes, dated transcripts), as seconds since the epoch."""
    m = _DATE_IN_NAME.search(name)
    if not m:
        return None
    try:
        return datetime(int(m[1]), int(m[2]), int(m[3]), tzinfo=timezone.utc).timestamp()
    except ValueError:
        return None

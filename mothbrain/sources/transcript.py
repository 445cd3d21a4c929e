"""Meeting transcripts: `Speaker: text` turns, one file per meeting.

A turn may start with a timestamp (`[00:12:03]`, `(12:03)`, `00:12:03 -`), which is dropped.
Lines that don't start a turn continue the previous one (wrapped text); a blank line starts a
new paragraph. Header lines before the first turn (`Date:`, `Title:`, `Attendees:` ...) become
meta. Turn.role is the speaker lower-cased, Turn.speaker the name as written.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from mothbrain.config import SourceConfig
from mothbrain.sources.base import Problems, Reader, read_text, record_time, split_front_matter, time_from_name
from mothbrain.sources.records import Document, Turn

_TS = r"(?:[\[(]?(?:\d{1,2}:)?\d{1,2}:\d{2}(?:[.,]\d+)?[\])]?\s*(?:[-–]\s*)?)"
# A speaker: starts with a capital letter, at most 40 characters of name-like text, then ": ".
TURN = re.compile(rf"^\s*{_TS}?(?P<speaker>[^\W\d_a-z][\w .'&-]{{0,39}}?)\s*:(?:\s+(?P<text>.*))?$")
TIMESTAMP_ONLY = re.compile(rf"^\s*{_TS}\s*$")
HEADER_KEYS = {
    "date",
    "time",
    "title",
    "subject",
    "meeting",
    "attendees",
    "present",
    "apologies",
    "location",
    "recorded",
    "recording",
    "minutes",
}


def parse(text: str) -> tuple[list[Turn], dict, list[int]]:
    """(turns, header meta, first line number of each turn)."""
    turns: list[Turn] = []
    lines_of: list[int] = []
    header: dict[str, str] = {}
    preamble: list[str] = []
    paras: list[list[str]] = []

    def close() -> None:
        if turns:
            turns[-1].text = "\n\n".join(" ".join(p) for p in paras if p).strip()

    for no, line in enumerate(text.split("\n"), start=1):
        line = line.rstrip()
        if TIMESTAMP_ONLY.match(line):
            continue
        m = TURN.match(line)
        if m and len(m["speaker"].split()) <= 5:
            speaker = m["speaker"].strip()
            if not turns and speaker.lower() in HEADER_KEYS:
                header[speaker.lower()] = (m["text"] or "").strip()
                continue
            close()
            turns.append(Turn(role=speaker.lower(), text="", speaker=speaker))
            lines_of.append(no)
            paras = [[m["text"].strip()] if m["text"] and m["text"].strip() else []]
        elif not turns:
            if line.strip():
                preamble.append(line.strip())
        elif not line.strip():
            paras.append([])
        else:
            paras[-1].append(line.strip())
    close()
    if preamble:
        header["preamble"] = "\n".join(preamble)
    return turns, header, lines_of


def read(path: Path, rel: str, source: SourceConfig, problems: Problems) -> Iterator[Document]:
    text = read_text(path, rel, problems)
    if text is None:
        return
    meta, body = split_front_matter(text.replace("\r\n", "\n"), rel, problems)
    turns, header, lines_of = parse(body)
    kept = [t for t in turns if t.text]
    if not kept:
        problems.add(rel, "file", "no `Speaker: text` turns found; is this a transcript?")
        return
    meta = {**meta, **header, "file": rel}
    title = meta.get("title") if isinstance(meta.get("title"), str) else ""
    if not title and meta.get("preamble", "").startswith("#"):
        title = meta["preamble"].split("\n")[0].lstrip("#").strip()
    ts = record_time([("date", meta.get("date"))], rel, "front matter", problems) or time_from_name(path.stem)
    yield Document(
        source=source.name, kind="transcript", doc_id=rel, title=title or path.stem, turns=kept, meta=meta, timestamp=ts
    )


READER = Reader(kind="transcript", read=read, suffixes=(".txt", ".md", ".transcript"))

"""Creative writing: one Document per .md/.txt file (front matter, when present, becomes meta)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from mothbrain.config import SourceConfig
from mothbrain.sources.base import (
    Problems,
    Reader,
    read_text,
    split_front_matter,
    tags_from,
    time_from_meta,
    time_from_name,
    title_from,
)
from mothbrain.sources.records import Document


def read(path: Path, rel: str, source: SourceConfig, problems: Problems) -> Iterator[Document]:
    text = read_text(path, rel, problems)
    if text is None:
        return
    meta, body = split_front_matter(text, rel, problems)
    body = body.replace("\r\n", "\n").strip()
    if not body:  # counted, so every file is stored or accounted for
        problems.add(rel, "file", "empty (nothing but front matter or white space); nothing stored")
        return
    meta = {**meta, "file": rel, "tags": tags_from(meta)}
    yield Document(
        source=source.name,
        kind="writing",
        doc_id=rel,
        title=title_from(meta, body, path.stem),
        text=body,
        meta=meta,
        timestamp=time_from_meta(meta, rel, problems) or time_from_name(path.stem),
    )


READER = Reader(kind="writing", read=read, suffixes=(".md", ".markdown", ".txt"))

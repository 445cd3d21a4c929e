"""A folder of markdown pages (an Obsidian-style vault): front matter, headings, [[wikilinks]].

`[[target]]`, `[[target|alias]]` and `[[target#heading|alias]]` record `target` in Document.links
and keep the visible words (the alias, else the target) in the text; `![[embeds]]` are dropped.
Title: front matter `title`, else the first H1, else the file stem.
"""

from __future__ import annotations

import re
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

WIKILINK = re.compile(r"(!?)\[\[([^\[\]|#\n]*)(#[^\[\]|\n]*)?(?:\|([^\[\]\n]*))?\]\]")


def resolve_links(body: str) -> tuple[str, list[str]]:
    """(text with links replaced by their visible words, link targets in order of first appearance)."""
    links: list[str] = []

    def visible(m: re.Match) -> str:
        embed, target, heading, alias = m[1], (m[2] or "").strip(), (m[3] or "").lstrip("#").strip(), m[4]
        if embed:
            return ""
        if target and target not in links:
            links.append(target)
        if alias is not None and alias.strip():
            return alias.strip()
        return target or heading

    return WIKILINK.sub(visible, body), links


def read(path: Path, rel: str, source: SourceConfig, problems: Problems) -> Iterator[Document]:
    text = read_text(path, rel, problems)
    if text is None:
        return
    meta, body = split_front_matter(text, rel, problems)
    body, links = resolve_links(body)
    body = body.strip()
    if not body:  # counted, so every file is stored or accounted for
        problems.add(rel, "file", "empty (nothing but front matter or white space); nothing stored")
        return
    meta = {**meta, "file": rel, "tags": tags_from(meta)}
    yield Document(
        source=source.name,
        kind="wiki",
        doc_id=rel,
        title=title_from(meta, body, path.stem),
        text=body,
        links=links,
        meta=meta,
        timestamp=time_from_meta(meta, rel, problems) or time_from_name(path.stem),
    )


READER = Reader(kind="wiki", read=read, suffixes=(".md", ".markdown"))

"""The registry of source readers: each `SourceConfig.kind` to its `Reader` (one module per kind, built on
sources/base.py)."""

from __future__ import annotations

from mothbrain.sources import chat_jsonl, chatgpt_export, claude_export, transcript, wiki, writing
from mothbrain.sources.base import Reader


def _registry() -> dict[str, Reader]:
    readers = [
        chat_jsonl.READER,
        chatgpt_export.READER,
        claude_export.READER,
        wiki.READER,
        writing.READER,
        transcript.READER,
    ]
    return {r.kind: r for r in readers}


READERS: dict[str, Reader] = {}


def get_reader(kind: str) -> Reader | None:
    """The reader of a source kind, or None for a kind nobody knows (ingest reports it)."""
    if not READERS:
        READERS.update(_registry())
    return READERS.get(kind)

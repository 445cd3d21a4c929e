"""The plain records that flow from the source readers through ingest into preprocess.

Every reader in `mothbrain.sources` yields `Document`s; ingest stores them as JSON lines;
preprocess iterates them back. Nothing downstream knows which file format a document came from.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

# Normalised document kinds (the configured source kinds map onto these).
DOC_KINDS = ("chat", "wiki", "writing", "transcript")


@dataclass
class Turn:
    role: str  # "user", "assistant", or for transcripts the speaker's name lower-cased
    text: str
    speaker: str = ""  # display name where the source has one (transcripts, exports)


@dataclass
class Document:
    source: str  # the configured source's name
    kind: str  # one of DOC_KINDS
    doc_id: str  # stable within the source: "<relative path>" or "<relative path>#<conversation id>"
    title: str = ""
    turns: list[Turn] = field(default_factory=list)  # chat and transcript documents
    text: str = ""  # wiki and writing documents (markdown body, front matter removed)
    links: list[str] = field(default_factory=list)  # wiki link targets, as written (alias dropped)
    meta: dict[str, Any] = field(default_factory=dict)  # front matter, export ids, line numbers
    timestamp: float | None = None  # seconds since the epoch, when the source says

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Document:
        data = dict(data)
        data["turns"] = [Turn(**t) for t in data.get("turns", [])]
        return cls(**data)

    def plain_text(self) -> str:
        """All the document's words, for hashing, concept mining and dedup."""
        if self.turns:
            return "\n".join(t.text for t in self.turns)
        return self.text

"""Which side of the held-out split a document is on: a stable hash of its source and id, nothing else,
so preprocess, the tiny base's builder and eval all agree without sharing state."""

from __future__ import annotations

import hashlib


def hash_int(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")


def unit(text: str) -> float:
    """A stable number in [0, 1) for `text`."""
    return hash_int(text) / 2.0**64


def is_heldout(source: str, doc_id: str, fraction: float) -> bool:
    """Whether a document goes to the held-out side."""
    return unit(f"{source}\0{doc_id}") < fraction

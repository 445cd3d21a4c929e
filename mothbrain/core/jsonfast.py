"""JSON for the stored documents (ingest writes them, preprocess reads them back) through orjson,
with the standard library as the reference: whatever orjson refuses to write (NaN, integers past
64 bits, lone surrogates, non-string keys) or to read (NaN, invalid JSON) goes to `json`. orjson
because every stored line is written once by ingest and read again by every preprocess run. It
reads an integer past 64 bits as a float without complaint, so a user's own files are parsed by
`json` alone; in our stored lines only a document's free-form `meta` could hold one, and preprocess
reads nothing there but the file's mtime."""

from __future__ import annotations

import json
from typing import Any

import orjson


def loads(data: str | bytes) -> Any:
    """json.loads for lines this program wrote (raises json's ValueError for invalid input)."""
    try:
        return orjson.loads(data)
    except (orjson.JSONDecodeError, TypeError):
        return json.loads(data)


def dumps_bytes(obj: Any) -> bytes | None:
    """`dumps_compact(obj)` as UTF-8 bytes, straight from orjson (no text copy of a large document); None where
    orjson refuses it (then `dumps_compact` goes to `json`)."""
    try:
        return orjson.dumps(obj)
    except (orjson.JSONEncodeError, TypeError):
        return None


def dumps_compact(obj: Any) -> str:
    """json.dumps(obj, ensure_ascii=False, separators=(",", ":")), faster."""
    try:
        return orjson.dumps(obj).decode("utf-8")
    except (orjson.JSONEncodeError, TypeError, UnicodeDecodeError):
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))

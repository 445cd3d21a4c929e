"""JSON for the stored documents (ingest writes them, preprocess reads them back) through orjson,
with the standard library as the reference: whatever orjson refuses to write (NaN, integers past
64 bits, lone surrogates, non-string keys) or to read (NaN, invalid JSON) goes to `json`. orjson is
~3x faster to write and ~1.7x to read; on a 100 MB archive that is most of a second of CPU. It
reads an integer past 64 bits as a float without complaint, so a user's own files are parsed by
`json` alone; in our stored lines only a document's free-form `meta` could hold one, and preprocess
reads nothing there but the file's mtime."""

from __future__ import annotations

import json
from typing import Any

try:
    import orjson
except ImportError:  # pragma: no cover - a dependency; the standard library still does the job
    orjson = None


def loads(data: str | bytes) -> Any:
    """json.loads for lines this program wrote (raises json's ValueError for invalid input)."""
    if orjson is not None:
        try:
            return orjson.loads(data)
        except (orjson.JSONDecodeError, TypeError):
            pass
    return json.loads(data)


def dumps_compact(obj: Any) -> str:
    """json.dumps(obj, ensure_ascii=False, separators=(",", ":")), faster."""
    if orjson is not None:
        try:
            return orjson.dumps(obj).decode("utf-8")
        except (orjson.JSONEncodeError, TypeError, UnicodeDecodeError):
            pass
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))

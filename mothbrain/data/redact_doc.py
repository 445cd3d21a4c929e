"""Redacting a whole `Document` in place, as ingest does before it stores one (`redact_document`), with the
redactor of `mothbrain.data.redact`."""

from __future__ import annotations

from collections import Counter

from mothbrain.config import RedactionConfig
from mothbrain.data.redact import INGEST_COUNTS, redact, redact_many

# Meta keys MothBrain writes itself (file names, ids, numbers): kept as they are, like the doc id, so a
# document keeps its identity and its side of the held-out split.
_OWN_META_KEYS = frozenset({"file", "conversation_id", "index", "line", "file_mtime", "model", INGEST_COUNTS})


def redact_document(doc, cfg: RedactionConfig | None = None) -> dict[str, int]:
    """Redact a `Document` in place before ingest stores it, and return the counts by type.

    The texts preprocess redacts (title, body, turns, speaker names, links) are redacted the same way,
    each distinct text counted once as preprocess counts it, plus the string values of the meta (a
    page's front matter). The doc id and the meta's file name are kept: they name the source file. The
    counts are kept on the document (meta `ingest_redacted`), so preprocess, which finds nothing left to
    redact, still reports what was redacted."""
    if cfg is not None and not cfg.enabled:
        return {}
    texts = [doc.title, doc.text, *(t.text for t in doc.turns), *(t.speaker for t in doc.turns), *doc.links]
    unique = list(dict.fromkeys(t for t in texts if t))
    out, counts = redact_many(unique, cfg)
    done = dict(zip(unique, out))
    doc.title, doc.text = done.get(doc.title, doc.title), done.get(doc.text, doc.text)
    for turn in doc.turns:
        turn.text, turn.speaker = done.get(turn.text, turn.text), done.get(turn.speaker, turn.speaker)
    doc.links = [done.get(x, x) for x in doc.links]
    total = Counter(counts)
    doc.meta = _redact_meta(doc.meta, cfg, total, top=True)
    if total:
        doc.meta[INGEST_COUNTS] = dict(total)
    return dict(total)


def _redact_meta(value, cfg: RedactionConfig | None, total: Counter, top: bool = False):
    if isinstance(value, str):
        text, counts = redact(value, cfg)
        total.update(counts)
        return text
    if isinstance(value, list):
        return [_redact_meta(v, cfg, total) for v in value]
    if isinstance(value, dict):
        return {k: v if top and k in _OWN_META_KEYS else _redact_meta(v, cfg, total) for k, v in value.items()}
    return value

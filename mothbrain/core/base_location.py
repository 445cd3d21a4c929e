"""Where the base model is: a prepared base, the production model's folder or hub id, or the demo's tiny model.

A prepared base (`mothbrain models prepare`) is a plain Hugging Face folder under the state dir's
data/models/<name>/ that carries a manifest.json, and optionally an NF4 copy in nf4/ (models/prepare.py).
Pure path logic, nothing loaded: preprocess's token counts and doctor read it as well as model loading."""

from __future__ import annotations

from pathlib import Path

from mothbrain.core.paths import models_dir
from mothbrain.errors import MothError

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

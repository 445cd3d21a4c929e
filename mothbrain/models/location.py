"""Where the base model is: the production model's folder or hub id, or the demo's tiny model (built on first use)."""

from __future__ import annotations

from pathlib import Path

from mothbrain.core.paths import models_dir
from mothbrain.errors import MothError
from mothbrain.models.tiny import build_tiny_model, is_built


def base_model_location(cfg) -> Path | str:
    """Where the base model is: a local Path, or a hub id string for a real model.

    With `model.build_tiny`, `model.base` is a name under the state dir's data/models/ (built
    there once and reused); otherwise a local directory (relative to the config) or a hub id,
    which transformers resolves from the local Hugging Face cache.
    """
    base = cfg.model.base
    if cfg.model.build_tiny:
        return models_dir(cfg) / base
    local = cfg.resolve_path(base)
    if local.exists():
        return local
    if base.startswith((".", "/", "~")):
        raise MothError(f"model.base {base!r}: no such directory ({local}); fix the path or set model.build_tiny: true")
    return base


def ensure_base_model(cfg, progress=None) -> Path | str:
    """The base model's location, building the tiny model first when the config asks for it."""
    loc = base_model_location(cfg)
    if cfg.model.build_tiny and not is_built(Path(loc)):
        source_paths = [cfg.resolve_path(s.path) for s in cfg.sources]
        build_tiny_model(Path(loc), source_paths, progress=progress)
    return loc

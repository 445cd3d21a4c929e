"""Token counts for the composition table: the base model's own tokenizer when it is on disk, never downloaded."""

from __future__ import annotations

import logging
from pathlib import Path

from mothbrain.config import Config
from mothbrain.core.base_location import base_model_location

log = logging.getLogger(__name__)


def tokenizer_file(cfg: Config) -> tuple[Path | None, Path | None]:
    """(the base model's local folder or None, its tokenizer.json on disk or None); never downloads."""

    location = base_model_location(cfg)
    local = Path(location)
    if local.is_dir():
        tok_file = local / "tokenizer.json"
    else:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(str(location), "tokenizer.json")
        tok_file = Path(cached) if isinstance(cached, str) else None
    return (local if local.is_dir() else None), (tok_file if tok_file is not None and tok_file.is_file() else None)


def tokenizer_identity(cfg: Config) -> list:
    """What token counts depend on (part of the document cache's key): the tokenizer file and its stat."""
    try:
        local, tok_file = tokenizer_file(cfg)
        if tok_file is not None:
            st = tok_file.stat()
            return [str(tok_file), st.st_size, st.st_mtime_ns]
        return [str(local), "no tokenizer.json"] if local is not None else ["approximate"]
    except Exception:  # noqa: BLE001 - the same failure makes token_counter approximate
        return ["approximate"]


def token_counter(cfg: Config):
    """(count(texts) -> token counts, column label): the base model's tokenizer when it is on disk.

    Reads the model's tokenizer.json with `tokenizers` (the same fast tokenizer transformers would
    load, without importing torch), falling back to AutoTokenizer(local_files_only=True) for a
    model without one; nothing is downloaded. Without a tokenizer, tokens are chars/4, "~tokens".
    """
    try:
        local, tok_file = tokenizer_file(cfg)
        if tok_file is not None:
            from tokenizers import Tokenizer

            fast = Tokenizer.from_file(str(tok_file))
            return (lambda texts: [len(e.ids) for e in fast.encode_batch(texts, add_special_tokens=False)]), "tokens"
        if local is not None:
            from transformers import AutoTokenizer

            tok = AutoTokenizer.from_pretrained(str(local), local_files_only=True)
            return (lambda texts: [len(ids) for ids in tok(texts, add_special_tokens=False)["input_ids"]]), "tokens"
    except Exception as exc:  # noqa: BLE001 - any failure here means: approximate
        log.info(
            "tokenizer unavailable (%s); token counts are chars/4", str(exc).splitlines()[0][:160] if str(exc) else exc
        )
    return (lambda texts: [max(1, round(len(t) / 4)) for t in texts]), "~tokens"

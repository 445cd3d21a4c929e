"""Loading the base model (4-bit NF4 when configured) and adapters, the same way for every stage.

Train, dream, eval and serve all come through here, so a CPU laptop and a 128 GB GPU box differ
only in what `resolve_device` and `compute_dtype` return.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from pathlib import Path
from typing import Any

from mothbrain.core import noise, paths
from mothbrain.core.base_location import MANIFEST, NF4_DIR, base_model_location
from mothbrain.core.current import adapter_is_complete
from mothbrain.errors import MothError, NothingToDo
from mothbrain.models.build_lock import MODEL_BUILD_LOCK
from mothbrain.models.location import ensure_base_model

log = logging.getLogger(__name__)


def quiet_libraries() -> None:
    """Silence per-weight load bars and known-harmless warnings; our own progress is shown instead.
    With --verbose (mothbrain.core.noise) the warnings stay: that is what it asks for."""

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        if not noise.verbose():
            hf_logging.set_verbosity_error()
    except Exception:  # pragma: no cover - transformers always present
        pass
    if noise.verbose():
        return
    for mod in ("bitsandbytes", "peft", "trl", "torch.utils.checkpoint"):
        warnings.filterwarnings("ignore", module=mod)
    # Also bitsandbytes' warning on every import, on CPUs with AVX512-BF16, that an optional
    # hub-downloaded kernel is missing: we never download at run time, so its fallback is the intended path.
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)


def resolve_device(cfg) -> str:
    import torch

    if cfg.model.device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if cfg.model.device == "cuda" and not torch.cuda.is_available():
        raise MothError("model.device is 'cuda' but no CUDA device is visible; set model.device: auto or cpu")
    return cfg.model.device


def compute_dtype(cfg):
    import torch

    name = cfg.model.quantization.compute_dtype
    if name == "auto":
        if resolve_device(cfg) == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    return getattr(torch, name)


def bnb_config(cfg):
    """BitsAndBytesConfig for QLoRA (NF4 + double quantization), or None when 4-bit is off."""
    return nf4_config(cfg) if cfg.model.quantization.load_in_4bit else None


def nf4_config(cfg):
    """The BitsAndBytesConfig of `model.quantization` on this device, whether or not 4-bit loading is on
    (`models prepare` makes the pre-quantized copy with it)."""
    from transformers import BitsAndBytesConfig

    q = cfg.model.quantization
    extra = {}
    if resolve_device(cfg) == "cuda":
        # Packed 4-bit weights stored in the compute dtype let FSDP shard them like the rest; on CPU
        # the default uint8 storage keeps bitsandbytes on its fast path (float storage is ~10x slower).
        extra["bnb_4bit_quant_storage"] = compute_dtype(cfg)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=q.quant_type,
        bnb_4bit_use_double_quant=q.double_quant,
        bnb_4bit_compute_dtype=compute_dtype(cfg),
        **extra,
    )


def nf4_settings(quant) -> dict[str, Any]:
    """What a pre-quantized copy must share with the BitsAndBytesConfig a run asks for, to stand in for it."""

    def name(dtype) -> str:
        return str(dtype).removeprefix("torch.")

    return {
        "quant_type": quant.bnb_4bit_quant_type,
        "double_quant": bool(quant.bnb_4bit_use_double_quant),
        "compute_dtype": name(quant.bnb_4bit_compute_dtype),
        "quant_storage": name(quant.bnb_4bit_quant_storage),
    }


def prepared_nf4(location: str, quant) -> str | None:
    """The NF4 copy of a prepared base (`models prepare`) when it was made with the settings `quant` asks
    for; None when there is none or it differs (the base is then quantized while it loads)."""

    folder = Path(location)
    if quant is None or not (folder / NF4_DIR / "config.json").is_file():
        return None
    try:
        made = (json.loads((folder / MANIFEST).read_text()).get("nf4") or {}).get("settings")
    except (OSError, ValueError):
        return None
    if made != nf4_settings(quant):
        log.info(
            "the NF4 copy in %s was made with %s, this run asks for %s: quantizing on load",
            folder,
            made,
            nf4_settings(quant),
        )
        return None
    return str(folder / NF4_DIR)


def base_location(cfg, build: bool = True) -> str:
    return str(ensure_base_model(cfg) if build else base_model_location(cfg))


def _offline_kwargs(location: str) -> dict[str, Any]:
    # A hub id is read from the local cache only: nothing is downloaded at run time.
    return {} if Path(location).exists() else {"local_files_only": True}


def load_tokenizer(cfg, location: str | None = None):
    from transformers import AutoTokenizer

    location = location or base_location(cfg)
    try:
        tok = AutoTokenizer.from_pretrained(
            location, trust_remote_code=cfg.model.trust_remote_code, **_offline_kwargs(location)
        )
    except OSError as exc:
        raise MothError(
            f"cannot load the tokenizer of model.base {cfg.model.base!r} ({str(exc).splitlines()[0][:120]}); "
            "point model.base at a local model directory or pre-download it into the HF cache"
        ) from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_base_model(cfg, *, location: str | None = None, for_training: bool = False):
    """The frozen base, 4-bit when configured, on the configured device."""
    import torch
    from transformers import AutoModelForCausalLM

    quiet_libraries()
    location = location or base_location(cfg)
    device = resolve_device(cfg)
    dtype = compute_dtype(cfg)
    kwargs: dict[str, Any] = dict(
        dtype=dtype,
        trust_remote_code=cfg.model.trust_remote_code,
        attn_implementation=cfg.model.attn_implementation,
        **_offline_kwargs(location),
    )
    quant = bnb_config(cfg)
    sharded = any(
        os.environ.get(k, "false").lower() == "true" for k in ("ACCELERATE_USE_FSDP", "ACCELERATE_USE_DEEPSPEED")
    )
    nf4 = None if sharded else prepared_nf4(location, quant)
    if nf4 is not None:
        location = nf4  # already 4-bit: its own config.json carries the same quantization_config
    elif quant is not None:
        kwargs["quantization_config"] = quant
    if device == "cuda" and not sharded:
        # Under `accelerate launch` each process takes its own GPU. FSDP/ZeRO-3 place the weights
        # themselves (rank 0 loads, the others get shards), so no device_map there.
        kwargs["device_map"] = {"": int(os.environ.get("LOCAL_RANK", 0))}
    elif quant is not None:
        kwargs["device_map"] = {"": "cpu"}
    try:
        with MODEL_BUILD_LOCK:
            model = AutoModelForCausalLM.from_pretrained(location, **kwargs)
    except OSError as exc:
        raise MothError(
            f"cannot load model.base {cfg.model.base!r} ({str(exc).splitlines()[0][:120]}); "
            "point model.base at a local model directory or pre-download it into the HF cache"
        ) from None
    except torch.cuda.OutOfMemoryError:
        raise MothError(
            f"out of GPU memory loading {cfg.model.base!r}; run `mothbrain train --dry-run` to see the "
            "breakdown, or free the GPU"
        ) from None
    if device == "cpu" and quant is None:
        model.to("cpu")
    if not for_training:
        model.eval()
    return model


def load_model_with_adapters(cfg, adapters: dict[str, str | os.PathLike], *, base=None):
    """Base + named adapters (PeftModel); `with model.disable_adapter():` gives the base itself."""
    if not adapters:
        raise ValueError("no adapters given")
    base = base if base is not None else load_base_model(cfg)
    with MODEL_BUILD_LOCK:
        model = _attach_adapters(base, adapters)
    model.eval()
    return model


def _attach_adapters(base, adapters):
    from peft import PeftModel

    model = None
    for name, path in adapters.items():
        if not adapter_is_complete(path):
            raise MothError(
                f"adapter {name!r} at {path} is incomplete (no adapter_config.json or weights); "
                "re-run `mothbrain train` or pick another version"
            )
        if model is None:
            model = PeftModel.from_pretrained(base, str(path), adapter_name=name, is_trainable=False)
        else:
            model.load_adapter(str(path), adapter_name=name, is_trainable=False)
    return model


def read_adapter_meta(path: str | os.PathLike) -> dict[str, Any]:
    """The mothbrain.json that every adapter directory carries (config, data fingerprint, metrics)."""
    p = Path(path) / "mothbrain.json"
    return json.loads(p.read_text()) if p.is_file() else {}


def pick_adapter(cfg, ledger, version: str | None, default: dict | None, purpose: str) -> tuple[str, Path]:
    """The version to use (`default` ledger entry when none is named) and its finished adapter dir."""

    if version is None:
        entry = default
        if entry is None:
            raise NothingToDo(f"no trained adapter to {purpose}; run `mothbrain train` first")
    else:
        entry = ledger.get(version)
        if entry["status"] in ("training", "failed"):
            raise MothError(
                f"version {version} has status {entry['status']!r} and no finished adapter; "
                "pick a trained one (`mothbrain status`)"
            )
    adapter = paths.adapter_dir(cfg, entry["id"])
    if not adapter_is_complete(adapter):
        raise MothError(
            f"the adapter of {entry['id']} at {adapter} is missing or incomplete; re-run "
            "`mothbrain train` or pick another version with --version"
        )
    return entry["id"], adapter

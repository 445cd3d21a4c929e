"""Parameter counts without weights: read the base model's config.json (a file, the local Hugging Face
cache, or the tiny demo's fixed architecture), build base + LoRA on the meta device, and count what the
memory estimate (mothbrain.models.memory) needs: trainable and total parameters and the layer shapes."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mothbrain.config import Config
from mothbrain.core.base_location import base_model_location
from mothbrain.errors import MothError
from mothbrain.models.loading import MODEL_BUILD_LOCK
from mothbrain.models.tiny import TINY_ARCH


@dataclass(frozen=True)
class ParamCount:
    """What the meta-device model says: parameter counts and the shapes the estimate needs."""

    trainable: int  # LoRA parameters
    total: int  # base + LoRA, as peft counts them
    base: int
    quantizable: int  # weights of the nn.Linear layers bitsandbytes stores in 4 bit
    largest_linear: int  # numel of the largest of those (the dequantization buffer)
    hidden_size: int
    intermediate_size: int
    num_layers: int
    vocab_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    lora_r: int
    lora_modules_per_layer: float
    lora_in_per_layer: float  # Σ in_features of the adapted modules of one layer
    checkpoint_dtype_bytes: int  # the config's torch_dtype: how the released weights are stored
    model_type: str
    source: str  # where the config came from

    @property
    def trainable_pct(self) -> float:
        return 100.0 * self.trainable / self.total

    @property
    def unquantized(self) -> int:
        return self.base - self.quantizable

    def lora_params(self, r: int) -> int:
        # Each adapted module adds r·(in + out) parameters: linear in r.
        return self.trainable * r // self.lora_r

    def summary(self) -> str:
        return (
            f"{self.trainable:,} trainable parameters ({self.trainable_pct:.2f}%) "
            f"of {self.total:,} (LoRA r={self.lora_r})"
        )

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "trainable_pct": round(self.trainable_pct, 4)}


def _config_source(cfg: Config) -> tuple[str, str]:
    """(kind, value) of the config.json to size: ("file", path), ("tiny", ""), or ("hub", id)."""
    if cfg.model.config_json:
        p = cfg.resolve_path(cfg.model.config_json)
        if p.is_dir():
            p = p / "config.json"
        if not p.is_file():
            raise MothError(
                f"model.config_json: {p} not found; point it at the base model's config.json "
                "(e.g. configs/qwen2.5-72b.config.json)"
            )
        return "file", str(p)

    loc = base_model_location(cfg)
    if isinstance(loc, Path):
        if (loc / "config.json").is_file():
            return "file", str(loc / "config.json")
        if cfg.model.build_tiny:
            return "tiny", ""  # not built yet: its architecture is fixed in tiny.TINY_ARCH
        raise MothError(
            f"model.base {cfg.model.base!r}: no config.json in {loc}; set model.config_json "
            "to the base model's config.json"
        )
    return "hub", str(loc)


def _load_hf_config(kind: str, value: str, trust_remote_code: bool):
    from transformers import AutoConfig

    if kind == "tiny":
        from transformers import Qwen2Config

        return Qwen2Config(**TINY_ARCH)
    try:
        if kind == "hub":
            # Only the local Hugging Face cache: nothing is downloaded.
            return AutoConfig.from_pretrained(value, local_files_only=True, trust_remote_code=trust_remote_code)
        return AutoConfig.from_pretrained(value, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        if kind == "hub":
            raise MothError(
                f"cannot size model.base {value!r} without its config.json (not in the local Hugging "
                "Face cache; nothing is downloaded): set model.config_json to the base model's "
                "config.json, e.g. configs/qwen2.5-72b.config.json"
            ) from None
        raise MothError(
            f"{value}: not a usable model config.json ({first}); fix the file or model.config_json"
        ) from None


def _arch(hf_config, source: str) -> dict[str, int]:
    text = hf_config.get_text_config() if hasattr(hf_config, "get_text_config") else hf_config
    try:
        heads = int(text.num_attention_heads)
        hidden = int(text.hidden_size)
        arch = dict(
            hidden_size=hidden,
            intermediate_size=int(text.intermediate_size),
            num_layers=int(text.num_hidden_layers),
            vocab_size=int(text.vocab_size),
            num_heads=heads,
            num_kv_heads=int(getattr(text, "num_key_value_heads", None) or heads),
            head_dim=int(getattr(text, "head_dim", None) or hidden // heads),
        )
    except (AttributeError, TypeError) as exc:
        raise MothError(
            f"{source}: the memory estimate needs a decoder-only transformer config with hidden_size, "
            f"intermediate_size, num_hidden_layers, num_attention_heads, vocab_size ({exc})"
        ) from None
    return arch


@contextlib.contextmanager
def _quiet_transformers():
    """transformers' logging at error level, and warnings off, while a config is read and a meta model built."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        hf_logging.set_verbosity(verbosity)


def _meta_model(hf_config, trust_remote_code: bool, source: str):
    """The model `hf_config` describes, on the meta device (shapes, no storage: a 72B builds in well under a
    second); a model type transformers cannot build is one line naming `source`."""
    from accelerate import init_empty_weights
    from transformers import AutoModelForCausalLM

    with MODEL_BUILD_LOCK, init_empty_weights():
        try:
            return AutoModelForCausalLM.from_config(hf_config, trust_remote_code=trust_remote_code)
        except (ValueError, KeyError, TypeError) as exc:
            raise MothError(
                f"{source}: transformers cannot build this model type ({str(exc).splitlines()[0][:160]})"
            ) from None


def count_parameters(cfg: Config) -> ParamCount:
    """Trainable and total parameters of base + LoRA, from config.json alone (meta device, seconds)."""
    kind, value = _config_source(cfg)
    mtime = Path(value).stat().st_mtime_ns if kind == "file" else 0
    return _count_cached(
        kind,
        value,
        mtime,
        cfg.model.trust_remote_code,
        cfg.lora.r,
        cfg.lora.alpha,
        cfg.lora.dropout,
        tuple(cfg.lora.target_modules),
    )


@functools.lru_cache(maxsize=16)
def _count_cached(
    kind: str,
    value: str,
    mtime: int,
    trust_remote_code: bool,
    r: int,
    alpha: int,
    dropout: float,
    targets: tuple[str, ...],
) -> ParamCount:
    import torch
    from peft import LoraConfig, get_peft_model
    from peft.tuners.lora import LoraLayer

    source = value or "tiny.TINY_ARCH (the demo model, not built yet)"
    with _quiet_transformers():
        hf_config = _load_hf_config(kind, value, trust_remote_code)
        arch = _arch(hf_config, source)
        model = _meta_model(hf_config, trust_remote_code, source)
        out_emb = model.get_output_embeddings()
        linears = [m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear) and m is not out_emb]
        base = sum(p.numel() for p in model.parameters())
        lora = LoraConfig(
            r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(targets), task_type="CAUSAL_LM"
        )
        try:
            with MODEL_BUILD_LOCK:
                peft_model = get_peft_model(model, lora, low_cpu_mem_usage=True)  # adapters on meta too
        except ValueError as exc:
            raise MothError(f"lora.target_modules {list(targets)}: {str(exc).splitlines()[0][:160]}") from None
        trainable, total = peft_model.get_nb_trainable_parameters()
        adapted = [m for m in peft_model.modules() if isinstance(m, LoraLayer)]
    # No dtype in the config means transformers' default, fp32 (the tiny model is saved so).
    dtype = getattr(hf_config, "dtype", None) or getattr(hf_config, "torch_dtype", None) or torch.float32
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype, torch.float32)
    return ParamCount(
        trainable=int(trainable),
        total=int(total),
        base=int(base),
        quantizable=int(sum(linears)),
        largest_linear=int(max(linears, default=0)),
        **arch,
        lora_r=r,
        lora_modules_per_layer=len(adapted) / arch["num_layers"],
        lora_in_per_layer=sum(m.in_features for m in adapted) / arch["num_layers"],
        checkpoint_dtype_bytes=torch.empty(0, dtype=dtype).element_size(),
        model_type=str(getattr(hf_config, "model_type", "")),
        source=source,
    )


# --------------------------------------------------------------------------- the base's own module names


def base_config_source(cfg: Config) -> tuple[str, str] | None:
    """(kind, value) of the base's own config.json (model.config_json aside), or None while it is not here."""
    try:
        loc = base_model_location(cfg)
    except MothError:
        return None
    if isinstance(loc, str):
        return "hub", loc
    if (loc / "config.json").is_file():
        return "file", str(loc / "config.json")
    return ("tiny", "") if cfg.model.build_tiny else None


@functools.lru_cache(maxsize=8)
def module_names(kind: str, value: str, mtime: int, trust_remote_code: bool) -> tuple[str, str, frozenset[str]]:
    """(architecture, model_type, every module's dotted name) of the model a config.json describes, built on
    the meta device: no weights read, seconds for a 72B. `mtime` keys the cache to the file's version."""
    with _quiet_transformers():
        hf_config = _load_hf_config(kind, value, trust_remote_code)
        model = _meta_model(hf_config, trust_remote_code, value or "the tiny demo base")
    arch = (getattr(hf_config, "architectures", None) or [type(model).__name__])[0]
    return arch, str(getattr(hf_config, "model_type", "")), frozenset(n for n, _ in model.named_modules() if n)

"""Memory preflight: predict the peak of a training run from the parameter counts (parameter_count.py).

`mothbrain train --dry-run` prints `format_estimate`; `check_fits` runs before every real run so an
impossible setting fails in seconds, naming the knob to turn, instead of as a CUDA OOM an hour in.
`measured_peak_bytes` records the real peak beside the prediction in the ledger.

Units: bytes throughout; GB = 10^9 bytes, hardware.memory_gb included (so a card sold as "80 GB",
which holds 85.9e9 bytes, is sized conservatively).

The model is deliberately simple; each term can be checked against a measured peak (target ±15%
on GPU runs). On CPU, small Qwen2s: the loaded 4-bit base matched to 0.1%, and the activation +
loss peak came within -7%..+15% of torch.profiler's across bf16/fp32, dropout on/off,
checkpointing on/off and sdpa/eager.

T = micro_batch_size × max_seq_len tokens per micro-step, c = compute-dtype bytes (bf16 = 2 on
GPU, fp32 = 4 on CPU), h/i/L/V = hidden, intermediate, layers, vocab; qd/kvd = query/key widths.

  base weights   4-bit: every nn.Linear of the decoder (all but lm_head, as transformers'
                 bitsandbytes loader does) is stored as two 4-bit codes per byte: 0.5 B/param,
                 plus one absmax per 64-weight block: fp32 (4/64 B/param), or with double
                 quantization 8-bit plus one fp32 per 256 absmax ((1 + 4/256)/64 B/param).
                 The rest (embeddings, lm_head, norms, biases) stays in the compute dtype.
                 Not 4-bit: every parameter in the compute dtype.
  LoRA           weights fp32 (peft's adapter dtype) 4 B/param, gradients 4 B/param, optimizer
                 states: AdamW 2 × fp32 = 8 B/param, bitsandbytes 8-bit AdamW 2 × 1 B + an fp32
                 absmax per 256 values. On CPU the trainer uses adamw_torch (8 B/param).
  activations    What autograd saves per token in one decoder layer (checked op by op with
                 saved-tensor hooks on a small Qwen2):
                   the two RMSNorms keep their fp32 input                      2·4·h
                   sdpa/flash: q, k, v, output (GQA k, v not repeated)         (2·qd + 2·kvd)·c
                     with a mask (packed or padded rows) sdpa repeats k, v:    4·qd·c
                     eager adds the fp32 softmax and its cast: heads·S·(4 + c) (the seq² matrix)
                   MLP: gate, silu(gate), up                                   3·i·c
                   LoRA: peft casts each adapted input to fp32; dropout saves that copy and its
                     mask (bool on CUDA, float on CPU): Σ in_features·(4 + 1 or 4); lora_A's
                     r fp32 outputs per adapted module
                 Checkpointing on: every layer's input (L·T·h·c) stays; one layer at a time is
                 recomputed with its gradients in flight (2·i·c + 2·h·c per token). Off: all L
                 layers' saved tensors stay until their backward.
  logits + loss  T·V·12: the fp32 log-softmax saved for backward and two fp32 gradients (the
                 lm_head output and its fp32 upcast are freed by then; measured 11.9 B/logit in
                 bf16, 11.5 in fp32). Big for Qwen's 152k vocab: 3.7 GB at 2048 tokens. Liger's
                 fused linear cross-entropy (train.use_liger, GPU, installed) keeps ~T·h·8.
  backward peak  the loss peaks before any layer's backward starts, so the larger of the loss
                 and one layer's recompute (checkpointing) or backward (none) counts, not both.
  attention mask packed or padded rows get a 4-D mask built once per forward: B·S²·(1 + c).
  dequant buffer a 4-bit matmul dequantizes its weight to the compute dtype: the largest one.
  overhead       hardware.overhead_gb: CUDA context, allocator slack, libraries (process RSS on CPU).

Not modelled (small, or outside the defaults): bitsandbytes keeping tensors < 4096 values in
32-bit optimizer states, foreach-AdamW temporaries, the data loader, and
`prepare_model_for_kbit_training`, which would upcast embeddings and lm_head to fp32
(+5 GB on the 72B): the trainer is expected not to call it.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
from dataclasses import dataclass, field
from typing import Any

from mothbrain.config import Config
from mothbrain.errors import MothError
from mothbrain.models.parameter_count import ParamCount, count_parameters

GB = 10**9
NF4_BLOCK = 64  # weights per 4-bit quantization block (bitsandbytes)
DQ_BLOCK = 256  # absmax values per fp32 constant under double quantization
OPT8_BLOCK = 256  # values per fp32 absmax in bitsandbytes' 8-bit optimizer states
MIN_SEQ_LEN = 128  # shortest max_seq_len the advice proposes
MIN_LORA_R = 4  # smallest rank the advice proposes


# --------------------------------------------------------------------------- the estimate


@dataclass(frozen=True)
class _Settings:
    """Everything the formulas read; the knobs are `dataclasses.replace` on this."""

    device: str
    compute_dtype: str
    c: int  # compute-dtype bytes
    load_in_4bit: bool
    double_quant: bool
    r: int
    dropout: float
    seq_len: int
    micro_batch: int
    checkpointing: bool
    packing: bool
    optimizer: str  # the one that will really run
    attn: str
    liger: bool  # fused linear cross-entropy really in use
    overhead: int
    limit: int


def _settings(cfg: Config, device: str | None) -> _Settings:
    if device is None:
        device = cfg.model.device
        if device == "auto":
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = cfg.model.quantization.compute_dtype
    if dtype == "auto":
        dtype = "bfloat16" if device == "cuda" else "float32"
    liger = device == "cuda" and cfg.train.use_liger and importlib.util.find_spec("liger_kernel") is not None
    return _Settings(
        device=device,
        compute_dtype=dtype,
        c=4 if dtype == "float32" else 2,
        load_in_4bit=cfg.model.quantization.load_in_4bit,
        double_quant=cfg.model.quantization.double_quant,
        r=cfg.lora.r,
        dropout=cfg.lora.dropout,
        seq_len=cfg.train.max_seq_len,
        micro_batch=cfg.train.micro_batch_size,
        checkpointing=cfg.train.gradient_checkpointing,
        packing=cfg.train.packing,
        optimizer=cfg.train.optimizer if device == "cuda" else "adamw_torch",
        attn=cfg.model.attn_implementation,
        liger=liger,
        overhead=int(cfg.hardware.overhead_gb * GB),
        limit=int(cfg.hardware.memory_gb * GB),
    )


def _optimizer_bytes_per_param(name: str) -> float:
    if "8bit" in name:
        return 2 + 2 * 4 / OPT8_BLOCK
    if name.startswith("sgd"):
        return 0.0  # transformers' SGD has no momentum by default
    return 8.0  # AdamW family; conservative for anything else


def _quant_constants_per_param(double_quant: bool) -> float:
    return (1 + 4 / DQ_BLOCK) / NF4_BLOCK if double_quant else 4 / NF4_BLOCK


def _components(n: ParamCount, s: _Settings) -> list[tuple[str, str, int]]:
    """(key, label, bytes) for each term of the peak; see the module docstring for the formulas."""
    c, h, i, L, V = s.c, n.hidden_size, n.intermediate_size, n.num_layers, n.vocab_size
    qd, kvd = n.num_heads * n.head_dim, n.num_kv_heads * n.head_dim
    T = s.micro_batch * s.seq_len
    lora = n.lora_params(s.r)
    out: list[tuple[str, str, int]] = []
    if s.load_in_4bit:
        out.append(("base_4bit", "base weights, 4-bit codes", n.quantizable // 2))
        label = "quant constants (double quant)" if s.double_quant else "quant constants (fp32 absmax)"
        out.append(("base_quant_constants", label, int(n.quantizable * _quant_constants_per_param(s.double_quant))))
        out.append(("base_unquantized", f"embeddings, lm_head, norms ({s.compute_dtype})", n.unquantized * c))
    else:
        out.append(("base_unquantized", f"base weights ({s.compute_dtype})", n.base * c))
    out.append(("lora_weights", "LoRA weights (fp32)", lora * 4))
    out.append(("lora_grads", "LoRA gradients (fp32)", lora * 4))
    out.append(("optimizer", f"optimizer states ({s.optimizer})", int(lora * _optimizer_bytes_per_param(s.optimizer))))

    # What autograd saves per token in one decoder layer (checked op by op with saved-tensor hooks).
    mask_b = 1 if s.device == "cuda" else 4  # dropout masks: bool on CUDA, float on CPU
    if s.dropout > 0:
        lora_saved = n.lora_in_per_layer * (4 + mask_b)  # each module's fp32 dropout output + mask
    elif c != 4:
        lora_saved = n.lora_in_per_layer * 4  # each module's own fp32 copy of its input
    else:
        lora_saved = min(n.lora_in_per_layer, 2 * h + qd + i) * 4  # the shared inputs themselves
    masked = s.attn != "flash_attention_2" and (s.packing or s.micro_batch > 1)
    if s.attn == "flash_attention_2" or (s.attn == "sdpa" and not masked):
        attn = (2 * qd + 2 * kvd) * c  # q, k, v, output; GQA heads not repeated
    elif s.attn == "sdpa":
        attn = 4 * qd * c  # with a mask transformers repeats k, v to every head
    else:
        attn = 3 * qd * c + n.num_heads * s.seq_len * (4 + c)  # eager: q, k, v + fp32 softmax + cast
    per_token = (
        2 * 4 * h  # the two RMSNorms keep their fp32 input
        + attn
        + n.num_heads * 4  # + the softmax log-sum-exp
        + 3 * i * c  # MLP: gate, silu(gate), up
        + lora_saved
        + n.lora_modules_per_layer * s.r * 4
    )  # + lora_A outputs
    # The backward pass peaks twice, never at once: first in the loss (the logits' fp32 copies),
    # then in each layer (its recompute under checkpointing, its gradients). The larger counts.
    layer_backward = (2 * i * c + 2 * h * c) * T  # gradients in flight inside one layer
    if s.liger:
        logits, logits_label = T * h * 8, "logits + loss, Liger fused"
    else:
        # The fp32 log-softmax saved for backward and two fp32 gradients; the lm_head output and
        # its fp32 upcast are freed by then (measured: 11.9 B/logit in bf16, 11.5 in fp32).
        logits, logits_label = T * V * 12, f"logits + loss, {V:,} vocab"
    logits += T * h * (4 + c)  # final norm and lm_head input
    if s.checkpointing:
        out.append(("act_checkpoints", f"checkpointed layer inputs ({L} layers)", L * T * h * c))
        layer = int(per_token * T) + layer_backward
        other = ("a layer's recompute", layer)
    else:
        out.append(("act_layers", f"saved activations of all {L} layers", int(L * T * (per_token + h * c))))
        other = ("a layer's backward", layer_backward)
    if logits >= other[1]:
        out.append(("act_peak", f"{logits_label} (> {other[0]}: {other[1] / GB:.2f} GB)", logits))
    else:
        out.append(("act_peak", f"{other[0]} (> {logits_label}: {logits / GB:.2f} GB)", other[1]))
    if masked:
        # Packed or padded rows need a 4-D mask, built once per forward: bool, then additive in c.
        out.append(("attn_mask", "attention mask (packed sequences)", s.micro_batch * s.seq_len**2 * (1 + c)))
    if s.load_in_4bit:
        out.append(("dequant_buffer", "4-bit dequantization buffer", n.largest_linear * c))
    out.append(("overhead", "framework overhead (hardware.overhead_gb)", s.overhead))
    return out


def _peak(n: ParamCount, s: _Settings) -> int:
    return sum(b for _, _, b in _components(n, s))


def _halvings(value: int, floor: int) -> list[int]:
    out = []
    while value // 2 >= floor:
        value //= 2
        out.append(value)
    return out


def _knob_steps(s: _Settings) -> list[tuple[str, list[tuple[str, dict[str, Any]]]]]:
    """Each knob as (setting, [(what to do, changed fields), ...] from mildest to strongest)."""
    knobs: list[tuple[str, list[tuple[str, dict[str, Any]]]]] = []
    if not s.checkpointing:
        knobs.append(
            ("train.gradient_checkpointing", [("turn on train.gradient_checkpointing", {"checkpointing": True})])
        )
    knobs.append(
        (
            "train.max_seq_len",
            [
                (f"lower train.max_seq_len from {s.seq_len} to {v}", {"seq_len": v})
                for v in _halvings(s.seq_len, MIN_SEQ_LEN)
            ],
        )
    )
    knobs.append(
        (
            "train.micro_batch_size",
            [
                (
                    f"lower train.micro_batch_size from {s.micro_batch} to {v} (raise "
                    "train.gradient_accumulation to keep the batch)",
                    {"micro_batch": v},
                )
                for v in _halvings(s.micro_batch, 1)
            ],
        )
    )
    knobs.append(("lora.r", [(f"lower lora.r from {s.r} to {v}", {"r": v}) for v in _halvings(s.r, MIN_LORA_R)]))
    if s.device == "cuda" and "8bit" not in s.optimizer:
        knobs.append(
            ("train.optimizer", [("set train.optimizer to paged_adamw_8bit", {"optimizer": "paged_adamw_8bit"})])
        )
    if not s.load_in_4bit:
        knobs.append(
            ("model.quantization.load_in_4bit", [("turn on model.quantization.load_in_4bit", {"load_in_4bit": True})])
        )
    elif not s.double_quant:
        knobs.append(
            ("model.quantization.double_quant", [("turn on model.quantization.double_quant", {"double_quant": True})])
        )
    if s.device == "cuda" and not s.liger:
        hint = "" if importlib.util.find_spec("liger_kernel") is not None else " (pip install liger-kernel)"
        knobs.append(("train.use_liger", [(f"turn on train.use_liger{hint}", {"liger": True})]))
    if s.attn == "eager":
        knobs.append(("model.attn_implementation", [("set model.attn_implementation to sdpa", {"attn": "sdpa"})]))
    return [(k, steps) for k, steps in knobs if steps]


def _rank_knobs(n: ParamCount, s: _Settings) -> list[dict[str, Any]]:
    """Every knob with its mildest change that fits (else its strongest) and what that saves.

    Knobs that can make the run fit come first, the one saving the most at its fitting step leading.
    """
    peak = _peak(n, s)
    ranked = []
    for setting, steps in _knob_steps(s):
        chosen = None
        for what, change in steps:
            p = _peak(n, dataclasses.replace(s, **change))
            if p <= s.limit:
                chosen = (what, change, p, True)
                break
        if chosen is None:
            what, change = steps[-1]
            chosen = (what, change, _peak(n, dataclasses.replace(s, **change)), False)
        what, change, p, fits = chosen
        if peak - p > 0:
            ranked.append({"setting": setting, "change": what, "fields": change, "saves_bytes": peak - p, "fits": fits})
    ranked.sort(key=lambda k: (not k["fits"], -k["saves_bytes"]))
    return ranked


def _advice(n: ParamCount, s: _Settings, ranked: list[dict[str, Any]]) -> str:
    """The knob to turn with its amount; knobs combined (largest first) when none suffices alone."""
    if not ranked:
        return "no setting lowers the estimate; use a machine with more memory"
    if ranked[0]["fits"]:
        k = ranked[0]
        return f"{k['change']} (saves {k['saves_bytes'] / GB:.1f} GB)"
    # What no knob touches: the base at its smallest (4-bit, double quant) and the overhead.
    smallest = dataclasses.replace(s, load_in_4bit=True, double_quant=True)
    fixed = sum(b for key, _, b in _components(n, smallest) if key.startswith("base_") or key == "overhead")
    if fixed > s.limit:
        k = ranked[0]
        return (
            f"the 4-bit base weights and overhead alone take {fixed / GB:.1f} GB: this model needs a machine "
            f"with more memory (the largest saving otherwise: {k['change']}, {k['saves_bytes'] / GB:.1f} GB)"
        )
    parts, current = [], s
    for k in ranked[:3]:
        before = _peak(n, current)
        current = dataclasses.replace(current, **k["fields"])
        parts.append(f"{k['change']} (saves {(before - _peak(n, current)) / GB:.1f} GB)")
        if _peak(n, current) <= s.limit:
            return " and ".join(parts)
    over = (_peak(n, current) - s.limit) / GB
    return " and ".join(parts) + f", still {over:.1f} GB over: this model needs a machine with more memory"


@dataclass
class MemoryEstimate:
    """The predicted peak, term by term, with a verdict against hardware.memory_gb (a Report)."""

    counts: ParamCount
    settings: dict[str, Any]
    components: list[dict[str, Any]]  # {"key", "component", "bytes"}
    peak_bytes: int
    limit_bytes: int
    fits: bool
    advice: str  # the knob to turn when it does not fit, "" when it does
    knobs: list[dict[str, Any]]  # every knob and what it would save
    disk: dict[str, int]  # adapter, quantized base, released checkpoint
    title: str = "Memory estimate (train --dry-run)"
    warnings: list[str] = field(default_factory=list)

    @property
    def overhead_bytes(self) -> int:
        return sum(c["bytes"] for c in self.components if c["key"] == "overhead")

    @property
    def tensor_bytes(self) -> int:
        """The peak without the framework overhead: what torch.cuda.max_memory_allocated sees."""
        return self.peak_bytes - self.overhead_bytes

    @property
    def comparable_bytes(self) -> int:
        """The prediction to set beside `measured_peak_bytes()`: allocator bytes on GPU, RSS on CPU."""
        return self.tensor_bytes if self.settings["device"] == "cuda" else self.peak_bytes

    @property
    def verdict(self) -> str:
        head = (
            f"{'fits' if self.fits else 'does not fit'}: predicted peak {self.peak_bytes / GB:.1f} GB "
            f"of hardware.memory_gb {self.limit_bytes / GB:g} GB"
        )
        return head if self.fits else f"{head}; {self.advice}"

    def rows(self) -> list[dict[str, Any]]:
        rows = [{"component": c["component"], "GB": c["bytes"] / GB} for c in self.components]
        rows.append({"component": "predicted peak", "GB": self.peak_bytes / GB})
        rows.append({"component": "hardware.memory_gb", "GB": self.limit_bytes / GB})
        rows.append({"component": "on disk: adapter (fp32)", "GB": self.disk["adapter"] / GB})
        rows.append({"component": "on disk: base, 4-bit", "GB": self.disk["base_quantized"] / GB})
        return rows

    def to_json(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "fits": self.fits,
            "verdict": self.verdict,
            "advice": self.advice,
            "peak_bytes": self.peak_bytes,
            "peak_gb": round(self.peak_bytes / GB, 3),
            "tensor_bytes": self.tensor_bytes,
            "limit_bytes": self.limit_bytes,
            "components": self.components,
            "knobs": [{k: v for k, v in kn.items() if k != "fields"} for kn in self.knobs],
            "disk": self.disk,
            "settings": self.settings,
            "parameters": self.counts.to_json(),
            "warnings": self.warnings,
        }


def estimate_memory(cfg: Config, counts: ParamCount | None = None, *, device: str | None = None) -> MemoryEstimate:
    """Predict the training peak for `cfg` on `device` (default: where `train` would run)."""
    n = counts if counts is not None else count_parameters(cfg)
    s = _settings(cfg, device)
    comps = _components(n, s)
    peak = sum(b for _, _, b in comps)
    fits = peak <= s.limit
    ranked = _rank_knobs(n, s)
    warns = []
    if cfg.train.use_liger and s.device == "cuda" and not s.liger:
        warns.append("train.use_liger is on but liger-kernel is not installed: logits are sized without it")
    if s.device == "cpu" and cfg.model.device == "auto":
        warns.append(
            "no CUDA device visible: sized for a CPU run (fp32); run the dry run on the GPU machine to size the GPU run"
        )
    quant_bytes = (
        n.quantizable // 2
        + int(n.quantizable * _quant_constants_per_param(s.double_quant))
        + n.unquantized * n.checkpoint_dtype_bytes
    )
    return MemoryEstimate(
        counts=n,
        settings={k: v for k, v in dataclasses.asdict(s).items() if k not in ("overhead", "limit")},
        components=[{"key": k, "component": label, "bytes": b} for k, label, b in comps],
        peak_bytes=peak,
        limit_bytes=s.limit,
        fits=fits,
        advice="" if fits else _advice(n, s, ranked),
        knobs=ranked,
        disk={
            "adapter": n.lora_params(s.r) * 4,  # peft saves the fp32 adapter weights
            "base_quantized": quant_bytes if s.load_in_4bit else n.base * n.checkpoint_dtype_bytes,
            "base_checkpoint": n.base * n.checkpoint_dtype_bytes,
        },
        warnings=warns,
    )


def format_estimate(counts: ParamCount, est: MemoryEstimate) -> str:
    """A plain-text table (component, GB) for people and logs; `est.to_json()` for scripts."""
    s = est.settings
    unit, div = ("GB", GB) if est.peak_bytes >= GB else ("MB", 10**6)
    lines = [
        counts.summary(),
        f"sized for: {s['device']}, compute {s['compute_dtype']}, {s['micro_batch']} x {s['seq_len']} tokens, "
        f"checkpointing {'on' if s['checkpointing'] else 'off'}, {s['optimizer']}",
        "",
    ]
    rows = [(c["component"], c["bytes"]) for c in est.components]
    width = max(len(r[0]) for r in rows + [("on disk: quantized base", 0)]) + 2
    lines.append(f"{'component':<{width}}{unit:>10}")
    lines += [f"{name:<{width}}{b / div:>10,.2f}" for name, b in rows]
    lines.append("-" * (width + 10))
    lines.append(f"{'predicted peak':<{width}}{est.peak_bytes / div:>10,.2f}")
    lines.append(f"{'hardware.memory_gb':<{width}}{est.limit_bytes / div:>10,.2f}")
    lines.append("")
    lines.append(f"{'on disk: adapter (fp32)':<{width}}{est.disk['adapter'] / div:>10,.2f}")
    lines.append(f"{'on disk: quantized base':<{width}}{est.disk['base_quantized'] / div:>10,.2f}")
    lines.append("")
    lines.append(est.verdict)
    lines += [f"warning: {w}" for w in est.warnings]
    return "\n".join(lines)


def check_fits(cfg: Config, counts: ParamCount | None = None, *, device: str | None = None) -> MemoryEstimate:
    """The estimate, or MothError naming the knob to turn when the predicted peak exceeds the machine."""
    est = estimate_memory(cfg, counts, device=device)
    if not est.fits:
        raise MothError(
            f"predicted peak {est.peak_bytes / GB:.1f} GB exceeds hardware.memory_gb "
            f"{est.limit_bytes / GB:g} GB: {est.advice}"
        )
    return est


def measured_peak_bytes() -> int:
    """This process's peak so far: CUDA allocator bytes when CUDA was used, else peak RSS.

    Compare with `MemoryEstimate.comparable_bytes` (the GPU figure leaves out the overhead term,
    which the allocator does not see).
    """
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        return int(torch.cuda.max_memory_allocated())
    import resource

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)  # bytes on macOS, KiB on Linux

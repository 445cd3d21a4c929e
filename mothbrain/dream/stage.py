"""Dreaming: the adapter free-associates on wiki pages and recent material; every output is staged.

`run_dream(cfg, version=None)` reads top to bottom: pick the version → build prompts from the
ingested documents → generate in batches → score each text (novelty against the material, relevance
to its prompt; sentence embeddings) → stage everything in the proposals queue (mothbrain/proposals/queue.py) →
record the figures in the ledger. Nothing is applied to the wiki or to any source: a person reviews
the queue and the accepted proposals are exported for the coordinating model.

Prompt styles, used in turn (`dream.styles`):
  free_association  a page excerpt, then "Free association:"
  reminds_me        a page excerpt, then "This reminds me of"
  continue_thread   the end of a recent conversation rendered "Speaker: text", then the voice's prefix

Generation is batched (`dream.batch_size` prompts at once, sorted by length and left-padded, so
little compute goes to padding) and sampled (`temperature`, `top_p`, `max_new_tokens`, `seed`).
Backend: vLLM (one engine, the adapter as a LoRARequest) when it is installed and the device is
CUDA — or when chosen explicitly — else transformers `generate` on the 4-bit base + adapter.
"""

from __future__ import annotations

import importlib.util
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mothbrain.config import Config
from mothbrain.core.ledger import open_ledger
from mothbrain.core.progress import StageProgress
from mothbrain.data.prompts import STYLES, build_prompts
from mothbrain.errors import MothError, NothingToDo
from mothbrain.models.embeddings import cosine, load_embedder
from mothbrain.models.generation import generate_batched
from mothbrain.models.loading import (
    base_location,
    load_model_with_adapters,
    load_tokenizer,
    pick_adapter,
    resolve_device,
)
from mothbrain.proposals.queue import add_proposals, list_proposals

DREAMABLE = ("trained", "evaluated", "promoted")  # statuses whose adapter may dream
_NEXT_TURN = re.compile(r"\n\s*[\w .'-]{1,40}:")  # "\nUser:" — the thread moved on to someone else


@dataclass
class DreamReport:
    version: str
    figures: dict[str, Any] = field(default_factory=dict)
    proposals: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def title(self) -> str:
        f = self.figures
        return (
            f"dream {self.version}: {f.get('proposals', 0)} proposals staged, {f.get('tokens', 0)} tokens at "
            f"{f.get('tokens_per_s', 0):.1f} tok/s ({f.get('backend', '?')}) — review: mothbrain proposals list"
        )

    def rows(self) -> list[dict[str, Any]]:
        return [
            {
                "id": p["id"],
                "style": p["style"],
                "source": p["source_title"] or p["source"],
                "novelty": p["novelty"],
                "relevance": p["relevance"],
                "text": _short(p["text"], 70),
            }
            for p in self.proposals
        ]

    def to_json(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "version": self.version,
            **self.figures,
            "proposals": self.proposals,
            "warnings": self.warnings,
        }


def _short(text: str, n: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


# --------------------------------------------------------------------------- entry point


def run_dream(cfg: Config, version: str | None = None) -> DreamReport:

    ledger = open_ledger(cfg)
    version, adapter = pick_version(cfg, version)
    if not ledger.get(version).get("dream") and (staged := list_proposals(cfg, adapter_version=version)):
        return _record_staged(ledger, version, staged)  # a kill came between staging and recording
    prompts, corpus = build_prompts(cfg, cfg.dream.num_prompts)
    if not prompts:
        raise NothingToDo("no wiki pages or recent material to dream on; run `mothbrain ingest` (check `sources`)")

    backend = select_backend(cfg.dream.backend, _device(cfg), vllm_installed())
    t0 = time.perf_counter()
    if backend == "vllm":
        texts, tokens = generate_vllm(cfg, adapter, version, [p.text for p in prompts])
    else:
        texts, tokens = _generate_transformers(cfg, adapter, version, [p.text for p in prompts])
    gen_s = time.perf_counter() - t0
    texts = [tidy(t, p.style) for t, p in zip(texts, prompts)]

    embedder = load_embedder(cfg)
    novelty, relevance = score_texts(embedder, texts, [p.text for p in prompts], corpus)
    items = [
        {
            "text": t,
            "source": p.source,
            "source_title": p.source_title,
            "style": p.style,
            "adapter_version": version,
            "prompt": p.text,
            "novelty": n,
            "relevance": r,
        }
        for t, p, n, r in zip(texts, prompts, novelty, relevance)
    ]
    ids = add_proposals(cfg, items)
    kept = [dict(it, id=i) for it, i in zip([it for it in items if it["text"].strip()], ids)]

    figures = {
        "proposals": len(ids),
        "empty": len(items) - len(ids),
        "tokens": tokens,
        "tokens_per_s": round(tokens / max(gen_s, 1e-9), 1),
        "seconds": round(gen_s, 2),
        "backend": backend,
        "embedder": embedder.name,
        "styles": {s: sum(p.style == s for p in prompts) for s in STYLES if any(p.style == s for p in prompts)},
    }
    ledger.update(version, dream=figures)
    report = DreamReport(version=version, figures=figures, proposals=kept)
    if embedder.warning:
        report.warnings.append(embedder.warning)
    if figures["empty"]:
        report.warnings.append(f"{figures['empty']} generation(s) were empty and were not staged")
    return report


def _record_staged(ledger, version: str, staged: list[dict[str, Any]]) -> DreamReport:
    """Record the proposals a killed dream staged for `version`, instead of dreaming (and staging) again."""
    styles: dict[str, int] = {}
    for p in staged:
        styles[p["style"]] = styles.get(p["style"], 0) + 1
    figures = {"proposals": len(staged), "empty": 0, "tokens": 0, "tokens_per_s": 0.0, "seconds": 0.0}
    figures.update(backend="(recovered)", styles=styles, recovered=True)
    ledger.update(version, dream=figures)
    report = DreamReport(version=version, figures=figures, proposals=staged)
    report.warnings.append(
        f"recorded the {len(staged)} proposals staged before a kill for {version} (not dreamt again: no duplicates)"
    )
    return report


def pick_version(cfg: Config, version: str | None) -> tuple[str, Path]:
    """The version to dream with (default: the newest trained/evaluated/promoted) and its adapter dir."""

    ledger = open_ledger(cfg)
    return pick_adapter(cfg, ledger, version, ledger.latest(DREAMABLE), "dream with")


# --------------------------------------------------------------------------- prompts


# A role label of the training format ("Assistant:", "user:") the model may echo; never part of a dream.
_ROLE_LABEL = re.compile(r"(?i)(?:^|(?<=\s))(?:assistant|user|system|human)\s*:")
_NEXT_ROLE_TURN = re.compile(r"(?i)\n\s*(?:assistant|user|system|human)\s*:")


def tidy(text: str, style: str) -> str:
    """A generated text without trailing noise or role labels; it stops where another turn starts."""
    text = _ROLE_LABEL.sub("", text.strip(), count=1) if _ROLE_LABEL.match(text.strip()) else text
    m = (_NEXT_TURN if style == "continue_thread" else _NEXT_ROLE_TURN).search(text)
    if m:
        text = text[: m.start()]
    return re.sub(r"[ \t]{2,}", " ", _ROLE_LABEL.sub("", text)).strip()


# --------------------------------------------------------------------------- generation


def vllm_installed() -> bool:
    return importlib.util.find_spec("vllm") is not None


def _device(cfg: Config) -> str:

    return resolve_device(cfg)


def select_backend(choice: str, device: str, has_vllm: bool) -> str:
    """'vllm' or 'transformers' for dream.backend `choice` on `device`."""
    if choice == "transformers":
        return "transformers"
    if choice == "vllm":
        if not has_vllm:
            raise MothError(
                "dream.backend is 'vllm' but vllm is not installed; `pip install vllm` on the GPU box "
                "or set dream.backend: auto"
            )
        if device != "cuda":
            raise MothError("dream.backend is 'vllm' but the device is CPU; vLLM needs CUDA — set dream.backend: auto")
        return "vllm"
    return "vllm" if has_vllm and device == "cuda" else "transformers"


def _generate_transformers(cfg: Config, adapter: Path, version: str, prompts: list[str]) -> tuple[list[str], int]:
    from rich.progress import Progress

    tokenizer = load_tokenizer(cfg)
    model = load_model_with_adapters(cfg, {version: adapter})
    d = cfg.dream
    done = [0]

    def advance(k: int) -> None:
        bar.advance(task, k)
        done[0] += k
        tracker.update(done[0])

    with Progress(transient=True) as bar, StageProgress(cfg, "dream", total=len(prompts), unit="prompt") as tracker:
        task = bar.add_task(f"dreaming with {version}", total=len(prompts))
        texts, tokens = generate_batched(
            model,
            tokenizer,
            prompts,
            batch_size=d.batch_size,
            max_new_tokens=d.max_new_tokens,
            temperature=d.temperature,
            top_p=d.top_p,
            seed=d.seed,
            progress=advance,
        )
    del model
    _free()
    return texts, tokens


def _vllm_lora_rank(r: int) -> int:
    for size in (8, 16, 32, 64, 128, 256, 320, 512):  # the ranks vLLM's LoRA kernels are built for
        if r <= size:
            return size
    raise MothError(f"lora.r={r} is larger than vLLM supports (512); set dream.backend: transformers")


def generate_vllm(cfg: Config, adapter: Path, version: str, prompts: list[str]) -> tuple[list[str], int]:
    """One vLLM engine on the base, the adapter as a LoRARequest; all prompts in one call (vLLM batches)."""
    from vllm import LLM, SamplingParams
    from vllm.lora.request import LoRARequest

    d = cfg.dream
    extra: dict[str, Any] = {}
    if cfg.model.quantization.load_in_4bit:
        extra["quantization"] = "bitsandbytes"  # the same NF4 base the adapter was trained on
    llm = LLM(
        model=base_location(cfg),
        enable_lora=True,
        max_lora_rank=_vllm_lora_rank(cfg.lora.r),
        seed=d.seed,
        trust_remote_code=cfg.model.trust_remote_code,
        **extra,
    )
    params = SamplingParams(temperature=d.temperature, top_p=d.top_p, max_tokens=d.max_new_tokens, seed=d.seed)
    outs = llm.generate(prompts, params, lora_request=LoRARequest(version, 1, str(adapter)))
    texts = [o.outputs[0].text for o in outs]
    tokens = sum(len(o.outputs[0].token_ids) for o in outs)
    del llm
    _free()
    return texts, tokens


def _free() -> None:
    import gc

    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:
        pass


# --------------------------------------------------------------------------- scoring


def score_texts(embedder, texts: list[str], prompts: list[str], corpus: list[str]) -> tuple[list, list]:
    """(novelty, relevance) per text: 1 − highest cosine similarity to the material, and similarity to its prompt."""

    if not texts:
        return [], []
    t = embedder.encode(texts)
    p = embedder.encode(prompts)
    relevance = (t * p).sum(-1).tolist()
    if corpus:
        novelty = (1.0 - cosine(t, embedder.encode(corpus)).max(dim=1).values).tolist()
    else:
        novelty = [None] * len(texts)
    rnd = lambda v: None if v is None else round(float(v), 4)  # noqa: E731
    return [rnd(v) for v in novelty], [rnd(v) for v in relevance]

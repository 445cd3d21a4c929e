"""Dreaming: the adapter free-associates on wiki pages and recent material; every output is staged.

`run_dream(cfg, version=None)` reads top to bottom: pick the version → build prompts from the
ingested documents → generate in batches → score each text (novelty against the material, relevance
to its prompt; sentence embeddings) → stage everything in the proposal queue (mothbrain/queue.py) →
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
import random
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mothbrain.config import Config
from mothbrain.core.ledger import open_ledger
from mothbrain.data.format import is_voice, render_prompt, turn_speaker, voice_roles
from mothbrain.errors import MothError, NothingToDo

STYLES = ("free_association", "reminds_me", "continue_thread")
DREAMABLE = ("trained", "evaluated", "promoted")  # statuses whose adapter may dream
EXCERPT_CHARS = 480  # a page excerpt: a paragraph or two, cut at a sentence end
TURN_CHARS = 400  # each turn of a rendered thread keeps its last this-many characters
POOL_SIZE = 400  # documents kept (reservoir-sampled) per kind, so a huge corpus costs no memory
_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+")
_NEXT_TURN = re.compile(r"\n\s*[\w .'-]{1,40}:")  # "\nUser:" — the thread moved on to someone else


@dataclass
class Prompt:
    text: str
    style: str
    source: str  # document id
    source_title: str


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
    from mothbrain.ask.embeddings import load_embedder
    from mothbrain.dream.proposals import add_proposals, list_proposals

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
    from mothbrain.models.loading import pick_adapter

    ledger = open_ledger(cfg)
    return pick_adapter(cfg, ledger, version, ledger.latest(DREAMABLE), "dream with")


# --------------------------------------------------------------------------- prompts


def _reservoir(items: Iterable[Any], k: int, rng: random.Random) -> list[Any]:
    out: list[Any] = []
    for n, it in enumerate(items):
        if n < k:
            out.append(it)
        elif (j := rng.randrange(n + 1)) < k:
            out[j] = it
    return out


def excerpt(text: str, rng: random.Random, limit: int = EXCERPT_CHARS) -> str:
    """A paragraph of the text (chosen by `rng`), extended or cut to about `limit` chars at sentence ends."""
    paras = [
        p.strip() for p in re.split(r"\n[ \t]*\n", text) if len(p.strip()) >= 40 and not p.lstrip().startswith("#")
    ]
    if not paras:
        paras = [text.strip()]
    start = rng.randrange(len(paras))
    out = ""
    for p in paras[start:]:
        for sent in _SENTENCE_END.split(p):
            if out and len(out) + len(sent) + 1 > limit:
                return out
            out = (out + " " + sent).strip() if out else sent[:limit]
    return out


def render_thread(doc, voice: set[str], turns: int) -> str | None:
    """The end of a conversation as "Speaker: text" lines, ending with the voice's own prefix.

    The voice answers the last other speaker: trailing voice turns are dropped. None when the
    conversation has no voice turn (we would not know whose prefix to end with) or no other turn.
    """
    ts = [t for t in doc.turns if t.text.strip() and t.role.strip().lower() not in ("system", "tool", "function")]
    voiced = [is_voice(t, voice) for t in ts]
    if not any(voiced):
        return None
    name = turn_speaker(ts[voiced.index(True)])
    while ts and voiced[len(ts) - 1]:
        ts = ts[:-1]
    if not ts:
        return None
    shown = []
    for t in ts[-max(1, turns) :]:
        text = " ".join(t.text.split())
        shown.append((turn_speaker(t), text if len(text) <= TURN_CHARS else "…" + text[-TURN_CHARS:]))
    return render_prompt(shown, name)


def build_prompts(cfg: Config, n: int, seed: int | None = None) -> tuple[list[Prompt], list[str]]:
    """`n` prompts in the configured styles, in turn, and the material they came from (for novelty).

    Pages: every wiki page plus recent writing and chat snippets; threads: recent conversations
    (all conversations when nothing is recent). Text is redacted like training data.
    """
    from mothbrain.data.redact import redact
    from mothbrain.ingest.stage import iter_documents

    for s in cfg.dream.styles:
        if s not in STYLES:
            raise MothError(f"dream.styles: unknown style {s!r} (known: {', '.join(STYLES)})")
    rng = random.Random(cfg.dream.seed if seed is None else seed)
    recent_docs = _reservoir(iter_documents(cfg, since_days=cfg.ingest.since_days), POOL_SIZE, rng)
    recent_ids = {d.doc_id for d in recent_docs}
    wiki = _reservoir(
        (d for d in iter_documents(cfg) if d.kind == "wiki" and d.doc_id not in recent_ids), POOL_SIZE, rng
    )
    threads_any = (
        []
        if any(d.turns for d in recent_docs)
        else _reservoir((d for d in iter_documents(cfg) if d.turns), POOL_SIZE, rng)
    )
    sources = {s.name: s for s in cfg.sources}

    def clean(text: str) -> str:
        return redact(text, cfg.preprocess.redaction)[0] if cfg.preprocess.redaction.enabled else text

    pages: list[tuple[str, str, str]] = []  # (excerpt, doc id, title)
    for d in wiki + [d for d in recent_docs if d.kind != "wiki"]:
        body = d.text if d.text.strip() else "\n\n".join(t.text for t in d.turns)
        if body.strip():
            pages.append((clean(excerpt(body, rng)), d.doc_id, d.title))
    threads: list[tuple[str, str, str]] = []
    for d in [d for d in recent_docs if d.turns] or threads_any:
        rendered = render_thread(d, voice_roles(cfg, sources.get(d.source)), cfg.preprocess.context_turns or 4)
        if rendered:
            threads.append((clean(rendered), d.doc_id, d.title or d.doc_id))
    rng.shuffle(pages)
    rng.shuffle(threads)

    prompts: list[Prompt] = []
    styles = list(cfg.dream.styles) or list(STYLES)
    used = {"page": 0, "thread": 0}
    for i in range(n):
        style = styles[i % len(styles)]
        if style == "continue_thread" and not threads:
            style = "free_association"  # no conversation to continue: dream on a page instead
        pool, key = (threads, "thread") if style == "continue_thread" else (pages, "page")
        if not pool and threads:  # no page to dream on (only conversations, none recent): continue one instead
            style, pool, key = "continue_thread", threads, "thread"
        if not pool:
            break
        text, doc_id, title = pool[used[key] % len(pool)]  # cycle when there are fewer items than prompts
        used[key] += 1
        if style == "free_association":
            text = (f"{title}\n\n" if title else "") + f"{text}\n\nFree association:"
        elif style == "reminds_me":
            text = f"{text}\n\nThis reminds me of"
        prompts.append(Prompt(text=text, style=style, source=doc_id, source_title=title))
    corpus = [p[0] for p in pages]
    return prompts, corpus


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
    from mothbrain.models.loading import resolve_device

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


def generate_batched(
    model,
    tokenizer,
    prompts: list[str],
    *,
    batch_size: int,
    max_new_tokens: int,
    temperature: float,
    top_p: float,
    seed: int,
    sort_by_length: bool = True,
    max_prompt_tokens: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[list[str], int]:
    """Sampled continuations of `prompts` (in their order) and the number of tokens generated.

    Prompts are sorted by length and left-padded in batches of `batch_size`: one `generate` call per
    batch, and similar lengths keep padding (wasted compute) small. Counted tokens stop at EOS.
    """
    import torch

    if not prompts:
        return [], 0
    device = next(model.parameters()).device
    lengths = [len(tokenizer(p)["input_ids"]) for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: lengths[i]) if sort_by_length else list(range(len(prompts)))
    limit = max_prompt_tokens or max(1, _context_length(model) - max_new_tokens)
    side, tside = tokenizer.padding_side, tokenizer.truncation_side
    tokenizer.padding_side, tokenizer.truncation_side = "left", "left"  # keep the prompt's end, next to the answer
    torch.manual_seed(seed)
    texts: list[str] = [""] * len(prompts)
    total = 0
    eos = tokenizer.eos_token_id
    try:
        for start in range(0, len(order), max(1, batch_size)):
            idx = order[start : start + max(1, batch_size)]
            enc = tokenizer(
                [prompts[i] for i in idx], return_tensors="pt", padding=True, truncation=True, max_length=limit
            ).to(device)
            with torch.inference_mode():
                out = model.generate(
                    **enc,
                    do_sample=temperature > 0,
                    temperature=max(temperature, 1e-5),
                    top_p=top_p,
                    max_new_tokens=max_new_tokens,
                    pad_token_id=tokenizer.pad_token_id,
                    eos_token_id=eos,
                )
            new = out[:, enc["input_ids"].shape[1] :].tolist()
            for i, row in zip(idx, new):
                n = row.index(eos) + 1 if eos in row else len(row)
                total += n
                texts[i] = tokenizer.decode(row[:n], skip_special_tokens=True)
            if progress:
                progress(len(idx))
    finally:
        tokenizer.padding_side, tokenizer.truncation_side = side, tside
    return texts, total


def _context_length(model) -> int:
    cfg = getattr(model, "config", None)
    return int(getattr(cfg, "max_position_embeddings", 0) or 4096)


def _generate_transformers(cfg: Config, adapter: Path, version: str, prompts: list[str]) -> tuple[list[str], int]:
    from rich.progress import Progress

    from mothbrain.core.progress import StageProgress
    from mothbrain.models.loading import load_model_with_adapters, load_tokenizer

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

    from mothbrain.models.loading import base_location

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
    from mothbrain.ask.embeddings import cosine

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

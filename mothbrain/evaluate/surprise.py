"""The surprise rate: sampled continuations of dream-style prompts that are far from every reference
continuation (from an OpenAI-compatible endpoint or the local base), relevant and fluent, against the
base's own samples as the null; and the optional judge of the surprises, asked at the same endpoint."""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

from mothbrain.config import Config
from mothbrain.core.openai_client import chat
from mothbrain.data.prompts import build_prompts
from mothbrain.errors import MothError
from mothbrain.evaluate.scoring import Progress, score_continuations
from mothbrain.evaluate.sides import figure_key, use
from mothbrain.evaluate.stats import bootstrap_mean
from mothbrain.models.embeddings import load_embedder
from mothbrain.models.generation import generate_batched

REFERENCE_SAMPLES = 3  # reference continuations per prompt: one far-off sample is not a surprise


SURPRISE_TOKENS = 48  # tokens per continuation for the surprise rate


SURPRISE_CONTEXT = 512  # tokens of prompt + continuation scored for fluency


def surprise_prompts(cfg: Config, warnings: list[str]) -> list[str]:
    """The dream-style prompts the surprise rate samples from (none, with a warning, when there are none)."""
    try:
        prompts = [p.text for p in build_prompts(cfg, cfg.eval.surprise_prompts)[0]]
    except MothError as exc:
        warnings.append(f"surprise rate not measured: {exc}")
        return []
    if not prompts:
        warnings.append("surprise rate not measured: no prompts (nothing ingested to dream on)")
    return prompts


def surprise_steps(prompts: int, sides: int) -> int:
    """Texts `surprise` generates or scores: each side's samples, the references, and the base reading both."""
    return 2 * prompts * (sides + REFERENCE_SAMPLES)


def surprise(
    cfg: Config,
    model,
    tokenizer,
    who: list[str],
    prompts: list[str],
    warnings: list[str],
    progress: Progress = None,
) -> dict[str, Any]:
    """The surprise rate of the adapter (and current), with its thresholds and reference;
    `progress(n)` hears of every batch generated or scored (surprise_steps in all)."""

    e = cfg.eval
    tell = progress or (lambda _n: None)
    out: dict[str, Any] = {
        "surprise_rate": None,
        "surprise": {
            "distance_min": e.surprise_distance,
            "relevance_min": e.relevance_min,
            "prompts": 0,
            "reference": e.reference_url or "local base",
            "samples_per_prompt": REFERENCE_SAMPLES,
        },
    }
    if not prompts:
        return out
    d = cfg.dream
    gen = dict(
        batch_size=d.batch_size,
        max_new_tokens=min(d.max_new_tokens, SURPRISE_TOKENS),
        temperature=d.temperature,
        top_p=d.top_p,
    )
    outputs: dict[str, list[str]] = {}
    # "base" is the null: a base sample drawn with the adapter's own seed, judged exactly like the
    # adapter's. An adapter that is the base scores the null's rate, whatever the sampling noise.
    for w in who:
        with use(model, w):
            outputs[w] = generate_batched(model, tokenizer, prompts, seed=d.seed, progress=tell, **gen)[0]
    refs = None
    if e.reference_url:
        try:
            refs = [
                [reference_completion(cfg, p, gen["max_new_tokens"]) for _ in range(REFERENCE_SAMPLES)] for p in prompts
            ]
            tell(len(prompts) * REFERENCE_SAMPLES)
        except MothError as exc:
            warnings.append(f"{exc}; the local base is the reference instead")
            out["surprise"]["reference"] = "local base (endpoint failed)"
    if refs is None:
        with use(model, "base"):
            samples = [
                generate_batched(model, tokenizer, prompts, seed=d.seed + 1 + s, progress=tell, **gen)[0]
                for s in range(REFERENCE_SAMPLES)
            ]
        refs = [[samples[s][i] for s in range(REFERENCE_SAMPLES)] for i in range(len(prompts))]

    # Fluency: garbage is far from every reference too, so a surprise must read (to the base) about as
    # well as the base's own samples: its base NLL per token at most the references' median + ln 2.
    with use(model, "base"):
        ref_nll = _nll_per_token(model, tokenizer, [(p, r) for p, rs in zip(prompts, refs) for r in rs], tell)
        fluency_max = float(np.median(ref_nll)) + math.log(2)
        nll = {w: _nll_per_token(model, tokenizer, list(zip(prompts, texts)), tell) for w, texts in outputs.items()}
    embedder = load_embedder(cfg)
    if embedder.warning:
        warnings.append(embedder.warning)
    out["surprise"].update(prompts=len(prompts), embedder=embedder.name, fluency_max_nll=round(fluency_max, 4))
    all_flags: dict[str, np.ndarray] = {}
    p_emb = embedder.encode(prompts)
    r_emb = embedder.encode([r for rs in refs for r in rs]).reshape(len(prompts), REFERENCE_SAMPLES, -1)
    for w, texts in outputs.items():
        a = embedder.encode(texts)
        nearest = 1.0 - (r_emb @ a.unsqueeze(-1)).squeeze(-1).max(dim=1).values  # distance to the closest reference
        relevance = (a * p_emb).sum(-1)
        flags = [
            (
                bool(t.strip())
                and float(dist) >= e.surprise_distance
                and float(rel) >= e.relevance_min
                and fl <= fluency_max
            )
            for t, dist, rel, fl in zip(texts, nearest, relevance, nll[w])
        ]
        all_flags[w] = np.array(flags, dtype=np.float64)
        out[figure_key("surprise_rate", w)] = round(sum(flags) / len(flags), 4)
        out["surprise"][figure_key("nearest_distance_mean", w)] = round(float(nearest.mean()), 4)
        out["surprise"][figure_key("relevance_mean", w)] = round(float(relevance.mean()), 4)
        if w == "adapter":
            out["surprise"]["examples"] = [
                {"prompt": p[-160:], "text": t[:240]} for p, t, fl in zip(prompts, texts, flags) if fl
            ][:3]
            if e.judge:
                out["judge_yes_rate"] = _judge(cfg, [(p, t) for p, t, fl in zip(prompts, texts, flags) if fl], warnings)
    for w in [w for w in who if w != "base"]:
        out[figure_key("surprise_vs_null", w)] = bootstrap_mean(all_flags[w] - all_flags["base"])
    return out


def _nll_per_token(model, tokenizer, pairs: list[tuple[str, str]], progress: Progress = None) -> list[float]:
    scores = score_continuations(model, tokenizer, pairs, SURPRISE_CONTEXT, progress=progress)
    return [-s / n if n else float("inf") for s, n in scores]


def _chat(cfg: Config, content: str, max_tokens: int, temperature: float) -> str:

    e = cfg.eval
    try:
        text, _ = chat(
            e.reference_url,
            e.reference_model,
            [{"role": "user", "content": content}],
            api_key=os.environ.get(e.reference_api_key_env, ""),
            timeout=120.0,
            max_tokens=max_tokens,
            temperature=temperature,
        )
    except (TimeoutError, ConnectionError) as exc:
        raise MothError(
            f"eval.reference_url: {exc} (check eval.reference_model and ${e.reference_api_key_env})"
        ) from None
    return text


def reference_completion(cfg: Config, prompt: str, max_tokens: int) -> str:
    return _chat(cfg, "Continue this text in a few sentences:\n\n" + prompt, max_tokens, cfg.dream.temperature)


def _judge(cfg: Config, items: list[tuple[str, str]], warnings: list[str]) -> float | None:
    if not cfg.eval.reference_url:
        warnings.append("eval.judge is on but eval.reference_url is empty; no judge")
        return None
    if not items:
        return None
    yes = 0
    try:
        for prompt, text in items:
            answer = _chat(
                cfg,
                "A text and a continuation an assistant wrote for it.\n\nTEXT:\n"
                + prompt
                + "\n\nCONTINUATION:\n"
                + text
                + "\n\nIs the continuation a meaningful, non-obvious "
                "association rather than noise? Answer YES or NO.",
                3,
                0.0,
            )
            yes += answer.strip().upper().startswith("YES")
    except MothError as exc:
        warnings.append(f"judge skipped: {exc}")
        return None
    return round(yes / len(items), 4)

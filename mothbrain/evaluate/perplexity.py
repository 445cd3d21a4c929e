"""Perplexity figures: each side's negative log-likelihood of completions, perplexity from it, and the
regression set's figures (the accepted version's held-out samples and general text)."""

from __future__ import annotations

import math
import random
from typing import Any

import numpy as np

from mothbrain.evaluate.scoring import Progress, score_continuations
from mothbrain.evaluate.sides import use


def score_nll(
    model, tokenizer, who: list[str], pairs, max_len: int, progress: Progress = None
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per who: (negative log-likelihood of each completion, its token count); len(who) x len(pairs) scored."""
    out = {}
    for w in who:
        with use(model, w):
            scores = score_continuations(model, tokenizer, pairs, max_len, progress=progress)
        out[w] = (np.array([-s for s, _ in scores], dtype=np.float64), np.array([k for _, k in scores], dtype=np.int64))
    return out


def regression_figures(
    nll: dict[str, tuple[np.ndarray, np.ndarray]], reference: str, accepted: int, general: int, vocab_size: int
) -> dict[str, Any]:
    """The regression set's figures from per-sample scores of `accepted` held-out samples then `general` text.

    General text can only regress where the reference knows it. A reference that predicts it less than
    halfway from uniform (log-perplexity above half of log |vocab|, as a tiny demo base on plain English)
    has nothing there to lose, and its perplexity there is noise: then only the accepted set counts.
    """
    general_ppl = perplexity(tuple(a[accepted : accepted + general] for a in nll[reference]))
    knows_general = knows_text(general_ppl, vocab_size)
    kept = accepted + (general if knows_general else 0)
    adapter_ppl = perplexity(tuple(a[:kept] for a in nll["adapter"]))
    reference_ppl = perplexity(tuple(a[:kept] for a in nll[reference]))
    return {
        "reference": reference,
        "samples": kept,
        "accepted_samples": accepted,
        "general_samples": general if knows_general else 0,
        "general_reference_ppl": general_ppl,
        "adapter_ppl": adapter_ppl,
        "reference_ppl": reference_ppl,
        "worse_pct": _pct_worse(adapter_ppl, reference_ppl),
    }


def knows_text(ppl: float | None, vocab_size: int) -> bool:
    """Whether a model predicts a text at least halfway (in log terms) from uniform over its vocabulary."""
    return ppl is not None and math.log(ppl) <= 0.5 * math.log(vocab_size)


def perplexity(nll: tuple[np.ndarray, np.ndarray]) -> float | None:
    total, n = float(nll[0].sum()), int(nll[1].sum())
    return round(math.exp(total / n), 4) if n else None


def _pct_worse(value: float | None, reference: float | None) -> float | None:
    return round((value - reference) / reference * 100, 3) if value and reference else None


def words_shuffled(pairs: list[tuple[str, str]], seed: int = 0) -> list[tuple[str, str]]:
    """Each completion with its words in a random order (the prompt kept): the same words, no sentence."""
    rng, out = random.Random(seed), []
    for prompt, completion in pairs:
        words = completion.split()
        rng.shuffle(words)
        out.append((prompt, (" " if completion[:1].isspace() else "") + " ".join(words)))
    return out


def word_order_nats(original: tuple[np.ndarray, np.ndarray], shuffled: tuple[np.ndarray, np.ndarray]) -> float | None:
    """How much a model relies on the text's word order: its nats per token on the words shuffled, minus on the
    text as written. Language costs a pretrained model 1-3 nats a token once shuffled; text that is already
    word salad costs it next to nothing more, whatever its words and however rare they are."""
    n, m = int(original[1].sum()), int(shuffled[1].sum())
    if not n or not m:
        return None
    return round(float(shuffled[0].sum()) / m - float(original[0].sum()) / n, 4)

"""Confidence intervals for the gate: a paired bootstrap, so "better" means better beyond the noise."""

from __future__ import annotations

import numpy as np

RESAMPLES = 2000
SEED = 0  # fixed: the same figures give the same interval every run


def bootstrap_mean(diffs: np.ndarray, confidence: float = 0.95) -> dict[str, float | int | None]:
    """Mean of paired differences with a percentile bootstrap interval."""
    d = np.asarray(diffs, dtype=np.float64)
    d = d[np.isfinite(d)]
    if len(d) == 0:
        return {"mean": None, "lo": None, "hi": None, "n": 0}
    rng = np.random.default_rng(SEED)
    means = d[rng.integers(0, len(d), size=(RESAMPLES, len(d)))].mean(axis=1)
    tail = (1 - confidence) / 2 * 100
    lo, hi = np.percentile(means, [tail, 100 - tail])
    return {"mean": round(float(d.mean()), 5), "lo": round(float(lo), 5), "hi": round(float(hi), 5), "n": len(d)}


def bootstrap_ratio(num: np.ndarray, den: np.ndarray, confidence: float = 0.95) -> dict[str, float | int | None]:
    """sum(num) / sum(den) over paired items (e.g. nats saved per token), with a bootstrap interval."""
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    if len(num) == 0 or den.sum() <= 0:
        return {"mean": None, "lo": None, "hi": None, "n": len(num)}
    rng = np.random.default_rng(SEED)
    idx = rng.integers(0, len(num), size=(RESAMPLES, len(num)))
    ratios = num[idx].sum(axis=1) / np.maximum(den[idx].sum(axis=1), 1e-12)
    tail = (1 - confidence) / 2 * 100
    lo, hi = np.percentile(ratios, [tail, 100 - tail])
    return {
        "mean": round(float(num.sum() / den.sum()), 5),
        "lo": round(float(lo), 5),
        "hi": round(float(hi), 5),
        "n": len(num),
    }

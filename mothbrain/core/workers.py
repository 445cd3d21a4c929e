"""How many worker processes a stage starts, and how: one answer for ingest and preprocess."""

from __future__ import annotations

import multiprocessing as mp
import os

MAX_WORKERS = 8  # beyond this the main process, which merges results in order, is the bottleneck


def worker_count(configured: int = 0) -> int:
    """`configured` when set (> 0), else one per core this process may run on, at most MAX_WORKERS."""
    if configured > 0:
        return configured
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS
        cores = os.cpu_count() or 1
    return min(MAX_WORKERS, cores)


def pool_context():
    """fork where the platform has it (workers inherit what is loaded), else spawn."""
    return mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")

"""Concept pairs for association samples: link pairs from the wiki, co-occurrence pairs mined
(mothbrain.data.concepts) again only once the corpus has drifted, else the last mining's, made current."""

from __future__ import annotations

import hashlib
import json
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from mothbrain.config import Config
from mothbrain.core.clock import DAY
from mothbrain.data.cache import cache_dir
from mothbrain.data.concepts import Pair, TermTable, choose_pairs, link_pairs, mine_pairs, term_forms
from mothbrain.data.corpus import Corpus
from mothbrain.data.dataset import data_settings
from mothbrain.data.process import pool_size

PARALLEL_PAIRS_AFTER_DOCS = 20_000  # concept pairs of larger corpora are counted on the pool


REMINE_SHARE = 0.05  # concept pairs are mined again once this share of the documents is new since the last mining


REMINE_AFTER_DAYS = 7.0  # ... or once the last mining is this old (the weekly run)


MINING_STATE = "concept_mining.json"  # beside the document cache: the last mining's pairs


def settings_hash(cfg: Config) -> str:
    settings = data_settings(cfg)
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def mining_state_path(cfg: Config) -> Path:
    return cache_dir(cfg) / MINING_STATE


def concept_pairs(
    cfg: Config, corpus: Corpus, recent_doc: np.ndarray, now: float, pool, use_state: bool, full: bool
) -> tuple[list[Pair], dict[str, Any]]:
    """Link pairs (always from the current pages) and mined co-occurrence pairs, chosen within the
    budget; and the mining state to keep (the pairs, when, and the batches they were mined from).

    Mining is a corpus-wide statistic (a second or two on a large archive): a run whose documents
    differ from those of the last mining (added, changed or removed, counted by batch) by at most
    REMINE_SHARE of the corpus, within REMINE_AFTER_DAYS and with the same settings, reuses the
    mined pairs (their `recent` flags recomputed); `full` (the weekly run) always mines again.
    """
    pcfg = cfg.preprocess
    pages = [
        SimpleNamespace(kind="wiki", title=title, doc_id=doc_id, links=links, recent=bool(recent_doc[i]))
        for i, title, doc_id, links in corpus.pages
    ]
    links = link_pairs(pages)
    n_docs = len(recent_doc)
    settings = settings_hash(cfg)
    now_batches = dict(corpus.batches)
    mined: list[Pair] | None = None
    if use_state and not full:
        try:
            state = json.loads(mining_state_path(cfg).read_text(encoding="utf-8"))
            then = {str(h): int(n) for h, n in state["batches"].items()}
            # A grown batch (an appended log) is both gone and new: count the larger side, not both.
            drift = max(
                sum(n for h, n in now_batches.items() if h not in then),
                sum(n for h, n in then.items() if h not in now_batches),
            )
            age = now - float(state["mined_at"])
            if (
                state.get("settings") == settings
                and 0 <= age < REMINE_AFTER_DAYS * DAY
                and drift <= REMINE_SHARE * n_docs
            ):
                mined = recent_again(
                    [
                        Pair(str(a), str(b), float(score), int(docs), False, "cooccurrence")
                        for a, b, score, docs in state["pairs"]
                    ],
                    corpus,
                    recent_doc,
                )
                info = {"mined": False, "mined_at": float(state["mined_at"]), "documents_changed_since": drift}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):  # missing or damaged: mine again
            mined = None
    if mined is None:
        # A large corpus counts its pairs on the pool, one share of the pair codes per process.
        parallel = n_docs >= PARALLEL_PAIRS_AFTER_DOCS and pool_size(cfg) > 1
        mined = mine_pairs(
            TermTable.from_arrow(corpus.terms, recent_doc),
            pcfg,
            limit=pcfg.association_pairs + len(links),
            map_fn=pool().map if parallel else map,
            shares=pool_size(cfg) if parallel else 1,
        )
        state = {
            "settings": settings,
            "mined_at": now,
            "documents": n_docs,
            "batches": now_batches,
            "pairs": [[p.a, p.b, p.score, p.docs] for p in mined],
        }
        info = {"mined": True, "mined_at": now, "documents_changed_since": 0}
    else:
        state = None  # unchanged: the last mining's state stands
    info["mined_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(info["mined_at"]))
    return choose_pairs(links, mined, pcfg.association_pairs), {"state": state, "info": info}


def recent_again(pairs: list[Pair], corpus: Corpus, recent_doc: np.ndarray) -> list[Pair]:
    """Reused pairs are recent when both their concepts (or their singular/plural forms, which
    mining merges) are among one recent document's candidate terms: close to, not exactly, what
    mining decides (it also keeps only a document's 24 rarest terms)."""
    import pyarrow as pa

    wanted = {f: t for p in pairs for t in (p.a, p.b) for f in term_forms(t)}
    where: dict[str, set[int]] = defaultdict(set)
    recent = np.flatnonzero(recent_doc)
    terms = pa.chunked_array(corpus.terms, pa.string()).take(pa.array(recent)).to_pylist()  # (one conversion)
    for j, joined in zip(recent.tolist(), terms):
        for f in wanted.keys() & set((joined or "").split("\n")):
            where[wanted[f]].add(j)
    return [replace(p, recent=bool(where.get(p.a, set()) & where.get(p.b, set()))) for p in pairs]

"""Preprocess throughput on a synthetic corpus built from the bundled sample (target: >= 5 MB/s on 2 cores).

    .venv/bin/python bench/bench_preprocess.py [--mb 20] [--json]

Documents are the sample corpus's documents with their sentences shuffled (so they are not exact
duplicates), plus planted secrets and e-mail addresses. Reports MB/s of `run_preprocess` (redaction,
filters, samples, dedup, concept mining, split, token counting, save) and, as the baseline measured
in the same run, a plain pass that only lower-cases and splits every document into words; the
ratio is preprocess time / baseline time. Library imports happen before the clock starts.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mothbrain.config import load_config  # noqa: E402
from mothbrain.records import Document, Turn  # noqa: E402

SENT = re.compile(r"(?<=[.!?])\s+")


def synthetic_corpus(cfg, target_mb: float, seed: int = 0) -> list[Document]:
    from mothbrain.ingest import iter_documents, run_ingest

    run_ingest(cfg)
    base = list(iter_documents(cfg))
    rng = random.Random(seed)
    secrets = ["sk-proj-" + "".join(rng.choices("abcdefghijklmnopqrstuvwxyzABCDEFGHIJ0123456789", k=60)),
               "ghp_" + "".join(rng.choices("abcdefghijklmnopqrstuvwxyzABCDEFGHIJ0123456789", k=36)),
               "mira.okafor@harbourtown.example", "+44 20 7946 0321"]

    def shuffle(text: str) -> str:
        paras = []
        for p in text.split("\n\n"):
            s = SENT.split(p)
            rng.shuffle(s)
            if rng.random() < 0.05:
                s.append(f"The key is {rng.choice(secrets)}.")
            paras.append(" ".join(s))
        return "\n\n".join(paras)

    docs, size, n = [], 0, 0
    while size < target_mb * 1e6:
        for d in base:
            n += 1
            turns = [Turn(role=t.role, text=shuffle(t.text), speaker=t.speaker) for t in d.turns]
            nd = Document(source=d.source, kind=d.kind, doc_id=f"{d.doc_id}~{n}", title=d.title, turns=turns,
                          text=shuffle(d.text) if d.text else "", links=d.links, meta=d.meta, timestamp=d.timestamp)
            docs.append(nd)
            size += len(nd.text) + sum(len(t.text) for t in turns)
    return docs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=float, default=20.0, help="corpus size in MB of text")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    os.environ["MOTHBRAIN_HOME"] = tempfile.mkdtemp(prefix="mothbench-")
    import datasets  # noqa: F401 - a one-off import (~0.5 s) is startup, not throughput

    from mothbrain.preprocess import run_preprocess

    cfg = load_config(ROOT / "configs" / "demo.yaml")
    docs = synthetic_corpus(cfg, args.mb)
    mb = sum(len(d.text) + sum(len(t.text) for t in d.turns) for d in docs) / 1e6

    t = time.perf_counter()
    words = sum(len(re.findall(r"\w+", (d.text + " ".join(t.text for t in d.turns)).lower())) for d in docs)
    baseline = time.perf_counter() - t

    t = time.perf_counter()
    report = run_preprocess(cfg, documents=iter(docs), progress=False)
    elapsed = time.perf_counter() - t
    result = {"documents": len(docs), "mb": round(mb, 2), "words": words, "baseline_s": round(baseline, 3),
              "preprocess_s": round(elapsed, 3), "preprocess_mb_s": round(mb / elapsed, 2),
              "ratio_vs_baseline": round(elapsed / baseline, 1), "target_mb_s": 5.0,
              "samples": report.samples, "redacted": report.redacted, "cores": os.cpu_count()}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{len(docs)} documents, {mb:.1f} MB: preprocess {elapsed:.2f}s = {mb / elapsed:.2f} MB/s "
              f"(target 5); baseline word split {baseline:.2f}s; ratio {elapsed / baseline:.1f}x "
              f"on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()

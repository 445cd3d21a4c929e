"""Ingest + preprocess end to end on a generated chat archive (budget: >= 4 MB/s on 2 cores, 1% new <= 12% of cold).

    .venv/bin/python bench/bench_preprocess.py                 # 100 MB, cold run once
    .venv/bin/python bench/bench_preprocess.py --mb 20 --repeat 3 --json
    .venv/bin/python bench/bench_preprocess.py --dedup-window 40000      # a bounded near-dup index

Generates ~--mb MB of realistic chat logs (bench/chatgen.py: sample-corpus sentences over a Zipf
vocabulary, code blocks, URLs, numbers, planted secrets, repeats), then runs, each in its own
process so that peak memory is per run:
  baseline   the least any pass over the archive costs: read every line, json-decode it, lower-case
             and split every message into words (one core) - the ratio below is against this
  cold       `ingest` + `preprocess` from an empty state dir (--repeat times; best and median)
  unchanged  both again on the same archive: ingest finds nothing new, preprocess reuses the data set
  new_1pct   1% new material (half a new file, half appended to the newest), ingest + preprocess:
             the changed shards are processed, the rest comes from the document cache
  quarter    a cold run on an archive a quarter the size: how peak memory grows with the archive
Prints MB/s of archive bytes, seconds per preprocess phase (from its report), peak RSS of the main
process and the ratios, all measured in this one invocation.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))


# --------------------------------------------------------------------------- phases (run in a child)


def phase_baseline(cfg_path: str) -> dict:
    import re

    chats = Path(cfg_path).parent / "chats"
    t0 = time.perf_counter()
    words = 0
    for path in sorted(chats.iterdir()):
        with path.open(encoding="utf-8") as fh:
            for line in fh:
                for m in json.loads(line)["messages"]:
                    words += len(re.findall(r"\w+", m["content"].lower()))
    return {"seconds": time.perf_counter() - t0, "words": words}


def phase_pipeline(cfg_path: str) -> dict:
    import datasets  # noqa: F401 - its import (~1 s) is start-up, not throughput

    import mothbrain  # noqa: F401 - first, as in the CLI (it sets up the allocators before pyarrow loads)
    from mothbrain.config import load_config
    from mothbrain.data.stage import run_preprocess
    from mothbrain.ingest.stage import run_ingest

    cfg = load_config(cfg_path)
    t0 = time.perf_counter()
    ing = run_ingest(cfg)
    t1 = time.perf_counter()
    pre = run_preprocess(cfg, progress=False)
    t2 = time.perf_counter()
    return {
        "seconds": t2 - t0,
        "ingest_s": t1 - t0,
        "preprocess_s": t2 - t1,
        "reused": pre.reused,
        "timings": pre.timings,
        "documents": pre.documents,
        "samples": pre.samples,
        "concept_pairs": pre.concept_pairs,
        "redacted": sum(pre.redacted.values()),
        "near_duplicates": pre.filtered.get("near_duplicates", 0),
        "documents_processed": pre.documents_processed,
        "pairs_mined": bool(pre.concept_mining.get("mined")),
        "new_files": sum(s.new + s.changed for s in ing.sources),
    }


PHASES = {"baseline": phase_baseline, "pipeline": phase_pipeline}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=float, default=100.0, help="size of the generated archive")
    ap.add_argument("--repeat", type=int, default=1, help="cold runs (each from an empty state dir)")
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    ap.add_argument("--dedup-window", type=int, help="preprocess.dedup_window for every run (default: the config's)")
    ap.add_argument("--phase", help=argparse.SUPPRESS)
    ap.add_argument("--cfg", help=argparse.SUPPRESS)
    args = ap.parse_args()
    from bench_ingest import add_one_percent, generate, print_phase, run_child

    from mothbrain.config import PreprocessConfig

    if args.phase:  # child process: one phase, result as a JSON line, with its own peak RSS
        print_phase(PHASES, args.phase, args.cfg)
        return
    child = partial(run_child, script=__file__)

    def make(root: Path, mb: float) -> None:
        generate(root, mb)
        if args.dedup_window is not None:
            with (root / "bench.yaml").open("a") as fh:
                fh.write(f"preprocess:\n  dedup_window: {args.dedup_window}\n")

    with tempfile.TemporaryDirectory(prefix="mothbrain-bench-") as tmp:
        root, home = Path(tmp) / "archive", Path(tmp) / "state"
        make(root, args.mb)
        size = sum(p.stat().st_size for p in (root / "chats").iterdir()) / 1e6
        cfg = root / "bench.yaml"
        base = child("baseline", cfg, home)
        colds = []
        for _ in range(max(1, args.repeat)):
            shutil.rmtree(home, ignore_errors=True)
            colds.append(child("pipeline", cfg, home))
        unchanged = child("pipeline", cfg, home)
        new_mb = add_one_percent(root, args.mb)
        new = child("pipeline", cfg, home)
        small_root, small_home = Path(tmp) / "quarter", Path(tmp) / "quarter-state"
        make(small_root, args.mb / 4)
        small_size = sum(p.stat().st_size for p in (small_root / "chats").iterdir()) / 1e6
        quarter = child("pipeline", small_root / "bench.yaml", small_home)

    best = min(colds, key=lambda r: r["seconds"])
    median_s = statistics.median(r["seconds"] for r in colds)
    res = {
        "archive_mb": round(size, 1),
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "documents": best["documents"],
        "samples": best["samples"],
        "concept_pairs": best["concept_pairs"],
        "redacted": best["redacted"],
        "dedup_window": args.dedup_window if args.dedup_window is not None else PreprocessConfig().dedup_window,
        "near_duplicates": best["near_duplicates"],
        "baseline_s": round(base["seconds"], 2),
        "baseline_MBps": round(size / base["seconds"], 1),
        "cold_runs_s": [round(r["seconds"], 2) for r in colds],
        "cold_best_s": round(best["seconds"], 2),
        "cold_median_s": round(median_s, 2),
        "cold_best_MBps": round(size / best["seconds"], 2),
        "cold_median_MBps": round(size / median_s, 2),
        "cold_ingest_s": round(best["ingest_s"], 2),
        "cold_preprocess_s": round(best["preprocess_s"], 2),
        "cold_preprocess_phases_s": best["timings"],
        "cold_peak_rss_mb": round(best["peak_rss_mb"]),
        "ratio_cold_over_baseline": round(median_s / base["seconds"], 2),
        "unchanged_s": round(unchanged["seconds"], 3),
        "unchanged_reused": unchanged["reused"],
        "unchanged_over_cold": round(unchanged["seconds"] / median_s, 4),
        "new_1pct_MB": round(new_mb, 2),
        "new_1pct_s": round(new["seconds"], 2),
        "new_1pct_ingest_s": round(new["ingest_s"], 3),
        "new_1pct_over_cold": round(new["seconds"] / median_s, 3),
        "new_1pct_phases_s": new["timings"],
        "new_1pct_documents_processed": new["documents_processed"],
        "new_1pct_pairs_mined": new["pairs_mined"],
        "quarter_MB": round(small_size, 1),
        "quarter_peak_rss_mb": round(quarter["peak_rss_mb"]),
        "rss_mb_per_archive_mb": round((best["peak_rss_mb"] - quarter["peak_rss_mb"]) / (size - small_size), 2),
        "cold_children_peak_rss_mb": round(best["children_peak_rss_mb"]),
        "quarter_children_peak_rss_mb": round(quarter["children_peak_rss_mb"]),
        "targets_met": {
            "cold>=4MB/s": size / median_s >= 4,
            "unchanged<=5%": unchanged["seconds"] <= 0.05 * median_s,
            "new_1pct<=12%": new["seconds"] <= 0.12 * median_s,
        },
    }
    if args.json:
        print(json.dumps(res, indent=1))
        return
    from rich.console import Console
    from rich.table import Table

    t = Table(
        title=f"ingest + preprocess: {res['archive_mb']} MB of chat logs, {res['documents']:,} conversations, "
        f"{res['cores']} cores"
    )
    for col in ("run", "seconds", "MB/s", "vs cold", "note"):
        t.add_column(col, justify="left" if col in ("run", "note") else "right")
    t.add_row(
        "baseline: json + lower + split words",
        f"{res['baseline_s']}",
        f"{res['baseline_MBps']}",
        "",
        "one core, no output",
    )
    t.add_row(
        f"cold (median of {len(colds)})",
        f"{res['cold_median_s']}",
        f"{res['cold_median_MBps']}",
        "1",
        f"ingest {res['cold_ingest_s']}s + preprocess {res['cold_preprocess_s']}s; "
        f"peak RSS {res['cold_peak_rss_mb']} MB",
    )
    t.add_row(
        "unchanged rerun",
        f"{res['unchanged_s']}",
        "",
        f"{res['unchanged_over_cold']:.2%}",
        "data set reused" if res["unchanged_reused"] else "rebuilt",
    )
    t.add_row(
        f"1% new ({res['new_1pct_MB']} MB)",
        f"{res['new_1pct_s']}",
        "",
        f"{res['new_1pct_over_cold']:.0%}",
        f"ingest {res['new_1pct_ingest_s']}s; {res['new_1pct_documents_processed']:,} documents processed, "
        f"the rest from the cache; concept pairs {'mined' if res['new_1pct_pairs_mined'] else 'reused'}",
    )
    Console().print(t)
    print("preprocess phases (s), cold:", json.dumps(res["cold_preprocess_phases_s"]))
    print("preprocess phases (s), 1% new:", json.dumps(res["new_1pct_phases_s"]))
    print(f"dedup window {res['dedup_window']:,} kept samples; {res['near_duplicates']:,} near duplicates dropped")
    print(
        f"peak RSS of the main process: {res['quarter_peak_rss_mb']} MB at {res['quarter_MB']} MB, "
        f"{res['cold_peak_rss_mb']} MB at {res['archive_mb']} MB: +{res['rss_mb_per_archive_mb']} MB per MB of "
        f"archive; largest worker {res['quarter_children_peak_rss_mb']} / {res['cold_children_peak_rss_mb']} MB"
    )
    print(f"cold / baseline = {res['ratio_cold_over_baseline']}x;", json.dumps(res["targets_met"]))


if __name__ == "__main__":
    main()

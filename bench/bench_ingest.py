"""Ingest throughput and incrementality on a generated chat archive.

    .venv/bin/python bench/bench_ingest.py            # 100 MB of chat logs
    .venv/bin/python bench/bench_ingest.py --mb 20 --json

Generates ~--mb MB of OpenAI-style JSONL chat logs (1 MB files, bench/chatgen.py) in a temp dir, then measures, each
in its own process so peak RSS is per phase:
  cold       first ingest of everything                     (target >= 5 MB/s end to end)
  rerun      the same archive again, nothing changed        (target <= 5% of cold)
  new_1pct   1% new material: half new files, half appended (target <= 10% of cold)
  read_back  iter_documents over everything (what preprocess reads)
Ratios are against the cold run measured in the same invocation. bench_preprocess.py measures
ingest + preprocess end to end on the same archive.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from chatgen import ChatGenerator, write_chat_logs  # noqa: E402  (bench/ is on sys.path when run as a script)


def generate(root: Path, mb: float, seed: int = 0) -> None:
    """~`mb` MB of chat logs (1 MB files, realistic content: see chatgen.py) and a config for them."""
    chats = root / "chats"
    write_chat_logs(chats, mb, seed=seed)
    (root / "bench.yaml").write_text(f"sources:\n  - {{name: chats, kind: chat_jsonl, path: {chats}}}\n")


def add_one_percent(root: Path, mb: float) -> float:
    """1% of the archive as new material: half in a new file, half appended to the newest log."""
    gen = ChatGenerator(seed=1)
    chats = root / "chats"
    gen.write(chats / "day-new.jsonl", mb * 0.005)
    newest = sorted(chats.glob("day-0*.jsonl"))[-1]
    gen.write(newest, mb * 0.005, mode="a")
    return mb * 0.01


# --------------------------------------------------------------------------- phases (run in a child)


def phase_ingest(cfg_path: str) -> dict:
    from mothbrain.config import load_config
    from mothbrain.ingest.stage import run_ingest

    r = run_ingest(load_config(cfg_path))
    return {
        "seconds": r.seconds,
        "bytes_read": r.bytes_read,
        "documents": r.documents,
        "bad": r.bad_records,
        "rows": r.rows(),
    }


def phase_read_back(cfg_path: str) -> dict:
    from mothbrain.config import load_config
    from mothbrain.store.documents import iter_documents

    t0 = time.perf_counter()
    n = chars = 0
    for d in iter_documents(load_config(cfg_path)):
        n += 1
        chars += sum(len(t.text) for t in d.turns)
    return {"seconds": time.perf_counter() - t0, "documents": n, "chars": chars}


def phase_baseline(cfg_path: str) -> dict:
    import mothbrain.ingest.stage  # noqa: F401  (the import cost alone, for the RSS baseline)

    return {"seconds": 0.0}


PHASES = {"ingest": phase_ingest, "read_back": phase_read_back, "baseline": phase_baseline}


def run_child(phase: str, cfg: Path, home: Path, script: str = __file__) -> dict:
    """`script --phase PHASE --cfg CFG` in a child process over state dir `home`: its JSON result."""
    env = {**os.environ, "MOTHBRAIN_HOME": str(home)}
    t0 = time.perf_counter()
    out = subprocess.run(
        [sys.executable, script, "--phase", phase, "--cfg", str(cfg)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise SystemExit(f"phase {phase} failed:\n{out.stderr[-3000:]}")
    res = json.loads(out.stdout.strip().splitlines()[-1])
    res["wall"] = time.perf_counter() - t0
    return res


def print_phase(phases: dict, phase: str, cfg: str) -> None:
    """In the child: run one phase, print its result with the process's own peak RSS as a JSON line."""
    res = phases[phase](cfg)
    res["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    # The largest of its finished children (the worker pool's processes), for the whole picture.
    res["children_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(json.dumps(res))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=float, default=100.0, help="size of the generated archive")
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    ap.add_argument("--phase", help=argparse.SUPPRESS)
    ap.add_argument("--cfg", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.phase:
        print_phase(PHASES, args.phase, args.cfg)
        return

    with tempfile.TemporaryDirectory(prefix="mothbrain-bench-") as tmp:
        root, home = Path(tmp) / "archive", Path(tmp) / "state"
        t0 = time.perf_counter()
        generate(root, args.mb)
        gen_s = time.perf_counter() - t0
        size = sum(p.stat().st_size for p in (root / "chats").iterdir()) / 1e6
        cfg = root / "bench.yaml"
        base = run_child("baseline", cfg, home)
        cold = run_child("ingest", cfg, home)
        rerun = run_child("ingest", cfg, home)
        new_mb = add_one_percent(root, args.mb)
        new = run_child("ingest", cfg, home)
        back = run_child("read_back", cfg, home)

    res = {
        "archive_mb": round(size, 1),
        "generate_s": round(gen_s, 1),
        "documents": cold["documents"],
        "cold_s": round(cold["seconds"], 2),
        "cold_process_wall_s": round(cold["wall"], 2),
        "cold_MBps": round(size / cold["seconds"], 1),
        "rerun_s": round(rerun["seconds"], 3),
        "rerun_over_cold": round(rerun["seconds"] / cold["seconds"], 4),
        "new_1pct_MB": round(new_mb, 2),
        "new_1pct_s": round(new["seconds"], 3),
        "new_1pct_over_cold": round(new["seconds"] / cold["seconds"], 4),
        "new_1pct_MB_read": round(new["bytes_read"] / 1e6, 1),
        "read_back_s": round(back["seconds"], 2),
        "read_back_MBps": round(size / back["seconds"], 1),
        "peak_rss_mb": {
            "import_only": round(base["peak_rss_mb"]),
            "cold": round(cold["peak_rss_mb"]),
            "rerun": round(rerun["peak_rss_mb"]),
            "new_1pct": round(new["peak_rss_mb"]),
            "read_back": round(back["peak_rss_mb"]),
        },
        "targets_met": {
            "cold>=5MB/s": size / cold["seconds"] >= 5,
            "rerun<=5%": rerun["seconds"] <= 0.05 * cold["seconds"],
            "new_1pct<=10%": new["seconds"] <= 0.10 * cold["seconds"],
        },
    }
    if args.json:
        print(json.dumps(res, indent=1))
        return
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"ingest benchmark: {res['archive_mb']} MB of chat logs, {res['documents']} conversations")
    t.add_column("run")
    t.add_column("seconds", justify="right")
    t.add_column("vs cold", justify="right")
    t.add_column("throughput", justify="right")
    t.add_column("peak RSS MB", justify="right")
    t.add_row("cold", f"{res['cold_s']}", "1", f"{res['cold_MBps']} MB/s", str(res["peak_rss_mb"]["cold"]))
    t.add_row(
        "unchanged rerun", f"{res['rerun_s']}", f"{res['rerun_over_cold']:.2%}", "", str(res["peak_rss_mb"]["rerun"])
    )
    t.add_row(
        f"1% new ({res['new_1pct_MB']} MB)",
        f"{res['new_1pct_s']}",
        f"{res['new_1pct_over_cold']:.2%}",
        f"{res['new_1pct_MB_read']} MB read",
        str(res["peak_rss_mb"]["new_1pct"]),
    )
    t.add_row(
        "read back (iter_documents)",
        f"{res['read_back_s']}",
        "",
        f"{res['read_back_MBps']} MB/s",
        str(res["peak_rss_mb"]["read_back"]),
    )
    t.add_row("import only (baseline)", "", "", "", str(res["peak_rss_mb"]["import_only"]))
    Console().print(t)
    print(json.dumps(res["targets_met"]))


if __name__ == "__main__":
    main()

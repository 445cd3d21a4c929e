"""Damaged chat exports (#29): how many elements vanish or are mis-indexed, and how fast a whole export reads.

    .venv/bin/python bench/fuzz_exports.py                          # fuzz 100,000 elements, seed printed
    .venv/bin/python bench/fuzz_exports.py --elements 10000 --seed 7
    .venv/bin/python bench/fuzz_exports.py --speed-mb 30            # read time of a 30 MB ChatGPT export
    .venv/bin/python bench/fuzz_exports.py --before c83d25b ...     # the same, on an older commit's reader

The fuzz writes exports of both shapes (tests/sources/exportfuzz.py) with about 20% of their elements damaged
(a random class at a random position; neighbours too) and reads each through the real reader: an element is
vanished when it is neither stored nor reported, mis-indexed when it is stored or reported under another's
index. --speed-mb times `iter_array` over a clean generated ChatGPT export (best of three). --before REF runs
everything in a copy of REF's mothbrain/ (git archive), so old and new are measured back to back.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def speed(mb: float) -> dict:
    from mothbrain.sources._jsonstream import iter_array
    from mothbrain.sources.base import Problems

    sys.path.insert(0, str(REPO / "tests" / "sources"))
    import random

    from exportfuzz import chatgpt_conv

    rng = random.Random(0)
    parts, size = [], 0
    while size < mb * 1e6:
        conv = chatgpt_conv(rng, len(parts))
        for node in conv["mapping"].values():  # realistic message lengths (~1 KB)
            if node["message"]:
                node["message"]["content"]["parts"] = [" ".join(["moth kiln tide figs lantern"] * 40)]
        parts.append(json.dumps(conv))
        size += len(parts[-1]) + 2
    text = "[" + ",\n".join(parts) + "]"
    best = float("inf")
    for _ in range(3):
        problems = Problems()
        t0 = time.perf_counter()
        n = sum(1 for _ in iter_array(io.StringIO(text), "c.json", problems, lambda o: "mapping" in o))
        best = min(best, time.perf_counter() - t0)
    return {
        "mb": round(len(text) / 1e6, 1),
        "elements": n,
        "seconds": round(best, 3),
        "mb_s": round(len(text) / 1e6 / best, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--elements", type=int, default=100_000, help="elements to fuzz (0: none)")
    ap.add_argument("--seed", type=int, default=None, help="fuzz seed (default: the clock)")
    ap.add_argument("--speed-mb", type=float, default=0, help="MB of clean ChatGPT export to time (0: none)")
    ap.add_argument("--before", metavar="REF", help="run in a copy of REF's mothbrain/ instead of this tree")
    args = ap.parse_args()
    if args.before:
        with tempfile.TemporaryDirectory() as tmp:
            archive = subprocess.run(["git", "-C", str(REPO), "archive", args.before, "mothbrain"], capture_output=True)
            subprocess.run(["tar", "-x", "-C", tmp], input=archive.stdout, check=True)
            argv = [a for a in sys.argv[1:] if a not in ("--before", args.before)]
            env = {**os.environ, "PYTHONPATH": tmp}
            sys.exit(subprocess.run([sys.executable, __file__, *argv], env=env).returncode)
    sys.path.insert(0, os.environ.get("PYTHONPATH") or str(REPO))
    import mothbrain

    print(f"reader: {Path(mothbrain.__file__).parent}")
    if args.elements:
        sys.path.insert(0, str(REPO / "tests" / "sources"))
        from exportfuzz import fuzz

        seed = args.seed if args.seed is not None else int(time.time())
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            res = fuzz(seed, args.elements, Path(tmp))
            secs = time.perf_counter() - t0
        print(
            json.dumps(
                {
                    "seed": seed,
                    "elements": res.elements,
                    "exports": res.exports,
                    "vanished": len(res.vanished),
                    "misindexed": len(res.misindexed),
                    "exports_with_loss": len(res.failed or []),
                    "seconds": round(secs, 1),
                }
            )
        )
    if args.speed_mb:
        print(json.dumps({"speed": speed(args.speed_mb)}))


if __name__ == "__main__":
    main()

"""The mothbrain package as it was at an older commit, for benches that time "before" against "after", and
`ingest` run in a child process with either tree (its wall time and peak RSS)."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def extract_package(ref: str, dest: Path) -> Path:
    """`git archive REF mothbrain` unpacked under `dest` (created); put `dest` first on sys.path to run it."""
    dest.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", ref, "mothbrain"], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    return dest


# `ingest` in a child process, with the mothbrain found first on sys.path (argv[1]) and a config (argv[2])
CHILD = """
import json, sys, time
sys.path.insert(0, sys.argv[1])
from mothbrain.config import load_config
from mothbrain.ingest.stage import run_ingest
t0 = time.perf_counter()
try:
    report = run_ingest(load_config(sys.argv[2]))
    (src,) = report.sources
    out = {"documents": src.documents, "problem": ": ".join(src.problems[0]) if src.problems else ""}
except MemoryError:
    out = {"documents": None, "problem": "MemoryError"}
out["seconds"] = time.perf_counter() - t0
print(json.dumps(out))
"""


def ingest_in_child(
    root: Path, kind: str, data: Path, code: Path, timeout: float, address_space: int | None = None
) -> dict:
    """Ingest `data` (one source of `kind`) with the mothbrain under `code` in a child process, its address space
    capped at `address_space` bytes if given: its result, wall time and peak RSS, or `killed` past `timeout`."""
    home = Path(tempfile.mkdtemp(dir=root))
    cfg = root / f"{data.stem}.yaml"
    cfg.write_text(f"sources:\n  - {{name: s, kind: {kind}, path: {data}}}\n")

    def limit() -> None:
        if address_space:
            resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))

    env = dict(os.environ, MOTHBRAIN_HOME=str(home))
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(code), str(cfg)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
        preexec_fn=limit,
    )
    deadline, status, usage = t0 + timeout, None, None
    while status is None:
        pid, st, ru = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            status, usage = st, ru
        elif time.perf_counter() > deadline:
            proc.kill()
            _, status, usage = os.wait4(proc.pid, 0)
            return {"wall_s": time.perf_counter() - t0, "peak_rss_mb": usage.ru_maxrss / 1024, "killed": True}
        else:
            time.sleep(0.05)
    out = proc.stdout.read().decode().strip().splitlines()
    result = json.loads(out[-1]) if out else {"problem": f"exit status {status}"}
    result.update(wall_s=time.perf_counter() - t0, peak_rss_mb=usage.ru_maxrss / 1024)
    return result

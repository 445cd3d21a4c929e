"""The mothbrain package as it was at an older commit, for benches that time "before" against "after"."""

from __future__ import annotations

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def extract_package(ref: str, dest: Path) -> Path:
    """`git archive REF mothbrain` unpacked under `dest` (created); put `dest` first on sys.path to run it."""
    dest.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", ref, "mothbrain"], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    return dest

"""Zip limits (#29): how fast a zip bomb is refused, and how much memory a whitespace-padded export costs.

    .venv/bin/python bench/zip_limits.py                    # this tree only
    .venv/bin/python bench/zip_limits.py --before 7b480bb   # and the same runs on an older commit

Builds in a temp dir
  bomb    a ~2 MB zip whose conversations.json unpacks to 2 GiB of whitespace (target: refused in seconds, named)
  padded  a zip whose conversations.json holds two conversations around 300 MiB of whitespace
          (target: ingested whole under 400 MB peak RSS)
and runs `ingest` (default config: ingest.max_file_mb 2048) on each in its own process, printing the wall time,
the child's peak RSS, the documents stored and the first problem. --before REF runs the same in a copy of REF's
mothbrain/ (git archive, no worktree), each run capped at --before-timeout seconds and 3 GB of address space,
since the old code inflates the bomb whole.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from older_code import extract_package, ingest_in_child  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
MiB, GiB = 1 << 20, 1 << 30

CONV = {
    "title": "Figs",
    "create_time": 1746000000.0,
    "mapping": {
        "root": {"id": "root", "parent": None, "children": ["u"], "message": None},
        "u": {
            "id": "u",
            "parent": "root",
            "children": ["a"],
            "message": {"author": {"role": "user"}, "content": {"content_type": "text", "parts": ["When?"]}},
        },
        "a": {
            "id": "a",
            "parent": "u",
            "children": [],
            "message": {"author": {"role": "assistant"}, "content": {"content_type": "text", "parts": ["Soon."]}},
        },
    },
    "current_node": "a",
}


def write_export(path: Path, padding: int) -> None:
    """An export zip: two conversations with `padding` bytes of spaces between them, deflated as it is written."""
    conv = json.dumps(CONV)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        with zf.open("export/conversations.json", "w", force_zip64=True) as member:
            member.write(("[" + conv + ",").encode())
            block = b" " * (16 * MiB)
            left = padding
            while left > 0:
                member.write(block[: min(left, len(block))])
                left -= len(block)
            member.write((conv.replace("Figs", "Dates") + "]").encode())


def show(label: str, r: dict) -> None:
    if r.get("killed"):
        print(f"  {label:<7} killed after {r['wall_s']:.1f} s (not done), peak RSS {r['peak_rss_mb']:.0f} MB")
        return
    print(
        f"  {label:<7} {r['wall_s']:6.2f} s wall, peak RSS {r['peak_rss_mb']:6.0f} MB, "
        f"{r.get('documents')} documents; first problem: {r.get('problem') or '-'}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", help="a git ref to measure too (its mothbrain/ via git archive)")
    ap.add_argument("--before-timeout", type=float, default=60.0)
    ap.add_argument("--padding-mib", type=int, default=300)
    ap.add_argument("--bomb-gib", type=float, default=2.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        bomb, padded = root / "bomb.zip", root / "padded.zip"
        t0 = time.perf_counter()
        write_export(bomb, int(args.bomb_gib * GiB))
        write_export(padded, args.padding_mib * MiB)
        print(
            f"built in {time.perf_counter() - t0:.0f} s: bomb.zip {bomb.stat().st_size / 1e6:.1f} MB "
            f"(unpacks to {args.bomb_gib:g} GiB), padded.zip {padded.stat().st_size / 1e6:.1f} MB "
            f"(unpacks to {args.padding_mib} MiB)"
        )
        trees = [("after", REPO, 600.0, False)]
        if args.before:
            old = extract_package(args.before, root / "before")
            trees.insert(0, (f"before ({args.before})", old, args.before_timeout, True))
        for name, export in (("2 GiB zip bomb", bomb), (f"{args.padding_mib} MiB whitespace-padded export", padded)):
            print(name)
            for label, code, timeout, cap in trees:
                show(
                    label.split()[0],
                    ingest_in_child(root, "chatgpt_export", export, code, timeout, 3 * 10**9 if cap else None),
                )


if __name__ == "__main__":
    main()

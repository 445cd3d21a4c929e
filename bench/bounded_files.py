"""Bounded work per file (#29): peak memory of a long single-line chat log, time of a deeply nested export value.

    .venv/bin/python bench/bounded_files.py                    # this tree only
    .venv/bin/python bench/bounded_files.py --before main      # and the same runs on an older commit

Builds in a temp dir
  line   a chat log (.jsonl) that is one line: one conversation of --line-mb MB (ASCII, 1 kB messages), then a
         small one (target: peak memory above the baseline <= ~2x that line, not 3x)
  deep   exports of three conversations whose middle one holds a value of --deep-mb MB nested all the way
         (`[[[...]]]`, and `{"a": {"a": ...}}`); target: read at ingest's normal speed, the deep one refused
         by index, both neighbours kept)
and runs `ingest` (default config) on each in its own process, printing the wall time, the child's peak RSS (and
above the baseline: the same child ingesting a one-line file), the documents stored and the first problem.
--before REF runs the same in a copy of REF's mothbrain/ (git archive, no worktree), each capped at
--before-timeout seconds.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from older_code import extract_package, ingest_in_child  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
MB = 10**6


def write_line_log(path: Path, mb: int) -> int:
    """A .jsonl whose first line is one conversation of about `mb` MB; returns that line's length in bytes."""
    text = ("moth kiln tide figs lantern " * 40)[:1000]
    n = mb * MB // (len(text) + 40)
    with path.open("wb") as f:
        f.write(b'{"id": "big", "messages": [')
        msgs = [json.dumps({"role": ("user", "assistant")[k % 2], "content": text}) for k in range(1000)]
        written = 0
        while written < n:
            k = min(1000, n - written)
            # each message its own text (a number in front), as in a real chat: none is shared in memory
            f.write(
                ",".join(m.replace('"moth', f'"{written + i:09d} moth', 1) for i, m in enumerate(msgs[:k])).encode()
            )
            written += k
            if written < n:
                f.write(b",")
        f.write(b"]}\n")
        size = f.tell()
        f.write(b'{"id": "small", "messages": [{"role": "user", "content": "hi"}]}\n')
    return size


def write_deep_export(path: Path, mb: float, shape: str) -> None:
    """Three ChatGPT conversations; the middle one's root node has a value of about `mb` MB nested as deep as it
    goes: `[[[...]]]` (shape "list") or `{"a": {"a": ...}}` (shape "object")."""

    def conv(i: int, extra: str = "") -> str:
        msg = {"author": {"role": "user"}, "content": {"content_type": "text", "parts": [f"conversation {i}"]}}
        mapping = {"a": {"id": "a", "parent": None, "children": [], "message": msg}}
        text = json.dumps({"title": f"t{i}", "mapping": mapping, "current_node": "a", "conversation_id": f"c{i}"})
        return text.replace('"parent": null', f'"parent": null{extra}')

    if shape == "list":
        n = int(mb * MB / 2)
        deep = ', "deep": ' + "[" * n + "1" + "]" * n
    else:
        n = int(mb * MB / 7)
        deep = ', "deep": ' + '{"a": ' * n + "1" + "}" * n
    path.write_text("[" + ", ".join([conv(0), conv(1, deep), conv(2)]) + "]\n")


def show(label: str, r: dict, base_mb: float, record_mb: float | None = None) -> None:
    if r.get("killed"):
        print(f"  {label:<7} killed after {r['wall_s']:.1f} s (not done), peak RSS {r['peak_rss_mb']:.0f} MB")
        return
    above = r["peak_rss_mb"] - base_mb
    ratio = f" = {above / record_mb:.2f}x the record" if record_mb else ""
    print(
        f"  {label:<7} {r['wall_s']:7.2f} s wall, peak RSS {r['peak_rss_mb']:6.0f} MB ({above:.0f} MB above the "
        f"baseline{ratio}), {r.get('documents')} documents; first problem: {(r.get('problem') or '-')[:160]}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", help="a git ref to measure too (its mothbrain/ via git archive)")
    ap.add_argument("--before-timeout", type=float, default=300.0)
    ap.add_argument("--line-mb", type=int, default=300)
    ap.add_argument("--deep-mb", type=float, default=6.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        tiny, line = root / "tiny.jsonl", root / "line.jsonl"
        deep = {shape: root / shape / "conversations.json" for shape in ("list", "object")}
        tiny.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n')
        t0 = time.perf_counter()
        record = write_line_log(line, args.line_mb) / MB
        for shape, path in deep.items():
            path.parent.mkdir()
            write_deep_export(path, args.deep_mb, shape)
        print(
            f"built in {time.perf_counter() - t0:.0f} s: line.jsonl {line.stat().st_size / MB:.0f} MB (its long line "
            f"{record:.0f} MB), two conversations.json of {deep['list'].stat().st_size / MB:.1f} MB"
        )
        trees = [("after", REPO, 900.0)]
        if args.before:
            trees.insert(0, ("before", extract_package(args.before, root / "before"), args.before_timeout))
        for label, code, timeout in trees:
            base = ingest_in_child(root, "chat_jsonl", tiny, code, 60)["peak_rss_mb"]
            print(f"{label} (baseline: a one-line file, peak RSS {base:.0f} MB)")
            show(f"line {args.line_mb} MB", ingest_in_child(root, "chat_jsonl", line, code, timeout), base, record)
            for shape, path in deep.items():
                show(f"deep {shape}", ingest_in_child(root, "chatgpt_export", path, code, timeout), base)


if __name__ == "__main__":
    main()

"""The wiki-worker measured: crosslink backtest, planted splits/frames/staleness, scan time, review + merge pace.

Run:   .venv/bin/python bench/bench_wiki.py [--pages 1000] [--sizes 250,1000,4000] [--json]

1. Quality, on a generated wiki of --pages pages (bench/wikigen.py) with 20% of its links hidden:
   precision and recall of the staged crosslinks against the hidden ones (Wikipedia's backtest), the
   precision-recall curve over thresholds, the null that links every unlinked title mention, and how
   many "other sense" decoys were linked; recall and false-alarm rate of planted splits, frames and
   stale statements.
2. Scan time at each of --sizes pages (cold: no embedding cache), and how it grows (time per page).
   Frame openings are written by the demo's tiny model when it is built (under $MOTHBRAIN_HOME or the
   repo's data/models), else extracted; the report says which.
   --rescan N times instead only a rescan of an unchanged N-page wiki (the nightly case: the
   embedding and frame caches warm from a first scan), per kind.
3. Review + merge of up to 300 staged proposals through a stand-in reviewer (a real OpenAI-compatible
   HTTP server on loopback that answers at once): the pipeline's own time per proposal, and the
   proposals/hour it allows (the target: well under 1 s each, so >= 300/hour is the reviewer's limit).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from wikigen import generate_wiki, stand_in_reviewer  # noqa: E402

from mothbrain.config import load_config  # noqa: E402
from mothbrain.proposals import queue  # noqa: E402
from mothbrain.wiki import merge, review, scan, staleness  # noqa: E402
from mothbrain.wiki.pages import read_wiki  # noqa: E402

THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def _changes(truth):
    now = time.time()
    out = []
    for s in truth.statements:
        old, new = s.split("from ")[1].split(" and")[0].split(" to ")
        out.append(staleness.Change(old=old, new=new, quote=s, when=now, source="chats/recent.jsonl"))
    return out


CALLER_HOME = os.environ.get("MOTHBRAIN_HOME")


def _tiny_model(home: Path) -> str:
    """'model' when the demo's tiny model can be used for openings (copied into `home`), else 'extract'."""
    for where in (CALLER_HOME, str(REPO)):
        src = Path(where or "/nonexistent") / "data" / "models" / "tiny-qwen2"
        if (src / "config.json").is_file():
            shutil.copytree(src, home / "data" / "models" / "tiny-qwen2", dirs_exist_ok=True)
            return "model"
    return "extract"


def _config(work: Path, openings: str, *more: str):
    os.environ["MOTHBRAIN_HOME"] = str(work / "state")  # it wins over state_dir: each run its own state
    return load_config(
        REPO / "configs" / "demo-tiny.yaml",
        [f"state_dir={work / 'state'}", f"wiki.path={work / 'wiki'}", f"wiki.openings={openings}", *more],
    )


def quality(pages: int, openings: str) -> tuple[dict, Path, object]:
    work = Path(tempfile.mkdtemp(prefix="mothbrain-wiki-bench-"))
    openings = _tiny_model(work / "state") if openings == "model" else openings
    truth = generate_wiki(work / "wiki", pages=pages, seed=0, hide=0.2)
    cfg = _config(work, openings, "wiki.max_frames=100000")
    t0 = time.perf_counter()
    found, info = scan.scan(cfg, read_wiki(work / "wiki"), changes=_changes(truth))
    seconds = time.perf_counter() - t0
    staged = {(p["target"], p["detail"]["to"]) for p in found if p["kind"] == "crosslink"}
    hit = staged & truth.hidden
    cl = info["crosslink"]
    pairs = [tuple(p) for p in cl["candidate_pairs"]]
    curve = []
    for t in THRESHOLDS:
        sel = [p for p, s in zip(pairs, cl["scores"]) if s >= t]
        tp = sum(1 for p in sel if p in truth.hidden)
        curve.append({"threshold": t, "precision": tp / max(1, len(sel)), "recall": tp / len(truth.hidden)})
    out = {
        "pages": pages,
        "scan_seconds": round(seconds, 1),
        "stage_seconds": info["seconds"],
        "crosslink": {
            "threshold": cfg.wiki.crosslink_threshold,
            "hidden_links": len(truth.hidden),
            "staged": len(staged),
            "precision": round(len(hit) / max(1, len(staged)), 3),
            "recall": round(len(hit) / len(truth.hidden), 3),
            "null_precision_every_mention": round(sum(1 for p in pairs if p in truth.hidden) / max(1, len(pairs)), 3),
            "decoys_linked": f"{len(staged & truth.decoys)} of {len(truth.decoys)}",
            "link_model": cl["link_model"],
            "curve": [{k: round(v, 3) for k, v in c.items()} for c in curve],
        },
    }
    for kind, planted in (("split", truth.splits), ("frame", truth.frames), ("staleness", set(truth.stale))):
        flagged = {p["target"] for p in found if p["kind"] == kind}
        out[kind] = {
            "planted": len(planted),
            "recall": round(len(flagged & planted) / max(1, len(planted)), 3),
            "false_alarm_rate": round(len(flagged - planted) / (pages - len(planted)), 4),
        }
    out["openings_by"] = openings
    return out, work, (cfg, found)


def scan_time(pages: int, openings: str) -> dict:
    work = Path(tempfile.mkdtemp(prefix="mothbrain-wiki-bench-"))
    openings = _tiny_model(work / "state") if openings == "model" else openings
    truth = generate_wiki(work / "wiki", pages=pages, seed=1, hide=0.2)
    cfg = _config(work, openings)
    t0 = time.perf_counter()
    _, info = scan.scan(cfg, read_wiki(work / "wiki"), changes=_changes(truth))
    seconds = time.perf_counter() - t0
    shutil.rmtree(work, ignore_errors=True)
    return {
        "pages": pages,
        "seconds": round(seconds, 1),
        "ms_per_page": round(1000 * seconds / pages, 1),
        **info["seconds"],
    }


def rescan_time(pages: int, openings: str) -> dict:
    """A first scan, then a second of the same, unchanged wiki with the same state: what a nightly costs."""
    work = Path(tempfile.mkdtemp(prefix="mothbrain-wiki-bench-"))
    openings = _tiny_model(work / "state") if openings == "model" else openings
    truth = generate_wiki(work / "wiki", pages=pages, seed=1, hide=0.2)
    cfg = _config(work, openings)
    out = {"pages": pages, "openings_by": openings}
    for run in ("first", "rescan"):
        t0 = time.perf_counter()
        _, info = scan.scan(cfg, read_wiki(work / "wiki"), changes=_changes(truth))
        out[run] = {"seconds": round(time.perf_counter() - t0, 1), **info["seconds"]}
    shutil.rmtree(work, ignore_errors=True)
    return out


def review_and_merge(cfg, found, limit: int = 300) -> dict:
    """Stage up to `limit` proposals (crosslinks first: they merge without touching each other's pages)."""
    chosen, touched = [], set()
    for p in sorted(found, key=lambda p: p["kind"] != "crosslink"):
        paths = {f["path"] for f in p["patch"]["files"]}
        if not paths & touched:
            chosen.append(p)
            touched |= paths
        if len(chosen) == limit:
            break
    for p in chosen:
        p["patch"]["detail"] = p.pop("detail", {})
    queue.add_proposals(cfg, chosen)
    with stand_in_reviewer() as url:
        cfg.wiki.reviewer_url, cfg.wiki.reviewer_model, cfg.wiki.reviews_per_hour = url, "stand-in", 0
        t0 = time.perf_counter()
        rep = review.run_review(cfg)
        t_review = time.perf_counter() - t0
    t0 = time.perf_counter()
    merged = merge.run_merge(cfg)
    t_merge = time.perf_counter() - t0
    n = len(chosen)
    per = (t_review + t_merge) / n
    return {
        "proposals": n,
        "accepted": rep.decisions.get("accept", 0),
        "merged": len(merged.merged),
        "review_s_per_proposal": round(t_review / n, 4),
        "merge_s_per_proposal": round(t_merge / n, 4),
        "pipeline_s_per_proposal": round(per, 4),
        "proposals_per_hour_allowed": int(3600 / per),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pages", type=int, default=1000)
    ap.add_argument("--sizes", default="250,1000,4000", help="wiki sizes to time the scan at")
    ap.add_argument("--openings", choices=["model", "extract"], default="model")
    ap.add_argument("--rescan", type=int, default=0, help="only time a rescan of an unchanged wiki of N pages")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.rescan:
        print(json.dumps(rescan_time(args.rescan, args.openings), indent=None if args.json else 2))
        return
    result, work, (cfg, found) = quality(args.pages, args.openings)
    result["review_merge"] = review_and_merge(cfg, found)
    shutil.rmtree(work, ignore_errors=True)
    result["scan_times"] = [scan_time(int(n), args.openings) for n in args.sizes.split(",") if n]
    times = result["scan_times"]
    if len(times) > 1:
        result["growth_ms_per_page"] = f"{times[0]['ms_per_page']} → {times[-1]['ms_per_page']} ms/page"
    if args.json:
        print(json.dumps(result, indent=2))
        return
    c = result["crosslink"]
    print(f"crosslink backtest on {args.pages} pages, {c['hidden_links']} hidden links ({c['link_model']}):")
    print(f"  at threshold {c['threshold']}: precision {c['precision']}, recall {c['recall']} ({c['staged']} staged)")
    print(
        f"  null (link every mention): precision {c['null_precision_every_mention']}; "
        f"decoys linked {c['decoys_linked']}"
    )
    print("  curve: " + ", ".join(f"{x['threshold']}: P {x['precision']} R {x['recall']}" for x in c["curve"]))
    for kind in ("split", "frame", "staleness"):
        k = result[kind]
        print(f"{kind}: {k['planted']} planted, recall {k['recall']}, false-alarm rate {k['false_alarm_rate']}")
    print(f"openings written by: {result['openings_by']}")
    for t in times:
        print(f"scan of {t['pages']} pages: {t['seconds']} s ({t['ms_per_page']} ms/page; embed {t['embed']} s)")
    r = result["review_merge"]
    print(
        f"review + merge of {r['proposals']} proposals (stand-in reviewer): {r['pipeline_s_per_proposal']} s each "
        f"(review {r['review_s_per_proposal']}, merge {r['merge_s_per_proposal']}) "
        f"→ {r['proposals_per_hour_allowed']:,}/hour"
    )


if __name__ == "__main__":
    main()

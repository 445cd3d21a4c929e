"""Staleness measured on the sets fixed in bench/staleness_sets.py, for each rule (wiki.staleness_rule).

    python bench/bench_staleness.py [--show tune|held|all] [--foam GIT_DIR] [--json OUT]

written  recall (stale cases flagged) and false alarms (near-misses flagged), per half;
demo     the sample wiki against the sample corpus's recent documents: pages flagged and proposals per
         page (nothing is planted there: every flag is a false alarm unless shown otherwise);
foam     foam's 2024 docs against the sentences they gained since (with --foam or $FOAM_GIT).
`--show` lists the flags (and the written misses) of one half, for judging them case by case; tuning
looks only at `tune`.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import staleness_sets as sets  # noqa: E402

from mothbrain.config import load_config  # noqa: E402
from mothbrain.models.embeddings import load_embedder  # noqa: E402
from mothbrain.wiki import staleness  # noqa: E402
from mothbrain.wiki.pages import read_wiki  # noqa: E402

RULES = ("phrasings", "meaning")
PAGE_DATE, SAID = "2024-01-01", 1735689600.0  # the written cases: page last changed before the statement


def _cfg(scratch: Path, wiki: Path, rule: str):
    return load_config(
        REPO / "configs" / "demo-tiny.yaml",
        [f"state_dir={scratch}", f"wiki.path={wiki}", f"wiki.staleness_rule={rule}"],
    )


def written(scratch: Path, rule: str, embedder) -> dict[str, dict]:
    out = {}
    for case in sets.written_cases():
        root = scratch / "written" / case["id"]
        root.mkdir(parents=True, exist_ok=True)
        (root / "notes.md").write_text(f"---\nupdated: {PAGE_DATE}\n---\n# Notes\n\n{case['page']}\n")
        cfg = _cfg(scratch, root, rule)
        changes = staleness.changes_in(case["statement"], SAID, "case", rule)
        found = staleness.staleness_proposals(cfg, read_wiki(root), changes, embedder)
        out[case["id"]] = {**case, "flagged": bool(found), "why": [p["rationale"] for p in found]}
    return out


def lived(scratch: Path, s: sets.Lived, rule: str, embedder) -> list[dict]:
    cfg = _cfg(scratch, s.wiki, rule)
    changes = [c for text, when, src in s.texts for c in staleness.changes_in(text, when, src, rule)]
    found = staleness.staleness_proposals(cfg, read_wiki(s.wiki), changes, embedder)
    return [{**p, "half": s.half[p["target"]]} for p in found]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--show", choices=("tune", "held", "all", "none"), default="tune")
    ap.add_argument("--foam", default=None)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="bench-staleness-"))
    embedder = load_embedder(_cfg(scratch, scratch, "meaning"))
    lived_sets = [sets.demo_set(scratch / "demo")]
    foam = sets.foam_set(scratch, args.foam)
    if foam is not None:
        lived_sets.append(foam)
    show = lambda half: args.show == "all" or args.show == half  # noqa: E731
    rows, report = [], {"embedder": embedder.name}
    for rule in RULES:
        got = written(scratch, rule, embedder)
        for half in ("tune", "held"):
            cases = [c for c in got.values() if c["half"] == half]
            stale = [c for c in cases if c["stale"]]
            near = [c for c in cases if not c["stale"]]
            hit = sum(c["flagged"] for c in stale)
            fa = sum(c["flagged"] for c in near)
            rows.append(
                (
                    rule,
                    "written",
                    half,
                    f"recall {hit}/{len(stale)} = {hit / len(stale):.2f}",
                    f"false alarms {fa}/{len(near)} = {fa / len(near):.1%}",
                )
            )
            for c in cases if show(half) and rule == "meaning" else []:
                if c["flagged"] != c["stale"]:
                    print(
                        f"  [{rule} {half}] {'MISS' if c['stale'] else 'FALSE'} {c['id']}: {c['page']!r} <- "
                        f"{c['statement']!r} {c['why']}"
                    )
        report[f"written/{rule}"] = got
        for s in lived_sets:
            found = lived(scratch, s, rule, embedder)
            report[f"{s.name}/{rule}"] = found
            for half in ("tune", "held"):
                pages = [p for p, h in s.half.items() if h == half]
                props = [p for p in found if p["half"] == half]
                flagged = {p["target"] for p in props}
                rows.append(
                    (
                        rule,
                        s.name,
                        half,
                        f"pages flagged {len(flagged)}/{len(pages)} = {len(flagged) / len(pages):.1%}",
                        f"proposals/page {len(props) / len(pages):.2f}",
                    )
                )
                for p in props if show(half) else []:
                    print(f"  [{rule} {s.name} {half}] {p['target']}: {p['rationale'][:400]}")
    print("\n| rule | set | half | recall / pages flagged | false alarms / proposals per page |")
    print("|---|---|---|---|---|")
    for r in rows:
        if args.show in ("all", "held") or r[2] == "tune":  # while tuning, the held-out figures stay unseen
            print("| " + " | ".join(r) + " |")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, **report}, indent=1, default=str))


if __name__ == "__main__":
    main()

"""Split proposals measured: planted off-topic sections caught, and false alarms on a real vault.

Run:   .venv/bin/python bench/wiki_splits.py [VAULT] [--pages 400] [--cache DIR] [--json]

1. Generated wikis (bench/wikigen.py) of --pages pages, 10% of them split pages: two sections of the
   page's topic, then ONE of another topic (`off_topic=1`: the case a two-a-side minimum never catches)
   — two draws, seed 0 (tuning: wiki.split_single_gap was chosen on it) and seed 1 (held out) — and a
   held-out draw with two off-topic sections (the classic case, which must still be caught). Reported:
   planted pages caught, and false alarms among the other pages.
2. A real vault (VAULT, e.g. the docs/ folder of foambubble/foam): the pages where a split is proposed,
   with the sections that would move. Its pages are each about one thing, so a reader should accept
   essentially none of them: every proposal there counts as a false alarm.
3. The same vault with one off-topic section planted: each page with two or more sections gets, at its
   end, a section of the bundled sample wiki (data/sample/wiki: gardens, herons, deadlines). The pages
   are halved by name (tuning / held out), each half planted in its own copy; reported: planted pages
   caught, per half, beside the false alarms of each half on the unplanted vault.

The embeddings are the scan's own (all-MiniLM-L6-v2 when installed); --cache keeps them between runs.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from wikigen import generate_wiki  # noqa: E402

from mothbrain.config import WikiConfig, load_config  # noqa: E402
from mothbrain.wiki import splits, vectors  # noqa: E402
from mothbrain.wiki.pages import read_wiki, visible_prose  # noqa: E402
from mothbrain.wiki.splits import MIN_SECTION_CHARS  # noqa: E402


def _proposals(wiki_dir: Path, state: Path) -> tuple[list[dict], int, str]:
    os.environ["MOTHBRAIN_HOME"] = str(state)  # it wins over state_dir: each wiki its own embedding cache
    shipped = WikiConfig()  # the shipped split settings, not the demo's
    sets = [f"state_dir={state}", f"wiki.path={wiki_dir}"]
    sets += [f"wiki.{k}={getattr(shipped, k)}" for k in vars(shipped) if k.startswith("split_")]
    cfg = load_config(REPO / "configs" / "demo-tiny.yaml", sets)
    wiki = read_wiki(wiki_dir)
    vecs = vectors.embed_wiki(cfg, wiki)
    return splits.split_proposals(cfg, wiki, vecs), len(wiki.pages), vecs.embedder


def generated(pages: int, seed: int, off_topic: int, work: Path) -> dict:
    folder = work / f"gen-{pages}-{seed}-{off_topic}"
    shutil.rmtree(folder / "wiki", ignore_errors=True)
    truth = generate_wiki(folder / "wiki", pages=pages, seed=seed, hide=0.0, planted=0.1, off_topic=off_topic)
    found, n, embedder = _proposals(folder / "wiki", folder / "state")
    flagged = {p["target"] for p in found}
    others = n - len(truth.splits)
    return {
        "seed": seed,
        "off_topic_sections": off_topic,
        "pages": n,
        "planted": len(truth.splits),
        "caught": len(flagged & truth.splits),
        "false_alarms": len(flagged - truth.splits),
        "false_alarm_rate": round(len(flagged - truth.splits) / max(1, others), 4),
        "embedder": embedder,
    }


def half(rel: str) -> str:
    return "tuning" if sum(rel.encode()) % 2 == 0 else "held_out"


def _qualifying(page) -> list:
    return [s for s in page.sections if s.heading and len(visible_prose(s.body(page.text))) >= MIN_SECTION_CHARS]


def planted_vault(path: Path, which: str, work: Path) -> dict:
    donors = [
        p.text[s.start : s.end].strip() for p in read_wiki(REPO / "data/sample/wiki").pages for s in _qualifying(p)
    ]
    rng = random.Random(0)
    copy = work / f"vault-planted-{which}"
    shutil.rmtree(copy / "wiki", ignore_errors=True)
    shutil.copytree(path, copy / "wiki", ignore=shutil.ignore_patterns(".git"))
    planted = set()
    for page in read_wiki(copy / "wiki").pages:
        if half(page.rel) == which and len(_qualifying(page)) >= 2:
            nl = "" if page.text.endswith("\n") else "\n"
            (copy / "wiki" / page.rel).write_text(page.text + nl + "\n" + rng.choice(donors) + "\n", encoding="utf-8")
            planted.add(page.rel)
    found, _, _ = _proposals(copy / "wiki", copy / "state")
    flagged = {p["target"] for p in found}
    return {"planted": len(planted), "caught": len(flagged & planted)}


def vault(path: Path, work: Path) -> dict:
    found, n, embedder = _proposals(path, work / "vault-state")
    pages = [p.rel for p in read_wiki(path).pages]
    return {
        "vault": str(path),
        "pages": n,
        "split_proposed": len(found),
        "rate": round(len(found) / max(1, n), 4),
        "by_half": {
            h: {
                "pages": sum(1 for r in pages if half(r) == h),
                "false_alarms": sum(1 for p in found if half(p["target"]) == h),
                **planted_vault(path, h, work),
            }
            for h in ("tuning", "held_out")
        },
        "proposals": [f"{p['target']}: move {p['detail']['moved']} (gap {p['score'] - 0.5:.2f})" for p in found],
        "embedder": embedder,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("vault", type=Path, nargs="?", help="a real vault to count false alarms on")
    ap.add_argument("--pages", type=int, default=400)
    ap.add_argument("--cache", type=Path, help="keep each wiki's embeddings here between runs")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    work = args.cache or Path(tempfile.mkdtemp(prefix="mothbrain-wiki-splits-"))
    try:
        result = {
            "tuning": generated(args.pages, 0, 1, work),
            "held_out": generated(args.pages, 1, 1, work),
            "held_out_two_sections": generated(args.pages, 1, 2, work),
        }
        if args.vault:
            result["vault"] = vault(args.vault, work)
    finally:
        if args.cache is None:
            shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    for name in ("tuning", "held_out", "held_out_two_sections"):
        r = result[name]
        print(
            f"{name} (seed {r['seed']}, {r['off_topic_sections']} off-topic section(s)): caught "
            f"{r['caught']}/{r['planted']} planted; false alarms {r['false_alarms']}/{r['pages'] - r['planted']} "
            f"({r['false_alarm_rate']:.1%})"
        )
    if "vault" in result:
        v = result["vault"]
        print(f"vault {v['vault']}: split proposed on {v['split_proposed']}/{v['pages']} pages ({v['rate']:.1%})")
        for line in v["proposals"]:
            print(f"  {line}")
        for h, r in v["by_half"].items():
            print(
                f"  {h} half: false alarms {r['false_alarms']}/{r['pages']}; one off-topic section planted: "
                f"caught {r['caught']}/{r['planted']}"
            )
    print(f"embedder: {result['tuning']['embedder']}")


if __name__ == "__main__":
    main()

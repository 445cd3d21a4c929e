"""Crosslink backtest on a real vault: hide some of its links, see whether the scan puts them back.

Run:   .venv/bin/python bench/wiki_backtest.py VAULT [--hide 0.2] [--seed 0] [--json]

Wikipedia's add-a-link backtest, on any folder of markdown notes with [[wikilinks]]. The vault is copied
to a temp dir (never touched), `--hide` of its links (those outside code that name another page) are
written as their plain text (`[[Target|words]]` → `words`, `[[Target]]` → `Target`), and the scan's
crosslink proposer runs on the copy. A hidden pair is (page, target) with no link left between them.
Reported: precision of the proposals scoring at least wiki.local_accept_score (what the local reviewer
merges unseen), and recall of the hidden pairs by the proposals staged at wiki.crosslink_threshold.

Two draws: seed (the tuning half: anything tuned was tuned on it) and seed+1 (held out), each hiding
its own links. Every other proposal counts against precision, though some are links the wiki lacked
all along: the figures are a floor.
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

from mothbrain.config import WikiConfig, load_config  # noqa: E402
from mothbrain.sources.wiki import WIKILINK  # noqa: E402
from mothbrain.wiki import crosslinks, vectors  # noqa: E402
from mothbrain.wiki.pages import FENCE, INLINE_CODE, read_wiki  # noqa: E402


def _code_mask(text: str) -> str:
    """The text with code (fenced and inline) overwritten by NULs: a [[link]] in code is an example."""
    for pattern in (FENCE, INLINE_CODE):
        text = pattern.sub(lambda m: "\0" * len(m.group(0)), text)
    return text


def hide_links(root: Path, share: float, seed: int) -> tuple[set[tuple[str, str]], int]:
    """Write `share` of the wiki's page links as plain text, in place; (hidden pairs, links hidden)."""
    wiki = read_wiki(root)
    links = []  # (page, link, target page)
    for page in wiki.pages:
        code = _code_mask(page.text)
        for link in page.links:
            target = wiki.resolve(link.target)
            if target is not None and target.rel != page.rel and code[link.start] != "\0":
                links.append((page, link, target.rel))
    rng = random.Random(seed)
    hidden = set(rng.sample(range(len(links)), round(share * len(links))))
    kept_pairs = {(p.rel, t) for i, (p, _, t) in enumerate(links) if i not in hidden}
    by_page: dict[str, list] = {}
    for i in sorted(hidden):
        by_page.setdefault(links[i][0].rel, []).append(links[i][1])
    for page in wiki.pages:
        text = page.text
        for link in sorted(by_page.get(page.rel, []), key=lambda lk: -lk.start):
            m = WIKILINK.match(text, link.start)
            text = text[: link.start] + (m[4] or m[2]).strip() + text[link.end :]
        if page.rel in by_page:
            (root / page.rel).write_text(text, encoding="utf-8")
    pairs = {(links[i][0].rel, links[i][2]) for i in hidden} - kept_pairs
    return pairs, len(hidden)


def backtest(vault: Path, share: float, seed: int) -> dict:
    work = Path(tempfile.mkdtemp(prefix="mothbrain-wiki-backtest-"))
    try:
        shutil.copytree(vault, work / "wiki", ignore=shutil.ignore_patterns(".git"))
        pairs, n_hidden = hide_links(work / "wiki", share, seed)
        os.environ["MOTHBRAIN_HOME"] = str(work / "state")  # this run's own state, nothing of the caller's
        shipped = WikiConfig()  # the shipped thresholds, not the demo's
        cfg = load_config(
            REPO / "configs" / "demo-tiny.yaml",
            [
                f"state_dir={work / 'state'}",
                f"wiki.path={work / 'wiki'}",
                f"wiki.local_accept_score={shipped.local_accept_score}",
                f"wiki.crosslink_threshold={shipped.crosslink_threshold}",
            ],
        )
        wiki = read_wiki(work / "wiki")
        vecs = vectors.embed_wiki(cfg, wiki)
        found, info = crosslinks.crosslink_proposals(cfg, wiki, vecs)
        staged = {(p["target"], p["detail"]["to"]) for p in found}
        sure = {(p["target"], p["detail"]["to"]) for p in found if p["score"] >= cfg.wiki.local_accept_score}
        return {
            "seed": seed,
            "pages": len(wiki.pages),
            "links_hidden": n_hidden,
            "hidden_pairs": len(pairs),
            "candidates": info["candidates"],
            "link_model": info["link_model"],
            "embedder": vecs.embedder,
            "local_accept_score": cfg.wiki.local_accept_score,
            "accepted": len(sure),
            "accepted_hits": len(sure & pairs),
            "precision_at_accept": round(len(sure & pairs) / max(1, len(sure)), 3),
            "crosslink_threshold": cfg.wiki.crosslink_threshold,
            "staged": len(staged),
            "staged_hits": len(staged & pairs),
            "precision_at_staging": round(len(staged & pairs) / max(1, len(staged)), 3),
            "recall_at_staging": round(len(staged & pairs) / max(1, len(pairs)), 3),
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("vault", type=Path)
    ap.add_argument("--hide", type=float, default=0.2, help="share of the links hidden")
    ap.add_argument("--seed", type=int, default=0, help="the tuning draw; seed+1 is the held-out one")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if not args.vault.is_dir():
        ap.error(f"{args.vault} is not a folder")
    result = {
        "vault": str(args.vault),
        "hide": args.hide,
        "tuning": backtest(args.vault, args.hide, args.seed),
        "held_out": backtest(args.vault, args.hide, args.seed + 1),
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    for name in ("tuning", "held_out"):
        r = result[name]
        print(
            f"{name} (seed {r['seed']}): {r['pages']} pages, {r['links_hidden']} links hidden "
            f"({r['hidden_pairs']} pairs), {r['candidates']} candidates; "
            f"precision at {r['local_accept_score']}: {r['precision_at_accept']} "
            f"({r['accepted_hits']}/{r['accepted']}); "
            f"recall at {r['crosslink_threshold']}: {r['recall_at_staging']} "
            f"({r['staged_hits']}/{r['hidden_pairs']}, "
            f"{r['staged']} staged, precision {r['precision_at_staging']})"
        )
    print(f"link model: {result['tuning']['link_model']}; embedder: {result['tuning']['embedder']}")


if __name__ == "__main__":
    main()

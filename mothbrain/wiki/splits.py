"""Split proposals: a page whose ## sections fall into two far-apart groups gives the group without its
first section to a new page, and each page links the other."""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from mothbrain.config import Config
from mothbrain.wiki.pages import Page, Wiki, norm, visible_prose
from mothbrain.wiki.patches import edit, file_create, file_edit, make_patch
from mothbrain.wiki.vectors import Vectors

MIN_SECTION_CHARS = 120  # shorter sections say too little to cluster on

MIN_GROUP = 2  # sections on each side of a split: one section alone is too noisy to call another topic
MAX_EXACT = 10  # sections up to which every two-way grouping is tried; beyond, 2-means


def best_split(vectors: np.ndarray) -> tuple[np.ndarray, float]:
    """The grouping of sections into two (each of at least MIN_GROUP) that best separates them, and its
    gap: how much more alike sections are within a group than across (mean pairwise cosine)."""
    n = len(vectors)
    sims = vectors @ vectors.T
    upper = np.triu(np.ones((n, n), dtype=bool), 1)

    def gap(labels: np.ndarray) -> float:
        same = labels[:, None] == labels[None, :]
        within, across = sims[upper & same], sims[upper & ~same]
        return float(within.mean() - across.mean()) if len(within) and len(across) else -1.0

    if n <= MAX_EXACT:
        candidates = (np.array([(m >> k) & 1 for k in range(n)]) for m in range(1, 2 ** (n - 1)))
    else:
        candidates = iter([_two_means(vectors)])
    best, best_gap = np.zeros(n, dtype=int), -1.0
    for labels in candidates:
        if min(labels.sum(), n - labels.sum()) < MIN_GROUP:
            continue
        g = gap(labels)
        if g > best_gap:
            best, best_gap = labels, g
    return best, best_gap


def _two_means(vectors: np.ndarray, rounds: int = 8) -> np.ndarray:
    sims = vectors @ vectors.T
    i, j = np.unravel_index(np.argmin(sims), sims.shape)
    centres = vectors[[i, j]]
    labels = np.zeros(len(vectors), dtype=int)
    for _ in range(rounds):
        labels = np.argmax(vectors @ centres.T, axis=1)
        if labels.min() == labels.max():
            break
        centres = np.stack([vectors[labels == k].mean(0) for k in (0, 1)])
    return labels


def split_proposals(cfg: Config, wiki: Wiki, vecs: Vectors) -> list[dict[str, Any]]:
    out = []
    taken = {norm(n) for p in wiki.pages for n in p.names()}
    for i, page in enumerate(wiki.pages):
        secs = [
            (k, s)
            for k, s in enumerate(page.sections)
            if s.heading and len(visible_prose(s.body(page.text))) >= MIN_SECTION_CHARS
        ]
        if len(secs) < cfg.wiki.split_min_sections:
            continue
        v = vecs.sections[i][[k for k, _ in secs]]
        labels, gap = best_split(v)
        if gap < cfg.wiki.split_min_gap:
            continue
        moving = [s for (k, s), lab in zip(secs, labels) if lab != labels[0]]  # the page keeps its first topic
        out.append(_split(page, moving, gap, taken))
    return out


def _split(page: Page, moving: list, gap: float, taken: set[str]) -> dict[str, Any]:
    title = moving[0].heading
    if norm(title) in taken:
        title = f"{title} ({page.title})"
    folder = page.rel.rsplit("/", 1)[0] + "/" if "/" in page.rel else ""
    new_rel = f"{folder}{_file_name(title)}.md"
    old_name = page.rel.rsplit(".", 1)[0]
    nl = page.newline  # a CRLF page stays CRLF
    moved_text = "".join(page.text[s.start : s.end].rstrip("\r\n") + nl + nl for s in moving)
    content = f"# {title}{nl}{nl}Split from [[{old_name}]].{nl}{nl}{moved_text.rstrip()}{nl}"
    edits = [edit(s.start, s.end, page.text[s.start : s.end], "") for s in moving]
    see_also = (nl if page.text.endswith("\n") else nl + nl) + f"See also [[{new_rel.rsplit('.', 1)[0]}]].{nl}"
    edits.append(edit(len(page.text), len(page.text), "", see_also))
    files = [file_edit(page.rel, page.sha256, edits), file_create(new_rel, content)]
    headings = ", ".join(f"'{s.heading}'" for s in moving)
    return {
        "kind": "split",
        "target": page.rel,
        "source_title": page.title,
        "text": f"split {page.title}: move {headings} to a new page '{title}'",
        "score": round(min(1.0, 0.5 + gap), 4),
        "rationale": (
            f"its sections fall into two groups: sections within a group are {gap:.2f} more alike (cosine) than "
            f"sections across them, so {headings} read as another topic. They move to '{title}', and the pages "
            "link each other."
        ),
        "patch": make_patch(files, {page.rel: page.text}),
        "fingerprint": f"split:{page.rel}:" + "|".join(sorted(norm(s.heading) for s in moving)),
        "detail": {"new_page": new_rel, "moved": [s.heading for s in moving]},
    }


def _file_name(title: str) -> str:
    cleaned = re.sub(r'[\\/:*?"<>|#^\[\]\x00-\x1f]', " ", title)
    return " ".join(cleaned.split())[:120].strip(". ") or "Untitled"

"""Split proposals: a page whose ## sections fall into two far-apart groups gives the group without its
first section to a new page, and each page links the other.

Two tests, both must hold. Meaning: sections within a group are at least wiki.split_min_gap more alike
(mean cosine of their embeddings) than sections across the groups. Words: the moving sections share few
of their page's distinctive words (tf-idf cosine, idf over the wiki's sections, with the rest of the page
and its title) — on real pages a section that reads differently ("Options", "Logs", "Benefits") still
names what its page is about, while a section about another topic does not. A group may be a single
section (wiki.split_min_group), but one section alone is a noisy sample of a topic, so when either side
is a single section both tests are stricter: wiki.split_single_gap and SINGLE_SHARED_WORDS.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Any

import numpy as np

from mothbrain.config import Config
from mothbrain.wiki.pages import WORD, Page, Wiki, norm, visible_prose
from mothbrain.wiki.patches import edit, file_create, file_edit, make_patch
from mothbrain.wiki.vectors import Vectors

MIN_SECTION_CHARS = 120  # shorter sections say too little to cluster on
MAX_EXACT = 10  # sections up to which every two-way grouping is tried; beyond, 2-means
# Words the moving group may share with the rest of its page (tf-idf cosine, 0-1). Chosen on the tuning
# draws of bench/wiki_splits.py: above 0.2, hub and FAQ pages of a real vault split; a section of another
# topic shares about 0.01.
SHARED_WORDS = 0.2
SINGLE_SHARED_WORDS = 0.1  # the same for a single section, stricter: one section is a small sample


def groupings(vectors: np.ndarray, min_group: int = 1) -> list[tuple[np.ndarray, float]]:
    """Two-way groupings of the sections (each side at least `min_group`) with their gap: how much more
    alike sections are within a group than across (mean pairwise cosine). Every grouping up to MAX_EXACT
    sections; beyond, the one 2-means finds."""
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
    return [(lab, gap(lab)) for lab in candidates if min(lab.sum(), n - lab.sum()) >= max(1, min_group)]


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


def _words(text: str) -> Counter:
    return Counter(w for w in WORD.findall(text.lower()) if len(w) > 2)


def _tfidf(counts: Counter, idf: dict[str, float]) -> dict[str, float]:
    v = {w: (1 + math.log(n)) * idf.get(w, 0.0) for w, n in counts.items()}
    z = math.sqrt(sum(x * x for x in v.values())) or 1.0
    return {w: x / z for w, x in v.items()}


def shared_words(page: Page, moving: list, idf: dict[str, float]) -> float:
    """tf-idf cosine between the moving sections and the rest of the page (its title included)."""
    rest, last = [page.title], page.body_start
    for s in sorted(moving, key=lambda s: s.start):
        rest.append(page.text[last : s.start])
        last = s.end
    rest.append(page.text[last:])
    a = _tfidf(_words(" ".join(visible_prose(s.body(page.text)) for s in moving)), idf)
    b = _tfidf(_words(visible_prose(" ".join(rest))), idf)
    return sum(x * b.get(w, 0.0) for w, x in a.items())


def section_idf(wiki: Wiki) -> dict[str, float]:
    df: Counter = Counter()
    n = 0
    for p in wiki.pages:
        for s in p.sections:
            df.update(_words(visible_prose(s.body(p.text))).keys())
            n += 1
    return {w: math.log((n + 1) / (c + 1)) for w, c in df.items()}


def split_proposals(cfg: Config, wiki: Wiki, vecs: Vectors) -> list[dict[str, Any]]:
    out = []
    taken = {norm(n) for p in wiki.pages for n in p.names()}
    idf: dict[str, float] | None = None
    w = cfg.wiki
    for i, page in enumerate(wiki.pages):
        secs = [
            (k, s)
            for k, s in enumerate(page.sections)
            if s.heading and len(visible_prose(s.body(page.text))) >= MIN_SECTION_CHARS
        ]
        if len(secs) < w.split_min_sections:
            continue
        v = vecs.sections[i][[k for k, _ in secs]]
        best: dict[bool, tuple[float, float, np.ndarray]] = {}  # single side or not → the best grouping
        for labels, gap in groupings(v, w.split_min_group):
            single = min(labels.sum(), len(labels) - labels.sum()) == 1
            margin = gap - (w.split_single_gap if single else w.split_min_gap)
            if margin >= 0 and margin > best.get(single, (-1.0,))[0]:
                best[single] = (margin, gap, labels)
        # Only the best grouping of each kind is put to the words test: trying them all until one passes
        # would find some grouping on any page with many sections.
        for single, (_, gap, labels) in sorted(best.items(), key=lambda kv: -kv[1][0]):
            moving = [s for (k, s), lab in zip(secs, labels) if lab != labels[0]]  # the page keeps its first topic
            idf = section_idf(wiki) if idf is None else idf
            if shared_words(page, moving, idf) <= (SINGLE_SHARED_WORDS if single else SHARED_WORDS):
                out.append(_split(page, moving, gap, taken))
                break
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

"""Crosslink proposals, the way Wikipedia's "add a link" finds them: the wiki teaches what it links.

1. An anchor dictionary: every `[[Target|words]]` teaches that `words` can mean Target, `[[Target]]`
   teaches the words written; titles, aliases and file names name their page.
2. Candidates: one pass over each page's plain prose, the longest known phrase at each word; the first
   unlinked mention of each target per page (pages it already links are skipped).
3. A phrase that names several pages is resolved, not dropped: the target it most often links to
   (commonness), weighted by how alike the page and each target are (embedding cosine).
4. A logistic model, fitted on the wiki's own links (positives) and plain mentions (negatives), scores
   each candidate on: link probability (of the pages where the phrase appears, the share that link it),
   commonness, whether the phrase is the target's name, page similarity, shared link neighbours, links
   back, how common the phrase is, its length and case. Counts for a page leave that page out, so a
   link never teaches itself.

Links MothBrain merged itself are not the wiki's own linking: they are neither positives nor anchors
(else each merge would teach the next scan to propose more of the same). They are known from the queue
and, in a git wiki, from the merge commits (mothbrain.wiki.history), should the queue be lost.
A link is written the way the wiki writes its links (the file name alone unless two files share it)
and never crosses language folders (en/ → fr/).
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mothbrain.config import Config
from mothbrain.errors import MothError
from mothbrain.proposals import queue
from mothbrain.wiki.history import merged_links_in_git
from mothbrain.wiki.pages import FENCE, INLINE_CODE, WORD, Page, Wiki, masked_prose, norm
from mothbrain.wiki.patches import edit, file_edit, make_patch

log = logging.getLogger(__name__)

MAX_NAME_WORDS = 6
SENSE_COSINE = 0.1  # choosing a phrase's sense: a page 0.1 more alike (cosine) counts e times as many links
FEATURES = (
    "link_probability",
    "commonness",
    "is_name",
    "similarity",
    "shared_neighbours",
    "links_back",
    "name_rarity",
    "name_words",
    "capitalised",
)


# --------------------------------------------------------------------------- languages


# ISO 639-1 codes: a folder named one of these (optionally with a region, zh-CN, pt_BR) holds one language.
LANGS = set(
    "af am ar az be bg bn bs ca cs cy da de el en eo es et eu fa fi fr ga gl gu he hi hr hu hy id is it ja "
    "ka kk km kn ko ky lo lt lv mk ml mn mr ms my nb ne nl nn no pa pl ps pt ro ru si sk sl sq sr sv sw ta "
    "te th tl tr uk ur uz vi zh zu".split()
)
LANG_TAG = re.compile(r"^([a-z]{2})(?:[-_]([a-z]{2,4}))?$", re.I)


def _lang_tag(value: str) -> str:
    m = LANG_TAG.match(str(value).strip())
    if not m or m[1].lower() not in LANGS:
        return ""
    return m[1].lower() + (f"-{m[2].lower()}" if m[2] else "")


def page_languages(wiki: Wiki) -> list[str]:
    """Each page's language tag ("" when unknown): front matter lang/language, else its nearest language
    folder — a folder counts only when the wiki has two or more (en/ beside fr/; a lone it/ is a folder)."""
    folders = [[_lang_tag(part) for part in p.rel.split("/")[:-1]] for p in wiki.pages]
    distinct = {t for tags in folders for t in tags if t}
    out = []
    for p, tags in zip(wiki.pages, folders):
        stated = _lang_tag(p.meta.get("lang") or p.meta.get("language") or "")
        near = next((t for t in reversed(tags) if t), "") if len(distinct) >= 2 else ""
        out.append(stated or near)
    return out


def same_language(a: str, b: str) -> bool:
    """Unknown matches anything; en matches en-gb; zh-cn does not match zh-tw."""
    if not a or not b:
        return True
    (la, _, ra), (lb, _, rb) = a.partition("-"), b.partition("-")
    return la == lb and (not ra or not rb or ra == rb)


# --------------------------------------------------------------------------- how the wiki writes a link


def link_names(wiki: Wiki) -> dict[str, str]:
    """rel → the name a link to it is written with: the file name alone when no other file shares it
    (Obsidian's default), else the shortest trailing part of its path no other page ends with; or the
    whole path when that is how this wiki writes links to pages it could name by file alone."""
    paths = {p.rel: p.rel.rsplit(".", 1)[0] for p in wiki.pages}
    ends: dict[str, int] = {}
    for path in paths.values():
        parts = path.lower().split("/")
        for k in range(1, len(parts) + 1):
            key = "/".join(parts[-k:])
            ends[key] = ends.get(key, 0) + 1
    short = {}
    for rel, path in paths.items():
        parts = path.split("/")
        k = next((k for k in range(1, len(parts)) if ends["/".join(parts[-k:]).lower()] == 1), len(parts))
        short[rel] = "/".join(parts[-k:])
    # Does the wiki write full paths where a file name would do? Then so do we.
    by_path = by_name = 0
    for page in wiki.pages:
        for link in page.links:
            target = wiki.resolve(link.target)
            if target is None or "/" not in paths[target.rel] or short[target.rel] != target.stem:
                continue
            if "/" in link.target:
                by_path += 1
            else:
                by_name += 1
    return paths if by_path > by_name else short


def link_markup(name: str, anchor: str) -> str:
    return f"[[{name}]]" if anchor == name else f"[[{name}|{anchor}]]"


# --------------------------------------------------------------------------- the anchor dictionary


@dataclass
class Anchors:
    """phrase → target → the pages that link it so; names: phrase → the pages it names; seen: phrase →
    the pages where it appears at all (linked or in plain prose)."""

    linked: dict[str, dict[int, set[int]]] = field(default_factory=dict)
    names: dict[str, set[int]] = field(default_factory=dict)
    seen: dict[str, set[int]] = field(default_factory=dict)

    def known(self, phrase: str) -> bool:
        return phrase in self.names or phrase in self.linked

    def targets(self, phrase: str, page: int) -> dict[int, float]:
        """target → uses of `phrase` for it, leaving out `page`'s own links (a name counts once)."""
        out = {t: 1.0 for t in self.names.get(phrase, ())}
        for t, pages in self.linked.get(phrase, {}).items():
            n = len(pages - {page})
            if n:
                out[t] = out.get(t, 0.0) + n
        return out

    def link_probability(self, phrase: str, page: int) -> float:
        """Of the other pages where `phrase` appears, the share that link it (Laplace-smoothed)."""
        linking = set().union(*self.linked.get(phrase, {}).values()) - {page}
        return (len(linking) + 1) / (len(self.seen.get(phrase, set()) - {page}) + 2)


def _links_in_prose(page: Page) -> list:
    """The page's links outside code: a [[link]] in a code sample is an example, not a link."""
    code = page.text
    for pattern in (FENCE, INLINE_CODE):
        code = pattern.sub(lambda m: "\0" * len(m.group(0)), code)
    return [link for link in page.links if code[link.start] != "\0"]


def anchor_dictionary(wiki: Wiki, ours: set[tuple[str, str]]) -> Anchors:
    """Names and link texts; a link MothBrain merged (in `ours`, (page, target) pairs) teaches nothing."""
    anchors = Anchors()
    for i, p in enumerate(wiki.pages):
        for n in p.names():
            key = norm(n)
            if key and len(key) >= 3:
                anchors.names.setdefault(key, set()).add(i)
    index = {p.rel: i for i, p in enumerate(wiki.pages)}
    for a, page in enumerate(wiki.pages):
        for link in _links_in_prose(page):
            target = wiki.resolve(link.target)
            key = norm(link.visible)
            if target is None or target.rel == page.rel or (page.rel, target.rel) in ours or len(key) < 2:
                continue
            anchors.linked.setdefault(key, {}).setdefault(index[target.rel], set()).add(a)
    return anchors


# --------------------------------------------------------------------------- mentions


@dataclass
class Mention:
    source: int  # page index
    target: int
    start: int
    end: int
    anchor: str
    linked: bool  # an existing link (training positive) or a plain mention (candidate)
    ours: bool = False  # a link MothBrain merged: linked, but never a training positive
    choices: int = 1  # how many pages the phrase could mean here
    features: np.ndarray = field(default_factory=lambda: np.zeros(len(FEATURES)))


def _plain_phrases(page: Page, anchors: Anchors) -> list[tuple[int, int, str]]:
    """(start, end, phrase) of each known phrase in the page's plain prose, the longest at each word."""
    masked = masked_prose(page)
    words = [(m.start(), m.end(), m.group(0).lower()) for m in WORD.finditer(masked)]
    out, i = [], 0
    while i < len(words):
        step = 1
        for n in range(min(MAX_NAME_WORDS, len(words) - i), 0, -1):
            span = words[i : i + n]
            if any(masked[x[1] : y[0]] not in (" ", "-") for x, y in zip(span, span[1:])):
                continue  # the words must run on, not across a line, a link or punctuation
            key = " ".join(w for *_, w in span)
            if anchors.known(key):
                out.append((span[0][0], span[-1][1], key))
                step = n
                break
        i += step
    return out


def find_mentions(
    wiki: Wiki, vecs, ours: set[tuple[str, str]] = frozenset(), langs: list[str] | None = None
) -> tuple[list[Mention], Anchors]:
    """Every existing link (one per page and target) and the first plain mention, by each phrase, of each
    other page a page does not link yet, with the anchor dictionary they were found with."""
    anchors = anchor_dictionary(wiki, ours)
    langs = langs or [""] * len(wiki.pages)
    index = {p.rel: i for i, p in enumerate(wiki.pages)}
    mentions: list[Mention] = []
    plain: list[list[tuple[int, int, str]]] = []
    for a, page in enumerate(wiki.pages):
        linked: set[int] = set()
        for link in _links_in_prose(page):
            target = wiki.resolve(link.target)
            if target is None:
                continue
            b = index[target.rel]
            anchors.seen.setdefault(norm(link.visible), set()).add(a)
            if b != a and b not in linked:
                linked.add(b)
                is_ours = (page.rel, target.rel) in ours
                mentions.append(Mention(a, b, link.start, link.end, link.visible, True, ours=is_ours))
        found = _plain_phrases(page, anchors)
        for *_, key in found:
            anchors.seen.setdefault(key, set()).add(a)
        plain.append(found)
    for a, page in enumerate(wiki.pages):
        linked = {m.target for m in mentions if m.source == a and m.linked}
        proposed: set[tuple[int, str]] = set()  # each phrase naming a target once: the model picks the best
        for s, e, key in plain[a]:
            options = {t: n for t, n in anchors.targets(key, a).items() if t != a and same_language(langs[a], langs[t])}
            if not options:
                continue
            total = sum(options.values())
            # The link model: the target this phrase most often means, weighted by how alike the pages are.
            b = max(options, key=lambda t: (options[t] / total) * math.exp(vecs.sim(a, t) / SENSE_COSINE))
            if b in linked or (b, key) in proposed:
                continue
            proposed.add((b, key))
            mentions.append(Mention(a, b, s, e, page.text[s:e], False, choices=len(options)))
    return mentions, anchors


def mention_features(wiki: Wiki, vecs, mentions: list[Mention], anchors: Anchors) -> None:
    out: dict[int, set[int]] = {}
    into: dict[int, set[int]] = {}
    for m in mentions:
        if m.linked and not m.ours:
            out.setdefault(m.source, set()).add(m.target)
            into.setdefault(m.target, set()).add(m.source)
    n_pages = max(1, len(wiki.pages))
    for m in mentions:
        a, b = m.source, m.target
        near_a = (out.get(a, set()) | into.get(a, set())) - {a, b}
        near_b = (out.get(b, set()) | into.get(b, set())) - {a, b}
        shared = len(near_a & near_b) / math.sqrt(max(1, len(near_a)) * max(1, len(near_b)))
        key = norm(m.anchor)
        options = anchors.targets(key, a)
        commonness = options.get(b, 0.0) / max(1e-9, sum(options.values()))
        rarity = -math.log(max(1, len(anchors.seen.get(key, ()))) / n_pages)
        m.features = np.array(
            [
                anchors.link_probability(key, a),
                commonness,
                1.0 if b in anchors.names.get(key, ()) else 0.0,
                vecs.sim(a, b),
                shared,
                1.0 if a in out.get(b, set()) else 0.0,
                rarity / math.log(n_pages + 1),
                min(len(key.split()), 4) / 4,
                1.0 if m.anchor[:1].isupper() else 0.0,
            ],
            dtype=np.float64,
        )


# --------------------------------------------------------------------------- the model


@dataclass
class LinkModel:
    """Logistic regression on standardised FEATURES; `fitted_on` says what taught it."""

    weights: np.ndarray
    bias: float
    mean: np.ndarray
    scale: np.ndarray
    fitted_on: str

    def score(self, x: np.ndarray) -> np.ndarray:
        z = ((x - self.mean) / self.scale) @ self.weights + self.bias
        return 1.0 / (1.0 + np.exp(-z))


# Used until the wiki has enough links of its own to learn from (weights on standardised features).
PRIOR = LinkModel(
    weights=np.array([1.0, 0.5, 0.3, 2.0, 1.5, 0.5, 1.0, 0.3, 0.3]),
    bias=-0.5,
    mean=np.array([0.3, 0.8, 0.8, 0.35, 0.1, 0.1, 0.5, 0.4, 0.5]),
    scale=np.array([0.2, 0.2, 0.4, 0.15, 0.15, 0.3, 0.2, 0.2, 0.5]),
    fitted_on="built-in prior (fewer than 20 links or 20 plain mentions to learn from)",
)


def fit_link_model(mentions: list[Mention], steps: int = 400, l2: float = 1e-2) -> LinkModel:
    """Class-balanced logistic regression by gradient descent: the wiki's own links vs plain mentions.
    A link whose phrase no other page teaches could never be a candidate: it does not teach either."""
    pos = [m.features for m in mentions if m.linked and not m.ours and m.features[1] > 0]
    neg = [m.features for m in mentions if not m.linked]
    if len(pos) < 20 or len(neg) < 20:
        return PRIOR
    x = np.array(pos + neg)
    y = np.array([1.0] * len(pos) + [0.0] * len(neg))
    w_class = np.where(y == 1, 0.5 / len(pos), 0.5 / len(neg))
    mean, scale = x.mean(0), np.maximum(x.std(0), 1e-6)
    z = (x - mean) / scale
    w, b = np.zeros(z.shape[1]), 0.0
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-(z @ w + b)))
        g = (p - y) * w_class
        w -= 1.0 * (z.T @ g + l2 * w)
        b -= 1.0 * g.sum()
    return LinkModel(w, float(b), mean, scale, f"{len(pos)} existing links and {len(neg)} plain mentions")


# --------------------------------------------------------------------------- proposals


def merged_by_us(cfg: Config, wiki: Wiki | None = None) -> set[tuple[str, str]]:
    """(page, target) of every crosslink MothBrain merged and has not reverted: as the queue records each,
    and, in a git wiki, as its merge commits do (so a lost or pruned queue forgets none)."""

    ours = merged_links_in_git(wiki) if wiki is not None else set()
    try:
        merged = [p for p in queue.list_proposals(cfg, kind="crosslink") if p.get("merge_state") == "merged"]
    except (MothError, OSError) as exc:  # no queue yet, or unreadable: the history is all there is
        log.debug("wiki scan: no merge record (%s)", exc)
        return ours
    return ours | {(p["target"], ((p.get("patch") or {}).get("detail") or {}).get("to", "")) for p in merged}


def crosslink_proposals(
    cfg: Config, wiki: Wiki, vecs, ours: set[tuple[str, str]] | None = None
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    ours = merged_by_us(cfg, wiki) if ours is None else ours
    mentions, anchors = find_mentions(wiki, vecs, ours, page_languages(wiki))
    mention_features(wiki, vecs, mentions, anchors)
    model = fit_link_model(mentions)
    plain = [m for m in mentions if not m.linked]
    best: dict[tuple[int, int], tuple[float, Mention]] = {}  # the best-scoring phrase for each page and target
    for s, m in zip(model.score(np.array([m.features for m in plain])) if plain else [], plain):
        if (m.source, m.target) not in best or s > best[(m.source, m.target)][0]:
            best[(m.source, m.target)] = (float(s), m)
    candidates = [m for _, m in best.values()]
    scores = np.array([s for s, _ in best.values()])
    per_page: dict[int, list[tuple[float, Mention]]] = {}
    for s, m in zip(scores, candidates):
        if s >= cfg.wiki.crosslink_threshold:
            per_page.setdefault(m.source, []).append((float(s), m))
    names = link_names(wiki)
    out = []
    for found in per_page.values():
        found.sort(key=lambda t: -t[0])
        for s, m in found[: cfg.wiki.max_crosslinks_per_page]:
            out.append(_crosslink(wiki, m, s, names))
    info = {
        "link_model": model.fitted_on,
        "candidates": len(candidates),
        "merged_by_us": len(ours),
        "scores": [round(float(s), 4) for s in scores],
        "candidate_pairs": [(wiki.pages[m.source].rel, wiki.pages[m.target].rel) for m in candidates],
    }
    return out, info


def _crosslink(wiki: Wiki, m: Mention, score: float, names: dict[str, str]) -> dict[str, Any]:
    a, b = wiki.pages[m.source], wiki.pages[m.target]
    f = dict(zip(FEATURES, m.features))
    reason = (
        f"'{m.anchor}' names [[{b.title}]] but is not linked; the wiki links this phrase where it appears "
        f"{f['link_probability']:.0%} of the time"
        + (f" (to this page {f['commonness']:.0%} of the time, of {m.choices} it could mean)" if m.choices > 1 else "")
        + f"; the pages are similar (cosine {f['similarity']:.2f}), share {f['shared_neighbours']:.0%} of their "
        "link neighbours" + (", and it links back" if f["links_back"] else "")
    )
    markup = link_markup(names[b.rel], m.anchor)
    files = [file_edit(a.rel, a.sha256, [edit(m.start, m.end, m.anchor, markup)])]
    return {
        "kind": "crosslink",
        "target": a.rel,
        "source_title": a.title,
        "text": f"link '{m.anchor}' in {a.title} to {b.title}",
        "score": round(score, 4),
        "rationale": reason,
        "patch": make_patch(files, {a.rel: a.text}),
        "fingerprint": f"crosslink:{a.rel}->{b.rel}",
        "detail": {"anchor": m.anchor, "to": b.rel, "features": {k: round(float(v), 4) for k, v in f.items()}},
    }

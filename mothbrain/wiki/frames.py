"""Frame proposals: a page whose opening neither names it nor answers "what is <title>?" as well as its
other paragraphs do gets a new opening, written by the local model or extracted from the page."""

from __future__ import annotations

import logging
import re
from typing import Any

import numpy as np

from mothbrain.config import Config
from mothbrain.core import paths
from mothbrain.core.base_location import base_model_location, in_hub_cache
from mothbrain.core.neighbour import YieldController, apply_niceness
from mothbrain.data.format import voice_name
from mothbrain.errors import MothError
from mothbrain.models.generation import local_engine, render_chat, trim_at_stop
from mothbrain.models.tiny import is_built
from mothbrain.wiki.pages import SENTENCE, Page, Wiki, norm, visible_prose
from mothbrain.wiki.patches import edit, file_edit, make_patch
from mothbrain.wiki.vectors import Vectors

log = logging.getLogger(__name__)


def frame_candidates(cfg: Config, wiki: Wiki, vecs: Vectors, embedder) -> list[dict[str, Any]]:
    """Pages whose opening fails their question, best-evidenced first: (page, question, reasons)."""
    inbound: dict[str, list[str]] = {}
    for p in wiki.pages:
        for link in p.links:
            t = wiki.resolve(link.target)
            if t is not None and t.rel != p.rel:
                line_start = p.text.rfind("\n", 0, link.start) + 1
                line_end = p.text.find("\n", link.end)
                inbound.setdefault(t.rel, []).append(
                    visible_prose(p.text[line_start : None if line_end < 0 else line_end])
                )
    found = []
    pages, openings, questions, paragraphs = [], [], [], []
    for page in wiki.pages:
        start, end = page.opening()
        opening = visible_prose(page.text[start:end])
        if opening and any(names_in(n, opening) for n in page.names()):
            continue  # it names what the page is about: it frames it
        context = " ".join(inbound.get(page.rel, [])[:3])
        pages.append(page)
        openings.append(opening or page.title)
        questions.append(f"What is {page.title}? {context}".strip())
        paras = [
            visible_prose(m.group(0))
            for m in re.finditer(r"[^\n]+(?:\n(?!\s*\n)[^\n]+)*", page.text[end:])
            if not m.group(0).lstrip().startswith("#")
        ]
        paragraphs.append([p for p in paras if len(p) > 40][:8])
    if not pages:
        return []
    q = embedder.encode(questions).numpy()
    o = embedder.encode(openings).numpy()
    flat = [p for ps in paragraphs for p in ps]
    pv = embedder.encode(flat).numpy() if flat else np.zeros((0, q.shape[1]))
    k = 0
    for i, page in enumerate(pages):
        open_sim = float(q[i] @ o[i])
        para_sims = [float(q[i] @ pv[k + j]) for j in range(len(paragraphs[i]))]
        k += len(paragraphs[i])
        best = max(para_sims, default=open_sim)
        if open_sim >= cfg.wiki.frame_min_similarity and best - open_sim < 0.15:
            continue
        best_para = paragraphs[i][int(np.argmax(para_sims))] if para_sims else ""
        found.append(
            {
                "page": page,
                "question": f"What is {page.title}?",
                "opening": openings[i],
                "opening_similarity": open_sim,
                "best_paragraph": best_para,
                "best_similarity": best,
                "score": round(
                    min(1.0, max(0.0, best - open_sim) + max(0.0, cfg.wiki.frame_min_similarity - open_sim)), 4
                ),
            }
        )
    found.sort(key=lambda f: -f["score"])
    return found[: cfg.wiki.max_frames]


def _stem(word: str) -> str:
    return word[:-2] if word.endswith("es") and len(word) > 4 else word[:-1] if word.endswith("s") else word


def names_in(name: str, text: str) -> bool:
    """Whether `text` names `name`, singular or plural ("Herons" in "a heron at the weir")."""
    want = [_stem(w) for w in norm(name).split()]
    have = [_stem(w) for w in norm(text).split()]
    n = len(want)
    return bool(want) and any(have[i : i + n] == want for i in range(len(have) - n + 1))


def frame_proposals(cfg: Config, wiki: Wiki, vecs: Vectors, embedder, writer=None) -> list[dict[str, Any]]:
    found = frame_candidates(cfg, wiki, vecs, embedder)
    if not found:
        return []
    openings = (writer or _opening_writer(cfg))(found)
    out = []
    for f, (text, who) in zip(found, openings):
        page: Page = f["page"]
        start, _ = page.opening()
        nl = page.newline
        new = f"**{page.title}**: {text.strip()}{nl}{nl}"
        if start == len(page.text):  # no paragraph to go before: a paragraph of its own at the end
            new = (nl if page.text.endswith("\n") else nl + nl) + new.rstrip("\r\n") + nl
        files = [file_edit(page.rel, page.sha256, [edit(start, start, "", new)])]
        out.append(
            {
                "kind": "frame",
                "target": page.rel,
                "source_title": page.title,
                "text": f"reframe the opening of {page.title}: {text.strip()[:160]}",
                "score": f["score"],
                "rationale": (
                    f"a reader arrives asking '{f['question']}'. The opening ('{f['opening'][:120]}') does not name "
                    f"the page and answers it with similarity {f['opening_similarity']:.2f}, while a later paragraph "
                    f"answers with {f['best_similarity']:.2f}. Proposed opening written by {who}."
                ),
                "patch": make_patch(files, {page.rel: page.text}),
                "fingerprint": f"frame:{page.rel}",
                "detail": {"question": f["question"], "written_by": who},
            }
        )
    return out


def base_unready(cfg: Config) -> str:
    """Why the base model cannot be loaded as it is (it would have to be built or fetched first); "" when it
    can. A scan never builds one: on a fresh state its openings are extracted instead."""
    if cfg.model.build_tiny:
        where = paths.models_dir(cfg, create=False) / cfg.model.base
        return "" if is_built(where) else f"the tiny base {cfg.model.base!r} is not built yet ({where})"
    try:
        loc = base_model_location(cfg)
    except MothError as exc:
        return str(exc)
    if isinstance(loc, str) and not in_hub_cache(loc):
        return f"the base {loc!r} is not in the local Hugging Face cache"
    return ""


def extract_writer(found: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """Openings taken from each page's best-answering sentence (no model)."""
    out = []
    for f in found:
        sentences = [s.strip() for s in SENTENCE.findall(f["best_paragraph"]) if s.strip()]
        named = [s for s in sentences if norm(f["page"].title) in norm(s)]
        out.append(((named or sentences or [f"{f['page'].title}."])[0], "extraction from the page"))
    return out


def _opening_writer(cfg: Config):
    """Writes openings with the local model (the promoted adapter, else the base) or, when asked for
    or when the model cannot load, from the page's best-answering sentence."""

    extract = extract_writer
    if cfg.wiki.openings == "extract":
        return extract

    def model(found):
        try:
            engine = local_engine(cfg)
            engine.reload_if_changed()
        except Exception as exc:  # no model here: say so in each rationale, never fail the scan
            log.warning("wiki scan: the local model did not load (%s); openings are extracted instead", exc)
            return extract(found)

        apply_niceness(cfg.neighbour)  # the trainer's manners: nice, idle I/O ...
        ctl = YieldController(cfg.neighbour.yield_) if cfg.neighbour.yield_.enabled else None
        out = []
        for f in found:
            if ctl is not None and ctl.busy():  # ... and people first: wait while someone uses the machine
                ctl.wait_until_quiet()
            ask = (
                f"In one or two sentences, say what '{f['page'].title}' is, for someone who arrives asking "
                f"'{f['question']}'. What the page says: {f['best_paragraph'][:400]}"
            )
            prompt, stops = render_chat([{"role": "user", "content": ask}], voice_name(cfg))
            raw = engine.generate([prompt], 60, 0.7, 0.95, stops)[0]
            text = " ".join(trim_at_stop(raw, stops)[0].split())
            who = f"the local model ({engine.version or 'base'})"
            out.append((text, who) if text else extract([f])[0])
        return out

    return model

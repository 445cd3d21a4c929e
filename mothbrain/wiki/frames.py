"""Frame proposals: a page whose opening neither names it nor answers "what is <title>?" as well as its
other paragraphs do gets a new opening, written by the local model or extracted from the page.

Only plain prose answers: the paragraphs weighed and quoted are running text (no code, lists, tables,
quotes or callouts, headings), and an extracted opening is one plain sentence of them.

Each page's verdict, and the opening written for it, is kept in <state>/data/wiki/frames.json under a
key of what decides it: the page's content hash, its question (which includes the sentences that link
to it), the embedder and wiki.frame_min_similarity — and, for the opening, who writes it (the model and
adapter version, or extraction). A rescan of an unchanged wiki embeds nothing and writes nothing here.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

import numpy as np

from mothbrain.config import Config
from mothbrain.core import paths
from mothbrain.core.atomic import write_atomically
from mothbrain.core.base_location import base_model_location, in_hub_cache
from mothbrain.core.ledger import open_ledger
from mothbrain.core.neighbour import YieldController, apply_niceness
from mothbrain.data.format import voice_name
from mothbrain.errors import MothError
from mothbrain.models.generation import local_engine, render_chat, trim_at_stop
from mothbrain.models.tiny import is_built
from mothbrain.wiki.pages import (
    Page,
    Wiki,
    as_plain_prose,
    is_plain,
    norm,
    prose_paragraphs,
    sentences,
    visible_prose,
)
from mothbrain.wiki.patches import edit, file_edit, make_patch
from mothbrain.wiki.vectors import Vectors

log = logging.getLogger(__name__)


CACHE_VERSION = 2  # bumped when what decides a verdict changes: every page is judged afresh
EXTRACTED = "extraction from the page"


class FrameCache:
    """Each page's verdict (and the openings written for it) by key, from <state>/data/wiki/frames.json;
    `save` rewrites it, atomically, with this scan's keys only (so it never outgrows the wiki)."""

    def __init__(self, cfg: Config):
        self.path = paths.wiki_state_dir(cfg) / "frames.json"
        try:
            old = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):  # no cache yet, or a damaged one: judge every page
            old = {}
        self.old = old if isinstance(old, dict) else {}
        self.new: dict[str, dict] = {}
        self.changed = False

    def get(self, key: str) -> dict | None:
        entry = self.old.get(key)
        if isinstance(entry, dict) and isinstance(entry.get("openings"), dict):
            self.new[key] = entry
            return entry
        return None

    def put(self, key: str, entry: dict) -> None:
        self.new[key] = entry
        self.changed = True

    def save(self) -> None:
        if not self.changed and self.new.keys() == self.old.keys():
            return
        try:
            write_atomically(self.path, json.dumps(self.new, ensure_ascii=False))
        except OSError as exc:  # only a cache: the next scan judges the pages again
            log.warning("wiki scan: cannot keep the frame cache %s (%s)", self.path, exc)


def _key(cfg: Config, page: Page, question: str, embedder_name: str) -> str:
    what = [CACHE_VERSION, page.rel, page.sha256, question, embedder_name, cfg.wiki.frame_min_similarity]
    return hashlib.blake2b(json.dumps(what).encode(), digest_size=16).hexdigest()


def frame_candidates(cfg: Config, wiki: Wiki, vecs: Vectors, embedder, cache: FrameCache | None = None) -> list:
    """Pages whose opening fails their question, best-evidenced first: (page, question, reasons, and the
    cache entry with the openings written for it). Only pages whose key is not in `cache` are embedded."""
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
    name = getattr(embedder, "name", "") or vecs.embedder
    found = []
    pages, keys, openings, questions, paragraphs = [], [], [], [], []
    for page in wiki.pages:
        start, end = page.opening()
        opening = visible_prose(page.text[start:end])
        if opening and any(names_in(n, opening) for n in page.names()):
            continue  # it names what the page is about: it frames it
        context = " ".join(inbound.get(page.rel, [])[:3])
        question = f"What is {page.title}? {context}".strip()
        key = _key(cfg, page, question, name)
        entry = cache.get(key) if cache is not None else None
        if entry is not None:
            if entry["fails"]:
                found.append({"page": page, "key": key, "entry": entry, **entry["found"]})
            continue
        pages.append(page)
        keys.append(key)
        openings.append(opening or page.title)
        questions.append(question)
        paragraphs.append([p for p in prose_paragraphs(page.text[end:]) if len(p) > 40][:8])
    if pages:
        found += _judge(cfg, pages, keys, openings, questions, paragraphs, embedder, cache)
    found.sort(key=lambda f: -f["score"])
    return found[: cfg.wiki.max_frames]


def _judge(cfg, pages, keys, openings, questions, paragraphs, embedder, cache) -> list[dict[str, Any]]:
    q = embedder.encode(questions).numpy()
    o = embedder.encode(openings).numpy()
    flat = [p for ps in paragraphs for p in ps]
    pv = embedder.encode(flat).numpy() if flat else np.zeros((0, q.shape[1]))
    k = 0
    found = []
    for i, page in enumerate(pages):
        open_sim = float(q[i] @ o[i])
        para_sims = [float(q[i] @ pv[k + j]) for j in range(len(paragraphs[i]))]
        k += len(paragraphs[i])
        best = max(para_sims, default=open_sim)
        entry: dict[str, Any] = {"fails": False, "openings": {}}
        if open_sim < cfg.wiki.frame_min_similarity or best - open_sim >= 0.15:
            gain = max(0.0, best - open_sim) + max(0.0, cfg.wiki.frame_min_similarity - open_sim)
            entry["fails"] = True
            entry["found"] = {
                "question": f"What is {page.title}?",
                "opening": openings[i],
                "opening_similarity": open_sim,
                "best_paragraph": paragraphs[i][int(np.argmax(para_sims))] if para_sims else "",
                "best_similarity": best,
                "score": round(min(1.0, gain), 4),
            }
            found.append({"page": page, "key": keys[i], "entry": entry, **entry["found"]})
        if cache is not None:
            cache.put(keys[i], entry)
    return found


def _stem(word: str) -> str:
    return word[:-2] if word.endswith("es") and len(word) > 4 else word[:-1] if word.endswith("s") else word


def names_in(name: str, text: str) -> bool:
    """Whether `text` names `name`, singular or plural ("Herons" in "a heron at the weir")."""
    want = [_stem(w) for w in norm(name).split()]
    have = [_stem(w) for w in norm(text).split()]
    n = len(want)
    return bool(want) and any(have[i : i + n] == want for i in range(len(have) - n + 1))


def writer_id(cfg: Config, writer=None) -> str:
    """Who writes the openings, as the frame cache keys them: a new adapter writes them afresh."""
    if writer is extract_writer or (writer is None and cfg.wiki.openings == "extract"):
        return "extract"
    if writer is None:
        try:
            adapter = open_ledger(cfg).current() or "base"
        except (MothError, OSError):
            adapter = "unknown"
        return f"model:{cfg.model.base}:{adapter}"
    return f"custom:{getattr(writer, '__module__', '')}.{getattr(writer, '__qualname__', type(writer).__name__)}"


def frame_proposals(cfg: Config, wiki: Wiki, vecs: Vectors, embedder, writer=None) -> list[dict[str, Any]]:
    cache = FrameCache(cfg)
    found = frame_candidates(cfg, wiki, vecs, embedder, cache)
    who_writes = writer_id(cfg, writer)
    todo = [f for f in found if who_writes not in f["entry"]["openings"]]
    if todo:
        for f, (text, who) in zip(todo, (writer or _opening_writer(cfg))(todo)):
            f["written"] = (text, who)
            if who_writes == "extract" or who != EXTRACTED:  # a model that did not load: ask it again next scan
                f["entry"]["openings"][who_writes] = [text, who]
                cache.put(f["key"], f["entry"])
    cache.save()
    openings = [f.get("written") or tuple(f["entry"]["openings"][who_writes]) for f in found]
    out = []
    for f, (text, who) in zip(found, openings):
        if not text.strip():
            continue  # no plain sentence to open with: better no proposal than a broken opening
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
    """Openings taken from each page's best-answering paragraph (no model): its first plain sentence that
    names the page, else its first plain sentence; "" when it has none."""
    out = []
    for f in found:
        plain = [s for s in sentences(f["best_paragraph"]) if is_plain(s)]
        named = [s for s in plain if norm(f["page"].title) in norm(s)]
        out.append(((named or plain or [""])[0], EXTRACTED))
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
            text = as_plain_prose(trim_at_stop(raw, stops)[0])  # a model may answer in markdown: plain prose only
            who = f"the local model ({engine.version or 'base'})"
            out.append((text, who) if text else extract([f])[0])
        return out

    return model

"""`mothbrain wiki scan`: read the wiki, find what would make it better, stage typed proposals.

Four kinds, each with a patch against the page's content hash (mothbrain.wiki.patches), a rationale, a
score and its provenance (model, adapter version, embedder, time):

crosslink  page A mentions, in plain prose, a phrase the wiki uses for page B (its title, an alias, its
           file name, or the words of any link to it) but does not link it. Wikipedia's "add a link"
           recipe, in mothbrain.wiki.crosslinks: the wiki's own links teach which phrases to link, how
           often (link probability) and to which page when a phrase names several.
split      a page whose ## sections fall into two groups (at least two sections each) that are far apart:
           sections within a group at least wiki.split_min_gap more alike (mean cosine) than sections
           across. The group without the first section moves to a new page; each page links the other.
frame      a page whose opening paragraph neither names the page nor answers "what is <title>?" as
           well as the page's other paragraphs do (the question comes from the title and from the
           sentences in which other pages link to it); a new opening is proposed, written by the local
           model (wiki.openings: model) or taken from the page's best-answering sentence (extract).
staleness  a page states something recent material says has changed ("we switched from X to Y",
           "replaced X with Y", "we no longer use X", "X is deprecated"), where the page names X but
           not Y and was last changed before that was said; the evidence is quoted and dated in a note
           added under the statement.

Nothing here writes the wiki: proposals go to the staging queue (the same one as dreams), and only
`mothbrain wiki merge` applies accepted ones. A proposal already waiting, accepted or rejected is not
staged again (its fingerprint); a stale one may be.
"""

from __future__ import annotations

import datetime as _dt
import logging
import math
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mothbrain import __version__
from mothbrain.config import Config
from mothbrain.core import paths
from mothbrain.core.atomic import write_atomically
from mothbrain.core.clock import now_iso
from mothbrain.core.ledger import open_ledger
from mothbrain.core.neighbour import YieldController, apply_niceness
from mothbrain.data.format import voice_name
from mothbrain.errors import MothError, NothingToDo
from mothbrain.models.embeddings import load_embedder
from mothbrain.models.generation import local_engine, render_chat, trim_at_stop
from mothbrain.proposals import queue
from mothbrain.store.documents import iter_documents
from mothbrain.wiki.crosslinks import crosslink_proposals
from mothbrain.wiki.pages import Page, Wiki, _visible, masked_prose, norm, read_wiki
from mothbrain.wiki.patches import edit, file_create, file_edit, make_patch

log = logging.getLogger(__name__)

EMBED_CHARS = 400  # of each section's prose embedded (about 100 words: its start says what it is about)


# --------------------------------------------------------------------------- the wiki and its vectors


def wiki_root(cfg: Config) -> Path:
    """wiki.path, else the first configured source of kind wiki."""
    if cfg.wiki.path:
        root = cfg.resolve_path(cfg.wiki.path)
        where = "wiki.path"
    else:
        src = next((s for s in cfg.sources if s.kind == "wiki"), None)
        if src is None:
            raise NothingToDo("no wiki to maintain: set wiki.path or add a source of kind wiki")
        root, where = cfg.resolve_path(src.path), f"source {src.name!r}"
    if not root.is_dir():
        raise MothError(f"the wiki folder {root} ({where}) does not exist or is not a folder; fix {where}")
    return root


@dataclass
class Vectors:
    """Unit vectors: one per section (in page order) and one per page (the sections' length-weighted mean)."""

    page: np.ndarray
    sections: list[np.ndarray]
    embedder: str

    def sim(self, a: int, b: int) -> float:
        return float(self.page[a] @ self.page[b])


def embed_wiki(cfg: Config, wiki: Wiki, embedder=None) -> Vectors:

    embedder = embedder or load_embedder(cfg)
    texts, owners, weights = [], [], []
    for i, p in enumerate(wiki.pages):
        for s in p.sections:
            body = _prose(s.body(p.text))
            text = (f"{s.heading}. " if s.heading else f"{p.title}. ") + body
            texts.append(text[:EMBED_CHARS])
            owners.append(i)
            weights.append(max(1, len(body)))
    vecs = _cached_encode(cfg, embedder, texts)
    dim = vecs.shape[1] if len(vecs) else 1
    page = np.zeros((len(wiki.pages), dim), dtype=np.float32)
    sections: list[list[np.ndarray]] = [[] for _ in wiki.pages]
    for v, i, w in zip(vecs, owners, weights):
        page[i] += v * math.log1p(w)
        sections[i].append(v)
    page /= np.maximum(np.linalg.norm(page, axis=1, keepdims=True), 1e-9)
    return Vectors(page=page, sections=[np.array(s) for s in sections], embedder=embedder.name)


def _cached_encode(cfg: Config, embedder, texts: list[str]) -> np.ndarray:
    """Embeddings of `texts`, computing only those not in <state>/data/wiki/embeddings.npz (a nightly scan
    re-embeds just the sections that changed); the cache is rewritten with this scan's texts only."""
    import hashlib

    path = paths.wiki_state_dir(cfg) / "embeddings.npz"
    keys = [hashlib.blake2b(f"{embedder.name}\0{t}".encode(), digest_size=12).hexdigest() for t in texts]
    known: dict[str, np.ndarray] = {}
    try:
        with np.load(path) as cached:
            known = dict(zip(cached["keys"].tolist(), cached["vectors"]))
    except (OSError, ValueError, KeyError):
        pass  # no cache yet, or a damaged one: embed everything
    missing = sorted({k: t for k, t in zip(keys, texts) if k not in known}.items())
    if missing:
        fresh = embedder.encode([t for _, t in missing]).numpy()
        known.update({k: v for (k, _), v in zip(missing, fresh)})
    if not keys:
        return np.zeros((0, 1), dtype=np.float32)
    vectors = np.stack([known[k] for k in keys]).astype(np.float32)
    if missing:
        import io

        buf = io.BytesIO()
        unique = dict(zip(keys, vectors))
        np.savez(buf, keys=np.array(list(unique)), vectors=np.stack(list(unique.values())))
        try:
            write_atomically(path, buf.getvalue())
        except OSError as exc:  # only a cache: the next scan embeds again
            log.warning("wiki scan: cannot keep the embedding cache %s (%s)", path, exc)
    return vectors


def _prose(text: str) -> str:

    return " ".join(_visible(text)[0].split())


# --------------------------------------------------------------------------- splits

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
            if s.heading and len(_prose(s.body(page.text))) >= MIN_SECTION_CHARS
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


# --------------------------------------------------------------------------- frames

SENTENCE = re.compile(r"[^.!?\n]+[.!?]?")
BLANK_LINE = re.compile(r"\r?\n[ \t]*\r?\n")


def frame_candidates(cfg: Config, wiki: Wiki, vecs: Vectors, embedder) -> list[dict[str, Any]]:
    """Pages whose opening fails their question, best-evidenced first: (page, question, reasons)."""
    inbound: dict[str, list[str]] = {}
    for p in wiki.pages:
        for link in p.links:
            t = wiki.resolve(link.target)
            if t is not None and t.rel != p.rel:
                line_start = p.text.rfind("\n", 0, link.start) + 1
                line_end = p.text.find("\n", link.end)
                inbound.setdefault(t.rel, []).append(_prose(p.text[line_start : None if line_end < 0 else line_end]))
    found = []
    pages, openings, questions, paragraphs = [], [], [], []
    for page in wiki.pages:
        start, end = page.opening()
        opening = _prose(page.text[start:end])
        if opening and any(names_in(n, opening) for n in page.names()):
            continue  # it names what the page is about: it frames it
        context = " ".join(inbound.get(page.rel, [])[:3])
        pages.append(page)
        openings.append(opening or page.title)
        questions.append(f"What is {page.title}? {context}".strip())
        paras = [
            _prose(m.group(0))
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


def _opening_writer(cfg: Config):
    """Writes openings with the local model (the promoted adapter, else the base) or, when asked for
    or when the model cannot load, from the page's best-answering sentence."""

    def extract(found):
        out = []
        for f in found:
            sentences = [s.strip() for s in SENTENCE.findall(f["best_paragraph"]) if s.strip()]
            named = [s for s in sentences if norm(f["page"].title) in norm(s)]
            out.append(((named or sentences or [f"{f['page'].title}."])[0], "extraction from the page"))
        return out

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


# --------------------------------------------------------------------------- staleness

# A name: one word, or up to three when the later ones are capitalised ("Google Cloud Run"); case-sensitive
# inside the otherwise case-blind patterns, so "Ansible last week" is "Ansible".
TERM = r"(?:the |our |a |an )?([A-Za-z][\w.+#-]*(?: (?-i:[A-Z])[\w.+#-]*){0,2})"
CHANGES = [
    re.compile(rf"\b(?:switched|moved|migrated|changed|went) (?:over )?from {TERM} to {TERM}", re.I),
    re.compile(rf"\breplaced {TERM} with {TERM}", re.I),
    re.compile(rf"\b(?:no longer|stopped|don't|do not|never) (?:use|using|run|running|rely on) {TERM}", re.I),
    re.compile(rf"\b{TERM} (?:is|was|has been) (?:deprecated|retired|gone|dead|obsolete|abandoned)", re.I),
]
STOPWORDS = set("it this that them those these there here we i you they he she one all any some".split())


@dataclass
class Change:
    old: str
    new: str
    quote: str
    when: float
    source: str  # document id


def recent_changes(cfg: Config) -> list[Change]:
    """ "X changed to Y" statements in the ingested non-wiki material of the last wiki.staleness_days."""

    out = []
    for doc in iter_documents(cfg, since_days=cfg.wiki.staleness_days):
        if doc.kind == "wiki":
            continue
        when = doc.timestamp or doc.meta.get("file_mtime") or time.time()
        for sentence in SENTENCE.findall(doc.plain_text()):
            for pattern in CHANGES:
                m = pattern.search(sentence)
                if not m:
                    continue
                old = m.group(1).strip()
                new = m.group(2).strip() if m.lastindex and m.lastindex >= 2 else ""
                if old.lower() in STOPWORDS or len(old) < 3:
                    continue
                out.append(
                    Change(old=old, new=new, quote=" ".join(sentence.split()), when=float(when), source=doc.doc_id)
                )
                break
    return out


def staleness_proposals(cfg: Config, wiki: Wiki, changes: list[Change] | None = None) -> list[dict[str, Any]]:
    """Pages that still state what recent material says has changed; one pass over each page for all the
    changed names at once (one regex), so the time grows with pages + changes, not their product."""
    changes = recent_changes(cfg) if changes is None else changes
    by_name: dict[str, list[Change]] = {}
    for ch in sorted(changes, key=lambda c: -c.when):  # the newest evidence first
        by_name.setdefault(ch.old.lower(), []).append(ch)
    if not by_name:
        return []
    names = re.compile(r"\b(" + "|".join(re.escape(n) for n in sorted(by_name, key=len, reverse=True)) + r")\b", re.I)
    out = []
    for page in wiki.pages:
        masked = masked_prose(page)
        page_time = page.updated or page.mtime
        flagged: set[str] = set()
        for m in names.finditer(masked):
            said = m.group(1)
            for ch in by_name[said.lower()] if said.lower() not in flagged else []:
                if ch.when <= page_time:
                    continue  # the page was changed after this was said
                if ch.old[:1].isupper() and said != ch.old:
                    continue  # "from Fabric to Ansible" names a tool: "fabric" on a page is another word
                if ch.new and re.search(rf"\b{re.escape(ch.new)}\b", page.text, re.I):
                    continue  # the page already knows the new way
                start = max(masked.rfind(c, 0, m.start()) for c in ".!?\n") + 1
                ends = [e for e in (masked.find(c, m.end()) for c in ".!?\n") if e >= 0]
                end = min(ends) + 1 if ends else len(masked)
                blank = BLANK_LINE.search(page.text, m.end())
                para_end = blank.start() if blank else -1
                flagged.add(said.lower())
                out.append(
                    _staleness(page, page.text[start:end].strip(), ch, len(page.text) if para_end < 0 else para_end)
                )
                break
    return out


def _staleness(page: Page, statement: str, ch: Change, at: int) -> dict[str, Any]:
    day = _dt.datetime.fromtimestamp(ch.when, _dt.timezone.utc).date().isoformat()
    nl = page.newline
    note = f'{nl}{nl}> [!warning] Possibly outdated: on {day}, {ch.source} said: "{ch.quote}"'
    files = [file_edit(page.rel, page.sha256, [edit(at, at, "", note)])]
    return {
        "kind": "staleness",
        "target": page.rel,
        "source_title": page.title,
        "text": f'{page.title} may be outdated about {ch.old}: "{statement[:120]}"',
        "score": 0.9 if ch.new else 0.7,
        "rationale": (
            f'the page says "{statement[:200]}", but on {day} {ch.source} said "{ch.quote[:200]}"'
            + (f" and the page never mentions {ch.new}" if ch.new else "")
            + "; the page was last changed before that."
        ),
        "patch": make_patch(files, {page.rel: page.text}),
        "fingerprint": f"staleness:{page.rel}:{ch.old.lower()}:{ch.source}",
        "detail": {
            "old": ch.old,
            "new": ch.new,
            "evidence": ch.quote,
            "evidence_date": day,
            "evidence_source": ch.source,
        },
    }


# --------------------------------------------------------------------------- the stage


@dataclass
class ScanReport:
    wiki: str
    pages: int
    found: dict[str, int]
    staged: dict[str, int]
    already: int
    seconds: dict[str, float]
    link_model: str
    embedder: str
    warnings: list[str]  # unreadable pages, a check that could not run
    title: str = "wiki scan"

    def rows(self) -> list[dict[str, Any]]:
        return [
            {
                "kind": k,
                "found": self.found.get(k, 0),
                "staged": self.staged.get(k, 0),
                "seconds": self.seconds.get(k, 0.0),
            }
            for k in ("crosslink", "split", "frame", "staleness")
        ]

    def to_json(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


def scan(cfg: Config, wiki: Wiki, embedder=None, writer=None, changes=None) -> tuple[list[dict[str, Any]], dict]:
    """Every proposal the wiki calls for (not staged), and timings; the pure part of the stage."""

    embedder = embedder or load_embedder(cfg)
    skipped: list[str] = [embedder.warning] if getattr(embedder, "warning", "") else []
    if changes is None:
        try:
            changes = recent_changes(cfg)
        except MothError as exc:  # nothing ingested yet: no evidence, so no staleness, and the report says why
            skipped.append(f"no staleness check: {exc}")
            changes = []
    seconds: dict[str, float] = {}
    t = time.perf_counter()
    vecs = embed_wiki(cfg, wiki, embedder)
    seconds["embed"] = round(time.perf_counter() - t, 2)
    found: list[dict[str, Any]] = []
    info: dict[str, Any] = {"embedder": vecs.embedder, "skipped": skipped}
    for kind, fn in (
        ("crosslink", lambda: crosslink_proposals(cfg, wiki, vecs)),
        ("split", lambda: split_proposals(cfg, wiki, vecs)),
        ("frame", lambda: frame_proposals(cfg, wiki, vecs, embedder, writer)),
        ("staleness", lambda: staleness_proposals(cfg, wiki, changes)),
    ):
        t = time.perf_counter()
        got = fn()
        if kind == "crosslink":
            got, info["crosslink"] = got
        found.extend(got)
        seconds[kind] = round(time.perf_counter() - t, 2)
    info["seconds"] = seconds
    return found, info


def provenance(cfg: Config, embedder_name: str) -> dict[str, Any]:

    try:
        adapter = open_ledger(cfg).current() or ""
    except (MothError, OSError):  # a damaged ledger must not stop a scan; the proposal says it did not know
        adapter = "unknown"
    return {
        "model": cfg.model.base,
        "adapter_version": adapter,
        "embedder": embedder_name,
        "scanned_at": now_iso(),
        "mothbrain": __version__,
    }


def run_scan(cfg: Config) -> ScanReport:

    root = wiki_root(cfg)
    wiki = read_wiki(root)
    if not wiki.pages:
        raise NothingToDo(f"the wiki {root} has no markdown pages")
    found, info = scan(cfg, wiki)
    prov = provenance(cfg, info["embedder"])
    live = queue.live_fingerprints(cfg)
    fresh = [p for p in found if p["fingerprint"] not in live]
    for p in fresh:
        p["provenance"] = prov
        p["adapter_version"] = prov["adapter_version"]
        p["style"] = p["kind"]
        p["source"] = p["target"]
        p["patch"]["detail"] = p.pop("detail")
    queue.add_proposals(cfg, fresh)
    count = lambda items: {
        k: sum(1 for p in items if p["kind"] == k) for k in ("crosslink", "split", "frame", "staleness")
    }
    return ScanReport(
        wiki=str(root),
        pages=len(wiki.pages),
        found=count(found),
        staged=count(fresh),
        already=len(found) - len(fresh),
        seconds=info["seconds"],
        link_model=info.get("crosslink", {}).get("link_model", ""),
        embedder=info["embedder"],
        warnings=wiki.problems + info["skipped"],
    )

"""`mothbrain wiki scan`: read the wiki, find what would make it better, stage typed proposals.

Four kinds, each with a patch against the page's content hash (mothbrain.wiki.patches), a rationale, a
score and its provenance (model, adapter version, embedder, time):

crosslink  page A mentions, in plain prose, a phrase the wiki uses for page B (its title, an alias, its
           file name, or the words of any link to it) but does not link it. Wikipedia's "add a link"
           recipe, in mothbrain.wiki.crosslinks: the wiki's own links teach which phrases to link, how
           often (link probability) and to which page when a phrase names several.
split      a page whose ## sections fall into two far-apart groups: sections within a group at least
           wiki.split_min_gap more alike (mean cosine) than across, and the moving ones sharing few of
           the page's distinctive words; one section alone may go, held to wiki.split_single_gap.
           The group without the first section moves to a new page; each page links the other.
frame      a page whose opening paragraph neither names the page nor answers "what is <title>?" as
           well as the page's other paragraphs do (the question comes from the title and from the
           sentences in which other pages link to it); a new opening is proposed, written by the local
           model (wiki.openings: model) or taken from the page's best-answering sentence (extract).
staleness  a page states something recent material says has changed ("we switched from X to Y",
           "X were replaced with Y", "no longer X", ... in mothbrain.wiki.stale_meaning: the page
           sentence nearest in meaning), where the page names X but not Y and was last changed before
           that was said; the evidence is quoted and dated in a note added under the statement.

Nothing here writes the wiki: proposals go to the staging queue (the same one as dreams), each kind's
as soon as that kind is done (a scan killed in a later kind keeps what the earlier ones found), and only
`mothbrain wiki merge` applies accepted ones. A proposal already waiting, accepted or rejected is not
staged again (its fingerprint); a stale one may be. A scan never builds or loads a base model that is not
ready: on a fresh state, frame openings are extracted and the report says so.

Each kind has its own module (crosslinks, splits, frames, staleness), and the section and page vectors
they share are in mothbrain.wiki.vectors; this one drives a scan, stages what it found and reports.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mothbrain import __version__
from mothbrain.config import Config
from mothbrain.core.clock import now_iso
from mothbrain.core.ledger import open_ledger
from mothbrain.errors import MothError, NothingToDo
from mothbrain.models.embeddings import load_embedder
from mothbrain.proposals import queue
from mothbrain.wiki.crosslinks import crosslink_proposals
from mothbrain.wiki.frames import base_unready, extract_writer, frame_proposals
from mothbrain.wiki.pages import Wiki, read_wiki
from mothbrain.wiki.splits import split_proposals
from mothbrain.wiki.staleness import recent_changes, staleness_proposals
from mothbrain.wiki.vectors import embed_wiki


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


def scan(
    cfg: Config, wiki: Wiki, embedder=None, writer=None, changes=None, on_kind=None
) -> tuple[list[dict[str, Any]], dict]:
    """Every proposal the wiki calls for, and timings; the pure part of the stage. `on_kind(kind, found)`
    is called as each kind finishes (run_scan stages them then, so a scan cut off keeps what it found)."""

    embedder = embedder or load_embedder(cfg)
    skipped: list[str] = [embedder.warning] if getattr(embedder, "warning", "") else []
    if changes is None:
        try:
            changes = recent_changes(cfg)
        except MothError as exc:  # nothing ingested yet: no evidence, so no staleness, and the report says why
            skipped.append(f"no staleness check: {exc}")
            changes = []
    if writer is None and cfg.wiki.openings == "model":
        why = base_unready(cfg)
        if why:  # a scan never builds or fetches a model: that is training's (or `models prepare`'s) job
            writer = extract_writer
            skipped.append(f"frame openings extracted (wiki.openings: extract), not written by the model: {why}")
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
        ("staleness", lambda: staleness_proposals(cfg, wiki, changes, embedder)),
    ):
        t = time.perf_counter()
        got = fn()
        if kind == "crosslink":
            got, info["crosslink"] = got
        found.extend(got)
        seconds[kind] = round(time.perf_counter() - t, 2)
        if on_kind is not None:
            on_kind(kind, got)
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
    embedder = load_embedder(cfg)
    prov = provenance(cfg, embedder.name)
    live = queue.live_fingerprints(cfg)
    fresh: list[dict[str, Any]] = []

    def stage(kind: str, got: list[dict[str, Any]]) -> None:
        new = [p for p in got if p["fingerprint"] not in live]
        for p in new:
            p["provenance"] = prov
            p["adapter_version"] = prov["adapter_version"]
            p["style"] = p["kind"]
            p["source"] = p["target"]
            p["patch"]["detail"] = p.pop("detail")
        if new:
            queue.add_proposals(cfg, new)  # now, not at the end: a scan killed later keeps these
        live.update(p["fingerprint"] for p in new)
        fresh.extend(new)

    found, info = scan(cfg, wiki, embedder, on_kind=stage)
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

"""The staleness measurement sets, fixed before the rule was tuned; bench/bench_staleness.py measures them.

written  tests/fixtures/staleness/cases.jsonl: 48 (page sentence, recent statement, stale?) cases, 24
         true contradictions in varied phrasings and 24 near-misses (same topic and no change; a change
         about something else; habitual "these days" remarks; episodic "instead of"; a page that already
         says the new way). Each is measured alone: a one-page wiki dated before the statement.
demo     lived text with nothing planted: the bundled sample wiki (data/sample/wiki) against the sample
         corpus's recent documents (configs/demo-tiny.yaml, ingested into a scratch state). Every
         proposal here is a false alarm unless shown otherwise case by case.
foam     a real public vault: foambubble/foam's docs/ as of 2024-03-10 (commit e4f62591) are the wiki,
         and the sentences its docs gained by the newest stored commit are the recent statements (the
         same authors, later). Needs the repository's git directory (the `fetch` tool's mirror) in
         $FOAM_GIT; skipped without it.

Halves: within each set (and, for the written cases, within each class) items are ordered by a seeded
hash of their id (case id, page path) and alternate tuning / held-out — fixed, never re-drawn.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CASES = REPO / "tests" / "fixtures" / "staleness" / "cases.jsonl"
SALT = "staleness-half-v1"
FOAM_OLD = "e4f62591"


def _rank(key: str) -> bytes:
    return hashlib.blake2b(f"{SALT}:{key}".encode(), digest_size=8).digest()


def halves(keys: list[str]) -> dict[str, str]:
    """key → 'tune' | 'held': ordered by the seeded hash, alternating."""
    return {k: ("tune", "held")[i % 2] for i, k in enumerate(sorted(keys, key=_rank))}


def written_cases(half: str | None = None) -> list[dict]:
    rows = [json.loads(line) for line in CASES.read_text(encoding="utf-8").splitlines() if line.strip()]
    which: dict[str, str] = {}
    for stale in (True, False):  # stratified: each half gets half of each class
        which.update(halves([r["id"] for r in rows if r["stale"] is stale]))
    for r in rows:
        r["half"] = which[r["id"]]
    return [r for r in rows if half in (None, r["half"])]


@dataclass
class Lived:
    """A lived-text set: a wiki folder, the recent statements as (text, when, source), page → half."""

    name: str
    wiki: Path
    texts: list[tuple[str, float, str]]
    half: dict[str, str]


def demo_set(scratch: Path) -> Lived:
    """The sample wiki and the sample corpus's recent documents (ingested into `scratch`)."""
    from mothbrain.config import REPO_ROOT, load_config
    from mothbrain.ingest.stage import run_ingest
    from mothbrain.store.documents import iter_documents
    from mothbrain.wiki.pages import read_wiki

    wiki = REPO_ROOT / "data" / "sample" / "wiki"
    cfg = load_config(REPO_ROOT / "configs" / "demo-tiny.yaml", [f"state_dir={scratch}", f"wiki.path={wiki}"])
    run_ingest(cfg)
    texts = []
    for doc in iter_documents(cfg, since_days=cfg.wiki.staleness_days):
        if doc.kind != "wiki":
            texts.append((doc.plain_text(), float(doc.timestamp or doc.meta.get("file_mtime") or 0), doc.doc_id))
    pages = [p.rel for p in read_wiki(wiki).pages]
    return Lived("demo", wiki, texts, halves(pages))


def foam_set(scratch: Path, git_dir: str | None = None) -> Lived | None:
    """foam's docs of 2024-03-10 as the wiki; the sentences its docs gained since, dated at the newest commit."""
    from mothbrain.wiki.pages import SENTENCE, read_wiki

    git_dir = git_dir or os.environ.get("FOAM_GIT", "")
    if not git_dir or not Path(git_dir).is_dir():
        return None

    def git(*args: str) -> str:
        return subprocess.run(["git", f"--git-dir={git_dir}", *args], capture_output=True, check=True).stdout.decode(
            "utf-8", "replace"
        )

    def docs(commit: str) -> dict[str, str]:
        names = [n for n in git("ls-tree", "-r", "--name-only", commit, "docs").splitlines() if n.endswith(".md")]
        return {n: git("show", f"{commit}:{n}") for n in names}

    old, new = docs(FOAM_OLD), docs("HEAD")
    old_when = float(git("log", "-1", "--format=%ct", FOAM_OLD).strip())
    new_when = float(git("log", "-1", "--format=%ct", "HEAD").strip())
    root = scratch / "foam-wiki"
    for name, text in old.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        os.utime(path, (old_when, old_when))  # the page as last changed on that day
    seen = {" ".join(s.split()) for text in old.values() for s in SENTENCE.findall(text)}
    texts = []
    for name, text in sorted(new.items()):
        fresh = [" ".join(s.split()) for s in SENTENCE.findall(text)]
        fresh = [s for s in fresh if s and s not in seen]
        if fresh:
            texts.append((".\n".join(s.rstrip(".") for s in fresh) + ".", new_when, f"foam@HEAD:{name}"))
    pages = [p.rel for p in read_wiki(root).pages]
    return Lived("foam", root, texts, halves(pages))

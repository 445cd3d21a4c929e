"""MothBrain's own crosslinks, read back from a git wiki's history, so they never teach the link model even
when the proposals queue that recorded them is lost or pruned.

`wiki merge` commits each proposal alone, its message "mothbrain wiki: proposal <id> (<kind>): ..." with
the trailer `MothBrain-Proposal: <id>`; `wiki revert` commits "mothbrain wiki: revert proposal <id>".
Every crosslink commit so identified and not reverted is read back as its patch: the links its added
lines hold that its removed lines did not are the links MothBrain made, resolved against the wiki as it
is now. One `git log` for the whole history.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path

from mothbrain.sources.wiki import WIKILINK
from mothbrain.wiki.pages import Wiki

log = logging.getLogger(__name__)

TRAILER = "MothBrain-Proposal"
MERGED = re.compile(r"^mothbrain wiki: proposal (\d+) \((\w+)\)")
REVERTED = re.compile(r"^mothbrain wiki: revert proposal (\d+)")
TIMEOUT_S = 60  # one `git log` of the merge commits; a wiki whose history takes longer is read without it


def _git(cwd: Path, *args: str) -> str | None:
    try:
        r = subprocess.run(
            ["git", "-c", "core.quotePath=false", "-C", str(cwd), *args],
            capture_output=True,
            text=True,
            encoding="utf-8",
            errors="replace",
            timeout=TIMEOUT_S,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning("wiki scan: cannot read the wiki's git history (%s)", exc)
        return None
    return r.stdout if r.returncode == 0 else None


def merged_links_in_git(wiki: Wiki) -> set[tuple[str, str]]:
    """(page, target) of every crosslink a MothBrain merge commit added and no revert took back; empty
    when the wiki is not in a git repository (or git is missing)."""
    if shutil.which("git") is None:
        return set()
    top = _git(wiki.root, "rev-parse", "--show-toplevel")
    prefix = _git(wiki.root, "rev-parse", "--show-prefix")
    if not top or prefix is None:
        return set()
    out = _git(
        Path(top.strip()),
        "log",
        f"--grep=^{TRAILER}: ",
        "--grep=^mothbrain wiki: revert proposal ",
        "-p",
        "-U0",
        "--no-color",
        "--no-renames",
        "--format=%x1e%H%x1f%B%x1f",
    )
    if not out:
        return set()
    prefix = prefix.strip()
    reverted: set[str] = set()
    added: dict[str, list[tuple[str, str]]] = {}  # proposal id → (page, target as written)
    for chunk in out.split("\x1e")[1:]:
        try:
            _commit, body, patch = chunk.split("\x1f", 2)
        except ValueError:
            continue
        subject = body.strip().splitlines()[0] if body.strip() else ""
        if m := REVERTED.match(subject):
            reverted.add(m[1])
            continue
        m = MERGED.match(subject)
        if not m or m[2] != "crosslink" or f"{TRAILER}: {m[1]}" not in body:
            continue
        added[m[1]] = _links_added(patch, prefix)
    pairs = set()
    for pid, links in added.items():
        if pid in reverted:
            continue
        for page, target in links:
            resolved = wiki.resolve(target)
            if resolved is not None:
                pairs.add((page, resolved.rel))
    return pairs


def _links_added(patch: str, prefix: str) -> list[tuple[str, str]]:
    """(page inside the wiki, link target) for each link the patch's added lines hold beyond its removed ones."""
    found: list[tuple[str, str]] = []
    page, plus, minus = None, Counter(), Counter()

    def flush() -> None:
        if page is not None:
            found.extend((page, t) for t in (plus - minus).elements())

    for line in patch.splitlines():
        if line.startswith("diff --git "):
            flush()
            page, plus, minus = None, Counter(), Counter()
        elif line.startswith("+++ "):
            path = line[4:].strip()
            path = path[2:] if path.startswith("b/") else path
            page = path[len(prefix) :] if path != "/dev/null" and path.startswith(prefix) else None
        elif line.startswith("+") and not line.startswith("+++"):
            plus.update(_targets(line[1:]))
        elif line.startswith("-") and not line.startswith("---"):
            minus.update(_targets(line[1:]))
    flush()
    return found


def _targets(text: str) -> list[str]:
    return [(m[2] or "").strip() for m in WIKILINK.finditer(text) if not m[1] and (m[2] or "").strip()]

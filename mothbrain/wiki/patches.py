"""Machine-applicable patches: structured edits against a page's content hash, plus a unified diff for people.

A patch is JSON:

    {"files": [{"path": "Garden.md", "sha256": "<hash of the page the scan read>",
                "edits": [{"start": 120, "end": 127, "old": "compost", "new": "[[Compost|compost]]"}]},
               {"path": "Fig Care.md", "sha256": null, "content": "# Fig Care\n..."}],   # a new page
     "diff": "--- a/Garden.md\n+++ b/Garden.md\n@@ ..."}

Offsets are characters of the page's UTF-8 text. `apply_edits` checks every `old` is still where the
scan saw it; the merge checks the whole file's hash first, so a page edited since the scan is never
patched — its proposal is marked stale instead.
"""

from __future__ import annotations

import difflib
from typing import Any


class PatchConflict(ValueError):
    """The text is not what the patch was made against."""


def edit(start: int, end: int, old: str, new: str) -> dict[str, Any]:
    return {"start": start, "end": end, "old": old, "new": new}


def apply_edits(text: str, edits: list[dict[str, Any]]) -> str:
    """The text with the edits applied (from the end backwards, so offsets stay valid)."""
    out = text
    last = len(text) + 1
    for e in sorted(edits, key=lambda e: (e["start"], e["end"]), reverse=True):
        s, t = int(e["start"]), int(e["end"])
        if not 0 <= s <= t <= len(text) or t > last:
            raise PatchConflict(f"edit {s}..{t} is outside the page or overlaps another")
        if out[s:t] != e["old"]:
            raise PatchConflict(f"the text at {s}..{t} is no longer {e['old'][:40]!r}")
        out = out[:s] + e["new"] + out[t:]
        last = s
    return out


def file_edit(rel: str, digest: str, edits: list[dict[str, Any]]) -> dict[str, Any]:
    return {"path": rel, "sha256": digest, "edits": edits}


def file_create(rel: str, content: str) -> dict[str, Any]:
    return {"path": rel, "sha256": None, "content": content}


def new_text(entry: dict[str, Any], current: str | None) -> str:
    """What one file entry makes of the file's current text (None: the file does not exist)."""
    if entry.get("sha256") is None:
        if current is not None:
            raise PatchConflict(f"{entry['path']} exists now; the scan proposed creating it")
        return entry["content"]
    if current is None:
        raise PatchConflict(f"{entry['path']} no longer exists")
    return apply_edits(current, entry["edits"])


def unified_diff(files: list[dict[str, Any]], texts: dict[str, str]) -> str:
    """The patch as a unified diff, for people (`texts`: the current text of each edited file)."""
    parts = []
    for f in files:
        before = texts.get(f["path"]) if f.get("sha256") is not None else None
        after = new_text(f, before)
        parts.append(
            "".join(
                difflib.unified_diff(
                    (before or "").splitlines(keepends=True),
                    after.splitlines(keepends=True),
                    fromfile="/dev/null" if before is None else f"a/{f['path']}",
                    tofile=f"b/{f['path']}",
                    n=1,
                )
            )
        )
    return "\n".join(p if p.endswith("\n") else p + "\n" for p in parts if p)


def make_patch(files: list[dict[str, Any]], texts: dict[str, str]) -> dict[str, Any]:
    return {"files": files, "diff": unified_diff(files, texts)}

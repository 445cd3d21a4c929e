"""The one crosslink the merge tests have MothBrain make: Garden.md's "compost heap" linked to Compost.md."""

from __future__ import annotations

from pathlib import Path

from mothbrain.proposals import queue
from mothbrain.wiki import crosslinks, merge, vectors
from mothbrain.wiki.pages import read_wiki


def merge_the_garden_link(cfg, root: Path) -> int:
    """Propose crosslinks on the wiki at `root`, accept Garden.md's and merge it; returns its proposal id."""
    wiki = read_wiki(root)
    found, _ = crosslinks.crosslink_proposals(cfg, wiki, vectors.embed_wiki(cfg, wiki))
    garden = next(p for p in found if p["target"] == "Garden.md")
    garden["patch"]["detail"] = garden.pop("detail")
    (pid,) = queue.add_proposals(cfg, [garden])
    queue.set_status(cfg, pid, "accepted")
    assert merge.run_merge(cfg).merged == [pid]
    assert "[[Compost|compost]] heap" in (root / "Garden.md").read_text()
    return pid

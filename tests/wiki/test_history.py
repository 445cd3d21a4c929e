"""MothBrain's merged crosslinks are known from the wiki's git history too: with the proposals queue lost,
a link MothBrain merged is still no positive and teaches no anchor; once reverted, nothing is excluded."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from merged_link import merge_the_garden_link

from mothbrain.config import REPO_ROOT, load_config
from mothbrain.proposals import queue
from mothbrain.wiki import crosslinks, merge, vectors
from mothbrain.wiki.history import merged_links_in_git
from mothbrain.wiki.pages import read_wiki

DEMO = REPO_ROOT / "configs" / "demo-tiny.yaml"
pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="no git binary")


def _git(root: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t"}
    env["GIT_COMMITTER_EMAIL"] = "t@t"
    return subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True, text=True, env=env).stdout


def _merged_link_wiki(tmp_path: Path, folder: str = "") -> tuple:
    """A git repository whose wiki (at `folder` inside it) has one crosslink merged by MothBrain."""
    repo = tmp_path / "repo"
    root = repo / folder if folder else repo
    root.mkdir(parents=True)
    pages = {
        "Compost.md": "# Compost\n\nRotting leaves feed the soil.\n",
        "Garden.md": "# Garden\n\nThe beds get a load of compost heap each spring.\n",
        "Orchard.md": "# Orchard\n\nThe trees get compost heap too, and the [[Garden]] its share.\n",
    }
    for rel, text in pages.items():
        (root / rel).write_text(text, encoding="utf-8")
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "the wiki")
    cfg = load_config(DEMO, [f"state_dir={tmp_path / 'state'}", f"wiki.path={root}", "wiki.crosslink_threshold=0"])
    return cfg, root, merge_the_garden_link(cfg, root)


def _lose_the_queue(cfg) -> None:
    for f in queue.queue_path(cfg).parent.glob("queue.sqlite3*"):
        f.unlink()
    assert not queue.list_proposals(cfg, status=None)


@pytest.mark.parametrize("folder", ["", "notes/wiki"])
def test_with_the_queue_lost_a_merged_link_is_still_no_positive(tmp_path, state_home, folder):
    cfg, root, pid = _merged_link_wiki(tmp_path, folder)
    _lose_the_queue(cfg)
    wiki = read_wiki(root)
    assert merged_links_in_git(wiki) == {("Garden.md", "Compost.md")}  # the person's [[Garden]] link is theirs
    assert crosslinks.merged_by_us(cfg, wiki) == {("Garden.md", "Compost.md")}
    vecs = vectors.embed_wiki(cfg, wiki)
    _, info = crosslinks.crosslink_proposals(cfg, wiki, vecs)
    assert info["merged_by_us"] == 1
    mentions, anchors = crosslinks.find_mentions(wiki, vecs, crosslinks.merged_by_us(cfg, wiki))
    (ours,) = [m for m in mentions if m.linked and wiki.pages[m.source].rel == "Garden.md"]
    assert ours.ours and "compost" not in anchors.linked  # no positive, no anchor


def test_a_reverted_merge_is_read_back_as_reverted(tmp_path, state_home):
    cfg, root, pid = _merged_link_wiki(tmp_path)
    merge.revert(cfg, pid)
    _lose_the_queue(cfg)
    assert merged_links_in_git(read_wiki(root)) == set()


def test_a_wiki_outside_git_has_no_history_to_read(tmp_path):
    (tmp_path / "Garden.md").write_text("# Garden\n\n[[Compost]]\n", encoding="utf-8")
    assert merged_links_in_git(read_wiki(tmp_path)) == set()

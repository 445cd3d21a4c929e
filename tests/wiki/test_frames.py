"""Frame checks: kept per page hash (a rescan of an unchanged wiki does no frame work), and openings
extracted from a page are plain prose, never a callout, list, table or heading torn out of it."""

from __future__ import annotations

import json
from pathlib import Path

from wikigen import generate_wiki

from mothbrain.config import REPO_ROOT, load_config
from mothbrain.core import paths
from mothbrain.models.embeddings import load_embedder
from mothbrain.wiki import scan, vectors
from mothbrain.wiki.frames import frame_proposals
from mothbrain.wiki.pages import is_plain, prose_paragraphs, read_wiki

DEMO = REPO_ROOT / "configs" / "demo-tiny.yaml"


def _cfg(tmp_path: Path, *more: str):
    return load_config(DEMO, [f"state_dir={tmp_path / 'state'}", f"wiki.path={tmp_path / 'wiki'}", *more])


class Counting:
    """The scan's embedder, counting the texts it is asked to embed."""

    def __init__(self, embedder):
        self.inner, self.name, self.texts = embedder, embedder.name, 0

    def encode(self, texts):
        self.texts += len(texts)
        return self.inner.encode(texts)


class FakeWriter:
    """Writes every opening itself, counting the pages it was asked for."""

    def __init__(self):
        self.pages: list[str] = []

    def __call__(self, found):
        self.pages += [f["page"].rel for f in found]
        return [(f"{f['page'].title} is what this page is about.", "a fake model") for f in found]


def _frames(cfg, root, embedder, writer):
    found, _ = scan.scan(cfg, read_wiki(root), embedder=embedder, writer=writer, changes=[])
    return [p for p in found if p["kind"] == "frame"]


def test_a_rescan_of_an_unchanged_wiki_does_no_frame_work_and_gives_the_same_proposals(tmp_path):
    truth = generate_wiki(tmp_path / "wiki", pages=40, seed=2, planted=0.1)
    cfg = _cfg(tmp_path)
    embedder, writer = Counting(load_embedder(cfg)), FakeWriter()
    vectors.embed_wiki(cfg, read_wiki(tmp_path / "wiki"), embedder)  # the sections' vectors: not frame work
    embedder.texts = 0
    first = _frames(cfg, tmp_path / "wiki", embedder, writer)
    judged = embedder.texts  # questions, openings and paragraphs of the pages whose opening does not name them
    assert first and {p["target"] for p in first} & truth.frames and len(writer.pages) == len(first) and judged
    assert (paths.wiki_state_dir(cfg) / "frames.json").is_file()

    embedder.texts, writer.pages = 0, []
    again = _frames(cfg, tmp_path / "wiki", embedder, writer)
    assert writer.pages == [] and embedder.texts == 0  # nothing embedded, no opening written
    assert again == first

    # An edited page is judged (and its opening written) afresh; the others are not.
    page = sorted(truth.frames)[0]
    path = tmp_path / "wiki" / page
    path.write_text(path.read_text(encoding="utf-8") + "\nA line added later.\n", encoding="utf-8")
    third = _frames(cfg, tmp_path / "wiki", embedder, writer)
    assert writer.pages == [page] and 0 < embedder.texts < judged
    assert [p["target"] for p in third] == [p["target"] for p in first]

    # A setting that decides the verdict invalidates every page's.
    embedder.texts = 0
    _frames(_cfg(tmp_path, "wiki.frame_min_similarity=0.25"), tmp_path / "wiki", embedder, writer)
    assert embedder.texts == judged


def test_a_damaged_frame_cache_is_judged_afresh(tmp_path):
    generate_wiki(tmp_path / "wiki", pages=30, seed=2, planted=0.1)
    cfg = _cfg(tmp_path)
    embedder, writer = Counting(load_embedder(cfg)), FakeWriter()
    first = _frames(cfg, tmp_path / "wiki", embedder, writer)
    cache = paths.wiki_state_dir(cfg) / "frames.json"
    cache.write_text('{"torn": ', encoding="utf-8")
    assert _frames(cfg, tmp_path / "wiki", embedder, writer) == first
    assert isinstance(json.loads(cache.read_text(encoding="utf-8")), dict)


def test_a_new_writer_writes_the_openings_afresh(tmp_path):
    generate_wiki(tmp_path / "wiki", pages=30, seed=2, planted=0.1)
    cfg = _cfg(tmp_path)
    embedder = Counting(load_embedder(cfg))
    first = _frames(cfg, tmp_path / "wiki", embedder, FakeWriter())
    other = FakeWriter()  # the same kind of writer: its openings are the cached ones
    assert _frames(cfg, tmp_path / "wiki", embedder, other) == first and other.pages == []
    embedder.texts = 0
    extracted = _frames(cfg, tmp_path / "wiki", embedder, None)  # wiki.openings: extract (the demo's)
    assert embedder.texts == 0 and extracted  # the verdicts are kept; only the openings are new
    assert all(p["detail"]["written_by"] == "extraction from the page" for p in extracted)


MESSY = """# Pop-out windows

Notes from the Tuesday meeting. Attendees: the usual group, two apologies.

> [!note] Pop-out windows
> Pop-out windows open a note in a window of its own.

- Pop-out windows: drag a tab out of the main window.
- Pop-out windows close when their note closes.

| Feature | What pop-out windows do |
|---|---|
| Pop-out windows | open a note in its own window |

**Pop-out windows**: > [!tip] open one from the tab menu.

## Pop-out windows

### Pop-out windows are windows

Pop-out windows are separate windows that each show one note, so a reference stays open beside your work.
"""

ONLY_MARKUP = """# Hotkeys

Minutes of the planning call. Attendees: everyone who could make it.

> [!tip] Hotkeys
> Hotkeys are key combinations that run a command without the mouse.

- Hotkeys: set them under Settings, then Hotkeys.
- **Hotkeys** can be reset to their defaults.
"""


def test_extracted_openings_are_plain_prose(tmp_path):
    root = tmp_path / "wiki"
    root.mkdir()
    (root / "Pop-out windows.md").write_text(MESSY, encoding="utf-8")
    (root / "Hotkeys.md").write_text(ONLY_MARKUP, encoding="utf-8")
    (root / "Workspace.md").write_text(
        "# Workspace\n\nA workspace holds notes. Open [[Pop-out windows]] to see two notes at once, and "
        "learn the [[Hotkeys]] to move between them.\n",
        encoding="utf-8",
    )
    cfg = _cfg(tmp_path, "wiki.openings=extract")
    wiki = read_wiki(root)
    embedder = load_embedder(cfg)
    found = {p["target"]: p for p in frame_proposals(cfg, wiki, vectors.embed_wiki(cfg, wiki, embedder), embedder)}
    new = found["Pop-out windows.md"]["patch"]["files"][0]["edits"][0]["new"]
    assert new == (
        "**Pop-out windows**: Pop-out windows are separate windows that each show one note, so a reference "
        "stays open beside your work.\n\n"
    )
    assert "Hotkeys.md" not in found  # only callouts and lists say what it is: no opening rather than a torn one


def test_plain_prose_leaves_out_markup_blocks_and_catches_leftovers():
    paras = prose_paragraphs(MESSY)
    assert paras == [
        "Notes from the Tuesday meeting. Attendees: the usual group, two apologies.",
        "Pop-out windows are separate windows that each show one note, so a reference stays open beside your work.",
    ]
    for broken in ("**Pop-out windows**: > [!", "Pop-out windows: drag a tab |", "See (the tab menu.", "## Hotkeys"):
        assert not is_plain(broken), broken
    assert is_plain("Pop-out windows open a note in a window of its own.")


def test_a_model_written_opening_in_markdown_is_made_plain_prose(tmp_path, monkeypatch):
    """A real model answers in markdown as often as not; the opening it writes is made plain prose (links kept as
    their words, markers and emphasis dropped), and one with too little prose left is extracted from the page."""
    from mothbrain.wiki import frames
    from mothbrain.wiki.pages import as_plain_prose

    answers = iter(
        [
            "> [!tip] **Pop-out windows** open a note in its own window, beside [[Workspace|your work]].",
            "- **Hotkeys**:",
        ]
    )

    class Engine:
        version = None

        def reload_if_changed(self):
            pass

        def generate(self, prompts, *args):
            return [next(answers) for _ in prompts]

    monkeypatch.setattr(frames, "local_engine", lambda cfg: Engine())
    root = tmp_path / "wiki"
    root.mkdir()
    (root / "Pop-out windows.md").write_text(MESSY, encoding="utf-8")
    cfg = _cfg(tmp_path, "wiki.openings=model", "neighbour.nice=0")
    cfg.neighbour.ionice_idle = False
    page = read_wiki(root).page("Pop-out windows.md")
    found = [{"page": page, "question": "what is Pop-out windows?", "best_paragraph": prose_paragraphs(MESSY)[1]}] * 2
    (written, who), (fallback, how) = frames._opening_writer(cfg)(found)
    assert written == "Pop-out windows open a note in its own window, beside your work." and is_plain(written), written
    assert who.startswith("the local model")
    assert how == frames.EXTRACTED and fallback.startswith("Pop-out windows are separate windows"), (fallback, how)
    for messy in ("## Heading", "**Bold**:", "see (the tab menu", "`code` only"):
        out = as_plain_prose(messy)
        assert out == "" or is_plain(out), (messy, out)

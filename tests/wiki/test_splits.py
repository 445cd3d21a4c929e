"""Split proposals on real-looking pages: one off-topic section among three is caught; a section that
reads differently but is about its page is not."""

from __future__ import annotations

from pathlib import Path

from mothbrain.config import REPO_ROOT, load_config
from mothbrain.wiki import splits, vectors
from mothbrain.wiki.pages import read_wiki

DEMO = REPO_ROOT / "configs" / "demo-tiny.yaml"

BREAD = """# Sourdough

Sourdough is bread raised by a starter of wild yeast and lactic bacteria instead of baker's yeast.

## Feeding the starter

Feed the sourdough starter twice a day with equal weights of flour and water. A lively starter doubles
within six hours at room temperature and smells pleasantly sour; a sluggish one wants a warmer spot.

## Shaping the loaves

After the bulk rise, tip the sourdough onto a floured bench, pre-shape it into rounds and let them rest.
Then shape each loaf tightly, building surface tension, and proof it in a floured basket overnight.

## Herons at the weir

A grey heron stands at the weir most mornings, motionless in the shallows, waiting for a fish. When the
river is high after rain it moves downstream to the mill pond, where the water runs slower and clearer.
"""

# A real page: docs/user/tools/cli/list.md of foambubble/foam (MIT), as published. Its "Options" table
# reads unlike the rest (gap about 0.3) but is about the command all the same.
CLI = r"""# foam list

List notes, tags, orphans, placeholders, dead-ends, or templates.

```
foam list <what> [options]
```

## What to list

| Value          | Description                                      |
| -------------- | ------------------------------------------------ |
| `notes`        | All notes in the workspace                       |
| `tags`         | All tags used across notes                       |
| `orphans`      | Notes with no links in or out                    |
| `deadends`     | Notes with no outgoing links                     |
| `placeholders` | Wikilinks that don't resolve to an existing note |
| `templates`    | Note templates in `.foam/templates/`             |

## Options

| Option                 | Description                                                                  |
| ---------------------- | ---------------------------------------------------------------------------- |
| `--type <type>`        | (notes) Filter by resource type: `note`, `daily-note`, `attachment`, `image` |
| `--tag <tag>`          | (notes) Filter by tag — repeat for multiple tags (AND logic)                 |
| `--limit <n>`          | (notes, tags) Maximum number of results                                      |
| `--prefix <str>`       | (tags) Filter by tag prefix                                                  |
| `--sort <count\|name>` | (tags) Sort order (default: `name`)                                          |
| `--workspace <dir>`    | Workspace root (default: `FOAM_WORKSPACE` env var, then current directory)   |
| `--format <fmt>`       | Output format: `text` (default) or `json`                                    |

## Examples

List all notes:

```bash
foam list notes
```

List notes with a specific tag:

```bash
foam list notes --tag project
```

List notes tagged both `project` and `active`:

```bash
foam list notes --tag project --tag active
```

List all tags sorted by usage count:

```bash
foam list tags --sort count
```

List tags starting with `project/`:

```bash
foam list tags --prefix project/
```

Find orphaned notes (no links in or out):

```bash
foam list orphans
```

Find broken wikilinks (links that don't resolve to a note):

```bash
foam list placeholders
```

List available templates:

```bash
foam list templates
```

See also [[orphans]] for the orphaned notes panel in VS Code, and [[tags]] for tag management in the editor.

[orphans]: ../orphans.md 'Orphaned Notes'
[tags]: ../../features/tags.md 'Tags'
"""

OTHERS = {
    "Rye.md": "# Rye\n\nRye bread is dense and dark; rye flour holds little gluten, so rye loaves are baked in tins.\n",
    "foam tags.md": "# foam tags\n\nTags in foam are words after a hash sign; foam collects them from every note.\n",
    "River.md": "# River\n\nThe river runs past the mill and over the weir, through the water meadows to the sea.\n",
}


def _scan(tmp_path: Path, pages: dict[str, str], *more: str):
    root = tmp_path / "wiki"
    root.mkdir(parents=True)
    for rel, text in pages.items():
        (root / rel).write_text(text, encoding="utf-8")
    cfg = load_config(DEMO, [f"state_dir={tmp_path / 'state'}", f"wiki.path={root}", *more])
    wiki = read_wiki(root)
    return splits.split_proposals(cfg, wiki, vectors.embed_wiki(cfg, wiki))


def test_one_off_topic_section_among_three_is_split_off(tmp_path):
    found = _scan(tmp_path, {"Sourdough.md": BREAD, "foam list.md": CLI, **OTHERS})
    assert [(p["target"], p["detail"]["moved"]) for p in found] == [("Sourdough.md", ["Herons at the weir"])]
    assert found[0]["detail"]["new_page"] == "Herons at the weir.md"


def test_a_section_that_reads_differently_but_names_its_page_stays(tmp_path, monkeypatch):
    assert not _scan(tmp_path / "a", {"foam list.md": CLI, **OTHERS})
    # It is the words test that keeps it: by meaning alone, "Options" would go.
    monkeypatch.setattr(splits, "SINGLE_SHARED_WORDS", 1.0)
    assert [p["detail"]["moved"] for p in _scan(tmp_path / "b", {"foam list.md": CLI, **OTHERS})] == [["Options"]]


def test_a_single_section_is_judged_more_strictly_than_a_group(tmp_path):
    # The same page, with single-section splits held to the ordinary gap or forbidden: the setting decides.
    assert _scan(tmp_path / "a", {"Sourdough.md": BREAD, **OTHERS}, "wiki.split_min_group=2") == []
    assert _scan(tmp_path / "b", {"Sourdough.md": BREAD, **OTHERS}, "wiki.split_single_gap=1.5") == []

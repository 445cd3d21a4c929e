"""`mothbrain wiki merge` and `mothbrain wiki revert ID`: apply accepted wiki proposals, and undo one.

Per proposal, all or nothing:
* every path in its patch must stay inside the wiki: absolute paths, `..`, hidden folders (`.git`) and
  anything that resolves outside the wiki folder (a symlink out) are refused — the proposal is marked
  `refused` with the reason and nothing is written;
* every page must still be byte for byte what the scan read (its sha256), and a page to be created
  must still be absent; otherwise the proposal is marked `stale` (the next scan proposes afresh
  against the page as it is now) — never forced;
* when the wiki is a git repository, a page with uncommitted changes is left alone (the proposal stays
  accepted, merged on a later run once they are committed), so a merge commit never sweeps up a
  person's edits;
* the pages' old bytes are kept under <state>/data/wiki/merges/<id>/ first; each page is then written
  atomically (temp file, fsync, rename; its mode kept). A failure part-way puts back what was
  written, so the wiki is as before and the proposal stays accepted;
* in a git wiki, the merge is one commit of just those pages, with the proposal id in its message.

`revert` undoes a merge byte for byte — only when the pages are still what the merge wrote: in a git wiki
its pages go back to their bytes before the merge commit, committed alone (pages a person has staged
stay staged, out of the commit), else the kept old bytes are put back.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mothbrain.config import Config
from mothbrain.core import paths
from mothbrain.core.atomic import describe_write_error, write_atomically
from mothbrain.errors import MothError, NothingToDo
from mothbrain.proposals import queue
from mothbrain.wiki.pages import sha256
from mothbrain.wiki.patches import PatchConflict, new_text
from mothbrain.wiki.scan import wiki_root

log = logging.getLogger(__name__)

GIT_IDENTITY = {"GIT_AUTHOR_NAME": "MothBrain wiki-worker", "GIT_AUTHOR_EMAIL": "mothbrain@localhost"}


class Refused(Exception):
    """The patch would write outside the wiki."""


def safe_path(root: Path, rel: str) -> Path:
    """The file `rel` names inside the wiki, or Refused saying why it is not one."""
    if not isinstance(rel, str) or not rel.strip():
        raise Refused("an empty path")
    p = Path(rel)
    if p.is_absolute() or rel.startswith(("/", "\\")) or "\\" in rel:
        raise Refused(f"{rel!r} is absolute")
    if any(part in ("..", "") or part.startswith(".") for part in p.parts):
        raise Refused(f"{rel!r} leaves the wiki or enters a hidden folder")
    if p.suffix.lower() not in (".md", ".markdown"):
        raise Refused(f"{rel!r} is not a markdown page")
    real_root = root.resolve()
    target = (root / p).resolve()
    if not target.is_relative_to(real_root):
        raise Refused(f"{rel!r} resolves to {target}, outside the wiki {real_root}")
    return root / p


def git_toplevel(root: Path) -> Path | None:
    if shutil.which("git") is None:
        return None
    r = subprocess.run(["git", "-C", str(root), "rev-parse", "--show-toplevel"], capture_output=True, text=True)
    return Path(r.stdout.strip()) if r.returncode == 0 and r.stdout.strip() else None


def _run_git(top: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ}
    for k, v in GIT_IDENTITY.items():  # only where the person has not set their own
        env.setdefault(k, v)
        env.setdefault(k.replace("AUTHOR", "COMMITTER"), v)
    return subprocess.run(["git", "-C", str(top), *args], capture_output=True, text=True, env=env)


def _git(top: Path, *args: str) -> str:
    r = _run_git(top, *args)
    if r.returncode != 0:
        raise MothError(f"git {' '.join(args[:2])} in {top} failed: {(r.stderr or r.stdout).strip()[:300]}")
    return r.stdout


@dataclass
class MergeReport:
    wiki: str
    git: bool
    merged: list[int] = field(default_factory=list)
    stale: list[int] = field(default_factory=list)
    refused: list[int] = field(default_factory=list)
    waiting: list[int] = field(default_factory=list)  # left accepted: uncommitted edits, a failed write
    notes: dict[int, str] = field(default_factory=dict)
    title: str = "wiki merge"

    @property
    def warnings(self) -> list[str]:
        return [f"proposal {pid}: {self.notes.get(pid, '')}" for pid in self.refused + self.waiting]

    def rows(self) -> list[dict[str, Any]]:
        out = []
        for state in ("merged", "stale", "refused", "waiting"):
            for pid in getattr(self, state):
                out.append({"proposal": pid, "result": state, "note": self.notes.get(pid, "")})
        return out

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def run_merge(cfg: Config) -> MergeReport:
    root = wiki_root(cfg)
    todo = queue.awaiting_merge(cfg)
    if not todo:
        raise NothingToDo("no accepted wiki proposals to merge")
    top = git_toplevel(root) if cfg.wiki.git_commit else None
    report = MergeReport(wiki=str(root), git=top is not None)
    chain = load_chain(cfg)
    for p in todo:
        state, note, commit = merge_one(cfg, root, p, top, chain)
        report.notes[p["id"]] = note
        getattr(report, state if state else "waiting").append(p["id"])
        if state:
            queue.set_merge_state(cfg, p["id"], state, note, commit)
    return report


def merge_one(
    cfg: Config, root: Path, proposal: dict[str, Any], top: Path | None, chain: dict | None = None
) -> tuple[str, str, str]:
    """(state, note, commit): state '' leaves the proposal accepted, to try again next run. `chain` (from
    load_chain) lets a proposal made against a page that only MothBrain's own merges changed since be
    moved onto the page as it is now, instead of going stale."""
    chain = {} if chain is None else chain
    files = (proposal.get("patch") or {}).get("files") or []
    if not files:
        return "refused", "the proposal carries no patch", ""
    plan = []
    try:
        for f in files:
            target = safe_path(root, f["path"])
            if target.is_symlink():
                raise Refused(f"{f['path']!r} is a symbolic link")
            before = target.read_bytes() if target.exists() else None
            if f.get("sha256") is not None and (before is None or sha256(before) != f["sha256"]):
                moved = rebase(f, sha256(before), chain) if before is not None else None
                if moved is None:
                    return "stale", f"{f['path']} changed since the scan; the next scan looks at it afresh", ""
                f = {**f, "edits": moved}
            current = None if before is None else before.decode("utf-8")
            plan.append((f["path"], target, before, new_text(f, current).encode("utf-8"), f.get("edits")))
    except Refused as exc:
        return "refused", f"refused: {exc}; nothing was written", ""
    except PatchConflict as exc:
        return "stale", f"{exc}; the next scan looks at it afresh", ""
    except (OSError, UnicodeDecodeError, KeyError, TypeError) as exc:
        return "", f"cannot read the pages: {exc}", ""
    if top is not None:
        dirty = _git(top, "status", "--porcelain", "--", *[str(t) for _, t, *_ in plan]).strip()
        if dirty:
            return "", f"uncommitted changes in the wiki ({dirty.splitlines()[0].strip()}); commit them first", ""
    keep = _keep_before(cfg, proposal["id"], plan)
    written: list[tuple[Path, bytes | None]] = []
    try:
        for _rel, target, before, after, _edits in plan:
            mode = target.stat().st_mode & 0o7777 if before is not None else 0o666 & ~_umask()
            write_atomically(target, after)
            written.append((target, before))
            os.chmod(target, mode)
    except OSError as exc:
        failed = _put_back(written)
        if failed:
            return "", f"writing the wiki failed ({describe_write_error(exc, keep)}) and {'; '.join(failed)}", ""
        return "", f"writing the wiki failed ({describe_write_error(exc, keep)}); it was put back as it was", ""
    commit = ""
    if top is not None:
        rels = [str(t) for _, t, *_ in plan]
        try:
            _git(top, "add", "--", *rels)
            message = f"mothbrain wiki: proposal {proposal['id']} ({proposal['kind']}): {proposal['text'][:60]}"
            _git(top, "commit", "-q", "-m", message, "-m", f"MothBrain-Proposal: {proposal['id']}", "--", *rels)
            commit = _git(top, "rev-parse", "HEAD").strip()
        except MothError as exc:
            _run_git(top, "reset", "-q", "--", *rels)  # unstage: the person's next commit must not sweep it up
            failed = _put_back(written)
            return "", f"{exc}; " + ("; ".join(failed) if failed else "the pages were put back"), ""
        shutil.rmtree(keep, ignore_errors=True)  # committed: git holds the way back, the copy would only pile up
    record_chain(cfg, chain, plan)
    return "merged", f"{len(plan)} page(s) written" + (f", commit {commit[:10]}" if commit else ""), commit


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _merge_dir(cfg: Config, proposal_id: int) -> Path:
    return paths.wiki_state_dir(cfg) / "merges" / str(int(proposal_id))


def _keep_before(cfg: Config, proposal_id: int, plan) -> Path:
    """What the merge replaces, kept before anything is written: the way back if putting the pages back
    fails, and what `revert` restores in a wiki without git (in a git wiki it goes once committed)."""
    folder = _merge_dir(cfg, proposal_id)
    entries = []
    for n, (rel, _target, before, after, _edits) in enumerate(plan):
        if before is not None:
            write_atomically(folder / f"{n}.before", before)
        entries.append({"path": rel, "existed": before is not None, "after_sha256": sha256(after)})
    write_atomically(folder / "manifest.json", json.dumps(entries, indent=1))
    return folder


def _put_back(written: list[tuple[Path, bytes | None]]) -> list[str]:
    """Restore pages (None: remove a page the merge created); returns what could not be restored."""
    failed = []
    for target, before in reversed(written):
        try:
            if before is None:
                target.unlink(missing_ok=True)
            else:
                write_atomically(target, before)
        except OSError as exc:  # said loudly: the kept copy under data/wiki/merges is the way back
            failed.append(
                f"could not put {target} back ({exc.strerror or exc}); its old bytes are under data/wiki/merges"
            )
            log.error("%s", failed[-1])
    return failed


# --------------------------------------------------------------------------- moving edits past our own merges


def _chain_path(cfg: Config) -> Path:
    return paths.wiki_state_dir(cfg) / "applied.jsonl"


def load_chain(cfg: Config) -> dict[tuple[str, str], tuple[str, list[dict[str, Any]]]]:
    """(page, sha before) → (sha after, the edits applied): every edit merge has made, so a proposal
    scanned before one of them can be moved past it (five crosslinks on one page all merge)."""
    chain: dict[tuple[str, str], tuple[str, list[dict[str, Any]]]] = {}
    try:
        with _chain_path(cfg).open(encoding="utf-8") as f:
            for line in f:
                try:
                    r = json.loads(line)
                    chain[(r["path"], r["before"])] = (r["after"], r["edits"])
                except (ValueError, KeyError, TypeError):
                    continue  # a torn last line after a crash: that step is just not movable past
    except OSError:
        pass
    return chain


def record_chain(cfg: Config, chain: dict, plan) -> None:
    lines = []
    for rel, _target, before, after, edits in plan:
        if before is not None and edits is not None:
            step = {"path": rel, "before": sha256(before), "after": sha256(after), "edits": edits}
            chain[(rel, step["before"])] = (step["after"], edits)
            lines.append(json.dumps(step, ensure_ascii=False) + "\n")
    try:
        with _chain_path(cfg).open("a", encoding="utf-8") as f:
            f.writelines(lines)
    except OSError as exc:  # only lost: later proposals on these pages go stale and are proposed afresh
        log.warning("cannot record merged edits in %s (%s)", _chain_path(cfg), exc)


def rebase(entry: dict[str, Any], current_sha: str, chain: dict) -> list[dict[str, Any]] | None:
    """The entry's edits moved onto the page as it is now, through the merges made since its scan; None
    when one of those merges touched the same words, or the page changed in some other way."""
    edits, sha = [dict(e) for e in entry.get("edits") or []], entry["sha256"]
    for _ in range(10_000):  # a chain, never a cycle; the bound only guards a hand-edited file
        if sha == current_sha:
            return edits
        step = chain.get((entry["path"], sha))
        if step is None:
            return None
        sha, applied = step
        moved = []
        for e in edits:
            if any(a["start"] <= e["end"] and e["start"] <= a["end"] for a in applied):
                return None  # the same words (or words touching them) were already changed
            shift = sum(len(a["new"]) - (a["end"] - a["start"]) for a in applied if a["end"] < e["start"])
            moved.append({**e, "start": e["start"] + shift, "end": e["end"] + shift})
        edits = moved
    return None


def _git_revert(top: Path, proposal_id: int, commit: str) -> str:
    """Undo a merge commit on its own pages only: `git revert` would refuse (or sweep up) pages a person
    has staged, so each page goes back to its bytes before the commit and just those are committed."""
    short = commit[:10]
    try:
        changed = _git(top, "diff-tree", "--no-commit-id", "--name-status", "-r", "-z", commit).split("\0")
    except MothError as exc:
        raise MothError(f"cannot read merge commit {short} (proposal {proposal_id}): {exc}") from None
    pages = list(zip(changed[0::2], changed[1::2]))  # (status, path from the repository's top)
    restore = []
    for status, rel in pages:
        target = top / rel
        now = target.read_bytes() if target.is_file() else None
        merged = None if status == "D" else _git_bytes(top, f"{commit}:{rel}")
        if now != merged:
            raise MothError(
                f"{rel} changed since proposal {proposal_id} was merged (commit {short}); nothing was reverted "
                "— undo it by hand"
            )
        restore.append((target, None if status == "A" else _git_bytes(top, f"{commit}^:{rel}")))
    failed = _put_back(restore)
    rels = [rel for _, rel in pages]
    try:
        if failed:
            raise MothError("; ".join(failed))
        _git(top, "add", "-A", "--", *rels)
        message = f"mothbrain wiki: revert proposal {proposal_id}"
        _git(top, "commit", "-q", "-m", message, "-m", f"This reverts commit {commit}.", "--", *rels)
    except MothError as exc:  # put the merged pages back: the wiki stays as the merge left it
        _put_back([(top / rel, None if status == "D" else _git_bytes(top, f"{commit}:{rel}")) for status, rel in pages])
        _run_git(top, "reset", "-q", "--", *rels)
        raise MothError(
            f"reverting proposal {proposal_id} (commit {short}) failed ({exc}); nothing was changed"
        ) from None
    return f"reverted commit {short} ({len(pages)} page(s))"


def _git_bytes(top: Path, spec: str) -> bytes:
    """The bytes of `rev:path` as checked out (line-end and other filters applied), to compare with the file."""
    r = subprocess.run(["git", "-C", str(top), "cat-file", "--filters", spec], capture_output=True)
    if r.returncode != 0:
        raise MothError(f"git cat-file {spec} failed: {r.stderr.decode('utf-8', 'replace').strip()[:200]}")
    return r.stdout


def revert(cfg: Config, proposal_id: int) -> dict[str, Any]:
    """Undo a merged proposal; returns what was done."""
    p = queue.get(cfg, proposal_id)
    if p["merge_state"] != "merged":
        state = p["merge_state"] or ("not merged" if p["kind"] != "dream" else "a dream, never merged")
        raise MothError(f"proposal {proposal_id} is {state}; only a merged wiki proposal can be reverted")
    root = wiki_root(cfg)
    if p["merge_commit"]:
        top = git_toplevel(root)
        if top is None:
            raise MothError(
                f"proposal {proposal_id} was merged as commit {p['merge_commit'][:10]}, but {root} is "
                "no longer a git repository; restore it from your backup"
            )
        how = _git_revert(top, proposal_id, p["merge_commit"])
    else:
        folder = _merge_dir(cfg, proposal_id)
        try:
            entries = json.loads((folder / "manifest.json").read_text())
        except (OSError, ValueError) as exc:
            raise MothError(f"the record of merge {proposal_id} ({folder}) is missing or damaged ({exc})") from None
        restore = []
        for n, e in enumerate(entries):
            target = safe_path(root, e["path"])
            now = target.read_bytes() if target.exists() else None
            if now is None or sha256(now) != e["after_sha256"]:
                raise MothError(
                    f"{e['path']} changed since proposal {proposal_id} was merged; nothing was reverted "
                    "— undo it by hand"
                )
            restore.append((target, (folder / f"{n}.before").read_bytes() if e["existed"] else None))
        failed = _put_back(restore)
        if failed:
            raise MothError(f"reverting proposal {proposal_id} failed: {'; '.join(failed)}")
        how = f"{len(restore)} page(s) restored from {folder}"
    queue.set_merge_state(cfg, proposal_id, "reverted", how, p["merge_commit"])
    return {"proposal": proposal_id, "reverted": how}

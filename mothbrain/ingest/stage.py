"""Incremental ingest: read only what is new or changed in the configured sources.

    mothbrain ingest            # new and changed files only
    mothbrain ingest --full     # re-read everything

The store's layout (manifest and shards) and its readers are mothbrain/store/documents.py; this stage is
its only writer. Reading one changed file into its shard, within its time budget, is
mothbrain/ingest/file_job.py; this module runs it over the sources.

A file whose size and mtime are unchanged is not opened. One whose bytes changed is re-read into a
new shard (temp file + fsync + rename), so a crash mid-run leaves every earlier shard intact; the
manifest is saved the same way every few seconds and at the end, and a file the manifest does not
yet record is simply read again next time. An append-only chat log is resumed where it ended.
A file gone from the source drops its shard; a change of a source's kind or path re-reads it.
What is stored is redacted first (secrets and personal data, `preprocess.redaction`; the counts go to
the manifest and the report), and the store is private: folders 0700, shards 0600.

`mothbrain.store.documents.iter_documents(cfg, since_days)` streams the stored documents back.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from mothbrain.config import Config, SourceConfig
from mothbrain.core import paths
from mothbrain.core.atomic import write_atomically
from mothbrain.core.clock import DAY
from mothbrain.core.workers import pool_context, worker_count
from mothbrain.errors import MothError
from mothbrain.ingest.file_job import ingest_job
from mothbrain.sources.base import Problems, list_files
from mothbrain.sources.registry import get_reader
from mothbrain.store.documents import load_manifest, remove_orphans, save_manifest, source_signature

SAVE_EVERY_S = 5.0  # how often the manifest is checkpointed during a long run
SHOW_PROBLEMS = 20  # problems per source kept in the report for display


# --------------------------------------------------------------------------- the report


@dataclass
class SourceStats:
    name: str
    kind: str
    path: str
    files_seen: int = 0
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    removed: int = 0
    skipped: int = 0  # too large or unreadable this run (earlier shard, if any, kept)
    documents: int = 0  # stored for this source after the run
    documents_read: int = 0  # parsed this run
    recent: int = 0  # stored documents within the `since` window
    bad_records: int = 0
    problems: list[tuple[str, str, str]] = field(default_factory=list)  # (file, where, reason), capped
    bytes_read: int = 0
    redacted: dict[str, int] = field(default_factory=dict)  # secrets and personal data redacted, by type, stored
    # files not read this run (unchanged) whose bad records are still on record: "file: N bad, first …"
    still_bad: list[str] = field(default_factory=list)


@dataclass
class IngestReport:
    sources: list[SourceStats] = field(default_factory=list)
    seconds: float = 0.0
    full: bool = False
    since_days: float = 0.0
    dropped_sources: list[str] = field(default_factory=list)  # sources gone from the config
    notes: list[str] = field(default_factory=list)
    title: str = "ingest"

    @property
    def warnings(self) -> list[str]:
        """Bad records (first few, with file and line) and notes, for the CLI's warning lines."""
        bad = sum(s.bad_records for s in self.sources)
        shown = self.problems(5)
        more = f"; and {bad - len(shown)} more" if bad > len(shown) else ""
        lines = [f"{bad} bad record(s) skipped: " + "; ".join(shown) + more] if bad else []
        still = [f"{s.name}: {line}" for s in self.sources for line in s.still_bad]
        if still:
            more = f"; and {len(still) - 5} more" if len(still) > 5 else ""
            lines.append(f"{len(still)} unchanged file(s) still have bad records: " + "; ".join(still[:5]) + more)
        return lines + list(self.notes)

    @property
    def documents(self) -> int:
        return sum(s.documents for s in self.sources)

    @property
    def bad_records(self) -> int:
        return sum(s.bad_records for s in self.sources)

    @property
    def bytes_read(self) -> int:
        return sum(s.bytes_read for s in self.sources)

    @property
    def changed(self) -> bool:
        """Did anything new, changed or removed come in (i.e. is there something to preprocess)?"""
        return self.full or bool(self.dropped_sources) or any(s.new or s.changed or s.removed for s in self.sources)

    def rows(self) -> list[dict[str, Any]]:
        """One row per source plus a total, for the summary table."""
        cols = ("files_seen", "new", "changed", "unchanged", "removed", "documents", "recent", "bad_records")
        rows = [
            {
                "source": s.name,
                "kind": s.kind,
                **{c: getattr(s, c) for c in cols},
                "MB_read": round(s.bytes_read / 1e6, 2),
                "redacted": sum(s.redacted.values()),
            }
            for s in self.sources
        ]
        total = {
            "source": "total",
            "kind": "",
            **{c: sum(r[c] for r in rows) for c in cols},
            "MB_read": round(self.bytes_read / 1e6, 2),
            "redacted": sum(r["redacted"] for r in rows),
        }
        return rows + [total]

    def problems(self, limit: int = SHOW_PROBLEMS) -> list[str]:
        """'source: file: where: reason' lines, at most `limit` per source."""
        return [f"{s.name}: {f}: {w}: {r}" for s in self.sources for f, w, r in s.problems[:limit]]

    def to_json(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "documents": self.documents,
            "bad_records": self.bad_records,
            "bytes_read": self.bytes_read,
            "changed": self.changed,
        }


# --------------------------------------------------------------------------- the run


def _check_sources(cfg: Config) -> list[tuple[SourceConfig, Path]]:
    """Every source path must exist and be readable: one clear error otherwise, before anything is touched."""
    out = []
    for i, s in enumerate(cfg.sources):
        p = cfg.resolve_path(s.path)
        fix = f"fix sources[{i}].path in {cfg.config_path or 'the config'} or create it"
        if not p.exists():
            raise MothError(f"source '{s.name}': path {p} does not exist; {fix}")
        if not os.access(p, os.R_OK | (os.X_OK if p.is_dir() else 0)):
            raise MothError(f"source '{s.name}': path {p} is not readable; fix its permissions or {fix}")
        out.append((s, p))
    return out


def run_ingest(cfg: Config, since: float | None = None, full: bool = False, progress: bool = False) -> IngestReport:
    """Bring the stored documents up to date with the sources; `since` (days) sets the 'recent' count."""
    t0 = time.perf_counter()
    since_days = cfg.ingest.since_days if since is None else since
    report = IngestReport(full=full, since_days=since_days)
    checked = _check_sources(cfg)
    root = paths.ingest_dir(cfg)
    with contextlib.suppress(OSError):  # the store is the owner's alone (an existing one is closed too)
        root.chmod(0o700)
    lock = FileLock(str(root / "ingest.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise MothError(f"another ingest is running (lock {root / 'ingest.lock'}); wait for it to finish") from None
    try:
        manifest = load_manifest(cfg, report.notes)
        bar = _Progress(progress)
        for source, src_path in checked:
            report.sources.append(_ingest_source(cfg, root, manifest, source, src_path, full, since_days, bar))
        bar.close()
        configured = {s.name for s in cfg.sources}
        for name in sorted(set(manifest["sources"]) - configured):
            report.dropped_sources.append(name)
            del manifest["sources"][name]
        save_manifest(cfg, manifest)
        remove_orphans(root, manifest)
    finally:
        _remove_partial_shards(root)
        lock.release()
    report.seconds = time.perf_counter() - t0
    try:
        write_atomically(root / "last_report.json", json.dumps(report.to_json(), indent=1))
    except OSError:
        pass  # the report is a convenience; the manifest above is what matters
    return report


def _remove_partial_shards(root: Path) -> None:
    """Shards still being written (`*.tmp`) when an ingest ends, even by a failure: a worker killed with the pool
    (another one's disk full) cannot remove its own. The ingest lock is held, so no one else is writing them."""
    for tmp in root.rglob("*.tmp"):
        with contextlib.suppress(OSError):
            tmp.unlink()


def _ingest_source(
    cfg: Config,
    root: Path,
    manifest: dict,
    source: SourceConfig,
    src_path: Path,
    full: bool,
    since_days: float,
    bar: _Progress,
) -> SourceStats:
    stats = SourceStats(name=source.name, kind=source.kind, path=str(src_path))
    problems = Problems()
    reader = get_reader(source.kind)
    if reader is None:
        problems.add(str(src_path), "config", f"unknown source kind {source.kind!r}; source skipped")
        stats.bad_records, stats.problems = problems.count, problems.items
        return stats
    sig = source_signature(cfg, source)
    entry = manifest["sources"].get(source.name)
    if not isinstance(entry, dict) or entry.get("signature") != sig or not isinstance(entry.get("files"), dict):
        if isinstance(entry, dict) and isinstance(entry.get("files"), dict):
            for old in entry["files"].values():  # kind or path changed: nothing stored still holds
                if isinstance(old, dict) and isinstance(old.get("shard"), str):
                    (root / old["shard"]).unlink(missing_ok=True)
        entry = {"signature": sig, "files": {}}
        manifest["sources"][source.name] = entry
    files: dict[str, dict] = entry["files"]
    max_bytes = cfg.ingest.max_file_mb * 1e6
    seen: set[str] = set()
    jobs: list[tuple] = []
    listing = list_files(src_path, reader)

    def rel_of(path: Path) -> str:
        return path.relative_to(src_path).as_posix() if path != src_path else path.name

    for path, why in listing.skipped:
        problems.add(rel_of(path), "file", why)
        stats.skipped += 1
    # A folder that cannot be listed is not a removed one: what was stored from it stays until it can be read.
    hidden = [rel_of(folder) for folder, _ in listing.unreadable]
    for folder, why in listing.unreadable:
        problems.add(
            rel_of(folder), "folder", f"unreadable ({why}); documents stored from it kept, check its permissions"
        )
    seen.update(rel for rel in files if any(rel.startswith(h + "/") or h == "." for h in hidden))
    for path in listing.files:
        rel = rel_of(path)
        seen.add(rel)
        stats.files_seen += 1
        old = files.get(rel)
        try:
            st = path.stat()
        except OSError as exc:
            problems.add(rel, "file", f"cannot stat ({exc.strerror}); earlier documents kept")
            stats.skipped += 1
            continue
        if not full and old and old.get("size") == st.st_size and old.get("mtime_ns") == st.st_mtime_ns:
            stats.unchanged += 1
            _still_bad(stats, rel, old)
            continue
        if st.st_size > max_bytes:
            problems.add(
                rel,
                "file",
                f"{st.st_size / 1e6:.0f} MB is over ingest.max_file_mb "
                f"({cfg.ingest.max_file_mb:g}); skipped (raise the limit to read it)",
            )
            stats.skipped += 1
            continue
        jobs.append(
            (
                root,
                source,
                path,
                rel,
                st,
                old,
                full,
                cfg.ingest.max_file_seconds,
                cfg.ingest.max_file_mb,
                cfg.preprocess.redaction,
            )
        )
    last_save = time.monotonic()
    for (_, _, _, rel, st, old, *_), done in zip(jobs, _run_jobs(jobs, cfg)):
        stats.bytes_read += done.get("scanned", 0)
        count, items = done.get("problems", (0, []))
        problems.count += count
        problems.items.extend(items[: max(0, problems.cap - len(problems.items))])
        if done["status"] == "store_failed":
            save_manifest(cfg, manifest)
            raise MothError(
                f"ingest: could not store {rel} of source '{source.name}' under {root}: {done['reason']}; "
                "fix that and run ingest again (nothing stored was lost)"
            )
        if done["status"] == "failed":
            problems.add(rel, done.get("where", "file"), done["reason"])
            stats.skipped += 1
            continue
        if done["status"] == "touched":
            old.update(size=st.st_size, mtime_ns=st.st_mtime_ns, mtime=st.st_mtime)  # touched, not changed
            stats.unchanged += 1
            _still_bad(stats, rel, old)
            continue
        new_entry = done["entry"]  # bytes_read counted the file once, when it was scanned
        stats.documents_read += done["read"]
        if old is None:
            stats.new += 1
        else:
            if old.get("hash") == new_entry["hash"]:
                stats.unchanged += 1  # re-read only because of --full
            else:
                stats.changed += 1
            if old.get("shard") and old["shard"] != new_entry["shard"]:
                (root / old["shard"]).unlink(missing_ok=True)
        files[rel] = new_entry
        bar.advance(source.name, rel)
        if time.monotonic() - last_save > SAVE_EVERY_S:
            save_manifest(cfg, manifest)
            last_save = time.monotonic()
    for rel in sorted(set(files) - seen):
        shard = files.pop(rel).get("shard")
        if shard:
            (root / shard).unlink(missing_ok=True)
        stats.removed += 1
    cutoff = int((time.time() - since_days * DAY) // DAY)
    redacted: Counter = Counter()
    for e in files.values():
        stats.documents += e.get("docs", 0)
        redacted.update(e.get("redacted", {}))
        stats.recent += sum(n for d, n in e.get("days", {}).items() if int(d) >= cutoff)
    stats.redacted = dict(redacted)
    stats.bad_records, stats.problems = problems.count, problems.items
    return stats


def _still_bad(stats: SourceStats, rel: str, entry: dict) -> None:
    if entry.get("bad"):
        stats.still_bad.append(f"{rel}: {entry['bad']} bad record(s), first {entry.get('bad_first', '?')}")


PARALLEL_INGEST_BYTES = 16_000_000  # changed files beyond this much in all are read by a process pool


def _run_jobs(jobs: list[tuple], cfg: Config) -> Iterator[dict[str, Any]]:
    """`ingest_job` over the jobs, results in job order: on a process pool (one process per core)
    when there is enough to read, else here."""
    size = sum(job[4].st_size for job in jobs)
    workers = worker_count(cfg.preprocess.workers)
    if size < PARALLEL_INGEST_BYTES or workers < 2 or len(jobs) < 2:
        yield from map(ingest_job, jobs)
        return
    with pool_context().Pool(workers) as pool:
        yield from pool.imap(ingest_job, jobs)


class _Progress:
    """A rich progress line over files read (only when asked: cron logs want no bars)."""

    def __init__(self, enabled: bool) -> None:
        self.p = None
        if enabled:
            from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

            self.p = Progress(
                SpinnerColumn(),
                TextColumn("ingest {task.description}"),
                TextColumn("{task.completed} files"),
                TimeElapsedColumn(),
                transient=True,
            )
            self.task = self.p.add_task("", total=None)
            self.p.start()

    def advance(self, source: str, rel: str) -> None:
        if self.p is not None:
            self.p.update(self.task, advance=1, description=f"{source}: {rel[-50:]}")

    def close(self) -> None:
        if self.p is not None:
            self.p.stop()

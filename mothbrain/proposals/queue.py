"""The staging queue: dream proposals and the wiki-worker's, reviewed before anything happens to them.

Dreaming writes every generated text here with status `pending`. A person reviews them
(`mothbrain proposals list | show ID | accept ID | reject ID`), and `mothbrain proposals export`
writes the *accepted* ones — never pending or rejected ones — as JSON lines to
`<state>/data/proposals/exports/accepted-<date>.jsonl` for the coordinating model to read. A dream
is never written into the wiki or any source.

Wiki proposals (kinds crosslink, split, frame, staleness; mothbrain.wiki) carry a patch. The reviewer
(`mothbrain wiki review`) or a person decides them; only `mothbrain wiki merge` applies an accepted
one, and records the outcome here (merge_state merged | stale | refused | reverted).

Storage: one SQLite file, `<state>/data/proposals/queue.sqlite3`, in WAL mode (readers such as
`status` and the briefing never block a dreaming writer; each change is one transaction, so a kill
leaves the queue as it was before or after it). One table, `proposals`:

    id INTEGER PRIMARY KEY     the number people type
    created_at TEXT            ISO time (UTC)
    source TEXT                document id the prompt came from
    source_title TEXT          its title, for people
    style TEXT                 free_association | reminds_me | continue_thread
    adapter_version TEXT       the ledger version that dreamt it
    prompt TEXT, text TEXT     what the adapter was given and what it said
    status TEXT                pending | accepted | rejected
    novelty REAL               1 - highest cosine similarity to the existing material (embeddings)
    relevance REAL             cosine similarity to its prompt
    note TEXT                  the reviewer's note
    reviewed_at TEXT           when it was accepted or rejected
    kind TEXT                  dream | crosslink | split | frame | staleness
    target, score, patch, rationale, provenance, fingerprint   wiki proposals: the page, the patch (JSON),
                               why, who made it (JSON), and the key that stops it being proposed twice
    merge_state, merged_at, merge_commit, merge_note           what `wiki merge` (or revert) did with it

`reviews` keeps every review by the wiki reviewer with its API cost (requests, tokens, seconds), and
`decisions`, the history of every accept/reject (a decision is changed only with --force, and the
earlier one stays here): proposal_id, status, note, decided_at, decided_by (the OS user).

`PRAGMA user_version` holds the schema number; MIGRATIONS are applied in order, so a queue made by
an older MothBrain is upgraded in place and one made by a newer one is refused, untouched.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import getpass
import json
import os
import sqlite3
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from mothbrain.core import paths
from mothbrain.core.atomic import free_space
from mothbrain.core.clock import now_iso
from mothbrain.errors import MothError

STATUSES = ("pending", "accepted", "rejected")
COLUMNS = (
    "id",
    "created_at",
    "source",
    "source_title",
    "style",
    "adapter_version",
    "prompt",
    "text",
    "status",
    "novelty",
    "relevance",
    "note",
    "reviewed_at",
    "kind",
    "target",
    "score",
    "patch",
    "rationale",
    "provenance",
    "fingerprint",
    "merge_state",
    "merged_at",
    "merge_commit",
    "merge_note",
)
KINDS = ("dream", "crosslink", "split", "frame", "staleness")
WIKI_KINDS = KINDS[1:]
_WIKI_KINDS_SQL = ", ".join(f"'{k}'" for k in WIKI_KINDS)  # constants only: safe to put in a query
# Ordered, named schema migrations; user_version = how many have been applied.
MIGRATIONS = [
    (
        "create proposals",
        """
        CREATE TABLE proposals (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            created_at TEXT NOT NULL,
            source TEXT NOT NULL DEFAULT '',
            source_title TEXT NOT NULL DEFAULT '',
            style TEXT NOT NULL DEFAULT '',
            adapter_version TEXT NOT NULL DEFAULT '',
            prompt TEXT NOT NULL DEFAULT '',
            text TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'accepted', 'rejected')),
            novelty REAL,
            relevance REAL,
            note TEXT NOT NULL DEFAULT '',
            reviewed_at TEXT
        );
        CREATE INDEX proposals_status ON proposals (status, id);
    """,
    ),
    (
        "decision history",
        """
        CREATE TABLE decisions (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            proposal_id INTEGER NOT NULL REFERENCES proposals (id),
            status TEXT NOT NULL,
            note TEXT NOT NULL DEFAULT '',
            decided_at TEXT NOT NULL,
            decided_by TEXT NOT NULL DEFAULT ''
        );
        CREATE INDEX decisions_proposal ON decisions (proposal_id, id);
        INSERT INTO decisions (proposal_id, status, note, decided_at)
            SELECT id, status, note, reviewed_at FROM proposals WHERE status != 'pending' AND reviewed_at IS NOT NULL;
    """,
    ),
    (
        "wiki proposals",
        """
        ALTER TABLE proposals ADD COLUMN kind TEXT NOT NULL DEFAULT 'dream';
        ALTER TABLE proposals ADD COLUMN target TEXT NOT NULL DEFAULT '';
        ALTER TABLE proposals ADD COLUMN score REAL;
        ALTER TABLE proposals ADD COLUMN patch TEXT NOT NULL DEFAULT '';
        ALTER TABLE proposals ADD COLUMN rationale TEXT NOT NULL DEFAULT '';
        ALTER TABLE proposals ADD COLUMN provenance TEXT NOT NULL DEFAULT '';
        ALTER TABLE proposals ADD COLUMN fingerprint TEXT NOT NULL DEFAULT '';
        ALTER TABLE proposals ADD COLUMN merge_state TEXT NOT NULL DEFAULT '';
        ALTER TABLE proposals ADD COLUMN merged_at TEXT;
        ALTER TABLE proposals ADD COLUMN merge_commit TEXT NOT NULL DEFAULT '';
        ALTER TABLE proposals ADD COLUMN merge_note TEXT NOT NULL DEFAULT '';
        CREATE INDEX proposals_kind ON proposals (kind, status, id);
        CREATE INDEX proposals_fingerprint ON proposals (fingerprint);
        CREATE TABLE reviews (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            proposal_id INTEGER NOT NULL REFERENCES proposals (id),
            reviewer TEXT NOT NULL,
            decision TEXT NOT NULL,
            reason TEXT NOT NULL DEFAULT '',
            prompt_tokens INTEGER NOT NULL DEFAULT 0,
            completion_tokens INTEGER NOT NULL DEFAULT 0,
            requests INTEGER NOT NULL DEFAULT 0,
            seconds REAL NOT NULL DEFAULT 0,
            at TEXT NOT NULL
        );
        CREATE INDEX reviews_proposal ON reviews (proposal_id, reviewer);
    """,
    ),
]


BUSY_TIMEOUT_S = 30.0  # how long a write waits for another writer (a reviewer's accept, dream staging)


def queue_path(cfg) -> Path:
    return paths.proposals_dir(cfg) / "queue.sqlite3"


@contextlib.contextmanager
def _connect(cfg) -> Iterator[sqlite3.Connection]:
    path = queue_path(cfg)
    try:
        con = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_S)
    except sqlite3.Error as exc:
        raise MothError(f"cannot open the proposal queue {path} ({exc}); check the folder's permissions") from None
    con.row_factory = sqlite3.Row
    try:
        con.execute("PRAGMA journal_mode=WAL")
        _migrate(con, path)
        with con:  # one transaction: committed on success, rolled back on any error
            yield con
    except sqlite3.DatabaseError as exc:
        raise MothError(_queue_error(path, exc)) from None
    finally:
        con.close()


def _queue_error(path: Path, exc: sqlite3.DatabaseError) -> str:
    """What went wrong with the queue, in words that lead to the right fix (only damage means move it aside)."""
    code = getattr(exc, "sqlite_errorcode", None) or 0
    primary = code & 0xFF  # extended codes carry the primary one in their low byte
    if primary in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        return (
            f"the proposal queue {path} is busy: another process has held a write on it for over "
            f"{BUSY_TIMEOUT_S:g} s ({exc}); try again when it finishes (nothing was changed)"
        )
    if primary == sqlite3.SQLITE_FULL:
        return (
            f"the disk holding the proposal queue {path} is full ({free_space(path.parent)}); free space and try "
            "again (the queue is untouched: the write was rolled back)"
        )
    if primary in (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_PERM):
        return f"cannot write the proposal queue {path} ({exc}); check the permissions of it and of {path.parent}"
    if primary == sqlite3.SQLITE_IOERR:
        return f"reading or writing the proposal queue {path} failed ({exc}); check the disk (dmesg) and try again"
    return (
        f"the proposal queue {path} is damaged ({exc}); move it aside to start an empty queue "
        "(its proposals stay readable with the sqlite3 tool)"
    )


def _migrate(con: sqlite3.Connection, path: Path) -> None:
    version = con.execute("PRAGMA user_version").fetchone()[0]
    if version > len(MIGRATIONS):
        raise MothError(
            f"the proposal queue {path} has schema {version}, newer than this MothBrain understands "
            f"({len(MIGRATIONS)}); upgrade mothbrain — the file was left untouched"
        )
    for n, (_name, sql) in enumerate(MIGRATIONS[version:], start=version + 1):
        # One transaction per migration: the schema change and its number land together or not at all.
        con.executescript(f"BEGIN; {sql} PRAGMA user_version = {n}; COMMIT;")


def _row(r: sqlite3.Row) -> dict[str, Any]:
    row = {k: r[k] for k in COLUMNS}
    for k in _JSON_COLUMNS:
        try:
            row[k] = json.loads(row[k]) if row[k] else {}
        except ValueError:
            row[k] = {"unreadable": row[k][:200]}  # a hand-edited row: shown, never applied
    return row


_ADDABLE = ("source", "source_title", "style", "adapter_version", "prompt", "novelty", "relevance", "kind")
_ADDABLE += ("target", "score", "patch", "rationale", "provenance", "fingerprint")
_JSON_COLUMNS = ("patch", "provenance")  # stored as JSON text, handed out as dicts


def add_proposals(cfg, items: Iterable[dict[str, Any]]) -> list[int]:
    """Stage proposals (dicts with text and any of _ADDABLE; kind defaults to dream) as pending; returns
    their ids. All are added in one transaction: a kill leaves none or all of them."""
    ids = []
    with _connect(cfg) as con:
        for it in items:
            if not str(it.get("text", "")).strip():
                continue
            row = {k: it[k] for k in _ADDABLE if it.get(k) is not None}
            for k in _JSON_COLUMNS:
                if k in row and not isinstance(row[k], str):
                    row[k] = json.dumps(row[k], ensure_ascii=False, sort_keys=True)
            if row.setdefault("kind", "dream") not in KINDS:
                raise MothError(f"unknown proposal kind {row['kind']!r} (one of {', '.join(KINDS)})")
            cols = ["created_at", "text", *row]
            cur = con.execute(
                f"INSERT INTO proposals ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                (now_iso(), it["text"], *row.values()),
            )
            ids.append(cur.lastrowid)
    return ids


def list_proposals(
    cfg,
    status: str | None = None,
    limit: int | None = None,
    adapter_version: str | None = None,
    kind: str | None = None,
) -> list[dict[str, Any]]:
    """Proposals, oldest first; with `limit`, the newest `limit` of them, newest first (what a reviewer
    asking for "the last 10" wants to see). Optionally only one status, kind, or adapter version's."""
    if status is not None and status not in STATUSES:
        raise MothError(f"unknown proposal status {status!r} (one of {', '.join(STATUSES)})")
    if kind is not None and kind not in KINDS:
        raise MothError(f"unknown proposal kind {kind!r} (one of {', '.join(KINDS)})")
    filters = (("status", status), ("adapter_version", adapter_version), ("kind", kind))
    where = [(c, v) for c, v in filters if v is not None]
    order = " ORDER BY id DESC" if limit is not None else " ORDER BY id"
    sql = "SELECT * FROM proposals" + (" WHERE " + " AND ".join(f"{c} = ?" for c, _ in where) if where else "")
    sql += order
    args: list[Any] = [v for _, v in where]
    if limit is not None:
        sql += " LIMIT ?"
        args.append(int(limit))
    if not queue_path(cfg).exists():
        return []  # reading never creates the queue
    with _connect(cfg) as con:
        return [_row(r) for r in con.execute(sql, args)]


def get(cfg, proposal_id: int) -> dict[str, Any]:
    """One proposal, with `history`: its decisions, oldest first."""
    with _connect(cfg) as con:
        r = con.execute("SELECT * FROM proposals WHERE id = ?", (int(proposal_id),)).fetchone()
        history = con.execute(
            "SELECT status, note, decided_at, decided_by FROM decisions WHERE proposal_id = ? ORDER BY id",
            (int(proposal_id),),
        ).fetchall()
    if r is None:
        raise MothError(f"no proposal {proposal_id} in the queue (see `mothbrain proposals list`)")
    return dict(_row(r), history=[dict(h) for h in history])


def set_status(cfg, proposal_id: int, status: str, note: str = "", force: bool = False) -> dict[str, Any]:
    """Accept or reject (or return to pending) one proposal, with an optional note.

    A proposal already decided is changed only with `force`; every decision is kept in its history.
    """
    if status not in STATUSES:
        raise MothError(f"unknown proposal status {status!r} (one of {', '.join(STATUSES)})")
    with _connect(cfg) as con:
        r = con.execute("SELECT status, note, reviewed_at FROM proposals WHERE id = ?", (int(proposal_id),)).fetchone()
        if r is None:
            raise MothError(f"no proposal {proposal_id} in the queue (see `mothbrain proposals list`)")
        if r["status"] != "pending" and not force:
            said = f" (note: {r['note']})" if r["note"] else ""
            raise MothError(
                f"proposal {proposal_id} was already {r['status']} at {r['reviewed_at']}{said}; add --force to "
                "decide again (the earlier decision stays in its history)"
            )
        at = now_iso()
        con.execute(
            "UPDATE proposals SET status = ?, note = ?, reviewed_at = ? WHERE id = ?",
            (status, note or "", None if status == "pending" else at, int(proposal_id)),
        )
        con.execute(
            "INSERT INTO decisions (proposal_id, status, note, decided_at, decided_by) VALUES (?, ?, ?, ?, ?)",
            (int(proposal_id), status, note or "", at, _user()),
        )
    return get(cfg, proposal_id)


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container)
        return str(os.getuid())


def update_scores(cfg, proposal_id: int, novelty: float | None, relevance: float | None) -> None:
    with _connect(cfg) as con:
        cur = con.execute(
            "UPDATE proposals SET novelty = ?, relevance = ? WHERE id = ?", (novelty, relevance, int(proposal_id))
        )
        if cur.rowcount == 0:
            raise MothError(f"no proposal {proposal_id} in the queue (see `mothbrain proposals list`)")


def export_accepted(cfg, out: str | os.PathLike | None = None) -> tuple[Path, int]:
    """Write every accepted proposal (only those) as JSON lines; returns (path, count).

    Default path: <state>/data/proposals/exports/accepted-<YYYY-MM-DD>.jsonl. Written to a temp file
    and renamed, so a reader never sees half an export.
    """
    rows = list_proposals(cfg, status="accepted")
    if out is None:
        folder = paths.proposals_dir(cfg) / "exports"
        target = folder / f"accepted-{_dt.date.today().isoformat()}.jsonl"
    else:
        target = Path(out).expanduser()
    tmp = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps({k: r[k] for k in COLUMNS if k != "status"}, ensure_ascii=False) + "\n")
        os.replace(tmp, target)
    except OSError as exc:
        if tmp:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        raise MothError(
            f"cannot write the export {target} ({exc.strerror or exc}); pick another --out or free disk space"
        ) from None
    return target, len(rows)


# --------------------------------------------------------------------------- the wiki-worker's part
# (mothbrain.wiki: scan stages typed proposals, review decides them, merge applies the accepted ones)

LIVE_SQL = (
    "status = 'pending' OR status = 'rejected' OR (status = 'accepted' AND merge_state NOT IN ('stale', 'refused'))"
)


def live_fingerprints(cfg) -> set[str]:
    """Fingerprints a scan must not propose again: waiting, rejected (a person said no), or accepted and
    merged or about to be. A stale or refused one may be proposed afresh against the page as it is now."""
    if not queue_path(cfg).exists():
        return set()
    with _connect(cfg) as con:
        rows = con.execute(f"SELECT fingerprint FROM proposals WHERE fingerprint != '' AND ({LIVE_SQL})")
        return {r[0] for r in rows}


def awaiting_review(cfg, reviewer: str, limit: int, max_errors: int = 3) -> list[dict[str, Any]]:
    """Pending wiki proposals, oldest first, that `reviewer` has not already left for a person (deferred,
    or failed on `max_errors` times: one proposal the reviewer cannot take must not block the rest)."""
    if not queue_path(cfg).exists() or limit <= 0:
        return []
    with _connect(cfg) as con:
        rows = con.execute(
            f"SELECT * FROM proposals WHERE status = 'pending' AND kind IN ({_WIKI_KINDS_SQL}) AND id NOT IN "
            "(SELECT proposal_id FROM reviews WHERE reviewer = ? GROUP BY proposal_id "
            " HAVING SUM(decision = 'defer') > 0 OR SUM(decision = 'error') >= ?) ORDER BY id LIMIT ?",
            (reviewer, int(max_errors), int(limit)),
        )
        return [_row(r) for r in rows]


def record_review(
    cfg,
    proposal_id: int,
    reviewer: str,
    decision: str,
    reason: str,
    *,
    prompt_tokens: int = 0,
    completion_tokens: int = 0,
    requests: int = 0,
    seconds: float = 0.0,
) -> bool:
    """Keep one review (accept | reject | defer | error | down) and its cost; an accept or reject also decides the
    proposal, in the same transaction, if it is still pending (a person may have decided it meanwhile).
    Returns whether the proposal's status changed."""
    at = now_iso()
    with _connect(cfg) as con:
        con.execute(
            "INSERT INTO reviews (proposal_id, reviewer, decision, reason, prompt_tokens, completion_tokens, "
            "requests, seconds, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (int(proposal_id), reviewer, decision, reason, prompt_tokens, completion_tokens, requests, seconds, at),
        )
        if decision not in ("accept", "reject"):
            return False
        status = "accepted" if decision == "accept" else "rejected"
        note = f"{reviewer}: {reason}"
        cur = con.execute(
            "UPDATE proposals SET status = ?, note = ?, reviewed_at = ? WHERE id = ? AND status = 'pending'",
            (status, note, at, int(proposal_id)),
        )
        if cur.rowcount:
            con.execute(
                "INSERT INTO decisions (proposal_id, status, note, decided_at, decided_by) VALUES (?, ?, ?, ?, ?)",
                (int(proposal_id), status, note, at, reviewer),
            )
        return bool(cur.rowcount)


def awaiting_merge(cfg) -> list[dict[str, Any]]:
    """Accepted wiki proposals not merged yet (nor found stale or refused), oldest first."""
    if not queue_path(cfg).exists():
        return []
    with _connect(cfg) as con:
        rows = con.execute(
            f"SELECT * FROM proposals WHERE status = 'accepted' AND kind IN ({_WIKI_KINDS_SQL}) "
            "AND merge_state = '' ORDER BY id"
        )
        return [_row(r) for r in rows]


def set_merge_state(cfg, proposal_id: int, state: str, note: str = "", commit: str = "") -> None:
    """merged | stale | refused | reverted | '' (back to waiting), with when and why."""
    with _connect(cfg) as con:
        con.execute(
            "UPDATE proposals SET merge_state = ?, merge_note = ?, merge_commit = ?, merged_at = ? WHERE id = ?",
            (state, note, commit, now_iso(), int(proposal_id)),
        )


def review_totals(cfg, since: str | None = None) -> dict[str, dict[str, Any]]:
    """Per reviewer: reviews by decision, requests, tokens and seconds (since an ISO time, or ever)."""
    if not queue_path(cfg).exists():
        return {}
    sql = (
        "SELECT reviewer, decision, COUNT(*), SUM(requests), SUM(prompt_tokens), SUM(completion_tokens), "
        "SUM(seconds) FROM reviews" + (" WHERE at >= ?" if since else "") + " GROUP BY reviewer, decision"
    )
    out: dict[str, dict[str, Any]] = {}
    with _connect(cfg) as con:
        for reviewer, decision, n, req, pt, ct, sec in con.execute(sql, (since,) if since else ()):
            t = out.setdefault(
                reviewer, {"decisions": {}, "requests": 0, "prompt_tokens": 0, "completion_tokens": 0, "seconds": 0.0}
            )
            t["decisions"][decision] = n
            t["requests"] += req or 0
            t["prompt_tokens"] += pt or 0
            t["completion_tokens"] += ct or 0
            t["seconds"] += sec or 0.0
    return out


def wiki_activity(cfg, since: str) -> dict[str, dict[str, int]]:
    """Since an ISO time, per wiki kind: proposals staged, accepted, rejected, merged, stale, refused."""
    if not queue_path(cfg).exists():
        return {}
    out: dict[str, dict[str, int]] = {}
    with _connect(cfg) as con:
        for sql in (
            "SELECT kind, 'staged', COUNT(*) FROM proposals WHERE created_at >= ?",
            "SELECT kind, status, COUNT(*) FROM proposals WHERE reviewed_at >= ? AND status != 'pending'",
            "SELECT kind, merge_state, COUNT(*) FROM proposals WHERE merged_at >= ? AND merge_state != ''",
        ):
            for kind, what, n in con.execute(f"{sql} AND kind IN ({_WIKI_KINDS_SQL}) GROUP BY kind, 2", (since,)):
                out.setdefault(kind, {})[what] = n
    return out

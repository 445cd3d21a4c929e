"""versions.json: the one ledger every adapter traces back to.

Shape (schema 1):

    {
      "schema": 1,
      "current": "v0003" | null,          # the promoted adapter the coordinator reads
      "versions": [                        # appended, never reordered or dropped
        {"id": "v0001", "parent": null, "status": "training", "created_at": "...", "updated_at": "...",
         "dataset": {"fingerprint", "path", "composition"}, "hyperparameters": {...},
         "train": {...}, "timings": {...}, "eval": {...}, "promotion": {...},
         "error": null | {"reason", "suggestion"}, ...},
      ],
      "events": [{"at", "event", "version", "detail"}],  # promotions, rollbacks, failures
      "pending_current": null | {"version", "previous", "event", "detail", "updates"}
    }

`pending_current` is a pointer move in flight: promote and rollback record it before they swap the
`adapters/current` link and clear it when they confirm, so a kill at any instant leaves a ledger that
says what the link may be doing (core/current.py's reconcile_current settles the pair).

Every change happens inside `Ledger.transaction()`: an exclusive file lock (so two writers never
lose an entry), a fresh read, the change, then an atomic write (temp file, fsync, rename, fsync of
the folder) so a kill at any instant leaves either the old file or the new one, never a truncated
one. A file that is corrupt or of a newer schema is a clear error and is never overwritten.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from mothbrain.core.atomic import save_json
from mothbrain.core.clock import now_iso
from mothbrain.core.paths import ledger_path
from mothbrain.errors import MothError

SCHEMA = 1
STATUSES = ("training", "trained", "evaluated", "promoted", "rejected", "failed")
# Statuses from which a version may still become the current one.
PROMOTABLE = ("trained", "evaluated", "rejected", "promoted")
LOCK_TIMEOUT_S = 120.0


class LedgerError(MothError):
    pass


def _empty() -> dict[str, Any]:
    return {"schema": SCHEMA, "current": None, "versions": [], "events": []}


class Ledger:
    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._lock = FileLock(str(self.path) + ".lock", timeout=LOCK_TIMEOUT_S)

    # ------------------------------------------------------------------ reading

    def read(self) -> dict[str, Any]:
        """The whole ledger (a fresh copy). A missing file is an empty ledger."""
        if not self.path.exists():
            return _empty()
        try:
            raw = self.path.read_text(encoding="utf-8")
            data = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise LedgerError(
                f"{self.path} is corrupt ({exc.__class__.__name__}: {str(exc)[:80]}); it was left untouched — "
                f"restore it from a backup or move it aside to start a new ledger"
            ) from None
        if not isinstance(data, dict) or "versions" not in data:
            raise LedgerError(f"{self.path} is not a MothBrain ledger (no 'versions'); it was left untouched")
        schema = data.get("schema", 0)
        if not isinstance(schema, int) or schema > SCHEMA:
            raise LedgerError(
                f"{self.path} has schema {schema!r}, newer than this MothBrain understands ({SCHEMA}); "
                "upgrade mothbrain — the file was left untouched"
            )
        return data

    def versions(self) -> list[dict[str, Any]]:
        return self.read()["versions"]

    def get(self, version_id: str) -> dict[str, Any]:
        return _find(self.read(), version_id)

    def current(self) -> str | None:
        return self.read().get("current")

    def latest(self, statuses: tuple[str, ...] | None = None) -> dict[str, Any] | None:
        for v in reversed(self.versions()):
            if statuses is None or v["status"] in statuses:
                return v
        return None

    # ------------------------------------------------------------------ writing

    @contextlib.contextmanager
    def transaction(self) -> Iterator[dict[str, Any]]:
        """Lock, read, let the caller change the dict, write atomically. Nothing is written on error."""
        try:
            self._lock.acquire()
        except Timeout:
            raise LedgerError(
                f"{self.path}: another process holds {self._lock.lock_file} for over "
                f"{LOCK_TIMEOUT_S:.0f}s; wait for it or remove the lock file if no mothbrain runs"
            ) from None
        try:
            data = self.read()
            yield data
            save_json(self.path, data)
        finally:
            self._lock.release()

    def new_version(self, **fields: Any) -> dict[str, Any]:
        """Append a version with the next id and status 'training' (unless given)."""
        with self.transaction() as data:
            n = 1 + max(
                (int(v["id"].lstrip("v")) for v in data["versions"] if v["id"].lstrip("v").isdigit()), default=0
            )
            entry = {
                "id": f"v{n:04d}",
                "parent": None,
                "status": "training",
                "created_at": now_iso(),
                "updated_at": now_iso(),
                "dataset": {},
                "hyperparameters": {},
                "train": {},
                "timings": {},
                "eval": {},
                "promotion": {},
                "error": None,
            }
            entry.update(fields)
            _check_status(entry["status"])
            data["versions"].append(entry)
            return dict(entry)

    def update(self, version_id: str, **fields: Any) -> dict[str, Any]:
        """Merge fields into a version (dict fields are merged one level deep)."""
        with self.transaction() as data:
            entry = _find(data, version_id)
            _merge(entry, fields)
            return dict(entry)

    def fail(self, version_id: str, reason: str, suggestion: str = "") -> None:
        with self.transaction() as data:
            entry = _find(data, version_id)
            entry["status"] = "failed"
            entry["error"] = {"reason": reason, "suggestion": suggestion, "at": now_iso()}
            entry["updated_at"] = now_iso()
            _event(data, "failed", version_id, reason)

    def set_current(self, version_id: str | None, event: str = "promoted", detail: str = "") -> None:
        """Move the current pointer (the adapter symlink is swapped by promote, not here)."""
        with self.transaction() as data:
            _apply_current(data, version_id, event, detail)

    def begin_current(
        self,
        version_id: str | None,
        event: str,
        detail: str = "",
        updates: dict[str, dict[str, Any]] | None = None,
    ) -> str | None:
        """Record a pointer move about to happen (the link is swapped next); returns the current version.

        `updates` ({version: fields}) are applied together with the move when it is confirmed."""
        with self.transaction() as data:
            if data.get("pending_current"):
                raise LedgerError(
                    f"{self.path}: a move of the current pointer is already in flight "
                    f"({data['pending_current'].get('version')}); run `mothbrain status` to settle it"
                )
            if version_id is not None:
                _check_promotable(_find(data, version_id))
            data["pending_current"] = {
                "version": version_id,
                "previous": data.get("current"),
                "event": event,
                "detail": detail,
                "updates": updates or {},
            }
            return data.get("current")

    def pending_current(self) -> dict[str, Any] | None:
        return self.read().get("pending_current")

    def finish_current(self, confirm: bool = True) -> dict[str, Any] | None:
        """Confirm the pointer move in flight (it becomes current, its updates apply) or, with
        confirm=False, abandon it (current stays). Returns the move, None when none was in flight."""
        with self.transaction() as data:
            move = data.pop("pending_current", None)
            if not move:
                return None
            if not confirm:
                _event(data, "abandoned", move.get("version"), f"{move.get('event')} interrupted; current stays")
                return move
            for version_id, fields in (move.get("updates") or {}).items():
                _merge(_find(data, version_id), fields)
            _apply_current(data, move.get("version"), move.get("event") or "promoted", move.get("detail") or "")
            return move

    def add_event(self, event: str, version_id: str | None, detail: str = "") -> None:
        with self.transaction() as data:
            _event(data, event, version_id, detail)

    def promotion_history(self) -> list[str]:
        """Versions that were made current, oldest first (for rollback)."""
        return [e["version"] for e in self.read().get("events", []) if e["event"] in ("promoted", "rollback")]


def _find(data: dict[str, Any], version_id: str) -> dict[str, Any]:
    for v in data["versions"]:
        if v["id"] == version_id:
            return v
    raise LedgerError(f"no version {version_id!r} in the ledger (see `mothbrain status`)")


def _merge(entry: dict[str, Any], fields: dict[str, Any]) -> None:
    for k, v in fields.items():
        if k == "status":
            _check_status(v)
        if isinstance(v, dict) and isinstance(entry.get(k), dict):
            entry[k].update(v)
        else:
            entry[k] = v
    entry["updated_at"] = now_iso()


def _check_promotable(entry: dict[str, Any]) -> None:
    if entry["status"] not in PROMOTABLE:
        raise LedgerError(f"version {entry['id']} has status {entry['status']!r} and cannot be current")


def _apply_current(data: dict[str, Any], version_id: str | None, event: str, detail: str) -> None:
    if version_id is not None:
        entry = _find(data, version_id)
        _check_promotable(entry)
        entry["status"] = "promoted"
        entry["updated_at"] = now_iso()
    data["current"] = version_id
    _event(data, event, version_id, detail)


def _check_status(status: str) -> None:
    if status not in STATUSES:
        raise LedgerError(f"unknown status {status!r} (one of {', '.join(STATUSES)})")


def _event(data: dict[str, Any], event: str, version_id: str | None, detail: str) -> None:
    data.setdefault("events", []).append({"at": now_iso(), "event": event, "version": version_id, "detail": detail})


def open_ledger(cfg) -> Ledger:

    return Ledger(ledger_path(cfg))

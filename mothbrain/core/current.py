"""The `adapters/current` pointer: which adapter is promoted, kept in agreement with the ledger.

Promote moves it (under a lock, link and ledger together); serve, eval, status and doctor read it. A promotion
killed half-way leaves link and ledger apart; `reconcile_current` makes the link agree with the ledger."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from mothbrain.config import Config
from mothbrain.core import paths
from mothbrain.core.ledger import LOCK_TIMEOUT_S, Ledger, open_ledger
from mothbrain.errors import MothError


def _pointer_lock(cfg: Config, timeout: float = LOCK_TIMEOUT_S) -> FileLock:
    """Held for a whole move (intent, swap, confirm) and by reconciliation, so neither sees the other's middle."""
    adapters = paths.adapters_dir(cfg)
    adapters.mkdir(parents=True, exist_ok=True)
    return FileLock(str(adapters / ".pointer.lock"), timeout=timeout)


def _move_current(
    cfg: Config, ledger: Ledger, version: str | None, event: str, detail: str, updates: dict[str, dict[str, Any]]
) -> None:
    """Move the pointer so that a kill at any instant leaves link and ledger reconcilable: the ledger records
    the intent first, then the link is swapped, then the ledger confirms (the move's updates land with it)."""
    with _locked(_pointer_lock(cfg)):
        previous = ledger.begin_current(version, event, detail, updates)
        try:
            _point_current(cfg, version)
        except BaseException:
            # The swap did not happen (or its failure is unclear): put the link back, then drop the intent.
            with contextlib.suppress(Exception):
                _point_current(cfg, previous)
            ledger.finish_current(confirm=False)
            raise
        # A failure here leaves the intent recorded and the link moved: the next command confirms it.
        ledger.finish_current(confirm=True)


@contextlib.contextmanager
def _locked(lock: FileLock):
    try:
        lock.acquire()
    except Timeout:
        raise MothError(
            f"another mothbrain process holds {lock.lock_file} (moving adapters/current); wait for it or remove "
            "the lock file if no mothbrain runs"
        ) from None
    try:
        yield
    finally:
        lock.release()


def _link_target(cfg: Config) -> str | None:
    """The version adapters/current names (None: no link)."""
    link = paths.current_adapter_link(cfg)
    return os.path.basename(os.readlink(link)) if link.is_symlink() else None


def reconcile_current(cfg: Config, wait: float = LOCK_TIMEOUT_S) -> str | None:
    """Make adapters/current agree with the ledger, which is the truth; returns what was done (None: nothing).

    A move in flight (a kill between intent and confirmation) is confirmed when the link already names its
    version, completed when its adapter is complete (the move was decided: a version that passed the gate),
    and abandoned otherwise. Then a link that names another version than the ledger's current is
    pointed back at it. Called first by every command that reads either."""

    ledger = open_ledger(cfg)
    if not ledger.path.exists():
        return None  # no ledger, nothing to be true to; the link is left alone
    data = ledger.read()
    if not data.get("pending_current") and _link_target(cfg) == data.get("current"):
        return None  # the common case costs one read and no lock
    with _locked(_pointer_lock(cfg, wait)):
        notes = []
        for tmp in paths.adapters_dir(cfg).glob(".current.*.tmp"):  # a kill between symlink and rename
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        move = ledger.pending_current()
        if move:
            target = move.get("version")
            how = "confirmed" if _link_target(cfg) == target else "abandoned"
            if how == "abandoned" and (target is None or adapter_is_complete(paths.adapter_dir(cfg, target))):
                # the move was decided (a version that passed the gate, or a rollback) and recorded: complete it
                with contextlib.suppress(MothError):
                    _point_current(cfg, target)
                    how = "completed"
            ledger.finish_current(confirm=how != "abandoned")
            notes.append(f"{how} an interrupted {move.get('event')} of {target}")
        current, linked = ledger.current(), _link_target(cfg)
        if linked != current:
            if current is not None and not adapter_is_complete(paths.adapter_dir(cfg, current)):
                # Nothing sound to point at; the link is left alone and `mothbrain doctor` keeps reporting it.
                notes.append(f"the ledger's current {current} has no complete adapter; adapters/current left as is")
                return "; ".join(notes)
            _point_current(cfg, current)
            notes.append(f"pointed adapters/current at {current or 'nothing'} (it named {linked or 'nothing'})")
        return "; ".join(notes) or None


def _point_current(cfg: Config, version: str | None) -> None:
    """Swap adapters/current to adapters/<version> (None removes it) by renaming a temp symlink over it."""

    link = paths.current_adapter_link(cfg)
    if link.exists() and not link.is_symlink():
        raise MothError(f"{link} is a real directory, not a symlink; move it aside (MothBrain never overwrites it)")
    if version is None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(link)
        return
    if not adapter_is_complete(paths.adapter_dir(cfg, version)):
        raise MothError(f"refusing to point {link} at the incomplete adapter {paths.adapter_dir(cfg, version)}")
    tmp = link.with_name(f".current.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    try:
        os.symlink(version, tmp)  # relative: the state directory can move without breaking it
        os.replace(tmp, link)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise MothError(f"cannot update {link} ({exc.strerror or exc}); the previous pointer is unchanged") from None


def current_adapter_path(cfg: Config) -> Path | None:
    """The promoted adapter's directory (resolved through the link, once it agrees with the ledger), or None."""
    reconcile_current(cfg)
    link = paths.current_adapter_link(cfg)
    return link.resolve() if link.is_symlink() and link.exists() else None


@dataclass(frozen=True)
class AdapterPointer:
    version: str | None  # None: nothing promoted, serve the base
    path: Path | None


def current_adapter(cfg: Config) -> AdapterPointer:
    """The promoted adapter: `adapters/current` resolved once (so a swap during a load cannot mix two
    versions), else the ledger's current version; nothing when neither names one. The link is first made to
    agree with the ledger (a promotion killed half-way leaves them apart)."""

    with contextlib.suppress(MothError):
        reconcile_current(cfg, wait=10.0)  # a move in flight finishes within this; else serve what is there
    link = paths.current_adapter_link(cfg)
    if link.is_symlink() or link.exists():
        try:
            target = link.resolve(strict=True)
            return AdapterPointer(target.name, target)
        except OSError:
            pass  # a dangling link: fall back to the ledger

    version = open_ledger(cfg).current()
    if version:
        return AdapterPointer(version, paths.adapter_dir(cfg, version).resolve())
    return AdapterPointer(None, None)


def adapter_is_complete(path: str | os.PathLike) -> bool:
    """A finished adapter directory: PEFT config and weights present (checked before loading/serving)."""
    p = Path(path)
    return (p / "adapter_config.json").is_file() and any(
        (p / n).is_file() for n in ("adapter_model.safetensors", "adapter_model.bin")
    )

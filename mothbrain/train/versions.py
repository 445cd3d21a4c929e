"""Which version a training run carries: the data set it trains on, refusing a repeat of a finished
version, starting or resuming the unfinished one in the ledger, and its checkpoints."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mothbrain.config import Config
from mothbrain.core import paths
from mothbrain.core.ledger import Ledger, open_ledger
from mothbrain.data.dataset import LATEST_NAME, load_latest_dataset
from mothbrain.errors import MothError, NoNewMaterial, NothingToDo
from mothbrain.train.ranks import rank, world_size


@dataclass
class TrainRun:
    """The version being trained and where it starts from."""

    version: str
    resume_from: Path | None
    is_main: bool
    ledger: Ledger
    warnings: list[str] = field(default_factory=list)


def load_training_dataset(cfg: Config):

    try:
        dataset, meta = load_latest_dataset(cfg)
    except MothError as exc:
        if "preprocess" in str(exc) and "damaged" not in str(exc):
            raise NothingToDo(str(exc)) from None
        raise
    if not meta.get("path"):  # where the data set lies, for the ledger (latest.json names it)
        pointer = json.loads((paths.datasets_dir(cfg) / LATEST_NAME).read_text(encoding="utf-8"))
        meta = dict(meta, path=str(paths.datasets_dir(cfg) / pointer["path"]))
    if "train" not in dataset or len(dataset["train"]) == 0:
        raise NothingToDo("the data set's training split is empty: add material and run `mothbrain preprocess`")
    return dataset, meta


# Settings that do not change what a version learns; a change in them alone is no reason to retrain.
NOT_LEARNING_SETTINGS = ("skip_unchanged", "save_steps", "logging_steps", "keep_checkpoints", "use_liger")


def _learning_settings(hyper: dict[str, Any]) -> dict[str, Any]:
    train = {k: v for k, v in (hyper.get("train") or {}).items() if k not in NOT_LEARNING_SETTINGS}
    return {"base": hyper.get("base"), "quantization": hyper.get("quantization"), "lora": hyper.get("lora"), **train}


def refuse_unchanged(cfg: Config, fingerprint: str | None) -> None:
    """Raise NoNewMaterial when the newest finished version was trained on this data set with these settings.

    A nightly run with nothing new would otherwise spend hours of GPU on a copy of that version.
    An unfinished version is left to `_start_or_resume` (resuming it is never a repeat).
    """
    ledger = open_ledger(cfg)
    if not fingerprint or ledger.latest(("training",)) is not None:
        return
    newest = ledger.latest(("trained", "evaluated", "promoted", "rejected"))
    if newest is None or (newest.get("dataset") or {}).get("fingerprint") != fingerprint:
        return
    if _learning_settings(newest.get("hyperparameters") or {}) == _learning_settings(_hyperparameters(cfg)):
        raise NoNewMaterial(newest["id"], fingerprint)


def open_version(cfg: Config, meta: dict, fresh: bool, estimate) -> TrainRun:
    """Rank 0 picks the unfinished version (resume) or appends a new one; other ranks read it back."""
    ledger = open_ledger(cfg)
    is_main = rank() == 0
    run = _start_or_resume(cfg, ledger, meta, fresh, estimate) if is_main else None
    if world_size() > 1:
        from accelerate import PartialState

        PartialState().wait_for_everyone()  # rank 0 has written the ledger
        if not is_main:
            entry = ledger.latest(("training",))
            if entry is None:
                raise MothError("rank 0 created no training version; see its log")
            run = TrainRun(entry["id"], last_checkpoint(paths.checkpoints_dir(cfg, entry["id"])), False, ledger)
    return run


def _start_or_resume(cfg: Config, ledger: Ledger, meta: dict, fresh: bool, estimate) -> TrainRun:
    """The unfinished version (from its last checkpoint, if any), or a new version."""
    fingerprint = meta.get("fingerprint")
    hyper = _hyperparameters(cfg)
    unfinished = ledger.latest(("training",))
    if unfinished is not None:
        vid = unfinished["id"]
        ckpt = last_checkpoint(paths.checkpoints_dir(cfg, vid))
        same_data = unfinished.get("dataset", {}).get("fingerprint") == fingerprint
        # A checkpoint only fits the same adapter shape on the same base.
        same_shape = all(
            unfinished.get("hyperparameters", {}).get(k) == hyper[k] for k in ("base", "quantization", "lora")
        )
        if not fresh and same_data and same_shape:
            if ckpt is not None:
                ledger.add_event("resumed", vid, f"from {ckpt.name}")
            else:  # killed before its first checkpoint: start over inside the same version
                ledger.add_event("restarted", vid, "no checkpoint yet; training from the start")
            ledger.update(vid, hyperparameters=hyper)
            return TrainRun(vid, ckpt, True, ledger)
        why = (
            "superseded by `train --fresh`"
            if fresh
            else "superseded: the data set changed"
            if not same_data
            else "superseded: base, quantization or LoRA settings changed"
        )
        ledger.fail(vid, why, "nothing to do; a new version was started")
        shutil.rmtree(paths.checkpoints_dir(cfg, vid), ignore_errors=True)
    parent = ledger.current() if cfg.train.init_from == "current" else None
    entry = ledger.new_version(
        parent=parent,
        dataset={"fingerprint": fingerprint, "path": meta.get("path"), "composition": meta.get("composition", {})},
        hyperparameters=hyper,
        memory={"predicted_peak_gb": round(estimate.comparable_bytes / 1e9, 3)},
    )
    return TrainRun(entry["id"], None, True, ledger)


def _hyperparameters(cfg: Config) -> dict[str, Any]:
    d = cfg.to_dict()
    return {
        "base": cfg.model.base,
        "quantization": d["model"]["quantization"],
        "lora": d["lora"],
        "train": d["train"],
        "device": cfg.model.device,
    }


def saved_result(cfg: Config, version: str, meta: dict) -> dict[str, Any] | None:
    """What training returned, when `version`'s adapter was saved complete on this data set but not recorded.

    A kill between saving and recording leaves the final checkpoint and the adapter: training again
    would run one step past max_steps and replace the saved adapter with another.
    """
    try:
        info = json.loads((paths.adapter_dir(cfg, version) / "mothbrain.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    same = info.get("version") == version and info.get("dataset", {}).get("fingerprint") == meta.get("fingerprint")
    result = info.get("result")
    if not (same and isinstance(result, dict)):
        return None
    return dict(
        result, trainer=None, warnings=[*result.get("warnings", []), "recorded the adapter saved before a kill"]
    )


def last_checkpoint(folder: Path) -> Path | None:
    """The newest complete `checkpoint-N` (the Trainer writes trainer_state.json after the weights)."""
    if not folder.is_dir():
        return None
    done = [
        p
        for p in folder.glob("checkpoint-*")
        if (p / "trainer_state.json").is_file() and p.name.split("-")[-1].isdigit()
    ]
    return max(done, key=lambda p: int(p.name.split("-")[-1]), default=None)

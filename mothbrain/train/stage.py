"""The training recipe, top to bottom: preflight → version → train (yielding, resumable) → save.

    mothbrain train                                   # the demo config: tiny model, CPU, ~1 minute
    mothbrain train --dry-run --config configs/default.yaml
    accelerate launch --config_file configs/accelerate_fsdp_qlora.yaml -m mothbrain.cli train --config ...

QLoRA through the field's libraries: the base loads in 4-bit NF4 with double quantization
(mothbrain.models.loading), peft adds the LoRA adapters, trl's SFTTrainer trains on a prompt-completion
data set with the loss on the completion (the voice's tokens) only, packed padding-free
(`packing_strategy="bfd"`: position_ids restart per sample, so no sample attends to another).

A version is created in the ledger before the first step and carries the run until it is trained
or failed. Checkpoints land every `train.save_steps` and on SIGTERM/SIGINT; `mothbrain train`
after a kill (kill -9 included) finds the unfinished version and resumes from its last checkpoint,
so the ledger shows one version. When the neighbour callback sees people on the machine the run
checkpoints, frees its memory, waits until it is quiet and resumes, in the same version.

Under `accelerate launch` every rank runs this function; only rank 0 writes the ledger and the
adapter's metadata, and every rank takes part in the collective save.
"""

from __future__ import annotations

import errno
import gc
import json
import math
import os
import shutil
import signal
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from mothbrain.config import Config
from mothbrain.core import paths
from mothbrain.core.atomic import describe_write_error, replace_folder
from mothbrain.core.clock import now_iso
from mothbrain.core.current import adapter_is_complete
from mothbrain.core.ledger import Ledger, open_ledger
from mothbrain.core.neighbour import apply_niceness, make_yield_callback
from mothbrain.core.progress import StageProgress
from mothbrain.data.dataset import LATEST_NAME, load_latest_dataset
from mothbrain.errors import MothError, NoNewMaterial, NothingToDo
from mothbrain.models import memory
from mothbrain.models.loading import (
    MODEL_BUILD_LOCK,
    compute_dtype,
    load_base_model,
    load_tokenizer,
    quiet_libraries,
    resolve_device,
)
from mothbrain.report import train_loss_text

# Optimizers that need CUDA (bitsandbytes paged / 8-bit states); on CPU plain AdamW is used.
CUDA_ONLY_OPTIMIZERS = ("paged_", "8bit")
# The one loss figure people read ("train loss", README): the mean of the last 10% of the logged losses (at
# least 3: one logged value is noisy), shown after the same mean over the first 10% — first_loss → final_loss.
LOSS_SHARE = 0.1
LOSS_MIN_LOGGED = 3


class Interrupted(Exception):
    """SIGTERM/SIGINT arrived; a checkpoint was saved and the version stays resumable."""


class LossNotFinite(Exception):
    pass


@dataclass
class TrainReport:
    """What `mothbrain train` prints: one summary table (report.py protocol)."""

    title: str = "train"
    version: str = ""
    figures: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    text: str = ""  # the dry-run's memory breakdown, printed above the table

    def rows(self) -> list[dict[str, Any]]:
        return [{"": k, "value": v} for k, v in self.figures.items()]

    def to_json(self) -> dict[str, Any]:
        return {"title": self.title, "version": self.version, **self.figures, "warnings": self.warnings}


@dataclass
class _Run:
    """The version being trained and where it starts from."""

    version: str
    resume_from: Path | None
    is_main: bool
    ledger: Ledger
    warnings: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- entry point


def run_train(cfg: Config, dry_run: bool = False, fresh: bool = False, force: bool = False) -> TrainReport:
    """Train a version; NoNewMaterial (a skip) when it would repeat one (unless `force` or the config says so)."""
    check_report_to(cfg)
    if dry_run:
        return dry_run_report(cfg)

    # --- setup: refuse what cannot fit before anything is loaded or recorded
    dataset, meta = _load_dataset(cfg)
    if cfg.train.skip_unchanged and not force:
        refuse_unchanged(cfg, meta.get("fingerprint"))
    estimate = memory.check_fits(cfg)
    run = _open_version(cfg, meta, fresh, estimate)
    niceness = apply_niceness(cfg.neighbour)

    # --- train (unless a kill came after the adapter was saved: then it is recorded as saved)
    started_at, t0 = now_iso(), time.time()
    saved = _saved_result(cfg, run.version, meta)
    try:
        result = saved or _train_with_yielding(cfg, run, dataset["train"])
    except Interrupted:
        if run.is_main:
            run.ledger.add_event("interrupted", run.version, "checkpoint saved; `mothbrain train` resumes")
        raise MothError(
            f"training of {run.version} interrupted; a checkpoint was saved in "
            f"{paths.checkpoints_dir(cfg, run.version)} — run `mothbrain train` again to resume"
        ) from None
    except KeyboardInterrupt:
        # A second Ctrl-C: no new checkpoint, but the version stays resumable from its last one.
        raise
    except BaseException as exc:
        full = _write_error(exc)
        if full is not None:  # a full disk passes: keep the version resumable from its last checkpoint
            raise MothError(_disk_full_message(cfg, run, full)) from None
        reason, suggestion = _explain_failure(exc)
        if run.is_main:
            run.ledger.fail(run.version, reason, suggestion)
            shutil.rmtree(paths.checkpoints_dir(cfg, run.version), ignore_errors=True)
        if isinstance(exc, SystemExit):
            raise
        raise MothError(f"training of {run.version} failed: {reason} — {suggestion}") from None

    # --- save: a failure here (full disk) leaves the version "training" with its checkpoints
    adapter = paths.adapter_dir(cfg, run.version) if saved else _save_adapter(cfg, run, result, meta)
    if not run.is_main:
        return TrainReport(title=f"train (rank {_rank()}: rank 0 reports)", version=run.version)

    # --- record: ledger entry complete, checkpoints no longer needed
    measured = memory.measured_peak_bytes()
    first, final = loss_summary(result["losses"])
    train_fig = {
        "steps": result["steps"],
        "losses": result["losses"],
        "first_loss": first,  # mean of the first 10% of the logged losses (loss_summary)
        "final_loss": final,  # mean of the last 10%: the "train loss"
        "tokens": result["tokens"],  # non-pad tokens seen over the whole version (resumes included)
        "tokens_per_s": result["tokens_per_s"],
        "pad_share": result["pad_share"],
        "samples": result["samples"],
        "replay_samples": result["replay_samples"],
        "resumed_from": run.resume_from.name if run.resume_from else None,
        "yields": len(result["yields"]),
        "yield_seconds": round(sum(y["waited_s"] for y in result["yields"]), 1),
        "yield_events": result["yields"],
        "init_from": result["init_from"],
        "optimizer": result["optimizer"],
        "niceness": niceness,
    }
    run.ledger.update(
        run.version,
        status="trained",
        adapter=str(adapter),
        train=train_fig,
        timings={
            "train_s": round(result["train_s"], 1),
            "wall_s": round(time.time() - t0, 1),
            "started_at": started_at,
            "finished_at": now_iso(),
        },
        memory={
            "predicted_peak_gb": round(estimate.comparable_bytes / 1e9, 3),
            "measured_peak_gb": round(measured / 1e9, 3),
            "measured_by": "cuda.max_memory_allocated" if _cuda_used() else "peak RSS",
        },
    )
    shutil.rmtree(paths.checkpoints_dir(cfg, run.version), ignore_errors=True)

    report = TrainReport(version=run.version, warnings=run.warnings + result["warnings"])
    report.figures = {
        "version": run.version,
        "steps": result["steps"],
        "train loss": train_loss_text(first, final),  # the figure status and the briefing show too
        "tokens": result["tokens"],
        "tokens/s": result["tokens_per_s"],
        "pad share": f"{result['pad_share']:.1%}",
        "samples (replay)": f"{result['samples']} ({result['replay_samples']})",
        "init from": result["init_from"],
        "resumed from": train_fig["resumed_from"] or "—",
        "yields": f"{train_fig['yields']} ({train_fig['yield_seconds']} s)",
        "peak memory GB (predicted / measured)": f"{estimate.comparable_bytes / 1e9:.2f} / {measured / 1e9:.2f}",
        "adapter": str(adapter),
    }
    return report


# --------------------------------------------------------------------------- dry run


def dry_run_report(cfg: Config) -> TrainReport:
    """Parameter counts and the memory estimate from the model's config alone (no weights)."""

    counts = memory.count_parameters(cfg)
    est = memory.estimate_memory(cfg, counts)
    report = TrainReport(title="train --dry-run (no weights loaded)")
    report.text = memory.format_estimate(counts, est)
    report.figures = {
        "trainable parameters": f"{counts.trainable:,} ({counts.trainable_pct:.2f}%)",
        "total parameters": f"{counts.total:,}",
        "adapter on disk (fp32)": f"{est.disk['adapter'] / 1e6:,.0f} MB",
        "quantized base": f"{est.disk['base_quantized'] / 1e9:,.1f} GB",
        "predicted peak": f"{est.peak_bytes / 1e9:,.1f} GB of {cfg.hardware.memory_gb:g} GB",
        "verdict": est.verdict,
    }
    report.warnings = list(getattr(est, "warnings", []))
    return report


# --------------------------------------------------------------------------- setup


def _load_dataset(cfg: Config):

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


def _open_version(cfg: Config, meta: dict, fresh: bool, estimate) -> _Run:
    """Rank 0 picks the unfinished version (resume) or appends a new one; other ranks read it back."""
    ledger = open_ledger(cfg)
    is_main = _rank() == 0
    run = _start_or_resume(cfg, ledger, meta, fresh, estimate) if is_main else None
    if _world_size() > 1:
        from accelerate import PartialState

        PartialState().wait_for_everyone()  # rank 0 has written the ledger
        if not is_main:
            entry = ledger.latest(("training",))
            if entry is None:
                raise MothError("rank 0 created no training version; see its log")
            run = _Run(entry["id"], last_checkpoint(paths.checkpoints_dir(cfg, entry["id"])), False, ledger)
    return run


def _start_or_resume(cfg: Config, ledger: Ledger, meta: dict, fresh: bool, estimate) -> _Run:
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
            return _Run(vid, ckpt, True, ledger)
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
    return _Run(entry["id"], None, True, ledger)


def _hyperparameters(cfg: Config) -> dict[str, Any]:
    d = cfg.to_dict()
    return {
        "base": cfg.model.base,
        "quantization": d["model"]["quantization"],
        "lora": d["lora"],
        "train": d["train"],
        "device": cfg.model.device,
    }


def _saved_result(cfg: Config, version: str, meta: dict) -> dict[str, Any] | None:
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


# --------------------------------------------------------------------------- training


def _train_with_yielding(cfg: Config, run: _Run, train_rows) -> dict[str, Any]:
    """Train until done; when the neighbour callback yields, free the memory, wait, resume."""

    yield_cb = make_yield_callback(cfg.neighbour.yield_)
    yields: list[dict[str, Any]] = []
    resume_from = run.resume_from
    throughput = _Throughput()
    while True:
        trainer, info = _build_trainer(
            cfg, run.version, train_rows, [yield_cb, throughput] if yield_cb else [throughput]
        )
        stop = _SignalCheckpoint()
        trainer.add_callback(stop)
        with stop.installed():
            trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
        state = trainer.state
        finished = state.max_steps > 0 and state.global_step >= state.max_steps
        if stop.signalled and not finished:
            raise Interrupted()
        if yield_cb is not None and yield_cb.yielded and not finished:
            reason = yield_cb.reason
            del trainer, state  # the model, optimizer and activations go with it
            _free_memory()
            if run.is_main:
                run.ledger.add_event("yielded", run.version, reason)
            waited = yield_cb.controller.wait_until_quiet()
            yields.append({"at": now_iso(), "reason": reason, "waited_s": round(waited, 1)})
            yield_cb.reset()
            resume_from = last_checkpoint(paths.checkpoints_dir(cfg, run.version))
            continue
        break
    losses = [[h["step"], round(float(h["loss"]), 5)] for h in state.log_history if "loss" in h]
    return dict(
        info,
        trainer=trainer,
        losses=losses,
        steps=state.global_step,
        tokens=int(state.num_input_tokens_seen),
        train_s=throughput.seconds,
        tokens_per_s=round(throughput.tokens / max(throughput.seconds, 1e-9), 1),
        yields=yields,
    )


def _build_trainer(cfg: Config, version: str, train_rows, callbacks: list):
    """Model (4-bit base + LoRA) and a trl SFTTrainer configured from cfg.train."""
    import torch
    from peft import LoraConfig as PeftLoraConfig
    from peft import PeftModel, prepare_model_for_kbit_training
    from trl import SFTConfig, SFTTrainer

    quiet_libraries()
    # transformers 5 renamed gradient -> activation checkpointing; peft/trl still call the old names
    warnings.filterwarnings("ignore", message=".*deprecated and will be removed in v6.*", category=FutureWarning)
    t = cfg.train
    device, dtype = resolve_device(cfg), compute_dtype(cfg)
    distributed = _world_size() > 1
    fsdp = os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"
    notes: list[str] = []  # warnings for the report

    tokenizer = load_tokenizer(cfg)
    model = load_base_model(cfg, for_training=True)
    if dtype == torch.float16 and not distributed:
        # fp16 needs fp32 norms and embeddings to stay stable; with bf16/fp32 compute the Trainer
        # and trl already freeze the base, enable input grads and checkpointing, and the fp32 upcast
        # would cost ~5 GB on the 72B (embeddings + lm_head) that the memory estimate does not hold.
        model = prepare_model_for_kbit_training(
            model,
            use_gradient_checkpointing=t.gradient_checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False},
        )

    init_from, peft_config, current = "base", None, None
    if t.init_from == "current":
        current = _current_adapter(cfg, notes)
    if current is not None:
        # Grow the promoted adapter instead of starting over.

        with MODEL_BUILD_LOCK:
            model = PeftModel.from_pretrained(model, str(current), is_trainable=True)
        init_from = f"current ({current.name})"
    else:
        peft_config = PeftLoraConfig(
            r=cfg.lora.r,
            lora_alpha=cfg.lora.alpha,
            lora_dropout=cfg.lora.dropout,
            target_modules=list(cfg.lora.target_modules),
            task_type="CAUSAL_LM",
        )
    rows, replay = select_rows(cfg, train_rows, growing=current is not None, warnings=notes)

    optim = t.optimizer
    if device != "cuda" and any(s in optim for s in CUDA_ONLY_OPTIMIZERS):
        optim = "adamw_torch"
    elif fsdp and any(s in optim for s in CUDA_ONLY_OPTIMIZERS):
        optim = "adamw_torch"  # bitsandbytes' 8-bit/paged states break FSDP checkpoint saving (peft docs)
        notes.append(f"train.optimizer {t.optimizer} does not checkpoint under FSDP; adamw_torch used")
    ckpt_key = (
        "activation_checkpointing"
        if "activation_checkpointing" in SFTConfig.__dataclass_fields__
        else "gradient_checkpointing"
    )  # transformers 5 renamed it
    args = SFTConfig(
        output_dir=str(paths.checkpoints_dir(cfg, version)),
        max_steps=t.max_steps,
        num_train_epochs=t.num_epochs,
        learning_rate=t.learning_rate,
        lr_scheduler_type=t.lr_scheduler,
        warmup_steps=t.warmup_ratio if t.warmup_ratio < 1 else int(t.warmup_ratio),  # a float < 1 is a ratio
        per_device_train_batch_size=t.micro_batch_size,
        gradient_accumulation_steps=t.gradient_accumulation,
        max_length=t.max_seq_len,
        packing=t.packing,
        packing_strategy="bfd",  # best-fit decreasing; implies padding-free (position_ids, no cross-sample attention)
        completion_only_loss=True,  # the loss is on the voice's tokens only
        **{ckpt_key: t.gradient_checkpointing, f"{ckpt_key}_kwargs": {"use_reentrant": False}},
        optim=optim,
        weight_decay=t.weight_decay,
        max_grad_norm=t.max_grad_norm,
        seed=t.seed,
        data_seed=t.seed,
        save_strategy="steps",
        save_steps=t.save_steps,
        save_total_limit=t.keep_checkpoints,
        logging_steps=t.logging_steps,
        logging_first_step=True,
        include_num_input_tokens_seen="all" if t.packing else "non_padding",  # padding-free: every token is real
        report_to="none",
        use_cpu=device == "cpu",
        bf16=device == "cuda" and dtype == torch.bfloat16,
        fp16=device == "cuda" and dtype == torch.float16,
        use_liger_kernel=bool(t.use_liger and device == "cuda" and _liger_available()),
        dataloader_num_workers=0,
        disable_tqdm=_rank() != 0,
        log_level="error",
        ddp_find_unused_parameters=False,
    )

    with MODEL_BUILD_LOCK:  # peft's empty-weight context is process-wide (see modeling.py)
        trainer = SFTTrainer(
            model=model,
            args=args,
            train_dataset=rows,
            processing_class=tokenizer,
            peft_config=peft_config,
            callbacks=[c for c in callbacks if c is not None],
        )
    if not (trainer.is_fsdp_enabled or trainer.is_deepspeed_enabled):
        # trl stores QLoRA adapters in bf16 (the paper's recipe); we keep fp32 master weights, as the
        # memory estimate assumes: late in a cosine schedule Adam's steps (~lr) fall below bf16's
        # resolution for weights of ~1e-2 and would be lost. Matmuls still run in bf16 under autocast
        # on GPU. (FSDP needs one dtype per flattened group, so there trl's bf16 stays.)
        for p in trainer.model.parameters():
            if p.requires_grad and p.dtype != torch.float32:
                p.data = p.data.float()
    _show_loss_on_progress_bar(trainer)
    trainer.add_callback(_FiniteLoss())
    if _rank() == 0:
        trainer.add_callback(_StepsForStatus(cfg))
        for cb in _report_to_callbacks(cfg, version):
            trainer.add_callback(cb)
    info = {
        "pad_share": pad_share(trainer),
        "samples": len(rows),
        "replay_samples": replay,
        "init_from": init_from,
        "optimizer": optim,
        "warnings": notes,
    }
    return trainer, info


def select_rows(cfg: Config, rows, growing: bool, warnings: list[str] | None = None):
    """(rows to train on, replay count): all rows; when growing the current adapter, the recent
    ones plus older ones so that replay / (recent + replay) = train.replay_share. Shuffled (with
    train.seed): the data set keeps its rows in document order, and trl packs neighbouring rows
    together, so unshuffled rows would share packed sequences with their own context."""
    keep = ("prompt", "completion")
    drop = [c for c in rows.column_names if c not in keep]
    if not growing or "recent" not in rows.column_names:
        return rows.remove_columns(drop).shuffle(seed=cfg.train.seed), 0
    recent = rows.filter(lambda r: r["recent"])
    older = rows.filter(lambda r: not r["recent"])
    if len(recent) == 0:
        if warnings is not None:
            warnings.append("no recent samples in the data set; trained on all of it")
        return rows.remove_columns(drop).shuffle(seed=cfg.train.seed), 0
    share = cfg.train.replay_share
    n_replay = min(len(older), int(round(len(recent) * share / (1.0 - share))))
    if n_replay < round(len(recent) * share / (1.0 - share)) and warnings is not None:
        warnings.append(f"only {len(older)} older samples for replay; replay share is below {share:g}")
    from datasets import concatenate_datasets

    replay = older.shuffle(seed=cfg.train.seed).select(range(n_replay))
    mixed = concatenate_datasets([recent, replay]).shuffle(seed=cfg.train.seed)
    return mixed.remove_columns(drop), n_replay


def pad_share(trainer, batches: int = 32) -> float:
    """Share of padded positions in the first batches the trainer will see (0 when padding-free)."""
    pads = total = 0
    for i, batch in enumerate(trainer.get_train_dataloader()):
        ids = batch["input_ids"]
        total += ids.numel()
        if "attention_mask" in batch:
            pads += int((batch["attention_mask"] == 0).sum())
        elif "position_ids" in batch:  # padding-free: only a pad_to_multiple_of tail can be padding
            pads += int((ids == trainer.processing_class.pad_token_id).sum()) if trainer.args.pad_to_multiple_of else 0
        if i + 1 >= batches:
            break
    return round(pads / total, 4) if total else 0.0


def _current_adapter(cfg: Config, warnings: list[str]) -> Path | None:
    """The promoted adapter to grow, when there is one of the configured shape."""

    link = paths.current_adapter_link(cfg)
    if not (link.exists() and adapter_is_complete(link)):
        return None
    conf = json.loads((link / "adapter_config.json").read_text())
    if conf.get("r") != cfg.lora.r or set(conf.get("target_modules") or []) != set(cfg.lora.target_modules):
        warnings.append(
            f"the current adapter ({link.resolve().name}) has r={conf.get('r')} and other target "
            "modules than lora.*; started a fresh adapter instead of growing it"
        )
        return None
    return link.resolve()


# --------------------------------------------------------------------------- callbacks


class _SignalCheckpoint(TrainerCallback):
    """On SIGTERM/SIGINT: save a checkpoint at the end of the current step, then stop."""

    def __init__(self):
        self.signalled = False
        self._old: dict[int, Any] = {}

    def _handler(self, signum, frame):
        if self.signalled:  # a second signal: stop now (the last periodic checkpoint remains)
            raise KeyboardInterrupt
        self.signalled = True

    class _Installed:
        def __init__(self, owner):
            self.owner = owner

        def __enter__(self):
            if threading.current_thread() is threading.main_thread():
                for s in (signal.SIGTERM, signal.SIGINT):
                    self.owner._old[s] = signal.signal(s, self.owner._handler)

        def __exit__(self, *exc):
            for s, h in self.owner._old.items():
                signal.signal(s, h)
            self.owner._old.clear()

    def installed(self):
        return self._Installed(self)

    def on_step_end(self, args, state, control, **kwargs):
        self.signalled = _any_rank(self.signalled)  # every rank must stop at the same step
        if self.signalled:
            control.should_save = True
            control.should_training_stop = True
        return control


def check_report_to(cfg: Config) -> None:
    """train.report_to asks for what is installed (one line, before anything is loaded)."""
    import importlib.util

    if "tensorboard" in cfg.train.report_to and importlib.util.find_spec("tensorboard") is None:
        raise MothError("train.report_to: tensorboard is not installed; pip install tensorboard or remove it")


def tensorboard_dir(cfg: Config, version: str) -> Path:
    """Where a version's TensorBoard events go: `tensorboard --logdir <state>/logs/tensorboard`."""
    return paths.logs_dir(cfg) / "tensorboard" / version


def _report_to_callbacks(cfg: Config, version: str) -> list:
    """The Trainer's own integrations that train.report_to asks for, writing where we keep logs (the
    Trainer's default, under output_dir, is the checkpoints folder, removed once the version is saved)."""
    if "tensorboard" not in cfg.train.report_to:
        return []
    from torch.utils.tensorboard import SummaryWriter
    from transformers.integrations import TensorBoardCallback

    return [TensorBoardCallback(SummaryWriter(log_dir=str(tensorboard_dir(cfg, version))))]


class _StepsForStatus(TrainerCallback):
    """The step for `mothbrain status` (progress.json, at most every few seconds) and a log line every 10."""

    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.tracker = None

    def on_train_begin(self, args, state, control, **kwargs):

        self.tracker = StageProgress(self.cfg, "train", total=state.max_steps)
        self.tracker.update(state.global_step)  # a resumed run starts where its checkpoint was

    def on_step_end(self, args, state, control, **kwargs):
        if self.tracker is not None:
            self.tracker.update(state.global_step, state.max_steps)

    def on_train_end(self, args, state, control, **kwargs):
        if self.tracker is not None:
            self.tracker.done()


class _FiniteLoss(TrainerCallback):
    """Stops the run when the loss or the gradient norm is not finite (recorded as failed)."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        for key in ("loss", "grad_norm"):
            value = (logs or {}).get(key)
            if value is not None and not math.isfinite(float(value)):
                raise LossNotFinite(f"{key.replace('_', ' ')} became {value} at step {state.global_step}")


class _Throughput(TrainerCallback):
    """Tokens and seconds spent inside trainer.train(), summed over resumes after yielding."""

    def __init__(self):
        self.tokens = 0
        self.seconds = 0.0
        self._start: tuple[float, int] | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        self._start = (time.time(), state.num_input_tokens_seen)

    def on_train_end(self, args, state, control, **kwargs):
        if self._start is not None:
            self.seconds += time.time() - self._start[0]
            self.tokens += state.num_input_tokens_seen - self._start[1]
            self._start = None


def _show_loss_on_progress_bar(trainer) -> None:
    """Keep the Trainer's progress bar but put the loss on it instead of printing every log dict."""
    from transformers.trainer_callback import ProgressCallback

    class _LossOnBar(ProgressCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if self.training_bar is not None and logs and "loss" in logs:
                self.training_bar.set_postfix(loss=f"{float(logs['loss']):.3f}", refresh=False)

    if trainer.pop_callback(ProgressCallback) is not None:
        trainer.add_callback(_LossOnBar())


def loss_summary(losses: list[list[float]]) -> tuple[float | None, float | None]:
    """The train loss: means of the first and of the last 10% of the logged losses (at least 3 of them,
    at most half each)."""
    if not losses:
        return None, None
    values = [v for _, v in losses]
    k = max(LOSS_MIN_LOGGED, math.ceil(LOSS_SHARE * len(values)))
    k = max(1, min(k, len(values) // 2 or 1))
    return round(sum(values[:k]) / k, 5), round(sum(values[-k:]) / k, 5)


# --------------------------------------------------------------------------- saving


def _save_adapter(cfg: Config, run: _Run, result: dict, meta: dict) -> Path:
    """Standard PEFT adapter + mothbrain.json, written beside the target then renamed into place.

    Every rank calls the Trainer's save (it gathers FSDP/ZeRO-3 shards); rank 0 writes the rest.
    """
    trainer = result.pop("trainer")
    final = paths.adapter_dir(cfg, run.version)
    tmp = paths.adapters_dir(cfg) / f".{run.version}.saving"
    if run.is_main:
        shutil.rmtree(tmp, ignore_errors=True)
    trainer.accelerator.wait_for_everyone()
    if trainer.is_fsdp_enabled:
        # A full (gathered) state dict so the adapter loads with a plain PeftModel.from_pretrained.
        trainer.accelerator.state.fsdp_plugin.set_state_dict_type("FULL_STATE_DICT")
    try:
        trainer.save_model(str(tmp))
        trainer.accelerator.wait_for_everyone()
        if run.is_main:
            first, final_loss = loss_summary(result["losses"])
            info = {
                "version": run.version,
                "base_model": cfg.model.base,
                "config": cfg.to_dict(),
                "dataset": {"fingerprint": meta.get("fingerprint"), "path": meta.get("path")},
                "steps": result["steps"],
                "metrics": {
                    "first_loss": first,
                    "final_loss": final_loss,
                    "tokens": result["tokens"],
                    "tokens_per_s": result["tokens_per_s"],
                    "pad_share": result["pad_share"],
                },
                "created_at": now_iso(),
                # all of training's figures, so a kill before the ledger records them loses nothing
                "result": {k: v for k, v in result.items() if k != "trainer"},
            }
            (tmp / "mothbrain.json").write_text(json.dumps(info, indent=2, default=str))
            (tmp / "training_args.bin").unlink(missing_ok=True)  # a pickle; the config above says it all
            # A stale directory of a version that never finished recording is replaced.
            replace_folder(tmp, final)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise MothError(
            f"could not save adapter {run.version} to {final}: {exc.strerror or exc} "
            "(free disk space; the checkpoints are kept, `mothbrain train` resumes)"
        ) from None
    finally:
        del trainer
        _free_memory()
    return final


# --------------------------------------------------------------------------- helpers


WRITE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def _write_error(exc: BaseException) -> OSError | None:
    """The disk-full (or quota, or file-size-limit) OSError behind `exc`, if that is what it was."""
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, OSError) and exc.errno in WRITE_ERRNOS:
            return exc
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return None


def _disk_full_message(cfg: Config, run: _Run, error: OSError) -> str:
    """Name the cause and where; drop the half-written checkpoint; the version stays resumable."""
    folder = paths.checkpoints_dir(cfg, run.version)
    last = last_checkpoint(folder)
    for partial in folder.glob("checkpoint-*"):  # no trainer_state.json: a save the disk cut short
        if partial != last and not (partial / "trainer_state.json").is_file():
            shutil.rmtree(partial, ignore_errors=True)
    where = getattr(error, "filename", None) or folder
    recorded = ""
    if run.is_main:
        try:
            run.ledger.add_event("interrupted", run.version, f"disk full: {error.strerror or error} ({where})")
        except MothError as exc:
            recorded = f"; the ledger could not record it either ({exc})"
    resume = f"resumes from {last.name}" if last else "starts it again"
    cause = describe_write_error(error, folder if folder.exists() else paths.adapters_dir(cfg))
    return (
        f"training of {run.version} stopped: could not write {where}: {cause}"
        f"{recorded} — free disk space (or raise train.save_steps, lower train.keep_checkpoints); "
        f"the version is kept and `mothbrain train` {resume}"
    )


def _explain_failure(exc: BaseException) -> tuple[str, str]:
    """(one-line reason, what to change) for the ledger and the error message."""
    text = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
    low = text.lower()
    if isinstance(exc, LossNotFinite):
        return text, "lower train.learning_rate (or set train.max_grad_norm, or check the data set for broken samples)"
    if "out of memory" in low or "can't allocate memory" in low or type(exc).__name__ == "OutOfMemoryError":
        return text, (
            "lower train.max_seq_len or train.micro_batch_size (or lora.r, or turn on "
            "train.gradient_checkpointing); see `mothbrain train --dry-run`"
        )
    if isinstance(exc, MothError):
        return str(exc), "see the reason"
    return text, "see the run log for the traceback; `mothbrain doctor` checks the setup"


def _free_memory() -> None:
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:  # freeing memory must never fail the run
        pass


def _cuda_used() -> bool:
    import torch

    return torch.cuda.is_available() and torch.cuda.is_initialized()


def _liger_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("liger_kernel") is not None


def _rank() -> int:
    return int(os.environ.get("RANK", "0"))


def _world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def _any_rank(flag: bool) -> bool:
    """True on every rank when it is True on any (outside a distributed run: the flag itself)."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return flag
    device = f"cuda:{torch.cuda.current_device()}" if torch.cuda.is_available() else "cpu"
    t = torch.tensor([1 if flag else 0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())

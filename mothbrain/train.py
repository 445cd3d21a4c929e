"""The training recipe, top to bottom: preflight → version → train (yielding, resumable) → save.

QLoRA through the field's libraries: the base loads in 4-bit NF4 with double quantization
(mothbrain.modeling), peft adds the LoRA adapters, trl's SFTTrainer trains on a prompt-completion
data set with the loss on the completion (the voice's tokens) only, packed padding-free
(`packing_strategy="bfd"`: position_ids restart per sample, so no sample attends to another).

A version is created in the ledger before the first step and carries the run until it is trained
or failed. Checkpoints land every `train.save_steps` and on SIGTERM/SIGINT; `mothbrain train`
after a kill (kill -9 included) finds the unfinished version and resumes from its last checkpoint.
"""

from __future__ import annotations

import gc
import json
import math
import os
import shutil
import signal
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import paths
from .config import Config
from .errors import MothError, NothingToDo
from .ledger import Ledger, now_iso, open_ledger

# Optimizers that need CUDA (bitsandbytes paged / 8-bit states); on CPU plain AdamW is used.
CUDA_ONLY_OPTIMIZERS = ("paged_", "8bit")


class Interrupted(Exception):
    """SIGTERM/SIGINT arrived; a checkpoint was saved and the version stays resumable."""


class LossNotFinite(Exception):
    pass


@dataclass
class TrainReport:
    title: str = "train"
    version: str = ""
    figures: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    text: str = ""  # the dry-run's breakdown

    def rows(self) -> list[dict[str, Any]]:
        return [{"": k, "value": v} for k, v in self.figures.items()]

    def to_json(self) -> dict[str, Any]:
        return {"title": self.title, "version": self.version, **self.figures, "warnings": self.warnings}


# --------------------------------------------------------------------------- entry point


def run_train(cfg: Config, dry_run: bool = False, fresh: bool = False) -> TrainReport:
    if dry_run:
        return dry_run_report(cfg)

    from . import memory
    from .preprocess import load_latest_dataset

    estimate = memory.check_fits(cfg)  # refuses, naming the knob, before anything is loaded
    try:
        dataset, meta = load_latest_dataset(cfg)
    except MothError as exc:
        raise NothingToDo(str(exc)) from None
    ledger = open_ledger(cfg)
    is_main = _is_main_process()
    version, resume_from = _start_or_resume(cfg, ledger, meta, fresh, estimate) if is_main else (None, None)
    version, resume_from = _share_with_other_processes(cfg, ledger, version, resume_from)
    applied = _be_a_good_neighbour(cfg)

    started = time.time()
    try:
        result = _train_with_yielding(cfg, version, dataset["train"], resume_from)
    except Interrupted:
        if is_main:
            ledger.add_event("interrupted", version, "checkpoint saved; `mothbrain train` resumes")
        raise MothError(f"training of {version} interrupted; a checkpoint was saved — run `mothbrain train` "
                        "again to resume") from None
    except BaseException as exc:  # recorded, then re-raised as one line
        reason, suggestion = _explain_failure(exc)
        if is_main:
            ledger.fail(version, reason, suggestion)
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        raise MothError(f"training of {version} failed: {reason} — {suggestion}") from None

    if not is_main:
        return TrainReport(version=version)
    adapter = _save_adapter(cfg, version, result, meta)
    measured = memory.measured_peak_bytes()
    train_fig = {
        "steps": result["steps"],
        "losses": result["losses"],
        "first_loss": loss_summary(result["losses"])[0],  # mean of the first 3 logged losses
        "final_loss": loss_summary(result["losses"])[1],  # mean of the last 3
        "tokens": result["tokens"],
        "tokens_per_s": round(result["tokens"] / max(result["train_s"], 1e-9), 1),
        "pad_share": result["pad_share"],
        "samples": result["samples"],
        "resumed_from": resume_from.name if resume_from else None,
        "yields": len(result["yields"]),
        "yield_seconds": round(sum(y["waited_s"] for y in result["yields"]), 1),
        "yield_events": result["yields"],
        "init_from": result["init_from"],
        "niceness": applied,
    }
    ledger.update(
        version,
        status="trained",
        adapter=str(adapter),
        train=train_fig,
        timings={"train_s": round(time.time() - started, 1), "started_at": result["started_at"],
                 "finished_at": now_iso()},
        memory={"predicted_peak_gb": round(estimate.comparable_bytes / 1e9, 3),
                "measured_peak_gb": round(measured / 1e9, 3),
                "measured_by": "cuda.max_memory_allocated" if _cuda_used() else "peak RSS"},
    )
    shutil.rmtree(paths.checkpoints_dir(cfg, version), ignore_errors=True)
    report = TrainReport(version=version)
    report.figures = {
        "version": version,
        "steps": result["steps"],
        "loss": f"{train_fig['first_loss']:.3f} → {train_fig['final_loss']:.3f}" if result["losses"] else "n/a",
        "tokens/s": train_fig["tokens_per_s"],
        "pad share": f"{result['pad_share']:.1%}",
        "resumed from": train_fig["resumed_from"] or "—",
        "yields": f"{train_fig['yields']} ({train_fig['yield_seconds']} s)",
        "peak memory GB (predicted / measured)": f"{estimate.comparable_bytes / 1e9:.2f} / {measured / 1e9:.2f}",
        "adapter": str(adapter),
    }
    return report


# --------------------------------------------------------------------------- dry run


def dry_run_report(cfg: Config) -> TrainReport:
    from . import memory

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


# --------------------------------------------------------------------------- the version


def _start_or_resume(cfg: Config, ledger: Ledger, meta: dict, fresh: bool, estimate) -> tuple[str, Path | None]:
    """The unfinished version and its last checkpoint, or a new version."""
    fingerprint = meta.get("fingerprint")
    unfinished = ledger.latest(("training",))
    if unfinished is not None:
        ckpt = last_checkpoint(paths.checkpoints_dir(cfg, unfinished["id"]))
        same_data = unfinished.get("dataset", {}).get("fingerprint") == fingerprint
        if ckpt is not None and same_data and not fresh:
            ledger.add_event("resumed", unfinished["id"], f"from {ckpt.name}")
            return unfinished["id"], ckpt
        why = "superseded by a fresh run" if fresh else (
            "superseded: the data set changed" if not same_data else "superseded: killed before its first checkpoint")
        ledger.fail(unfinished["id"], why, "nothing to do; a new version was started")
        shutil.rmtree(paths.checkpoints_dir(cfg, unfinished["id"]), ignore_errors=True)
    parent = ledger.current() if cfg.train.init_from == "current" else None
    entry = ledger.new_version(
        parent=parent,
        dataset={"fingerprint": fingerprint, "path": meta.get("path"), "composition": meta.get("composition", {})},
        hyperparameters=_hyperparameters(cfg),
        memory={"predicted_peak_gb": round(estimate.comparable_bytes / 1e9, 3)},
    )
    return entry["id"], None


def _hyperparameters(cfg: Config) -> dict[str, Any]:
    d = cfg.to_dict()
    return {"base": cfg.model.base, "quantization": d["model"]["quantization"], "lora": d["lora"],
            "train": d["train"], "device": cfg.model.device}


def last_checkpoint(folder: Path) -> Path | None:
    """The newest complete `checkpoint-N` (trainer_state.json is written last by the Trainer)."""
    if not folder.is_dir():
        return None
    done = [p for p in folder.glob("checkpoint-*") if (p / "trainer_state.json").is_file()
            and p.name.split("-")[-1].isdigit()]
    return max(done, key=lambda p: int(p.name.split("-")[-1]), default=None)


# --------------------------------------------------------------------------- training


def _train_with_yielding(cfg: Config, version: str, train_rows, resume_from: Path | None) -> dict[str, Any]:
    """Train until done; when the neighbour callback yields, free the GPU, wait, resume."""
    from .neighbour import make_yield_callback

    yield_cb = make_yield_callback(cfg.neighbour.yield_)
    yields: list[dict[str, Any]] = []
    started_at = now_iso()
    train_s = 0.0
    while True:
        trainer, info = _build_trainer(cfg, version, train_rows, yield_cb)
        _quiet_progress(trainer)
        stop = _SignalCheckpoint()
        trainer.add_callback(stop)
        losses = _LossRecorder()
        trainer.add_callback(losses)
        t0 = time.time()
        try:
            with stop.installed():
                trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
        finally:
            train_s += time.time() - t0
        if stop.signalled:
            raise Interrupted()
        if yield_cb is not None and yield_cb.yielded:
            reason = yield_cb.reason
            del trainer
            _free_memory()
            waited = yield_cb.controller.wait_until_quiet()
            yields.append({"at": now_iso(), "reason": reason, "waited_s": round(waited, 1)})
            yield_cb.reset()
            resume_from = last_checkpoint(paths.checkpoints_dir(cfg, version))
            continue
        break
    state = trainer.state
    all_losses = [[h["step"], round(float(h["loss"]), 5)] for h in state.log_history if "loss" in h]
    tokens = int(max((h.get("num_tokens", 0) for h in state.log_history), default=0))
    result = dict(info, losses=all_losses, steps=state.global_step, tokens=tokens, train_s=train_s,
                  yields=yields, started_at=started_at, trainer=trainer)
    return result


def _build_trainer(cfg: Config, version: str, train_rows, yield_cb):
    """Model (4-bit base + LoRA) and a trl SFTTrainer configured from cfg.train."""
    from peft import LoraConfig as PeftLoraConfig
    from peft import PeftModel
    from trl import SFTConfig, SFTTrainer

    from .modeling import compute_dtype, load_base_model, load_tokenizer, resolve_device

    device = resolve_device(cfg)
    tokenizer = load_tokenizer(cfg)
    model = load_base_model(cfg, for_training=True)
    t = cfg.train
    init_from, current = "fresh", None
    if t.init_from == "current":
        current = _current_adapter(cfg)
    peft_config = None
    if current is not None:
        # Grow the promoted adapter instead of starting over.
        model = PeftModel.from_pretrained(model, str(current), is_trainable=True)
        init_from = f"current ({current.name})"
    else:
        peft_config = PeftLoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
                                     target_modules=list(cfg.lora.target_modules), task_type="CAUSAL_LM")
    rows, replay = _select_rows(cfg, train_rows, growing=current is not None)
    if len(rows) == 0:
        raise NothingToDo("the data set's training split is empty: add material or lower preprocess.heldout_fraction")
    optim = t.optimizer
    if device != "cuda" and any(s in optim for s in CUDA_ONLY_OPTIMIZERS):
        optim = "adamw_torch"
    dtype = compute_dtype(cfg)
    import torch

    args = SFTConfig(
        output_dir=str(paths.checkpoints_dir(cfg, version)),
        max_steps=t.max_steps,
        num_train_epochs=t.num_epochs,
        learning_rate=t.learning_rate,
        lr_scheduler_type=t.lr_scheduler,
        warmup_steps=max(0, int(math.ceil(t.warmup_ratio * max(t.max_steps, 1)))) if t.max_steps > 0 else 0,
        per_device_train_batch_size=t.micro_batch_size,
        gradient_accumulation_steps=t.gradient_accumulation,
        max_length=t.max_seq_len,
        packing=t.packing,
        packing_strategy="bfd",  # padding-free: position_ids, no cross-sample attention
        padding_free=t.packing,
        completion_only_loss=True,  # the loss is on the voice's tokens only
        gradient_checkpointing=t.gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False},
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
        report_to="none",
        use_cpu=device == "cpu",
        bf16=device == "cuda" and dtype == torch.bfloat16,
        fp16=device == "cuda" and dtype == torch.float16,
        use_liger_kernel=bool(t.use_liger and device == "cuda" and _liger_available()),
        dataloader_num_workers=0,
        disable_tqdm=False,
        log_level="error",
        ddp_find_unused_parameters=False,
    )
    callbacks = [yield_cb] if yield_cb is not None else []
    trainer = SFTTrainer(model=model, args=args, train_dataset=rows, processing_class=tokenizer,
                         peft_config=peft_config, callbacks=callbacks)
    info = {"pad_share": _pad_share(trainer), "samples": len(rows), "replay_samples": replay, "init_from": init_from}
    return trainer, info


def _select_rows(cfg: Config, rows, growing: bool):
    """All training rows; when growing the current adapter, recent ones plus a replay share of older."""
    cols = [c for c in rows.column_names if c not in ("prompt", "completion")]
    if not growing or "recent" not in rows.column_names or cfg.train.replay_share <= 0:
        return rows.remove_columns(cols), 0
    recent = rows.filter(lambda r: r["recent"])
    older = rows.filter(lambda r: not r["recent"])
    if len(recent) == 0:
        return rows.remove_columns(cols), 0
    share = cfg.train.replay_share
    n_replay = min(len(older), int(round(len(recent) * share / (1.0 - share))))
    replay = older.shuffle(seed=cfg.train.seed).select(range(n_replay))
    from datasets import concatenate_datasets

    mixed = concatenate_datasets([recent, replay]).shuffle(seed=cfg.train.seed)
    return mixed.remove_columns(cols), n_replay


def _pad_share(trainer, batches: int = 8) -> float:
    """Share of pad positions in the first batches the trainer will see."""
    try:
        loader = trainer.get_train_dataloader()
        pads = total = 0
        for i, batch in enumerate(loader):
            ids = batch["input_ids"]
            total += ids.numel()
            if "attention_mask" in batch:
                pads += int((batch["attention_mask"] == 0).sum())
            if i + 1 >= batches:
                break
        return round(pads / total, 4) if total else 0.0
    except Exception:  # measuring must never break training
        return float("nan")


def _current_adapter(cfg: Config) -> Path | None:
    from .modeling import adapter_is_complete

    link = paths.current_adapter_link(cfg)
    if link.exists() and adapter_is_complete(link):
        return link.resolve()
    return None


# --------------------------------------------------------------------------- callbacks


def _trainer_callback_base():
    from transformers import TrainerCallback

    return TrainerCallback


class _SignalCheckpoint(_trainer_callback_base()):
    """On SIGTERM/SIGINT: save a checkpoint at the end of the current step, then stop."""

    def __init__(self):
        self.signalled = False
        self._old: dict[int, Any] = {}

    def _handler(self, signum, frame):
        if self.signalled:  # a second signal: stop now
            raise KeyboardInterrupt
        self.signalled = True

    class _Installed:
        def __init__(self, owner):
            self.owner = owner

        def __enter__(self):
            import threading

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
        if self.signalled:
            control.should_save = True
            control.should_training_stop = True
        return control


class _LossRecorder(_trainer_callback_base()):
    """Stops the run when the loss is not finite (recorded as failed by run_train)."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            raise LossNotFinite(f"loss became {loss} at step {state.global_step}")
        grad = (logs or {}).get("grad_norm")
        if grad is not None and not math.isfinite(float(grad)):
            raise LossNotFinite(f"gradient norm became {grad} at step {state.global_step}")


def _quiet_progress(trainer) -> None:
    """Keep the Trainer's progress bar but show the loss on it instead of printing every log dict."""
    from transformers.trainer_callback import ProgressCallback

    class _LossOnBar(ProgressCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if self.training_bar is not None and logs and "loss" in logs:
                self.training_bar.set_postfix(loss=f"{float(logs['loss']):.3f}", refresh=False)

    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(_LossOnBar())


def loss_summary(losses: list[list[float]], k: int = 3) -> tuple[float | None, float | None]:
    """Mean of the first and of the last k logged losses (single logged values are noisy)."""
    if not losses:
        return None, None
    values = [v for _, v in losses]
    k = max(1, min(k, len(values) // 2 or 1))
    return round(sum(values[:k]) / k, 5), round(sum(values[-k:]) / k, 5)


# --------------------------------------------------------------------------- saving


def _save_adapter(cfg: Config, version: str, result: dict, meta: dict) -> Path:
    """Standard PEFT adapter + mothbrain.json, written beside the target then renamed into place."""
    trainer = result.pop("trainer")
    final = paths.adapter_dir(cfg, version)
    tmp = Path(tempfile.mkdtemp(prefix=f".{version}.", dir=paths.adapters_dir(cfg)))
    try:
        trainer.model.save_pretrained(str(tmp))
        info = {
            "version": version,
            "base_model": cfg.model.base,
            "config": cfg.to_dict(),
            "dataset": {"fingerprint": meta.get("fingerprint"), "path": meta.get("path")},
            "steps": result["steps"],
            "metrics": {"first_loss": loss_summary(result["losses"])[0],
                        "final_loss": loss_summary(result["losses"])[1],
                        "tokens": result["tokens"], "pad_share": result["pad_share"]},
            "created_at": now_iso(),
        }
        (tmp / "mothbrain.json").write_text(json.dumps(info, indent=2, default=str))
        if final.exists():  # a stale directory from a version that never finished saving
            shutil.rmtree(final)
        os.replace(tmp, final)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise MothError(f"could not save adapter {version} to {final}: {exc.strerror or exc} "
                        "(free disk space; the checkpoints are kept, `mothbrain train` resumes)") from None
    del trainer
    _free_memory()
    return final


# --------------------------------------------------------------------------- helpers


def _explain_failure(exc: BaseException) -> tuple[str, str]:
    text = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
    low = text.lower()
    if isinstance(exc, LossNotFinite):
        return text, "lower train.learning_rate (or check the data set for broken samples)"
    if "out of memory" in low or type(exc).__name__ == "OutOfMemoryError":
        return text, "lower train.max_seq_len or train.micro_batch_size, or lora.r; see `mothbrain train --dry-run`"
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted twice; stopped without a checkpoint", "run `mothbrain train` to start again"
    if isinstance(exc, NothingToDo):
        return text, "add material and run `mothbrain preprocess`"
    return text, "see the run log for the traceback; `mothbrain doctor` checks the setup"


def _be_a_good_neighbour(cfg: Config) -> dict:
    from .neighbour import apply_niceness

    return apply_niceness(cfg.neighbour)


def _free_memory() -> None:
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:
        pass


def _cuda_used() -> bool:
    try:
        import torch

        return torch.cuda.is_available() and torch.cuda.is_initialized()
    except Exception:
        return False


def _liger_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("liger_kernel") is not None


def _is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def _share_with_other_processes(cfg: Config, ledger: Ledger, version, resume_from):
    """Under `accelerate launch`, rank 0 picks (or creates) the version; the others read it back."""
    if int(os.environ.get("WORLD_SIZE", "1")) == 1:
        return version, resume_from
    from accelerate import PartialState

    state = PartialState()
    state.wait_for_everyone()
    if not state.is_main_process:
        entry = ledger.latest(("training",))
        version = entry["id"]
        resume_from = last_checkpoint(paths.checkpoints_dir(cfg, version))
    return version, resume_from

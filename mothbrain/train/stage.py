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

import gc
import json
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mothbrain.config import Config
from mothbrain.core import paths
from mothbrain.core.atomic import replace_folder
from mothbrain.core.clock import now_iso
from mothbrain.core.neighbour import apply_niceness, make_yield_callback
from mothbrain.errors import MothError
from mothbrain.models import memory
from mothbrain.models.parameter_count import count_parameters
from mothbrain.models.preflight import refuse_failing_night
from mothbrain.report import train_loss_text
from mothbrain.train.callbacks import SignalCheckpoint, Throughput, check_report_to
from mothbrain.train.failures import disk_full_error, disk_full_message, explain_failure
from mothbrain.train.ranks import rank
from mothbrain.train.trainer import build_trainer
from mothbrain.train.versions import (
    TrainRun,
    last_checkpoint,
    load_training_dataset,
    open_version,
    refuse_unchanged,
    saved_result,
)

# The one loss figure people read ("train loss", README): the mean of the last 10% of the logged losses (at
# least 3: one logged value is noisy), shown after the same mean over the first 10% — first_loss → final_loss.
LOSS_SHARE = 0.1
LOSS_MIN_LOGGED = 3


class Interrupted(Exception):
    """SIGTERM/SIGINT arrived; a checkpoint was saved and the version stays resumable."""


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


# --------------------------------------------------------------------------- entry point


def run_train(cfg: Config, dry_run: bool = False, fresh: bool = False, force: bool = False) -> TrainReport:
    """Train a version; NoNewMaterial (a skip) when it would repeat one (unless `force` or the config says so)."""
    check_report_to(cfg)
    if dry_run:
        return dry_run_report(cfg)

    # --- setup: refuse what cannot fit, or what doctor would fail, before anything is loaded or recorded
    dataset, meta = load_training_dataset(cfg)
    if cfg.train.skip_unchanged and not force:
        refuse_unchanged(cfg, meta.get("fingerprint"))
    refuse_failing_night(cfg)  # a missing or mismatched base, a full disk: no failed version in the ledger
    estimate = memory.check_fits(cfg)
    run = open_version(cfg, meta, fresh, estimate)
    niceness = apply_niceness(cfg.neighbour)

    # --- train (unless a kill came after the adapter was saved: then it is recorded as saved)
    started_at, t0 = now_iso(), time.time()
    saved = saved_result(cfg, run.version, meta)
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
        full = disk_full_error(exc)
        if full is not None:  # a full disk passes: keep the version resumable from its last checkpoint
            raise MothError(disk_full_message(cfg, run, full)) from None
        reason, suggestion = explain_failure(exc)
        if run.is_main:
            run.ledger.fail(run.version, reason, suggestion)
            shutil.rmtree(paths.checkpoints_dir(cfg, run.version), ignore_errors=True)
        if isinstance(exc, SystemExit):
            raise
        raise MothError(f"training of {run.version} failed: {reason} — {suggestion}") from None

    # --- save: a failure here (full disk) leaves the version "training" with its checkpoints
    adapter = paths.adapter_dir(cfg, run.version) if saved else _save_adapter(cfg, run, result, meta)
    if not run.is_main:
        return TrainReport(title=f"train (rank {rank()}: rank 0 reports)", version=run.version)

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

    counts = count_parameters(cfg)
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


# --------------------------------------------------------------------------- training


def _train_with_yielding(cfg: Config, run: TrainRun, train_rows) -> dict[str, Any]:
    """Train until done; when the neighbour callback yields, free the memory, wait, resume."""

    yield_cb = make_yield_callback(cfg.neighbour.yield_)
    yields: list[dict[str, Any]] = []
    resume_from = run.resume_from
    throughput = Throughput()
    while True:
        trainer, info = build_trainer(
            cfg, run.version, train_rows, [yield_cb, throughput] if yield_cb else [throughput]
        )
        stop = SignalCheckpoint()
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


# --------------------------------------------------------------------------- the train loss


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


def _save_adapter(cfg: Config, run: TrainRun, result: dict, meta: dict) -> Path:
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

"""Why a training run failed, in one line for the ledger and the error message: a full disk (the version
stays resumable), out of memory, a loss that is not finite, anything else."""

from __future__ import annotations

import errno
import shutil

from mothbrain.config import Config
from mothbrain.core import paths
from mothbrain.core.atomic import describe_write_error
from mothbrain.errors import MothError
from mothbrain.train.callbacks import LossNotFinite
from mothbrain.train.versions import TrainRun, last_checkpoint

WRITE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def disk_full_error(exc: BaseException) -> OSError | None:
    """The disk-full (or quota, or file-size-limit) OSError behind `exc`, if that is what it was."""
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, OSError) and exc.errno in WRITE_ERRNOS:
            return exc
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return None


def disk_full_message(cfg: Config, run: TrainRun, error: OSError) -> str:
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


def explain_failure(exc: BaseException) -> tuple[str, str]:
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

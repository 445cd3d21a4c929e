"""The Trainer callbacks training adds (checkpoint on a signal, status steps, a finite loss, throughput,
the loss on the progress bar) and the integrations train.report_to asks for."""

from __future__ import annotations

import math
import signal
import threading
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from mothbrain.config import Config
from mothbrain.core import paths
from mothbrain.core.progress import StageProgress
from mothbrain.errors import MothError
from mothbrain.train.ranks import any_rank


class LossNotFinite(Exception):
    pass


class SignalCheckpoint(TrainerCallback):
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
        self.signalled = any_rank(self.signalled)  # every rank must stop at the same step
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


def report_to_callbacks(cfg: Config, version: str) -> list:
    """The Trainer's own integrations that train.report_to asks for, writing where we keep logs (the
    Trainer's default, under output_dir, is the checkpoints folder, removed once the version is saved)."""
    if "tensorboard" not in cfg.train.report_to:
        return []
    from torch.utils.tensorboard import SummaryWriter
    from transformers.integrations import TensorBoardCallback

    return [TensorBoardCallback(SummaryWriter(log_dir=str(tensorboard_dir(cfg, version))))]


class StepsForStatus(TrainerCallback):
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


class FiniteLoss(TrainerCallback):
    """Stops the run when the loss or the gradient norm is not finite (recorded as failed)."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        for key in ("loss", "grad_norm"):
            value = (logs or {}).get(key)
            if value is not None and not math.isfinite(float(value)):
                raise LossNotFinite(f"{key.replace('_', ' ')} became {value} at step {state.global_step}")


class Throughput(TrainerCallback):
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


def show_loss_on_progress_bar(trainer) -> None:
    """Keep the Trainer's progress bar but put the loss on it instead of printing every log dict."""
    from transformers.trainer_callback import ProgressCallback

    class _LossOnBar(ProgressCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if self.training_bar is not None and logs and "loss" in logs:
                self.training_bar.set_postfix(loss=f"{float(logs['loss']):.3f}", refresh=False)

    if trainer.pop_callback(ProgressCallback) is not None:
        trainer.add_callback(_LossOnBar())

"""Being a good neighbour: nice/ionice for the trainer, and yielding to interactive work.

The training box is shared with people who have priority. `apply_niceness` lowers the trainer's
CPU and I/O priority. `YieldController.busy()` looks for interactive work — another process on
the GPU (NVML), CPU used by other processes, or an operator's probe command — and
`YieldCallback` turns a positive answer into "save a checkpoint and stop"; run_train then frees
the memory it holds, waits with `wait_until_quiet()` and resumes from that checkpoint.

Caveat: "CPU used by other processes" is the machine's busy time minus this process's own (all
threads and reaped children), sampled between two calls; any other busy process counts, so set
`cpu_load_threshold` above what the box's background daemons use.
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform
import shutil
import subprocess
import time
from typing import Any, Callable

from .config import NeighbourConfig, YieldConfig

log = logging.getLogger(__name__)

IOPRIO_CLASS_IDLE = 3
IOPRIO_WHO_PROCESS = 1
IOPRIO_CLASS_SHIFT = 13
_IOPRIO_SYSCALLS = {"x86_64": (251, 252), "aarch64": (30, 31)}  # (ioprio_set, ioprio_get)


# --------------------------------------------------------------------------- nice / ionice


def apply_niceness(ncfg: NeighbourConfig) -> dict[str, Any]:
    """Lower this process's CPU and I/O priority as configured; never fails the run."""
    applied: dict[str, Any] = {}
    if ncfg.nice:
        current = os.nice(0)
        if ncfg.nice > current:
            try:
                applied["nice"] = os.nice(ncfg.nice - current)
            except OSError as exc:
                log.warning("could not renice to %s: %s", ncfg.nice, exc)
        else:
            applied["nice"] = current
    if ncfg.ionice_idle:
        applied["ionice"] = "idle" if set_idle_io_class(os.getpid()) else "unchanged"
    return applied


def set_idle_io_class(pid: int) -> bool:
    nums = _IOPRIO_SYSCALLS.get(platform.machine())
    if nums and platform.system() == "Linux":
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.syscall(nums[0], IOPRIO_WHO_PROCESS, pid, IOPRIO_CLASS_IDLE << IOPRIO_CLASS_SHIFT) == 0:
            return True
    if shutil.which("ionice"):
        return subprocess.run(["ionice", "-c", "3", "-p", str(pid)], capture_output=True).returncode == 0
    return False


def io_class(pid: int) -> int | None:
    """The I/O scheduling class of `pid` (3 = idle), or None where it can't be read."""
    nums = _IOPRIO_SYSCALLS.get(platform.machine())
    if not nums or platform.system() != "Linux":
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    prio = libc.syscall(nums[1], IOPRIO_WHO_PROCESS, pid)
    return None if prio < 0 else prio >> IOPRIO_CLASS_SHIFT


# --------------------------------------------------------------------------- detecting people


def _total_busy_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs since boot, from /proc/stat."""
    with open("/proc/stat") as f:
        parts = [int(x) for x in f.readline().split()[1:]]
    idle = parts[3] + (parts[4] if len(parts) > 4 else 0)  # idle + iowait
    total = sum(parts[:8])  # guest time is already counted in user
    return total - idle, total


def _own_ticks() -> int:
    """This process's CPU jiffies: all threads plus reaped children."""
    with open("/proc/self/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    utime, stime, cutime, cstime = (int(fields[i]) for i in (11, 12, 13, 14))
    return utime + stime + cutime + cstime


def _gpu_processes_of_others() -> list[int]:
    try:
        import pynvml  # nvidia-ml-py
    except ImportError:
        return []
    try:
        pynvml.nvmlInit()
    except Exception:
        return []
    ours = {os.getpid(), *_children(os.getpid())}
    found: list[int] = []
    try:
        for i in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            for proc in pynvml.nvmlDeviceGetComputeRunningProcesses(handle):
                if proc.pid not in ours:
                    found.append(proc.pid)
    finally:
        pynvml.nvmlShutdown()
    return found


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


class YieldController:
    """Answers "is someone using this machine?" cheaply, and waits until nobody is."""

    def __init__(self, ycfg: YieldConfig):
        self.cfg = ycfg
        self._last: tuple[float, int, int, int] | None = None  # (time, busy, total, own)
        self._ncpu = os.cpu_count() or 1
        self.busy()  # prime the CPU sample

    def other_cpu_cores(self) -> float:
        """Cores used by other processes since the previous call."""
        busy, total = _total_busy_ticks()
        own = _own_ticks()
        now = time.monotonic()
        prev, self._last = self._last, (now, busy, total, own)
        if prev is None or total <= prev[2]:
            return 0.0
        d_total = total - prev[2]
        others = (busy - prev[1]) - (own - prev[3])
        return max(0.0, others / d_total * self._ncpu)

    def busy(self) -> str | None:
        """A reason when interactive work is seen, else None."""
        reasons = []
        if self.cfg.gpu_processes:
            pids = _gpu_processes_of_others()
            if pids:
                reasons.append(f"GPU used by pid {', '.join(map(str, pids[:5]))}")
        cores = self.other_cpu_cores()
        if cores > self.cfg.cpu_load_threshold:
            reasons.append(f"other processes use {cores:.2f} CPU cores (> {self.cfg.cpu_load_threshold:g})")
        if self.cfg.probe_command:
            try:
                rc = subprocess.run(self.cfg.probe_command, shell=True, capture_output=True, timeout=30).returncode
            except subprocess.TimeoutExpired:
                rc = 1
            if rc == 0:
                reasons.append(f"probe `{self.cfg.probe_command}` says busy")
        return "; ".join(reasons) or None

    def wait_until_quiet(self, sleep: Callable[[float], None] = time.sleep) -> float:
        """Block until busy() has been None for quiet_s; return the seconds waited."""
        start = time.monotonic()
        quiet_since: float | None = None
        while True:
            sleep(self.cfg.interval_s)
            reason = self.busy()
            now = time.monotonic()
            if reason:
                if quiet_since is not None or now - start < self.cfg.interval_s * 1.5:
                    log.info("yielding: %s", reason)
                quiet_since = None
            else:
                quiet_since = quiet_since or now
                if now - quiet_since >= self.cfg.quiet_s:
                    return now - start


# --------------------------------------------------------------------------- the trainer side


def _callback_base():
    from transformers import TrainerCallback

    return TrainerCallback


class YieldCallback(_callback_base()):
    """Checks at most every interval_s; when busy, asks the Trainer to checkpoint and stop."""

    def __init__(self, controller: YieldController):
        self.controller = controller
        self.yielded = False
        self.reason = ""
        self.events: list[tuple[float, str]] = []
        self._next_check = 0.0

    def reset(self) -> None:
        self.yielded = False
        self.reason = ""
        self._next_check = 0.0

    def on_step_end(self, args, state, control, **kwargs):
        now = time.monotonic()
        if now < self._next_check:
            return control
        self._next_check = now + self.controller.cfg.interval_s
        reason = self.controller.busy()
        if reason:
            self.yielded, self.reason = True, reason
            self.events.append((time.time(), reason))
            control.should_save = True
            control.should_training_stop = True
        return control


def make_yield_callback(ycfg: YieldConfig) -> YieldCallback | None:
    return YieldCallback(YieldController(ycfg)) if ycfg.enabled else None

"""Being a good neighbour: nice/ionice for the trainer, and yielding to interactive work.

The training box is shared with people, and people come first. `apply_niceness` lowers the
trainer's CPU priority (nice 19) and puts it in the idle I/O class. `YieldController.busy()`
looks for interactive work — another process on the GPU (NVML), CPU used by other processes, or
an operator's probe command — and `YieldCallback` turns a positive answer into "save a checkpoint
and stop"; run_train then frees the memory it holds, waits with `wait_until_quiet()` and resumes
from that checkpoint.

    ctl = YieldController(cfg.neighbour.yield_)
    ctl.busy()                # "other processes use 1.02 CPU cores (> 0.5)" or None
    ctl.wait_until_quiet()    # blocks until busy() was None for quiet_s; returns seconds waited

Caveats (read before tuning `neighbour.yield`):
- "Ours" is this process and all its live descendants (dataloader workers, probe commands) — or,
  under a distributed launcher (WORLD_SIZE > 1), the launcher's whole process tree, so the other
  ranks on this node are not mistaken for people. Only rank 0 looks; its verdict is broadcast so
  every rank stops, waits and resumes together. Other nodes of a multi-node run are not watched.
- CPU: "other processes" is the machine's busy time (/proc/stat: user+nice+system+irq+softirq;
  steal is the hypervisor's, not a person's) minus our tree's time, averaged over the window since
  the previous check. ANY other busy process counts — a backup, another batch job, a daemon — so
  set `cpu_load_threshold` above what the box's background uses. In a container /proc/stat usually
  shows the whole host. Linux only: elsewhere this source is skipped (logged once).
- GPU: NVML (`nvidia-ml-py`) compute processes on every device. Without the package or a driver
  the source is skipped. In a container without the host's PID namespace NVML reports host PIDs
  that match nothing here; then one unknown process per device is assumed to be us (when this
  process has a CUDA context) and any further one counts as a person. Graphics-only processes (a
  desktop) are ignored.
- Probe: `probe_command` runs through the shell with a timeout (max(10 s, interval_s)); exit 0
  means busy. A probe that cannot run or times out is logged and counts as not busy.
- nice/ionice: Linux keeps a niceness and an I/O priority per thread, so every existing thread is
  changed (new threads inherit from their creator). Raising niceness never needs privileges;
  anything refused is logged and reported, never fatal.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from mothbrain.config import NeighbourConfig, YieldConfig

if TYPE_CHECKING:  # the real class is built on first use, see __getattr__ below
    YieldCallback: type

log = logging.getLogger(__name__)

IOPRIO_CLASS_IDLE = 3
IOPRIO_WHO_PROCESS = 1
IOPRIO_CLASS_SHIFT = 13
_IOPRIO_SYSCALLS = {"x86_64": (251, 252), "amd64": (251, 252), "aarch64": (30, 31), "arm64": (30, 31)}
_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100  # /proc times are in these ticks
_MIN_WINDOW_S = 0.2  # a CPU sample shorter than this is mostly tick rounding (10 ms ticks)
_PROBE_TIMEOUT_S = 10.0


# --------------------------------------------------------------------------- nice / ionice


def apply_niceness(ncfg: NeighbourConfig) -> dict[str, Any]:
    """Lower this process's CPU and I/O priority as configured; never fails the run.

    Returns what holds afterwards, e.g. {"nice": 19, "ionice": "idle"}, plus "warnings" when
    something was refused.
    """
    applied: dict[str, Any] = {}
    warnings: list[str] = []
    if ncfg.nice > 0:
        applied["nice"], warn = _renice(ncfg.nice)
        warnings += warn
    if ncfg.ionice_idle:
        ok, warn = _set_idle_io_class()
        applied["ionice"] = "idle" if ok else "unchanged"
        warnings += warn
    for w in warnings:
        log.warning("%s", w)
    if warnings:
        applied["warnings"] = warnings
    return applied


def _thread_ids() -> list[int]:
    """Every thread of this process (Linux); [0] = "the caller" elsewhere."""
    try:
        return sorted(int(t) for t in os.listdir("/proc/self/task"))
    except OSError:
        return [0]


def _renice(target: int) -> tuple[int, list[str]]:
    """Raise every thread's niceness to `target` (never lower one); return (niceness now, warnings)."""
    warnings = []
    for tid in _thread_ids():
        try:
            if os.getpriority(os.PRIO_PROCESS, tid) < target:
                os.setpriority(os.PRIO_PROCESS, tid, target)
        except ProcessLookupError:
            continue  # the thread ended meanwhile
        except OSError as exc:
            warnings.append(f"could not renice thread {tid} to {target}: {exc.strerror}")
    return os.getpriority(os.PRIO_PROCESS, 0), warnings


def _ioprio_syscalls() -> tuple[int, int] | None:
    if platform.system() != "Linux":
        return None
    return _IOPRIO_SYSCALLS.get(platform.machine().lower())


def _set_idle_io_class() -> tuple[bool, list[str]]:
    """Put every thread in the idle I/O class: the ioprio_set syscall, else the ionice binary."""
    tids = [t for t in _thread_ids() if t]
    if not tids:
        return False, ["ionice: not supported on this system"]
    nums = _ioprio_syscalls()
    value = IOPRIO_CLASS_IDLE << IOPRIO_CLASS_SHIFT
    failed: list[str] = []
    for tid in tids:
        if nums:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.syscall(nums[0], IOPRIO_WHO_PROCESS, tid, value) == 0:
                continue
            err = ctypes.get_errno()
            if err == 3:  # ESRCH: the thread ended meanwhile
                continue
            reason = os.strerror(err)
        else:
            reason = "no ioprio_set syscall number for this machine"
        if shutil.which("ionice"):
            res = subprocess.run(["ionice", "-c", "3", "-p", str(tid)], capture_output=True, text=True)
            if res.returncode == 0:
                continue
            reason = res.stderr.strip() or f"ionice exited {res.returncode}"
        failed.append(f"thread {tid}: {reason}")
    if failed:
        return False, [f"could not set the idle I/O class ({'; '.join(failed[:3])})"]
    return True, []


def io_class(tid: int = 0) -> int | None:
    """The I/O scheduling class of a thread (0 = this one; 3 = idle), or None where it can't be read."""
    nums = _ioprio_syscalls()
    if not nums:
        return None
    prio = ctypes.CDLL(None, use_errno=True).syscall(nums[1], IOPRIO_WHO_PROCESS, tid)
    return None if prio < 0 else prio >> IOPRIO_CLASS_SHIFT


# --------------------------------------------------------------------------- whose CPU, whose GPU


def _system_busy_ticks() -> int:
    """Busy ticks of all CPUs since boot: user+nice+system+irq+softirq (guest is inside user)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:8]]
    return v[0] + v[1] + v[2] + v[5] + v[6]


def _stat_fields(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()  # the name may hold spaces and parens
    except (OSError, IndexError):
        return None


def _descendants(root: int) -> list[int]:
    """Live descendants of `root`, via /proc/PID/task/TID/children (one file per thread)."""
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{pid}/task/{tid}/children") as f:
                    kids = [int(x) for x in f.read().split()]
            except OSError:
                continue
            found += kids
            todo += kids
    return found


def _descendants_by_scan(root: int) -> list[int]:
    """The same from every /proc/PID/stat, for kernels without the children files."""
    parent: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit() and (fields := _stat_fields(int(name))):
            parent.setdefault(int(fields[1]), []).append(int(name))
    found, todo = [], [root]
    while todo:
        kids = parent.get(todo.pop(), [])
        found += kids
        todo += kids
    return found


def _job_root() -> int:
    """Whose process tree is "us": ours, or the launcher's when torchrun/accelerate started us."""
    try:
        world = int(os.environ.get("WORLD_SIZE") or 1)
    except ValueError:
        world = 1
    return os.getppid() if world > 1 and os.getppid() > 1 else os.getpid()


def _we_use_cuda() -> bool:
    torch = sys.modules.get("torch")
    try:
        return bool(torch is not None and torch.cuda.is_initialized())
    except Exception:
        return False


def _distributed() -> Any:
    """torch.distributed when a process group of more than one rank is up, else None."""
    torch = sys.modules.get("torch")
    try:
        dist = torch.distributed if torch is not None else None
        if dist is not None and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            return dist
    except Exception:
        pass
    return None


def _agree(value: Any) -> Any:
    """Rank 0's `value` on every rank (a no-op outside a distributed run)."""
    dist = _distributed()
    if dist is None:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _is_rank_zero() -> bool:
    dist = _distributed()
    return dist is None or dist.get_rank() == 0


class YieldController:
    """Answers "is someone using this machine?" cheaply, and waits until nobody is."""

    def __init__(self, ycfg: YieldConfig):
        self.cfg = ycfg
        self.root = _job_root()
        self._cpu_ok = os.path.exists("/proc/stat") and os.path.exists(f"/proc/{self.root}/stat")
        if not self._cpu_ok:
            log.info("yield: no /proc on this system; the CPU-load source is skipped")
        self._has_children_files = os.path.exists(f"/proc/{self.root}/task/{self.root}/children")
        self._nvml: Any = None  # the module once initialised, False once known unavailable
        self._window: tuple[float, int, int] | None = None  # (monotonic s, system busy, our ticks)
        self.start_window()

    # ---- sources

    def ours(self) -> set[int]:
        """PIDs that are this job: the root and its live descendants."""
        if not self._cpu_ok:
            return {os.getpid()}
        kids = _descendants(self.root) if self._has_children_files else _descendants_by_scan(self.root)
        return {self.root, os.getpid(), *kids}

    def _our_ticks(self) -> int:
        """CPU ticks of our tree: each live member's own time plus the children it has reaped."""
        total = 0
        # Members are listed before their times are read: a child reaped in between is then counted
        # twice (ours too high, others too low), never missed — a miss would look like a person.
        for pid in self.ours():
            f = _stat_fields(pid)
            if f:
                total += int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])  # utime stime cutime cstime
        return total

    def start_window(self) -> None:
        """Begin a new CPU-measurement window now (e.g. when training starts)."""
        if self._cpu_ok:
            self._window = (time.monotonic(), _system_busy_ticks(), self._our_ticks())

    def other_cpu_cores(self) -> float | None:
        """Cores used by other processes since the window began; None when it is too short to tell."""
        if not self._cpu_ok or self._window is None:
            return None
        now = time.monotonic()
        t0, busy0, ours0 = self._window
        if now - t0 < _MIN_WINDOW_S:
            return None
        ours, busy = self._our_ticks(), _system_busy_ticks()
        self._window = (now, busy, ours)
        return max(0.0, ((busy - busy0) - (ours - ours0)) / _CLK_TCK / (now - t0))

    def gpu_users(self) -> list[int]:
        """PIDs of other processes with a compute context on any GPU (NVML); [] without NVML."""
        nvml = self._nvml_module()
        if not nvml:
            return []
        ours = self.ours()
        others: list[int] = []
        try:
            count = nvml.nvmlDeviceGetCount()
        except Exception as exc:
            log.debug("NVML device count failed: %s", exc)
            return []
        for i in range(count):
            try:
                pids = [p.pid for p in nvml.nvmlDeviceGetComputeRunningProcesses(nvml.nvmlDeviceGetHandleByIndex(i))]
            except Exception as exc:  # e.g. not supported on this device / MIG mode
                log.debug("NVML processes of GPU %d unavailable: %s", i, exc)
                continue
            foreign = [p for p in pids if p not in ours]
            if (
                foreign
                and len(foreign) == len(pids)
                and _we_use_cuda()
                and not any(os.path.exists(f"/proc/{p}") for p in pids)
            ):
                foreign = foreign[1:]  # another PID namespace (a container): one of these is us
            others += foreign
        return sorted(set(others))

    def _nvml_module(self) -> Any:
        if self._nvml is None:
            try:
                import pynvml  # the nvidia-ml-py package

                pynvml.nvmlInit()
                self._nvml = pynvml
            except Exception as exc:  # no package, no driver, no GPU
                log.info("yield: NVML unavailable (%s); the GPU source is skipped", exc)
                self._nvml = False
        return self._nvml

    def probe(self) -> bool:
        """Run the operator's probe command: exit 0 = someone is busy."""
        cmd = self.cfg.probe_command
        timeout = max(_PROBE_TIMEOUT_S, self.cfg.interval_s)
        try:
            proc = subprocess.Popen(
                cmd,
                shell=True,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        except OSError as exc:
            log.warning("yield probe `%s` could not start: %s", cmd, exc)
            return False
        try:
            return proc.wait(timeout=timeout) == 0
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # its own session: the shell and what it started
            proc.wait()
            log.warning("yield probe `%s` took over %.0f s; counted as not busy", cmd, timeout)
            return False

    # ---- verdict

    def busy(self) -> str | None:
        """A reason when interactive work is seen, else None."""
        reasons = []
        if self.cfg.gpu_processes:
            pids = self.gpu_users()
            if pids:
                more = f" (+{len(pids) - 5} more)" if len(pids) > 5 else ""
                reasons.append(f"GPU used by pid {', '.join(map(str, pids[:5]))}{more}")
        cores = self.other_cpu_cores()
        if cores is not None and cores > self.cfg.cpu_load_threshold:
            reasons.append(f"other processes use {cores:.2f} CPU cores (> {self.cfg.cpu_load_threshold:g})")
        if self.cfg.probe_command and self.probe():
            reasons.append(f"probe `{self.cfg.probe_command}` says busy")
        return "; ".join(reasons) or None

    def wait_until_quiet(self, sleep: Callable[[float], None] = time.sleep) -> float:
        """Block until busy() has been None for quiet_s, checking every interval_s; return seconds waited.

        Distributed: rank 0 decides and every rank follows, one broadcast per check.
        """
        interval, quiet_s = self.cfg.interval_s, self.cfg.quiet_s
        start = last_check = time.monotonic()
        quiet_since: float | None = None
        was_busy: bool | None = None
        last_log = start
        log.info("yield: waiting until nothing else uses the machine for %g s (checking every %g s)", quiet_s, interval)
        while True:
            sleep(interval)
            now = time.monotonic()
            reason, done = None, False
            if _is_rank_zero():
                reason = self.busy()
                if reason:
                    quiet_since = None
                elif quiet_since is None:
                    quiet_since = last_check  # the CPU figure covers the whole window since then
                done = quiet_since is not None and now - quiet_since >= quiet_s
            reason, done = _agree((reason, done))
            last_check = now
            if done:
                log.info("yield: quiet for %g s; resuming after %.0f s", quiet_s, now - start)
                return now - start
            if bool(reason) != was_busy or now - last_log >= 60:
                if reason:
                    log.info("yield: still waiting (%.0f s so far): %s", now - start, reason)
                else:
                    log.info("yield: quiet now; resuming if it stays so for %g s", quiet_s)
                was_busy, last_log = bool(reason), now


# --------------------------------------------------------------------------- the trainer side


def __getattr__(name: str) -> Any:
    # PEP 562: `YieldCallback` is built on first use, so importing this module (for apply_niceness,
    # say) does not cost the seconds that importing transformers and torch takes.
    if name == "YieldCallback":
        return _yield_callback_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@functools.cache
def _yield_callback_class() -> type:
    from transformers import TrainerCallback

    class YieldCallback(TrainerCallback):
        """Checks at most every interval_s; when busy, asks the Trainer to checkpoint and stop.

        After training stops, `.yielded` and `.reason` say why; `.events` keeps (unix time, reason)
        for every yield of the run; `.reset()` readies it for the next round.
        """

        def __init__(self, controller: YieldController):
            self.controller = controller
            self.yielded = False
            self.reason = ""
            self.events: list[tuple[float, str]] = []
            self._next_check = 0.0

        def reset(self) -> None:
            self.yielded = False
            self.reason = ""

        def on_train_begin(self, args, state, control, **kwargs):
            # Model loading and the wait before this round are not "now": measure from here.
            self.controller.start_window()
            self._next_check = time.monotonic() + self.controller.cfg.interval_s

        def on_step_end(self, args, state, control, **kwargs):
            reason = None
            if _is_rank_zero():
                now = time.monotonic()
                if now >= self._next_check:
                    self._next_check = now + self.controller.cfg.interval_s
                    reason = self.controller.busy()
            reason = _agree(reason)  # every rank must stop at the same step
            if reason:
                self.yielded, self.reason = True, reason
                self.events.append((time.time(), reason))
                log.info("yield at step %d: %s", state.global_step, reason)
                control.should_save = True
                control.should_training_stop = True
            return control

    YieldCallback.__module__, YieldCallback.__qualname__ = __name__, "YieldCallback"
    return YieldCallback


def make_yield_callback(ycfg: YieldConfig) -> YieldCallback | None:  # noqa: F821 (built lazily, above)
    """The callback for cfg.neighbour.yield_, or None when yielding is disabled."""
    return _yield_callback_class()(YieldController(ycfg)) if ycfg.enabled else None

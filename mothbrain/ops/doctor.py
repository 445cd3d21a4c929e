"""`mothbrain doctor`: everything a night run needs, checked now, each with the exact fix.

Each check returns ok / warn / fail with a one-line detail and, when not ok, the command or config
key that fixes it. The checks mirror how the seed lost nights: a cron environment that could not
find the interpreter, a restricted login shell (rbash) that refused `cd`, a full disk, a GPU that
turned out smaller than the run. Any "fail" makes the command exit non-zero.
"""

from __future__ import annotations

import os
import pwd
import shutil
import smtplib
import ssl
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mothbrain.config import REPO_ROOT, Config
from mothbrain.core import paths
from mothbrain.core.current import _link_target
from mothbrain.core.ledger import open_ledger
from mothbrain.core.secrets import check_secret_file, read_secret
from mothbrain.errors import MothError, NothingToDo
from mothbrain.models.memory import estimate_memory
from mothbrain.models.preflight import (
    NOT_RUN,
    Check,
    architecture_check,
    base_model_check,
    config_check,
    disk_check,
    gpu_memory_check,
)
from mothbrain.ops.briefing_mail import smtp_configured, smtp_password
from mothbrain.wiki.scan import wiki_root

GB = 1024**3


@dataclass
class DoctorReport:
    checks: list[Check] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return any(c.status == "fail" for c in self.checks)

    @property
    def title(self) -> str:
        n = {s: sum(c.status == s for c in self.checks) for s in ("ok", "warn", "fail", NOT_RUN)}
        return f"doctor: {n['ok']} ok, {n['warn']} warnings, {n['fail']} failed, {n[NOT_RUN]} not run"

    def get(self, name: str) -> Check:
        return next(c for c in self.checks if c.name == name)

    def rows(self) -> list[dict[str, Any]]:
        return [{"check": c.name, "status": c.status, "detail": c.detail, "fix": c.fix} for c in self.checks]

    def to_json(self) -> dict[str, Any]:
        return {"title": self.title, "failed": self.failed, "checks": [c.__dict__ for c in self.checks]}


def run_doctor(cfg: Config, smtp_test: bool = False) -> DoctorReport:
    report = DoctorReport()
    ctx: dict[str, Any] = {}  # what one check learns and a later one uses (torch, the estimate)
    checks: list[tuple[str, Callable[[], Check]]] = [
        ("python", _python),
        ("config", lambda: config_check(cfg)),
        ("base model", lambda: base_model_check(cfg)),
        ("architecture", lambda: architecture_check(cfg)),
        ("state dir", lambda: _state_dir(cfg)),
        ("adapter pointer", lambda: _adapter_pointer(cfg)),
        ("torch", lambda: _torch(ctx)),
        ("memory", lambda: _memory(cfg, ctx)),
        ("gpu memory", lambda: _gpu_memory(ctx)),
        ("bitsandbytes 4-bit", lambda: _bitsandbytes(cfg, ctx)),
        ("disk", lambda: disk_check(cfg, ctx.get("estimate"), ctx.get("no_estimate", ""))),
        ("tools", _tools),
        ("shell", _shell),
        ("cron environment", _cron_env),
        ("smtp", lambda: _smtp(cfg, smtp_test)),
        ("wiki-worker", lambda: _wiki(cfg)),
    ]
    for name, fn in checks:
        try:
            report.checks.append(fn())
        except Exception as exc:  # noqa: BLE001 - one broken check must not hide the others
            report.checks.append(
                Check(name, "fail", f"the check itself failed: {type(exc).__name__}: {exc}", "report this as a bug")
            )
    return report


# --------------------------------------------------------------------------- the checks


def _python() -> Check:
    v = sys.version_info
    text = f"Python {v.major}.{v.minor}.{v.micro} at {sys.executable}"
    if v < (3, 10):
        return Check("python", "fail", text, "install Python 3.10 or newer and rerun scripts/setup.sh")
    return Check("python", "ok", text)


def _state_dir(cfg: Config) -> Check:
    state = paths.state_dir(cfg)
    fix = (
        f"make it writable (`chown -R $USER {state}`) or point MOTHBRAIN_HOME / state_dir in "
        f"{cfg.config_path} at a writable folder"
    )
    try:
        state.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=state, prefix=".doctor-", delete=True) as f:
            f.write(b"ok")
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        return Check("state dir", "fail", f"{state} is not writable: {exc.strerror or exc}", fix)
    return Check("state dir", "ok", f"{state} is writable")


def _adapter_pointer(cfg: Config) -> Check:
    """adapters/current against the ledger's current version; reports only (status and promote settle it)."""

    ledger = open_ledger(cfg)
    if not ledger.path.exists():
        return Check("adapter pointer", "ok", "no ledger yet")
    data = ledger.read()
    current, linked, move = data.get("current"), _link_target(cfg), data.get("pending_current")
    fix = "run `mothbrain status` (it settles the pair; the ledger is the truth)"
    if move:
        return Check(
            "adapter pointer",
            "warn",
            f"an interrupted {move.get('event')} of {move.get('version')} is recorded in the ledger "
            f"(current {current or 'none'}, adapters/current names {linked or 'nothing'})",
            fix,
        )
    if linked != current:
        return Check(
            "adapter pointer",
            "fail",
            f"adapters/current names {linked or 'nothing'} but the ledger's current is {current or 'none'}",
            fix,
        )
    return Check("adapter pointer", "ok", f"adapters/current and the ledger agree ({current or 'none'})")


def _torch(ctx: dict[str, Any]) -> Check:
    try:
        import torch
    except Exception as exc:  # noqa: BLE001 - a broken install raises all sorts
        return Check("torch", "fail", f"cannot import torch: {exc}", "run scripts/setup.sh (installs torch==2.13.0)")
    ctx["torch"] = torch
    cuda = torch.cuda.is_available()
    ctx["cuda"] = cuda
    build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "CPU build"
    where = f"{torch.cuda.device_count()} CUDA device(s)" if cuda else "no CUDA device visible"
    return Check("torch", "ok", f"torch {torch.__version__} ({build}), {where}")


def _ram() -> tuple[int, int]:
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    avail = total
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                avail = int(line.split()[1]) * 1024
    except OSError:
        pass
    return total, avail


def _memory(cfg: Config, ctx: dict[str, Any]) -> Check:
    if "torch" not in ctx:
        return Check("memory", "fail", "skipped: torch is not importable", "fix the torch check first")
    cuda = ctx["cuda"]
    device = "cuda" if (cuda or cfg.model.device == "cuda") and cfg.model.device != "cpu" else "cpu"
    try:
        est = estimate_memory(cfg, device=device)
    except MothError as exc:
        ctx["no_estimate"] = str(exc)
        return Check("memory", "warn", f"cannot estimate the training peak: {exc}", "see `mothbrain train --dry-run`")
    ctx["estimate"] = est  # the GPU memory and disk checks compare with it
    if device == "cuda" and not cuda:
        return Check(
            "memory",
            "fail",
            f"model.device is cuda but no CUDA device is visible (the run needs "
            f"{est.peak_bytes / GB:.1f} GiB of GPU memory)",
            f"run on the GPU machine (check `nvidia-smi`), or set model.device: cpu in {cfg.config_path}",
        )
    peak = est.peak_bytes
    if device == "cuda":
        torch = ctx["torch"]
        props = torch.cuda.get_device_properties(0)
        have = props.total_memory
        text = f"{props.name}: {have / GB:.1f} GiB; predicted training peak {peak / GB:.1f} GiB"
        if peak > have:
            return Check("memory", "fail", text, est.advice or "lower train.max_seq_len or train.micro_batch_size")
    else:
        have, avail = _ram()
        text = f"RAM {have / GB:.1f} GiB ({avail / GB:.1f} available); predicted CPU training peak {peak / GB:.2f} GiB"
        if peak > have:
            return Check("memory", "fail", text, est.advice or "lower train.max_seq_len or train.micro_batch_size")
        if peak > avail:
            return Check(
                "memory",
                "warn",
                text + " — more than is free now",
                "free memory before the night run, or lower train.max_seq_len",
            )
    if not est.fits:
        return Check("memory", "fail", text + f"; over hardware.memory_gb {cfg.hardware.memory_gb:g}", est.advice)
    return Check("memory", "ok", text)


def _gpu_memory(ctx: dict[str, Any]) -> Check:
    """Free and total memory of the first card now (mem_get_info) against the estimate; not run without CUDA."""
    if not ctx.get("cuda"):
        return gpu_memory_check(False, 0, 0, None)
    torch = ctx["torch"]
    free, total = torch.cuda.mem_get_info(0)
    return gpu_memory_check(True, free, total, ctx.get("estimate"), torch.cuda.get_device_name(0))


def _bitsandbytes(cfg: Config, ctx: dict[str, Any]) -> Check:
    needed = cfg.model.quantization.load_in_4bit
    bad = "fail" if needed else "warn"
    if "torch" not in ctx:
        return Check("bitsandbytes 4-bit", bad, "skipped: torch is not importable", "fix the torch check first")
    torch = ctx["torch"]
    try:
        import bitsandbytes as bnb
        import bitsandbytes.functional as bnbf
    except Exception as exc:  # noqa: BLE001
        return Check(
            "bitsandbytes 4-bit",
            bad,
            f"cannot import bitsandbytes: {exc}",
            f"{sys.executable} -m pip install 'bitsandbytes>=0.48'",
        )
    device = "cuda" if ctx.get("cuda") and cfg.model.device != "cpu" else "cpu"
    dtype = torch.float32 if device == "cpu" else torch.bfloat16
    try:
        torch.manual_seed(0)
        layer = bnb.nn.Linear4bit(64, 64, bias=False, compute_dtype=dtype, quant_type="nf4").to(device)
        x = torch.randn(4, 64, device=device, dtype=dtype)
        y = layer(x)
        w = bnbf.dequantize_4bit(layer.weight.data, layer.weight.quant_state).to(dtype)
        err = (y.float() - (x @ w.t()).float()).abs().max().item()
        if not torch.isfinite(y).all() or err > 0.05:
            raise RuntimeError(f"4-bit forward differs from its dequantized weights by {err:.3g}")
    except Exception as exc:  # noqa: BLE001
        return Check(
            "bitsandbytes 4-bit",
            bad,
            f"bitsandbytes {bnb.__version__}: NF4 Linear4bit on {device} failed: "
            f"{type(exc).__name__}: {str(exc)[:160]}",
            "reinstall bitsandbytes>=0.48 for this torch, or set model.quantization.load_in_4bit: false "
            "(needs ~4x the memory)",
        )
    return Check(
        "bitsandbytes 4-bit", "ok", f"bitsandbytes {bnb.__version__}: NF4 Linear4bit forward works on {device}"
    )


def _tools() -> Check:
    found = {t: shutil.which(t) for t in ("crontab", "nice", "ionice")}
    if not found["nice"]:
        return Check(
            "tools", "fail", "`nice` not found (the cron line runs the chain under nice -n 19)", "install coreutils"
        )
    missing = [t for t in ("crontab", "ionice") if not found[t]]
    if missing:
        fix = []
        if not found["crontab"]:
            fix.append("install cron (`apt-get install cron`) or use the systemd timer in cron/")
        if not found["ionice"]:
            fix.append("install util-linux for ionice (the cron line leaves it out meanwhile)")
        return Check("tools", "warn", "not found: " + ", ".join(missing), "; ".join(fix))
    return Check("tools", "ok", "crontab, nice and ionice found")


def _is_restricted(shell: str) -> bool:
    return "rbash" in Path(shell).name or "restricted" in shell


def _shell() -> Check:
    env_shell = os.environ.get("SHELL", "")
    try:
        user = pwd.getpwuid(os.getuid())
        login, name = user.pw_shell, user.pw_name
    except KeyError:
        login, name = "", str(os.getuid())
    for label, sh in (("login shell", login), ("$SHELL", env_shell)):
        if sh and _is_restricted(sh):
            return Check(
                "shell",
                "fail",
                f"{label} is a restricted shell: {sh} (it refuses cd and redirection)",
                f"chsh -s /bin/bash {name}" if label == "login shell" else "export SHELL=/bin/bash",
            )
    probe = subprocess.run(["/bin/sh", "-c", "cd / && echo ok"], capture_output=True, text=True, timeout=20)
    if probe.returncode != 0 or probe.stdout.strip() != "ok":
        return Check(
            "shell",
            "fail",
            f"/bin/sh cannot `cd /`: {probe.stderr.strip()[:160]}",
            "repair /bin/sh (cron runs every line through it)",
        )
    if login and os.access(login, os.X_OK) and Path(login).name in ("bash", "sh", "dash", "zsh", "ksh"):
        test = "shopt -q restricted_shell && exit 7; cd /" if Path(login).name == "bash" else "cd /"
        r = subprocess.run([login, "-c", test], capture_output=True, text=True, timeout=20)
        if r.returncode != 0:
            return Check(
                "shell",
                "fail",
                f"login shell {login} is restricted (`set -r` or rbash profile): "
                f"{(r.stderr.strip() or 'restricted_shell is on')[:160]}",
                f"remove `set -r` from the profile or `chsh -s /bin/bash {name}`",
            )
    return Check("shell", "ok", f"login shell {login or '?'}, $SHELL {env_shell or 'unset'}, /bin/sh can cd")


def _cron_env() -> Check:
    """Run the interpreter the way cron will: bare environment, cwd /, only PATH=/usr/bin:/bin."""
    code = "import mothbrain, mothbrain.cli; print(mothbrain.__file__)"
    try:
        r = subprocess.run(
            [sys.executable, "-c", code],
            env={"PATH": "/usr/bin:/bin"},
            cwd="/",
            capture_output=True,
            text=True,
            timeout=120,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Check(
            "cron environment",
            "fail",
            f"{sys.executable} does not start in a bare environment: {exc}",
            f"use an interpreter cron can run (an absolute path): {sys.executable}",
        )
    fix = f"{sys.executable} -m pip install -e {REPO_ROOT}"
    if r.returncode != 0:
        last = (r.stderr.strip().splitlines() or ["?"])[-1]
        return Check(
            "cron environment",
            "fail",
            f"`env -i PATH=/usr/bin:/bin {sys.executable} -c 'import mothbrain'` from / fails: {last}",
            fix,
        )
    here = Path(__file__).resolve().parent.parent / "__init__.py"
    there = Path(r.stdout.strip().splitlines()[-1]).resolve()
    if there != here:
        return Check("cron environment", "warn", f"cron would import mothbrain from {there}, not {here}", fix)
    return Check("cron environment", "ok", f"{sys.executable} imports mothbrain with a bare environment from /")


def _wiki(cfg: Config) -> Check:
    """The wiki folder is there and writable, and a configured reviewer has its model and key."""

    w = cfg.wiki
    try:
        root = wiki_root(cfg)
    except NothingToDo:
        return Check("wiki-worker", "ok", "no wiki configured (wiki.path or a source of kind wiki)")
    except MothError as exc:  # a warning: the folder may come later (scripts/demo.sh makes the demo's)
        return Check("wiki-worker", "warn", str(exc), "create the folder, or fix wiki.path")
    if not os.access(root, os.W_OK):
        return Check("wiki-worker", "fail", f"{root} is not writable: merges would fail", f"chmod u+w {root}")
    if not w.reviewer_url:
        return Check("wiki-worker", "ok", f"{root}; local reviewer (crosslinks scoring >= {w.local_accept_score:g})")
    if not w.reviewer_model:
        return Check("wiki-worker", "fail", "wiki.reviewer_url is set but wiki.reviewer_model is empty", "set it")
    try:
        key = read_secret(cfg, w.reviewer_api_key_env, w.reviewer_api_key_file, "wiki.reviewer_api_key_file")
    except MothError as exc:
        return Check("wiki-worker", "fail", str(exc), "fix wiki.reviewer_api_key_file")
    note = "with a key" if key else f"without a key (${w.reviewer_api_key_env} unset: fine for a local server)"
    return Check("wiki-worker", "ok", f"{root}; reviewer {w.reviewer_model} at {w.reviewer_url} {note}")


def _smtp(cfg: Config, smtp_test: bool) -> Check:

    b = cfg.briefing
    if not b.smtp_host and not b.to:
        return Check(
            "smtp", "ok", f"not configured: briefings are written to {paths.state_dir(cfg) / 'data/briefings'}"
        )
    if not smtp_configured(cfg):
        missing = "briefing.smtp_host" if not b.smtp_host else "briefing.to"
        return Check(
            "smtp",
            "warn",
            f"{missing} is empty: briefings are only written to files",
            f"set {missing} in {cfg.config_path}",
        )
    if b.smtp_password_file:
        try:
            check_secret_file(cfg.resolve_path(b.smtp_password_file), "briefing.smtp_password_file")
        except MothError as exc:
            return Check("smtp", "fail", str(exc), f"chmod 600 {cfg.resolve_path(b.smtp_password_file)}")
    try:
        password = smtp_password(cfg)
    except MothError as exc:
        return Check("smtp", "fail", str(exc), f"export {b.smtp_password_env}=... or set briefing.smtp_password_file")
    where = f"{b.smtp_host}:{b.smtp_port} ({b.smtp_security}) to {b.to}"
    if not smtp_test:
        return Check("smtp", "ok", f"{where}; connection not tried (add --smtp)")
    try:
        context = ssl.create_default_context()
        cls = smtplib.SMTP_SSL if b.smtp_security == "ssl" else smtplib.SMTP
        kwargs = {"context": context} if b.smtp_security == "ssl" else {}
        with cls(b.smtp_host, b.smtp_port, timeout=20, **kwargs) as server:
            server.ehlo()
            if b.smtp_security == "starttls":
                server.starttls(context=context)
                server.ehlo()
            if b.smtp_user:
                server.login(b.smtp_user, password or "")
            server.noop()
    except (smtplib.SMTPException, OSError) as exc:
        return Check(
            "smtp",
            "fail",
            f"{where}: {type(exc).__name__}: {exc}",
            "check briefing.smtp_host/port/security/user and the password",
        )
    return Check("smtp", "ok", f"{where}; connected" + (" and logged in" if b.smtp_user else ""))

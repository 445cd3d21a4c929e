"""What the briefing reports, gathered from the records: missed runs, eval metrics, proposals waiting, the
wiki-worker's day, disk and GPU health, and the plots (loss per step, eval metrics by version).

A *missed run* is a time the schedule (schedule.<chain>.cron, read with croniter in the machine's
local time, as cron does) expected a run and no run record started near it — the failure a broken
crontab or cron environment produces, which no run can report about itself.
"""

from __future__ import annotations

import datetime as _dt
import io
import shutil
import subprocess
from typing import Any

from mothbrain.config import Config
from mothbrain.core import paths
from mothbrain.core.clock import parse_time
from mothbrain.errors import MothError
from mothbrain.ops.briefing_render import Section
from mothbrain.ops.cron import cron_installed_at
from mothbrain.ops.schedule import CHAINS, chain_config
from mothbrain.proposals.queue import list_proposals, review_totals, wiki_activity

WEEK = _dt.timedelta(days=7)
EARLY = _dt.timedelta(minutes=2)  # a run may start a little before its slot (clock skew)
LATE = _dt.timedelta(hours=2)  # ... and this much after it still counts as that slot's run
SETTLE = _dt.timedelta(minutes=15)  # slots this recent are not yet called missed


def missed_runs(cfg: Config, runs: list[dict[str, Any]], now: _dt.datetime) -> list[dict[str, Any]]:
    """Slots the schedule expected in the last week (since it was installed) with no run near them."""
    from croniter import croniter

    installed = cron_installed_at(cfg)
    if installed is None:
        return []  # no schedule installed (`mothbrain cron install`): runs by hand can miss nothing
    start = max(now - WEEK, installed)
    missed = []
    for chain in CHAINS:
        cc = chain_config(cfg, chain)
        if not cc.stages or not cc.cron:
            continue
        starts = [parse_time(r.get("started")) for r in runs if r.get("chain") == chain]
        starts = [t for t in starts if t]
        # Cron reads its fields as local wall-clock time: step through naive local times and make each
        # aware on its own (so a week that crosses a DST change keeps its slots at 02:30).
        it = croniter(cc.cron, start.astimezone().replace(tzinfo=None))
        while True:
            slot = it.get_next(_dt.datetime).astimezone()
            if slot > now - SETTLE:
                break
            if not any(slot - EARLY <= t <= slot + LATE for t in starts):
                missed.append({"chain": chain, "expected": slot.isoformat(timespec="minutes"), "cron": cc.cron})
    missed.sort(key=lambda m: m["expected"])
    return missed


def numeric_metrics(eval_figures: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """Flatten an eval dict to {"a.b": number}, dropping text, lists and booleans."""
    out: dict[str, float] = {}
    for k, v in (eval_figures or {}).items():
        key = f"{prefix}{k}"
        if isinstance(v, bool):
            continue
        if isinstance(v, (int, float)):
            out[key] = float(v)
        elif isinstance(v, dict) and prefix.count(".") < 2:
            out.update(numeric_metrics(v, key + "."))
    return out


def pending_proposals(cfg: Config) -> tuple[list[Any] | None, str]:

    try:
        return list(list_proposals(cfg, status="pending")), ""
    except MothError as exc:
        return None, f"n/a ({exc})"
    except OSError as exc:  # a read-only state dir: the queue cannot be opened (status still answers)
        return None, f"n/a ({exc.strerror or exc})"


def wiki_section(cfg: Config, now: _dt.datetime) -> Section | None:
    """Wiki proposals of the last day by kind (staged, accepted, merged, stale, ...) and the reviewer's API
    spend; None when the wiki-worker has never run."""

    since = (now - _dt.timedelta(days=1)).isoformat(timespec="seconds")
    try:
        activity, spend = wiki_activity(cfg, since), review_totals(cfg, since)
    except MothError as exc:
        return Section("Wiki-worker", [f"n/a ({exc})"], alert=True)
    if not activity and not spend and not cfg.schedule.wiki.stages:
        return None
    columns = ("staged", "accepted", "rejected", "merged", "stale", "refused", "reverted")
    sec = Section("Wiki-worker, last 24 h", headers=["kind", *columns])
    for kind in ("crosslink", "split", "frame", "staleness"):
        counts = activity.get(kind, {})
        sec.table.append([kind, *(str(counts.get(c, 0)) for c in columns)])
    for reviewer, t in spend.items():
        decided = ", ".join(f"{n} {d}" for d, n in sorted(t["decisions"].items()))
        sec.lines.append(
            f"reviewer {reviewer}: {decided}; {t['requests']} request(s), {t['prompt_tokens']:,} prompt + "
            f"{t['completion_tokens']:,} completion tokens, {t['seconds']:.0f} s"
        )
    if not spend:
        sec.lines.append("no reviews (and no API spend) in the last 24 h")
    stale = sum(c.get("stale", 0) + c.get("refused", 0) for c in activity.values())
    sec.alert = bool(stale) or any(t["decisions"].get("error") or t["decisions"].get("down") for t in spend.values())
    return sec


def proposal_excerpt(p: Any) -> str:
    get = p.get if isinstance(p, dict) else lambda k, d=None: getattr(p, k, d)
    text = get("title") or get("text") or get("completion") or get("id") or str(p)
    pid = get("id")
    text = " ".join(str(text).split())
    return (f"{pid}: " if pid and str(pid) not in text else "") + (text[:110] + "…" if len(text) > 110 else text)


def gpu_health() -> str:
    smi = shutil.which("nvidia-smi")
    if not smi:
        return "no NVIDIA GPU visible (nvidia-smi not found)"
    try:
        out = subprocess.run(
            [smi, "--query-gpu=name,memory.used,memory.total,temperature.gpu", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=15,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"nvidia-smi failed: {exc}"
    if out.returncode != 0:
        return f"nvidia-smi failed: {(out.stderr or out.stdout).strip()[:160]}"
    gpus = []
    for line in out.stdout.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 4:
            gpus.append(f"{parts[0]}: {parts[1]} / {parts[2]} MiB used, {parts[3]} °C")
    return "; ".join(gpus) or "nvidia-smi listed no GPU"


def disk_health(cfg: Config) -> tuple[str, bool]:
    state = paths.state_dir(cfg)
    try:
        du = shutil.disk_usage(state)
    except OSError as exc:
        return f"cannot read free space of {state}: {exc}", True
    low = du.free < 0.05 * du.total or du.free < 5e9
    return f"{du.free / 1e9:,.1f} GB free of {du.total / 1e9:,.0f} GB in {state}", low


def plot_losses(losses: list[list[float]], version: str) -> bytes | None:
    pts = [(float(s), float(v)) for s, v in losses if v is not None] if losses else []
    if len(pts) < 2:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 2.6), dpi=100)
    ax.plot([p[0] for p in pts], [p[1] for p in pts], color="#6b4fbb", linewidth=1.6)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (each logged step)")
    ax.set_title(f"{version}: logged loss per step", fontsize=10)
    ax.grid(alpha=0.3)
    return _png(fig)


def plot_metrics(series: dict[str, list[tuple[str, float]]]) -> bytes | None:
    series = {k: v for k, v in series.items() if len(v) >= 1}
    if not series or max(len(v) for v in series.values()) < 2:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(series)
    fig, axes = plt.subplots(n, 1, figsize=(6, 1.9 * n), dpi=100, squeeze=False)
    for ax, (name, pts) in zip(axes[:, 0], series.items()):
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", color="#2a7f62", linewidth=1.4)
        ax.set_ylabel(name, fontsize=8)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=8)
    axes[0, 0].set_title("eval metrics by version", fontsize=10)
    fig.tight_layout()
    return _png(fig)


def _png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()

"""The morning briefing: what the last night and week did, as an e-mail or as files.

`build_briefing(cfg)` reads only records (runs/*.json, versions.json, the proposal queue) and
returns a `Briefing`: subject, plain text, HTML and PNG plots. `run_briefing(cfg, send=...)` writes
it to data/briefings/briefing-<date>.{eml,txt,html} and, when SMTP is configured and asked for,
sends it. Everything is laid out once as sections and rendered twice (text and HTML) so the two
parts never disagree.

A *missed run* is a time the schedule (schedule.<chain>.cron, read with croniter in the machine's
local time, as cron does) expected a run and no run record started near it — the failure a broken
crontab or cron environment produces, which no run can report about itself.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html as _html
import io
import os
import shutil
import smtplib
import socket
import ssl
import subprocess
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Any

from mothbrain.config import Config
from mothbrain.core import paths
from mothbrain.core.atomic import write_atomically
from mothbrain.core.clock import parse_time
from mothbrain.core.gate import check_status
from mothbrain.core.ledger import open_ledger
from mothbrain.core.secrets import check_secret_file
from mothbrain.errors import MothError
from mothbrain.ops.cron import cron_installed_at
from mothbrain.ops.runs import headline, settled_runs
from mothbrain.ops.schedule import CHAINS, chain_config
from mothbrain.proposals.queue import list_proposals, review_totals, wiki_activity
from mothbrain.report import train_loss_text

WEEK = _dt.timedelta(days=7)
EARLY = _dt.timedelta(minutes=2)  # a run may start a little before its slot (clock skew)
LATE = _dt.timedelta(hours=2)  # ... and this much after it still counts as that slot's run
SETTLE = _dt.timedelta(minutes=15)  # slots this recent are not yet called missed
SMTP_TIMEOUT_S = 30


@dataclass
class Image:
    cid: str  # Content-ID without angle brackets
    filename: str
    data: bytes  # PNG


@dataclass
class Section:
    title: str
    lines: list[str] = field(default_factory=list)
    headers: list[str] = field(default_factory=list)
    table: list[list[str]] = field(default_factory=list)
    image: str | None = None  # cid of a plot shown under the section
    alert: bool = False  # shown in red in the HTML


@dataclass
class Briefing:
    subject: str
    text: str
    html: str
    attachments: list[Image]
    sections: list[Section] = field(default_factory=list)
    date: str = ""

    def to_message(self, sender: str, to: str) -> EmailMessage:
        """multipart/alternative: text, then HTML with the plots as multipart/related cid: parts."""
        msg = EmailMessage()
        msg["Subject"] = self.subject
        msg["From"] = sender
        if to:
            msg["To"] = to
        msg["Date"] = formatdate(localtime=True)
        msg["Message-ID"] = make_msgid(domain=socket.gethostname() or "mothbrain")
        msg.set_content(self.text)
        msg.add_alternative(self.html, subtype="html")
        html_part = msg.get_payload()[1]
        for img in self.attachments:
            html_part.add_related(img.data, maintype="image", subtype="png", cid=f"<{img.cid}>", filename=img.filename)
        return msg

    def standalone_html(self) -> str:
        """The HTML with the plots inlined as data: URIs, for a browser (cid: only works in mail)."""
        out = self.html
        for img in self.attachments:
            out = out.replace(f"cid:{img.cid}", "data:image/png;base64," + base64.b64encode(img.data).decode())
        return out


# --------------------------------------------------------------------------- gathering


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


def _proposal_excerpt(p: Any) -> str:
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


# --------------------------------------------------------------------------- plots


def _plot_losses(losses: list[list[float]], version: str) -> bytes | None:
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


def _plot_metrics(series: dict[str, list[tuple[str, float]]]) -> bytes | None:
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


# --------------------------------------------------------------------------- building


def _local(t: _dt.datetime | None, fmt: str = "%a %d %b %H:%M") -> str:
    return t.astimezone().strftime(fmt) if t else "?"


def _excerpt(text: str | None, n: int = 240) -> str:
    text = " ".join(str(text or "").split())
    return text if len(text) <= n else text[: n - 1] + "…"


def _fmt_num(v: float | None) -> str:
    if v is None:
        return "—"
    return f"{v:,.4g}" if abs(v) < 1e6 else f"{v:,.0f}"


# The checks decided from an interval, and the eval figure holding it: shown as "mean [lo, hi] unit".
INTERVAL_FIGURES = {
    "voice vs base": ("voice_gain_vs_base", "nats/token saved"),
    "held-out associations vs base": ("association_heldout_vs_base", "nats"),
    "held-out associations vs current": ("association_heldout_vs_current", "nats"),
}


def gate_lines(versions: list[dict[str, Any]]) -> list[str]:
    """The newest decided version's decision and the checks that decided it, each with its figure:
    "held-out associations vs base: -0.680 [-1.113, -0.265] nats → fail". A refusal names its deciding checks;
    a promotion was decided by every check that ran (those not run are named, never counted as passes)."""

    v = next((v for v in reversed(versions) if (v.get("promotion") or {}).get("checks")), None)
    if v is None:
        return []
    p, ev = v["promotion"], v.get("eval") or {}
    names = [n.strip() for n in (p.get("deciding") or "").split(",") if n.strip()]
    checks = [c for c in p["checks"] if c.get("check") in names] or [
        c for c in p["checks"] if check_status(c) != "not run"
    ]
    lines = [f"gate on {v['id']}: {p['decision']}, decided by:"]
    for c in checks:
        key, unit = INTERVAL_FIGURES.get(c.get("check"), (None, ""))
        ci = ev.get(key) if key else None
        if isinstance(ci, dict) and ci.get("lo") is not None:
            figure = f"{ci['mean']:+.3f} [{ci['lo']:+.3f}, {ci['hi']:+.3f}] {unit}"
        else:
            figure = _excerpt(c.get("value"), 160)
        lines.append(f"  {c.get('check')}: {figure} → {check_status(c)}")
    not_run = [c["check"] for c in p["checks"] if check_status(c) == "not run"]
    if not_run:
        lines.append(f"  not run: {', '.join(not_run)}")
    return lines


def _verdict(check: dict[str, Any]) -> str:
    """A gate check's verdict as the briefing prints it: pass, FAIL, UNDECIDED (not enough held-out material)
    or not run (never counted as a pass)."""

    return {"pass": "pass", "fail": "FAIL", "undecided": "UNDECIDED"}.get(check_status(check), "not run")


def _stage_summary(run: dict[str, Any]) -> str:
    failed = [s for s in run.get("stages", []) if s.get("status") == "failed"]
    if run.get("status") == "refused":
        return _excerpt((run.get("warnings") or ["refused: another run held the lock"])[0], 160)
    if failed:
        err = _excerpt(failed[0].get("error"), 160)
        return err if err.startswith(failed[0]["name"]) else f"{failed[0]['name']}: {err}"
    if run.get("outcome"):  # the run in one line, the gate's decision included
        return _excerpt(run["outcome"], 160)
    skipped = [s["name"] for s in run.get("stages", []) if s.get("status") == "skipped"]
    parts = [f"version {run['version']}" if run.get("version") else ""]
    if run.get("lock_wait"):
        parts.append(f"waited {run['lock_wait'].get('seconds')} s for the lock")
    if skipped:
        parts.append("skipped: " + ", ".join(skipped))
    return "; ".join(p for p in parts if p)


def build_briefing(cfg: Config, now: _dt.datetime | None = None) -> Briefing:
    """Lay out the last run, the week, missed runs, versions, promotions, yields, proposals and health."""
    now = (now or _dt.datetime.now(_dt.timezone.utc)).astimezone(_dt.timezone.utc)
    week_start = now - WEEK
    runs = [r for r in settled_runs(cfg) if (parse_time(r.get("started")) or now) <= now]
    week = [r for r in runs if (t := parse_time(r.get("started"))) and t >= week_start]
    missed = missed_runs(cfg, runs, now)
    sections: list[Section] = []
    images: list[Image] = []

    # ---- the last run, stage by stage
    last = next((r for r in reversed(week) if r.get("status") != "refused"), week[-1] if week else None)
    if last:
        sec = Section(
            f"Last run: {last['chain']} {last['run_id']} — {last.get('status', '?').upper()}",
            alert=last.get("status") not in ("ok", "running"),
        )
        sec.lines.append(
            f"{_local(parse_time(last.get('started')))} → "
            f"{_local(parse_time(last.get('finished')), '%H:%M') if last.get('finished') else 'still running'}"
            f" on {last.get('host', '?')}; log: {last.get('log') or '—'}"
        )
        if last.get("outcome"):
            sec.lines.append(f"Outcome: {last['outcome']}")
        if last.get("lock_wait"):
            sec.lines.append(
                last["lock_wait"].get("note") or f"waited {last['lock_wait'].get('seconds')} s for the lock"
            )
        if last.get("recovered_lock"):
            sec.lines.append(last["recovered_lock"])
        sec.headers = ["stage", "status", "seconds", "result"]
        for st in last.get("stages", []):
            if st.get("status") in ("failed", "skipped"):
                note = _excerpt(st.get("error"))
            else:
                note = _excerpt(headline(st["name"], st.get("figures") or {}), 160)
            dur = st.get("duration_s")
            sec.table.append([st["name"], st.get("status", "?"), f"{dur:.1f}" if dur is not None else "", note])
        for st in last.get("stages", []):  # what a stage warned about: bad records and the files that hold them
            for w in (st.get("warnings") or [])[:3]:
                sec.lines.append(f"{st['name']}: {_excerpt(w, 400)}")
        for st in last.get("stages", []):
            if st.get("traceback"):
                sec.lines.append(f"traceback of {st['name']} (last lines; the log has all of it):")
                sec.lines.extend("    " + ln for ln in st["traceback"].splitlines()[-6:])
        sections.append(sec)
    else:
        sections.append(Section("Last run", ["no run recorded in the last 7 days"], alert=True))

    # ---- missed runs: the schedule expected one and none started
    if missed:
        sec = Section(f"Missed runs: {len(missed)}", alert=True)
        sec.lines = [
            f"{m['chain']} expected {_local(parse_time(m['expected']))} (cron '{m['cron']}'): no run started"
            for m in missed
        ]
        sec.lines.append("check `mothbrain doctor`, `crontab -l` and logs/cron-<chain>.log in the state dir")
        sections.append(sec)
    elif not cron_installed_at(cfg) and not runs:
        sections.append(Section("Schedule", ["no schedule installed: `mothbrain cron install` (or the systemd timer)"]))

    # ---- the week
    counts = {s: sum(r.get("status") == s for r in week) for s in ("ok", "failed", "killed", "interrupted", "refused")}
    sec = Section(
        "The week: "
        + ", ".join(
            [f"{len(week)} run{'' if len(week) == 1 else 's'}"]
            + [f"{n} {s}" for s, n in counts.items() if n]
            + ([f"{len(missed)} missed"] if missed else [])
        )
    )
    sec.headers = ["started", "chain", "status", "note"]
    sec.table = [
        [_local(parse_time(r.get("started"))), r.get("chain", "?"), r.get("status", "?"), _stage_summary(r)]
        for r in reversed(week)
    ]
    sections.append(sec)

    # ---- versions: the newest, its training and its eval against the one before
    ledger = open_ledger(cfg)
    try:
        data = ledger.read()
    except MothError as exc:
        data = {"versions": [], "events": [], "current": None}
        sections.append(Section("Ledger", [str(exc)], alert=True))
    versions = data.get("versions", [])
    new = [v for v in versions if (t := parse_time(v.get("created_at"))) and t >= week_start]
    if new:
        v = new[-1]
        tr = v.get("train") or {}
        sec = Section(
            f"New version {v['id']} ({v.get('status')}{', parent ' + v['parent'] if v.get('parent') else ''})",
            alert=v.get("status") == "failed",
        )
        if tr.get("final_loss") is not None:
            speed = f", {tr['tokens_per_s']:,.0f} tokens/s" if tr.get("tokens_per_s") else ""
            sec.lines.append(
                f"train loss {train_loss_text(tr.get('first_loss'), tr['final_loss'])} over "
                f"{tr.get('steps', '?')} steps{speed}"
            )
        if v.get("error"):
            sec.lines.append(f"error: {_excerpt((v['error'] or {}).get('reason'))}")
        if len(new) > 1:
            sec.lines.append(
                f"{len(new)} versions this week: " + ", ".join(f"{x['id']} ({x.get('status')})" for x in new)
            )
        loss_png = _plot_losses(tr.get("losses") or [], v["id"])
        if loss_png:
            images.append(Image(make_msgid(domain="mothbrain")[1:-1], f"loss-{v['id']}.png", loss_png))
            sec.image = images[-1].cid
        sections.append(sec)
    evaluated = [v for v in versions if numeric_metrics(v.get("eval") or {})]
    if evaluated:
        cur = evaluated[-1]
        prev = evaluated[-2] if len(evaluated) > 1 else None
        a, b = numeric_metrics(cur["eval"]), numeric_metrics(prev["eval"]) if prev else {}
        sec = Section(f"Eval: {cur['id']}" + (f" against {prev['id']}" if prev else " (no earlier version to compare)"))
        sec.headers = ["metric", prev["id"] if prev else "previous", cur["id"], "change"]
        for key in list(a)[:16]:
            old = b.get(key)
            change = (
                "" if old is None else (f"{(a[key] - old) / abs(old) * 100:+.1f}%" if old else f"{a[key] - old:+.4g}")
            )
            sec.table.append([key, _fmt_num(old), _fmt_num(a[key]), change])
        keys = [k for k in a if sum(k in numeric_metrics(v["eval"]) for v in evaluated) >= 2][:4]
        png = _plot_metrics(
            {
                k: [(v["id"], numeric_metrics(v["eval"])[k]) for v in evaluated if k in numeric_metrics(v["eval"])]
                for k in keys
            }
        )
        if png:
            images.append(Image(make_msgid(domain="mothbrain")[1:-1], "eval-metrics.png", png))
            sec.image = images[-1].cid
        sec.lines += gate_lines(versions)
        sections.append(sec)

    # ---- promotion decisions
    decisions = [v for v in new if (v.get("promotion") or {}).get("decision")]
    events = [
        e
        for e in data.get("events", [])
        if (t := parse_time(e.get("at")))
        and t >= week_start
        and e.get("event") in ("promoted", "rollback", "rejected", "demoted")
    ]
    if decisions or events:
        sec = Section("Promotion")
        for v in decisions:
            p = v["promotion"]
            if p.get("checks"):  # the gate's every check: figure, threshold, verdict
                deciding = f" — decided by {p['deciding']}" if p.get("deciding") else ""
                sec.lines.append(f"{v['id']}: {p['decision']}{deciding}")
                sec.lines += [
                    f"  {_verdict(c)} · {c.get('check')}: {_excerpt(c.get('value'), 160)} (needs {c.get('threshold')})"
                    for c in p["checks"]
                ]
            else:  # decisions recorded before the gate kept its checks
                reasons = p.get("reasons") or []
                reasons = "; ".join(map(str, reasons)) if isinstance(reasons, list) else str(reasons)
                sec.lines.append(f"{v['id']}: {p['decision']}" + (f" — {_excerpt(reasons)}" if reasons else ""))
        for e in events:
            sec.lines.append(
                f"{_local(parse_time(e['at']))}: {e['event']} {e.get('version') or ''}"
                f"{' — ' + _excerpt(e['detail']) if e.get('detail') else ''}"
            )
        sec.lines.append(f"current adapter: {data.get('current') or 'none'}")
        sections.append(sec)

    # ---- yields to interactive work
    yielded = [
        (v["id"], (v.get("train") or {}).get("yields") or 0, (v.get("train") or {}).get("yield_seconds") or 0)
        for v in new
    ]
    if any(n for _, n, _ in yielded):
        sections.append(
            Section(
                "Yields to interactive work",
                [f"{vid}: paused {n} time(s), {secs / 60:.1f} min in all" for vid, n, secs in yielded if n],
            )
        )

    # ---- proposals
    props, why = pending_proposals(cfg)
    if props is None:
        sections.append(Section("Proposals waiting", [why]))
    else:
        sec = Section(f"Proposals waiting: {len(props)}")
        sec.lines = [_proposal_excerpt(p) for p in props[:5]]
        if props:
            sec.lines.append("review with `mothbrain proposals list`")
        sections.append(sec)

    # ---- the wiki-worker
    wiki = wiki_section(cfg, now)
    if wiki is not None:
        sections.append(wiki)

    # ---- health
    disk, low = disk_health(cfg)
    sections.append(Section("Health", [f"disk: {disk}" + (" — LOW" if low else ""), f"GPU: {gpu_health()}"], alert=low))

    subject = _subject(last, missed, new, decisions, now)
    date = now.astimezone().strftime("%Y-%m-%d")
    header = f"MothBrain briefing for {socket.gethostname()}, {now.astimezone().strftime('%A %d %B %Y, %H:%M')}"
    return Briefing(
        subject=subject,
        text=_render_text(header, sections),
        html=_render_html(header, sections),
        attachments=images,
        sections=sections,
        date=date,
    )


def _subject(last, missed, new, decisions, now) -> str:
    parts = []
    if last is None:
        parts.append("no run this week")
    elif last.get("status") == "ok":
        parts.append(f"{last['chain']} ok")
    else:
        failed = [s["name"] for s in last.get("stages", []) if s.get("status") == "failed"]
        parts.append(f"{last['chain']} {last.get('status', '?').upper()}" + (f" at {failed[0]}" if failed else ""))
    if new and new[-1].get("status") != "failed":
        parts.append(f"{new[-1]['id']} {new[-1].get('status')}")
    for v in decisions[-1:]:
        decision = f"{v['id']} {v['promotion']['decision']}"
        if decision not in parts:
            parts.append(decision)
    if missed:
        parts.append(f"{len(missed)} missed run{'s' if len(missed) > 1 else ''}")
    return f"MothBrain {now.astimezone():%Y-%m-%d}: " + ", ".join(parts)


def _render_text(header: str, sections: list[Section]) -> str:
    out = [header, "=" * len(header), ""]
    for s in sections:
        out.append(("!! " if s.alert else "") + s.title)
        out.extend("  " + ln for ln in s.lines)
        if s.table:
            rows = [s.headers] + s.table
            widths = [min(max(len(str(r[i])) for r in rows), 40) for i in range(len(s.headers) - 1)]
            for r in rows:
                out.append("  " + "  ".join(str(c).ljust(w) for c, w in zip(r, widths)) + "  " + str(r[-1]))
        out.append("")
    return "\n".join(out)


def _render_html(header: str, sections: list[Section]) -> str:
    e = _html.escape
    out = [
        '<html><body style="font-family: -apple-system, Segoe UI, sans-serif; font-size: 14px; color: #222">',
        f'<h2 style="margin-bottom: 4px">{e(header)}</h2>',
    ]
    for s in sections:
        color = "#b00020" if s.alert else "#333"
        out.append(f'<h3 style="color: {color}; margin: 18px 0 4px">{e(s.title)}</h3>')
        for ln in s.lines:
            out.append(f'<div style="white-space: pre-wrap">{e(ln)}</div>')
        if s.table:
            out.append('<table style="border-collapse: collapse; font-size: 13px">')
            out.append(
                "<tr>"
                + "".join(
                    f'<th style="text-align: left; padding: 2px 10px 2px 0; border-bottom: 1px solid #ccc">{e(h)}</th>'
                    for h in s.headers
                )
                + "</tr>"
            )
            for row in s.table:
                bad = any(c in ("failed", "killed", "interrupted", "refused") for c in row)
                style = ' style="color: #b00020"' if bad else ""
                out.append(
                    f"<tr{style}>"
                    + "".join(f'<td style="padding: 2px 10px 2px 0; vertical-align: top">{e(str(c))}</td>' for c in row)
                    + "</tr>"
                )
            out.append("</table>")
        if s.image:
            out.append(f'<div><img src="cid:{s.image}" alt="{e(s.title)}" style="max-width: 600px"></div>')
    out.append("</body></html>")
    return "\n".join(out)


# --------------------------------------------------------------------------- writing and sending


def smtp_configured(cfg: Config) -> bool:
    return bool(cfg.briefing.smtp_host and cfg.briefing.to)


def smtp_password(cfg: Config) -> str | None:
    """The SMTP password from the environment or a mode-0600 file; None when no login is configured."""
    b = cfg.briefing
    if not b.smtp_user:
        return None
    if b.smtp_password_env and os.environ.get(b.smtp_password_env):
        return os.environ[b.smtp_password_env]
    if b.smtp_password_file:
        p = cfg.resolve_path(b.smtp_password_file)
        check_secret_file(p, "briefing.smtp_password_file")
        return p.read_text(encoding="utf-8").strip()
    raise MothError(
        f"briefing.smtp_user is set but there is no password: export ${b.smtp_password_env} or set "
        "briefing.smtp_password_file to a file of mode 0600"
    )


def send_message(cfg: Config, msg: EmailMessage) -> None:
    b = cfg.briefing
    password = smtp_password(cfg)
    context = ssl.create_default_context()
    try:
        if b.smtp_security == "ssl":
            server = smtplib.SMTP_SSL(b.smtp_host, b.smtp_port, timeout=SMTP_TIMEOUT_S, context=context)
        else:
            server = smtplib.SMTP(b.smtp_host, b.smtp_port, timeout=SMTP_TIMEOUT_S)
        with server:
            if b.smtp_security == "starttls":
                server.starttls(context=context)
            if b.smtp_user:
                server.login(b.smtp_user, password or "")
            server.send_message(msg)
    except (smtplib.SMTPException, OSError) as exc:
        raise MothError(
            f"could not send the briefing via {b.smtp_host}:{b.smtp_port} ({b.smtp_security}): "
            f"{type(exc).__name__}: {exc}; check briefing.smtp_* (try `mothbrain doctor --smtp`)"
        ) from None


@dataclass
class BriefingReport:
    title: str
    subject: str
    path: Path | None
    files: list[str]
    sent_to: str | None = None
    warnings: list[str] = field(default_factory=list)

    def rows(self) -> list[dict[str, Any]]:
        rows = [{"": "subject", "value": self.subject}, {"": "written to", "value": str(self.path)}]
        rows.append({"": "sent to", "value": self.sent_to or "— (not sent)"})
        return rows

    def to_json(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "subject": self.subject,
            "path": str(self.path) if self.path else None,
            "files": self.files,
            "sent_to": self.sent_to,
            "warnings": self.warnings,
        }


def _write(path: Path, data: bytes) -> None:
    try:
        write_atomically(path, data)
    except OSError as exc:
        raise MothError(f"could not write {path}: {exc.strerror or exc} (free disk space or fix permissions)") from None


def run_briefing(
    cfg: Config, send: bool = False, out: str | os.PathLike | None = None, now: _dt.datetime | None = None
) -> BriefingReport:
    """Build the briefing, write briefing-<date>.eml/.txt/.html, and send it when asked and configured."""
    b = build_briefing(cfg, now)
    msg = b.to_message(cfg.briefing.sender, cfg.briefing.to)
    folder = Path(out).expanduser().resolve() if out else paths.briefings_dir(cfg)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MothError(f"cannot create {folder}: {exc.strerror or exc}") from None
    stem = folder / f"briefing-{b.date}"
    eml = stem.with_suffix(".eml")
    _write(eml, bytes(msg))
    _write(stem.with_suffix(".txt"), b.text.encode("utf-8"))
    _write(stem.with_suffix(".html"), b.standalone_html().encode("utf-8"))
    report = BriefingReport(
        "briefing", b.subject, eml, [str(eml), str(stem.with_suffix(".txt")), str(stem.with_suffix(".html"))]
    )
    if send:
        if smtp_configured(cfg):
            send_message(cfg, msg)
            report.sent_to = cfg.briefing.to
        else:
            report.warnings.append(
                f"SMTP is not configured (set briefing.smtp_host and briefing.to): the briefing was written to {eml}"
            )
    return report


def send_after_run(cfg: Config, record: Any) -> dict[str, Any]:
    """The chain's end-of-run hook (`run_chain(..., on_finish=send_after_run)`): send or write the
    briefing and return what the run record keeps about it."""
    result = run_briefing(cfg, send=True)
    return {"sent_to": result.sent_to, "path": str(result.path) if result.path else None, "warnings": result.warnings}

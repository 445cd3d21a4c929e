"""The morning briefing: what the last night and week did, as an e-mail or as files.

`build_briefing(cfg)` reads only records (runs/*.json, versions.json, the proposal queue) and
returns a `Briefing`: subject, plain text, HTML and PNG plots. `run_briefing(cfg, send=...)` writes
it to data/briefings/briefing-<date>.{eml,txt,html} and, when SMTP is configured and asked for,
sends it. Everything is laid out once as sections and rendered twice (text and HTML) so the two
parts never disagree.

The figures come from `briefing_figures`, the message and its two renderings from `briefing_render`,
the SMTP delivery from `briefing_mail`.
"""

from __future__ import annotations

import datetime as _dt
import os
import socket
from dataclasses import dataclass, field
from email.utils import make_msgid
from pathlib import Path
from typing import Any

from mothbrain.config import Config
from mothbrain.core import paths
from mothbrain.core.atomic import write_atomically
from mothbrain.core.clock import parse_time
from mothbrain.core.gate import check_status
from mothbrain.core.ledger import open_ledger
from mothbrain.errors import MothError
from mothbrain.ops.briefing_figures import (
    WEEK,
    disk_health,
    gpu_health,
    missed_runs,
    numeric_metrics,
    pending_proposals,
    plot_losses,
    plot_metrics,
    proposal_excerpt,
    wiki_section,
)
from mothbrain.ops.briefing_mail import send_message, smtp_configured
from mothbrain.ops.briefing_render import Briefing, Image, Section, render_html, render_text
from mothbrain.ops.cron import cron_installed_at
from mothbrain.ops.runs import headline, settled_runs
from mothbrain.report import train_loss_text

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
        loss_png = plot_losses(tr.get("losses") or [], v["id"])
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
        png = plot_metrics(
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
        sec.lines = [proposal_excerpt(p) for p in props[:5]]
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
        text=render_text(header, sections),
        html=render_html(header, sections),
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


# --------------------------------------------------------------------------- writing (and sending)


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

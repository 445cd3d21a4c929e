"""The morning briefing, received by a real SMTP server on loopback, and missed-run detection."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import json
import os
import socket
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from mothbrain.cli import main
from mothbrain.config import REPO_ROOT, load_config
from mothbrain.core import paths
from mothbrain.core.atomic import save_json as atomic_write_json
from mothbrain.core.ledger import open_ledger
from mothbrain.errors import MothError
from mothbrain.ops.briefing import build_briefing, run_briefing, send_after_run
from mothbrain.ops.briefing_figures import missed_runs
from mothbrain.ops.briefing_mail import smtp_password
from mothbrain.ops.runs import load_runs
from mothbrain.ops.schedule import run_chain
from mothbrain.report import SimpleReport

DEMO_CONFIG = REPO_ROOT / "configs" / "demo-tiny.yaml"
UTC = dt.timezone.utc


def _local_slot(day: dt.date, hour: int, minute: int) -> dt.datetime:
    """A wall-clock time on the machine (what cron reads) as an aware datetime."""
    return dt.datetime.combine(day, dt.time(hour, minute)).astimezone()


def _write_record(cfg, chain: str, started: dt.datetime, status: str = "ok") -> None:
    run_id = started.astimezone().strftime("%Y%m%d-%H%M%S") + f"-{chain}"
    stages = [{"name": "ingest", "status": "ok", "duration_s": 1.0, "figures": {}, "error": None}]
    atomic_write_json(
        paths.runs_dir(cfg) / f"{run_id}.json",
        {
            "schema": 1,
            "run_id": run_id,
            "chain": chain,
            "status": status,
            "pid": 1,
            "host": "h",
            "started": started.astimezone(UTC).isoformat(timespec="seconds"),
            "finished": (started + dt.timedelta(minutes=20)).astimezone(UTC).isoformat(timespec="seconds"),
            "stages": stages,
            "log": None,
            "version": None,
        },
    )


def _mark_installed(cfg, when: dt.datetime) -> None:
    atomic_write_json(paths.state_dir(cfg) / "cron.json", {"installed_at": when.isoformat()})


def _week_of_runs_except(cfg, now: dt.datetime, skip_days_ago: int) -> dt.datetime:
    """Records for every nightly (02:30) and weekly (Sat 03:00) slot of the last week but one nightly."""
    missing = None
    for d in range(0, 9):
        day = now.astimezone().date() - dt.timedelta(days=d)
        for chain, (h, m), wanted in (("nightly", (2, 30), True), ("weekly", (3, 0), day.weekday() == 5)):
            slot = _local_slot(day, h, m)
            if not wanted or not (now - dt.timedelta(days=7) < slot <= now - dt.timedelta(minutes=15)):
                continue
            if chain == "nightly" and d == skip_days_ago:
                missing = slot
                continue
            _write_record(cfg, chain, slot + dt.timedelta(seconds=4))
    return missing


def _ledger_with_two_evaluated_versions(cfg) -> None:
    led = open_ledger(cfg)
    a = led.new_version(status="trained")["id"]
    led.update(
        a,
        status="evaluated",
        eval={"voice_ppl": 21.5, "association_acc": 0.41, "judge": "n/a"},
        train={"steps": 40, "first_loss": 3.2, "final_loss": 2.4, "losses": [[i, 3.2 - i * 0.02] for i in range(40)]},
    )
    b = led.new_version(status="trained", parent=a)["id"]
    led.update(
        b,
        status="evaluated",
        eval={"voice_ppl": 19.0, "association_acc": 0.47},
        train={
            "steps": 60,
            "first_loss": 3.1,
            "final_loss": 2.1,
            "yields": 2,
            "yield_seconds": 330.0,
            "losses": [[i, 3.1 - i * 0.015] for i in range(60)],
        },
        promotion={"decision": "promoted", "reasons": ["voice perplexity 11.6% better than current"]},
    )
    led.set_current(b, detail="gate passed")


class _Inbox:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(envelope)
        return "250 OK"


@pytest.fixture
def smtp_server():
    pytest.importorskip("aiosmtpd")
    from aiosmtpd.controller import Controller

    with socket.socket() as s:  # a free port on loopback
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    inbox = _Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


def test_failed_night_is_mailed_with_the_error_the_missed_run_and_plots(state_home, smtp_server):
    inbox, port = smtp_server
    smtp = [
        "briefing.smtp_host=127.0.0.1",
        f"briefing.smtp_port={port}",
        "briefing.smtp_security=none",
        "briefing.to=operator@example.org",
        "briefing.sender=moth@example.org",
    ]
    cfg = load_config(DEMO_CONFIG, [*smtp, "schedule.wiki.stages=[]"])  # the nightly's misses, not the wiki's
    now = dt.datetime.now(UTC)
    _mark_installed(cfg, now - dt.timedelta(days=10))
    missing = _week_of_runs_except(cfg, now, skip_days_ago=3)
    _ledger_with_two_evaluated_versions(cfg)
    error = "training of v0003 failed: CUDA out of memory at step 12 — lower train.max_seq_len to 1024"

    def failing_train(cfg):
        raise MothError(error)

    ok = lambda cfg: SimpleReport("ok", {"documents": 5})  # noqa: E731
    record = run_chain(
        cfg,
        "nightly",
        stages={"ingest": ok, "preprocess": ok, "train": failing_train, "dream": ok},
        on_finish=send_after_run,
    )
    assert record.failed
    assert record.briefing["sent_to"] == "operator@example.org", record.warnings

    (envelope,) = inbox.messages
    assert envelope.rcpt_tos == ["operator@example.org"]
    msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
    assert msg.get_content_type() == "multipart/alternative"
    assert "nightly FAILED at train" in msg["Subject"]
    text = msg.get_body(("plain",)).get_content()
    html = msg.get_body(("html",)).get_content()
    for part in (text, html):
        assert "CUDA out of memory at step 12" in part
        assert "Missed runs: 1" in part
        assert missing.strftime("%a %d %b %H:%M") in part
        assert "v0002: promoted" in part
        assert "voice_ppl" in part
    assert "not run" in text and "v0002: paused 2 time(s), 5.5 min" in text
    related = [p for p in msg.walk() if p.get_content_type() == "multipart/related"]
    assert related, "the HTML part carries its images as related parts"
    pngs = [p for p in msg.walk() if p.get_content_type() == "image/png"]
    assert len(pngs) == 2  # training loss + eval metrics across versions
    for p in pngs:
        assert p.get_content().startswith(b"\x89PNG\r\n\x1a\n")
        assert f"cid:{p['Content-ID'].strip('<>')}" in html
    # The same briefing is kept on disk.
    txt = Path(record.briefing["path"]).with_suffix(".txt").read_text()
    assert "CUDA out of memory" in txt


def test_missed_runs_count_only_since_the_schedule_was_installed(state_home):
    cfg = load_config(DEMO_CONFIG, ["schedule.wiki.stages=[]"])  # the nightly's misses, not the wiki's
    now = dt.datetime(2026, 3, 12, 9, 0).astimezone()  # a Thursday morning, machine local time
    assert missed_runs(cfg, [], now) == []  # nothing installed, nothing ran: nothing can be missed
    _mark_installed(cfg, now - dt.timedelta(days=2, hours=12))  # Monday 21:00
    missed = missed_runs(cfg, [], now)
    assert [(m["chain"], m["expected"][:16]) for m in missed] == [
        ("nightly", _local_slot(dt.date(2026, 3, 10), 2, 30).isoformat()[:16]),
        ("nightly", _local_slot(dt.date(2026, 3, 11), 2, 30).isoformat()[:16]),
        ("nightly", _local_slot(dt.date(2026, 3, 12), 2, 30).isoformat()[:16]),
    ]
    _write_record(cfg, "nightly", _local_slot(dt.date(2026, 3, 11), 2, 31))  # a minute late still counts
    _write_record(cfg, "nightly", _local_slot(dt.date(2026, 3, 12), 5, 0))  # 2.5 h late does not
    missed = missed_runs(cfg, load_runs(cfg), now)
    assert [m["expected"][:10] for m in missed] == ["2026-03-10", "2026-03-12"]
    text = build_briefing(cfg, now=now).text
    assert "Missed runs: 2" in text


def test_runs_by_hand_miss_nothing_without_an_installed_schedule(state_home):
    """No `cron install`: a run started by hand on Monday does not make Tuesday's 02:30 a missed run."""
    cfg = load_config(DEMO_CONFIG, ["schedule.wiki.stages=[]"])
    now = dt.datetime(2026, 3, 12, 9, 0).astimezone()
    _write_record(cfg, "weekly", _local_slot(dt.date(2026, 3, 9), 14, 0))
    assert missed_runs(cfg, load_runs(cfg), now) == []
    assert "missed" not in build_briefing(cfg, now=now).text.lower()


def test_without_smtp_it_is_written_to_files(state_home, tmp_path):
    cfg = load_config(DEMO_CONFIG)
    report = run_briefing(cfg, send=True)
    assert report.sent_to is None and "SMTP is not configured" in report.warnings[0]
    eml = Path(report.path)
    assert eml.parent == paths.briefings_dir(cfg) and eml.name.startswith("briefing-")
    msg = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
    assert msg.get_content_type() == "multipart/alternative"
    assert eml.with_suffix(".html").read_text().startswith("<html>")
    res = CliRunner().invoke(main, ["briefing", "--out", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    assert str(tmp_path / "out") in res.output and list((tmp_path / "out").glob("briefing-*.txt"))


def test_password_file_must_be_private(state_home, tmp_path, monkeypatch):
    secret = tmp_path / "smtp-password"
    secret.write_text("hunter2\n")
    os.chmod(secret, 0o644)
    monkeypatch.delenv("MOTHBRAIN_SMTP_PASSWORD", raising=False)
    cfg = load_config(
        DEMO_CONFIG,
        [
            "briefing.smtp_host=127.0.0.1",
            "briefing.to=a@example.org",
            "briefing.smtp_user=moth",
            f"briefing.smtp_password_file={secret}",
        ],
    )
    with pytest.raises(MothError, match=f"chmod 600 {secret}"):
        smtp_password(cfg)
    with pytest.raises(MothError, match="mode 0644"):
        run_briefing(cfg, send=True)  # refused before any connection is made
    os.chmod(secret, 0o600)
    assert smtp_password(cfg) == "hunter2"
    monkeypatch.setenv("MOTHBRAIN_SMTP_PASSWORD", "from-env")
    assert smtp_password(cfg) == "from-env"


def test_send_failure_is_a_clean_error_and_never_fails_the_run(state_home):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]  # nothing listens here
    cfg = load_config(
        DEMO_CONFIG,
        [
            "briefing.smtp_host=127.0.0.1",
            f"briefing.smtp_port={dead_port}",
            "briefing.smtp_security=none",
            "briefing.to=a@example.org",
        ],
    )
    with pytest.raises(MothError, match=f"could not send the briefing via 127.0.0.1:{dead_port}"):
        run_briefing(cfg, send=True)
    ok = lambda cfg: SimpleReport("ok", {})  # noqa: E731
    t0 = time.time()
    record = run_chain(
        cfg, "nightly", stages={s: ok for s in ("ingest", "preprocess", "train", "dream")}, on_finish=send_after_run
    )
    assert record.status == "ok" and not record.failed and time.time() - t0 < 30
    assert any("briefing failed" in w for w in record.warnings)
    assert json.loads(record.path.read_text())["briefing"]["error"].startswith("briefing failed")


def test_the_gate_s_checks_are_in_the_briefing(state_home):
    from mothbrain.config import GateConfig
    from mothbrain.core.gate import gate_checks

    cfg = load_config(DEMO_CONFIG)
    ev = {
        "voice_ppl": 30.0,
        "voice_ppl_base": 1400.0,
        "voice_samples": 120,
        "accepted_voice_ppl_base": 13.0,
        "voice_gain_vs_base": {"mean": 3.7, "lo": 3.6, "hi": 3.8, "n": 120},
    }
    checks = gate_checks(ev, GateConfig(require_association=False), has_current=False)
    led = open_ledger(cfg)
    v = led.new_version(status="rejected", eval=ev)["id"]
    led.update(v, promotion={"decision": "rejected", "reasons": [c["reason"] for c in checks], "checks": checks})
    text = build_briefing(cfg).text
    assert f"{v}: rejected" in text and "FAIL · data sanity" in text and "pass · voice vs base" in text


def test_the_eval_section_shows_the_checks_that_decided_the_newest_decision(state_home):
    """The demo's refusal on SmolLM2: the briefing's eval section names the deciding check with its interval."""
    cfg = load_config(DEMO_CONFIG)
    led = open_ledger(cfg)
    ev = {
        "evaluated_at": "2025-05-15T00:00:00+00:00",
        "voice_ppl": 15.93,
        "voice_ppl_base": 107.2,
        "voice_gain_vs_base": {"mean": 1.907, "lo": 1.781, "hi": 2.042, "n": 47},
        "association_heldout_vs_base": {"mean": -0.680, "lo": -1.113, "hi": -0.265, "n": 60},
    }
    checks = [
        {"check": "voice vs base", "status": "pass", "value": "15.93 vs 107.2", "threshold": "", "ok": True},
        {"check": "held-out associations vs base", "status": "fail", "value": "lift -0.680", "ok": False},
        {"check": "regression set", "status": "pass", "value": "139.6 vs 153.3 (-8.9%)", "ok": True},
        {"check": "priority concepts kept", "status": "not run", "value": None, "ok": True},
    ]
    promotion = {"decision": "rejected", "checks": checks, "deciding": "held-out associations vs base"}
    led.new_version(status="rejected", eval=ev, promotion=promotion)

    text = build_briefing(cfg).text
    eval_section = text[text.index("Eval: v0001") :]
    assert "gate on v0001: rejected, decided by:" in eval_section
    assert "held-out associations vs base: -0.680 [-1.113, -0.265] nats → fail" in eval_section
    assert "voice vs base: +1.907" not in eval_section  # a check that passed did not decide the refusal
    assert "not run: priority concepts kept" in eval_section

    # a promotion is decided by every check that ran: each with its figure
    led.new_version(status="promoted", eval=ev, promotion={**promotion, "decision": "promoted", "deciding": ""})
    text = build_briefing(cfg).text
    assert "gate on v0002: promoted, decided by:" in text
    assert "voice vs base: +1.907 [+1.781, +2.042] nats/token saved → pass" in text
    assert "regression set: 139.6 vs 153.3 (-8.9%) → pass" in text

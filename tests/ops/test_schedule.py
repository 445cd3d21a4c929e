"""Chains: run records, a failing stage, one run at a time, a dead holder's lock, SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from mothbrain.cli import main
from mothbrain.config import REPO_ROOT, load_config
from mothbrain.core import paths
from mothbrain.errors import MothError, NothingToDo
from mothbrain.ops.runs import load_runs
from mothbrain.ops.schedule import run_chain
from mothbrain.report import SimpleReport

DEMO_CONFIG = REPO_ROOT / "configs" / "demo-tiny.yaml"


def _cfg(*overrides: str):
    return load_config(DEMO_CONFIG, list(overrides))


def _ok(name: str, **figures):
    return lambda cfg: SimpleReport(name, {"documents": 3, **figures})


def _raise(exc: Exception):
    def stage(cfg):
        raise exc

    return stage


def test_failed_stage_stops_chain_and_is_recorded(state_home):
    cfg = _cfg("schedule.send_briefing=false")
    oom = "train: predicted peak 90 GB exceeds hardware.memory_gb 80 GB: lower train.max_seq_len to 1024"
    record = run_chain(
        cfg,
        "nightly",
        stages={
            "ingest": _ok("ingest", losses=list(range(500))),
            "preprocess": _raise(NothingToDo("no new material since the last run")),
            "train": _raise(MothError(oom)),
            "dream": _ok("dream"),
        },
    )
    assert record.failed and record.status == "failed"
    assert [s.status for s in record.stages] == ["ok", "skipped", "failed", "not run"]

    saved = json.loads(record.path.read_text())
    assert saved["status"] == "failed" and saved["chain"] == "nightly" and saved["pid"] == os.getpid()
    by_name = {s["name"]: s for s in saved["stages"]}
    assert by_name["train"]["error"] == oom and by_name["train"]["traceback"] is None  # expected: no traceback
    assert by_name["preprocess"]["error"] == "no new material since the last run"
    assert by_name["dream"]["started"] is None
    assert by_name["ingest"]["figures"]["documents"] == 3
    assert by_name["ingest"]["figures"]["losses"] == "<500 items>"  # key figures, not bulk
    assert saved["finished"] and saved["duration_s"] is not None
    log = Path(saved["log"]).read_text()
    assert oom in log and "stage ingest: ok" in log
    assert [r["run_id"] for r in load_runs(cfg)] == [record.run_id]
    rows = record.rows()
    assert rows[2]["stage"] == "train" and rows[2]["status"] == "failed"


def test_bug_keeps_a_traceback_excerpt_and_the_record_is_written_after_each_stage(state_home):
    cfg = _cfg("schedule.send_briefing=false")
    seen = {}

    def inspecting_preprocess(cfg):
        # While a stage runs, the record on disk already shows what happened before it.
        (rec,) = [json.loads(p.read_text()) for p in paths.runs_dir(cfg).glob("*.json")]
        seen.update({s["name"]: s["status"] for s in rec["stages"]}, status=rec["status"])
        return {}["missing key"]  # a bug, not an expected failure

    record = run_chain(cfg, "weekly", stages={"ingest": _ok("ingest"), "preprocess": inspecting_preprocess})
    assert seen == {
        "ingest": "ok",
        "preprocess": "running",
        "train": "not run",
        "dream": "not run",
        "eval": "not run",
        "promote": "not run",
        "status": "running",
    }
    pre = record.stages[1]
    assert pre.status == "failed" and pre.error.startswith("KeyError")
    assert "inspecting_preprocess" in pre.traceback and len(pre.traceback.splitlines()) <= 12
    assert "Traceback (most recent call last)" in Path(record.log).read_text()
    assert all(s.status == "not run" for s in record.stages[2:])


def test_train_version_and_skips_do_not_fail_the_run(state_home):
    cfg = _cfg("schedule.send_briefing=false")

    class TrainReport(SimpleReport):
        version = "v0007"

    record = run_chain(
        cfg,
        "nightly",
        stages={
            "ingest": _ok("ingest"),
            "preprocess": _ok("preprocess"),
            "train": lambda cfg: TrainReport("train", {"steps": 60}),
            "dream": _raise(NothingToDo("no trained version to dream with")),
        },
    )
    assert not record.failed and record.status == "ok" and record.version == "v0007"
    assert json.loads(record.path.read_text())["version"] == "v0007"


# --------------------------------------------------------------------------- real processes

HOLDER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from mothbrain.config import load_config
    from mothbrain.report import SimpleReport
    from mothbrain.ops.schedule import run_chain

    ready, release = Path(sys.argv[1]), Path(sys.argv[2])

    def slow(cfg):
        ready.touch()
        deadline = time.time() + 60
        while not release.exists() and time.time() < deadline:
            time.sleep(0.05)
        return SimpleReport("ingest", {"documents": 1})

    cfg = load_config(sys.argv[3], ["schedule.send_briefing=false"])
    fast = lambda cfg: SimpleReport("fast", {})
    rec = run_chain(cfg, "nightly", stages={"ingest": slow, "preprocess": fast, "train": fast, "dream": fast})
    print("RESULT", rec.status)
""")


def _start_holder(tmp_path: Path) -> tuple[subprocess.Popen, Path, Path]:
    script = tmp_path / "holder.py"
    script.write_text(HOLDER)
    ready, release = tmp_path / "ready", tmp_path / "release"
    proc = subprocess.Popen(
        [sys.executable, str(script), str(ready), str(release), str(DEMO_CONFIG)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 60
    while not ready.exists():
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            raise AssertionError(f"holder did not start: {proc.communicate()}")
        time.sleep(0.05)
    return proc, ready, release


def test_two_concurrent_runs_one_is_refused(tmp_path, state_home):
    proc, _, release = _start_holder(tmp_path)
    try:
        t0 = time.time()
        res = CliRunner().invoke(
            main,
            ["run", "nightly", "--set", "schedule.send_briefing=false", "--set", "schedule.nightly.wait_for_lock_s=0"],
        )
        assert time.time() - t0 < 10  # refused at once, not queued
        assert res.exit_code == 1, res.output
        assert res.stderr.count(f"another run (pid {proc.pid}, chain nightly, started") == 1  # printed once
        assert "Traceback" not in res.output
    finally:
        release.touch()
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "RESULT ok" in out
    runs = load_runs(_cfg())
    assert sorted(r["status"] for r in runs) == ["ok", "refused"]
    refused = next(r for r in runs if r["status"] == "refused")
    assert f"pid {proc.pid}" in refused["warnings"][0] and refused["stages"] == []


WAITER = textwrap.dedent("""
    import sys
    from mothbrain.config import load_config
    from mothbrain.report import SimpleReport
    from mothbrain.ops.schedule import run_chain

    cfg = load_config(sys.argv[1], ["schedule.send_briefing=false", f"schedule.weekly.wait_for_lock_s={sys.argv[2]}"])
    fast = lambda cfg: SimpleReport("fast", {})
    names = ("ingest", "preprocess", "train", "dream", "eval", "promote")
    rec = run_chain(cfg, "weekly", stages={s: fast for s in names})
    print("RESULT", rec.status, rec.lock_wait["seconds"])
""")


def _start_waiter(tmp_path: Path, wait_s: float) -> subprocess.Popen:
    script = tmp_path / "waiter.py"
    script.write_text(WAITER)
    return subprocess.Popen(
        [sys.executable, str(script), str(DEMO_CONFIG), str(wait_s)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_a_weekly_run_waits_for_the_nightly_that_holds_the_lock(tmp_path, state_home):
    holder, _, release = _start_holder(tmp_path)
    waiter = _start_waiter(tmp_path, 120)
    try:
        time.sleep(4)  # the weekly run has found the lock held and is waiting
        assert waiter.poll() is None, waiter.communicate()
    finally:
        release.touch()
        h_out, h_err = holder.communicate(timeout=60)
    out, err = waiter.communicate(timeout=60)
    assert holder.returncode == 0 and "RESULT ok" in h_out, h_err
    assert waiter.returncode == 0, err
    assert "RESULT ok" in out and float(out.split()[-1]) >= 3
    assert f"another run (pid {holder.pid}, chain nightly" in err and "this weekly run waits for it" in err
    nightly, weekly = sorted(load_runs(_cfg()), key=lambda r: r["chain"])
    assert weekly["status"] == "ok" and weekly["lock_wait"]["seconds"] >= 3
    assert weekly["started"] <= nightly["finished"]  # the record keeps the time it was started (its cron slot)
    assert any(w.startswith("waited") and f"pid {holder.pid}" in w for w in weekly["warnings"])
    from mothbrain.ops.briefing import build_briefing

    assert "waited" in build_briefing(_cfg()).text


def test_a_run_that_waits_past_its_deadline_is_refused(tmp_path, state_home):
    holder, _, release = _start_holder(tmp_path)
    try:
        waiter = _start_waiter(tmp_path, 1)
        out, err = waiter.communicate(timeout=60)
    finally:
        release.touch()
        holder.communicate(timeout=60)
    assert waiter.returncode != 0
    assert f"pid {holder.pid}" in err and "gave up after waiting 1 s (schedule.weekly.wait_for_lock_s: 1)" in err
    refused = next(r for r in load_runs(_cfg()) if r["status"] == "refused")
    assert refused["chain"] == "weekly" and "gave up" in refused["warnings"][0]


def test_lock_of_a_killed_run_is_recovered(tmp_path, state_home):
    proc, _, _ = _start_holder(tmp_path)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    (dead,) = load_runs(_cfg())
    assert dead["status"] == "running"  # what a kill -9 leaves behind
    # status and the briefing do not call it live before the next run takes the lock
    from mothbrain.ops.briefing import build_briefing
    from mothbrain.ops.status import status_report

    (shown,) = status_report(_cfg()).runs
    assert shown["status"] == "killed", shown
    assert "killed" in build_briefing(_cfg()).text

    record = run_chain(
        _cfg("schedule.send_briefing=false"),
        "nightly",
        stages={s: _ok(s) for s in ("ingest", "preprocess", "train", "dream")},
    )
    assert record.status == "ok"
    assert record.recovered_lock and record.recovered_lock.startswith(f"recovered stale lock from pid {proc.pid}")
    dead = next(r for r in load_runs(_cfg()) if r["run_id"] == dead["run_id"])
    assert dead["status"] == "killed"
    assert dead["stages"][0]["status"] == "failed" and "killed" in dead["stages"][0]["error"]
    # A cleanly finished run leaves nothing to recover.
    again = run_chain(
        _cfg("schedule.send_briefing=false"),
        "nightly",
        stages={s: _ok(s) for s in ("ingest", "preprocess", "train", "dream")},
    )
    assert again.recovered_lock is None


def test_sigterm_closes_the_record_and_releases_the_lock(tmp_path, state_home):
    proc, _, _ = _start_holder(tmp_path)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)
    assert proc.returncode != 0
    (rec,) = load_runs(_cfg())
    assert rec["status"] == "interrupted" and rec["stages"][0]["error"] == "interrupted (SIGTERM)"
    assert rec["finished"]
    nxt = run_chain(
        _cfg("schedule.send_briefing=false"),
        "nightly",
        stages={s: _ok(s) for s in ("ingest", "preprocess", "train", "dream")},
    )
    assert nxt.recovered_lock is None and nxt.status == "ok"


def test_unknown_chain_and_unwritable_state_are_clean_errors(tmp_path, monkeypatch):
    with pytest.raises(MothError, match="unknown chain 'daily'"):
        run_chain(_cfg(), "daily")
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("MOTHBRAIN_HOME", str(blocker / "state"))
    res = CliRunner().invoke(main, ["run", "nightly"])
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert "run lock" in res.output or "state" in res.output


def test_status_shows_runs_versions_and_the_current_adapter(state_home):
    from mothbrain.core.ledger import open_ledger
    from mothbrain.ops.status import status_report

    cfg = _cfg("schedule.send_briefing=false")
    led = open_ledger(cfg)
    v1 = led.new_version(status="trained", train={"steps": 10, "final_loss": 2.5})["id"]
    led.update(v1, status="evaluated", eval={"voice_ppl": 18.25, "notes": "text is ignored"})
    led.set_current(v1, detail="gate passed")
    run_chain(cfg, "nightly", stages={"ingest": _raise(MothError("sources[0] chats: /x not found"))})

    report = status_report(cfg)
    assert report.current["version"] == v1 and report.current["eval"] == {"voice_ppl": 18.25}
    assert report.current["promoted"] and report.current["how"] == "promoted"
    (run,) = report.runs
    assert run["status"] == "failed" and run["note"] == "ingest: sources[0] chats: /x not found"
    assert report.versions[0]["version"] == f"{v1} *" and report.versions[0]["steps"] == 10
    res = CliRunner().invoke(main, ["status", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["current"]["version"] == v1


def test_every_run_prints_the_path_of_its_log(state_home, monkeypatch):
    from mothbrain.ops import schedule

    monkeypatch.setattr(schedule, "default_stages", lambda: {s: _ok(s) for s in schedule.STAGE_FUNCTIONS})
    res = CliRunner().invoke(main, ["run", "nightly", "--set", "schedule.send_briefing=false"])
    assert res.exit_code == 0, res.output
    (rec,) = load_runs(_cfg())
    assert f"log: {rec['log']}" in res.output and Path(rec["log"]).is_file()


def test_stage_commands_refuse_while_a_run_holds_the_lock(tmp_path, state_home):
    """`mothbrain train` while `run nightly` trains: refused at once, nothing written (two real processes)."""
    holder, _, release = _start_holder(tmp_path)
    state_before = sorted(p.relative_to(state_home) for p in state_home.rglob("*"))
    try:
        for command in (
            ["ingest"],
            ["preprocess"],
            ["train"],
            ["dream"],
            ["eval"],
            ["promote"],
            ["promote", "--rollback"],
        ):
            res = subprocess.run(
                [sys.executable, "-m", "mothbrain", *command, "--config", str(DEMO_CONFIG)],
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert res.returncode == 1, (command, res.stdout, res.stderr)
            assert f"another run (pid {holder.pid}, chain nightly" in res.stderr, res.stderr
            assert f"`mothbrain {command[0]}` was not started" in res.stderr, res.stderr
            assert "Traceback" not in res.stderr
        # Read-only commands still answer while a run holds the lock.
        for command in (["status"], ["eval", "--show"], ["train", "--dry-run"]):
            res = subprocess.run(
                [sys.executable, "-m", "mothbrain", *command, "--config", str(DEMO_CONFIG)],
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert "holds the lock" not in res.stderr, (command, res.stderr)
    finally:
        release.touch()
        holder.communicate(timeout=60)
    state_after = sorted(p.relative_to(state_home) for p in state_home.rglob("*"))
    added = {str(p) for p in set(state_after) - set(state_before)}
    assert not any(p.startswith(("adapters", "data/ingest", "data/datasets", ".checkpoints")) for p in added), added


def test_a_chain_refuses_while_a_stage_command_holds_the_lock(state_home):
    from mothbrain.ops.run_lock import command_lock

    cfg = _cfg("schedule.send_briefing=false", "schedule.nightly.wait_for_lock_s=0")
    with command_lock(cfg, "train"):
        with pytest.raises(MothError, match=rf"another run \(pid {os.getpid()}, chain train"):
            run_chain(cfg, "nightly", stages={s: _ok(s) for s in ("ingest", "preprocess", "train", "dream")})
    assert (
        run_chain(cfg, "nightly", stages={s: _ok(s) for s in ("ingest", "preprocess", "train", "dream")}).status == "ok"
    )


def test_a_rerun_dreams_with_the_unchanged_version_a_kill_left_undreamt(state_home):
    """A kill in dream: the next night's train is skipped (same data), but dream finishes that version."""
    from mothbrain.core.ledger import open_ledger
    from mothbrain.errors import NoNewMaterial

    cfg = _cfg("schedule.send_briefing=false")
    led = open_ledger(cfg)
    v1 = led.new_version(status="trained", dataset={"fingerprint": "f" * 16})["id"]
    dreamt = []

    def dream(cfg):
        dreamt.append(v1)
        open_ledger(cfg).update(v1, dream={"proposals": 3})
        return SimpleReport("dream", {"proposals": 3})

    stages = {
        "ingest": _ok("ingest"),
        "preprocess": _ok("preprocess"),
        "train": _raise(NoNewMaterial(v1, "f" * 16)),
        "dream": dream,
    }
    first = run_chain(cfg, "nightly", stages=stages)
    assert [s.status for s in first.stages] == ["ok", "ok", "skipped", "ok"] and dreamt == [v1]
    # Once it has dreamt, an unchanged night dreams nothing more.
    second = run_chain(cfg, "nightly", stages=stages)
    assert [s.status for s in second.stages] == ["ok", "ok", "skipped", "skipped"] and dreamt == [v1]


def test_a_night_with_nothing_new_skips_eval_and_promote_and_keeps_the_figures(state_home):
    """Train skipped (no new material) and the newest version already evaluated and current: eval and promote
    say so and are skipped; the run is ok and the figures the promotion was decided on stay."""
    from mothbrain.core.ledger import open_ledger
    from mothbrain.errors import NoNewMaterial

    cfg = _cfg("schedule.send_briefing=false", "schedule.weekly.stages=[train,eval,promote]")
    led = open_ledger(cfg)
    figures = {"voice_ppl": 9.0, "evaluated_at": "2025-05-01T02:00:00+00:00", "current_version": None}
    v1 = led.new_version(status="evaluated", eval=figures, dataset={"fingerprint": "f" * 16})["id"]
    adapter = paths.adapter_dir(cfg, v1)
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text("{}")
    (adapter / "adapter_model.safetensors").write_bytes(b"\0")
    led.set_current(v1)

    record = run_chain(cfg, "weekly", stages={"train": _raise(NoNewMaterial(v1, "f" * 16))})
    assert [s.status for s in record.stages] == ["skipped", "skipped", "skipped"], [s.error for s in record.stages]
    assert record.status == "ok" and "already evaluated" in record.stages[1].error
    assert open_ledger(cfg).get(v1)["eval"] == figures


def test_every_command_on_a_read_only_state_dir_is_one_line(tmp_path, state_home):
    """A state dir that is read-only (or someone else's): one clear line and exit 1, never a traceback; `status`
    still answers (exit 0), from what it can read, and says why nothing else will run."""
    import shutil

    is_root = os.geteuid() == 0
    if is_root and not shutil.which("setpriv"):
        pytest.skip("root without setpriv: a folder cannot be made read-only")
    (state_home / "data").mkdir()
    for d in [state_home, *state_home.rglob("*")]:
        d.chmod(0o555)
    drop = [shutil.which("setpriv"), "--inh-caps=-all", "--bounding-set=-all"] if is_root else []
    try:
        res = subprocess.run(
            [*drop, sys.executable, "-m", "mothbrain", "status", "--config", str(DEMO_CONFIG)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert res.returncode == 0 and "Traceback" not in res.stderr, (res.stdout, res.stderr)
        assert "no versions yet" in res.stdout and "not writable" in " ".join(res.stdout.split()), res.stdout
        for command in (["briefing"], ["proposals", "list"], ["cron", "show"], ["ingest"], ["promote"]):
            res = subprocess.run(
                [*drop, sys.executable, "-m", "mothbrain", *command, "--config", str(DEMO_CONFIG)],
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert res.returncode == 1, (command, res.stdout, res.stderr)
            assert "Traceback" not in res.stderr, (command, res.stderr)
            line = res.stderr.strip().splitlines()[-1]
            assert str(state_home) in line and ("writable" in line or "MOTHBRAIN_HOME" in line), (command, line)
    finally:
        for d in [state_home, *state_home.rglob("*")]:
            d.chmod(0o755)


def test_the_briefing_names_what_a_stage_warned_about(state_home):
    from mothbrain.ops.briefing import build_briefing

    def ingest(cfg):
        report = SimpleReport("ingest", {"documents": 3})
        report.warnings = ["1 unchanged file(s) still have bad records: chats: broken.jsonl: 2 bad record(s)"]
        return report

    cfg = _cfg("schedule.send_briefing=false")
    stages = {"ingest": ingest, **{s: _ok(s) for s in ("preprocess", "train", "dream")}}
    run_chain(cfg, "nightly", stages=stages)
    assert "ingest: 1 unchanged file(s) still have bad records: chats: broken.jsonl" in build_briefing(cfg).text


def _refusable_version(cfg) -> str:
    """An evaluated version whose voice passes the gate and whose held-out associations clearly do not."""
    from mothbrain.core.ledger import open_ledger

    ev = {
        "evaluated_at": "2025-05-15T00:00:00+00:00",
        "current_version": None,
        "voice_ppl": 30.0,
        "voice_ppl_base": 60.0,
        "voice_samples": 120,
        "voice_gain_vs_base": {"mean": 0.7, "lo": 0.5, "hi": 0.9, "n": 120},
        "association_heldout": {"top1": 0.3, "chance": 0.2},
        "association_heldout_vs_base": {"mean": 0.02, "lo": -0.03, "hi": 0.07, "n": 60},  # decided: no lift
    }
    version = open_ledger(cfg).new_version(status="evaluated", eval=ev)["id"]
    adapter = paths.adapter_dir(cfg, version)
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text("{}")
    (adapter / "adapter_model.safetensors").write_bytes(b"")
    return version


def test_a_gate_refusal_ends_the_chain_ok_with_its_deciding_check(state_home, monkeypatch):
    """The gate refusing a version is the system working: the run is ok (exit 0), and the record, `status`
    and the briefing say which version was not promoted and which check decided."""
    from mothbrain.ops import schedule
    from mothbrain.ops.briefing import build_briefing
    from mothbrain.ops.status import status_report

    cfg = _cfg("schedule.send_briefing=false")
    version = _refusable_version(cfg)
    real = schedule.default_stages()
    stubs = {name: _ok(name) for name in ("ingest", "preprocess", "train", "dream", "eval")}
    monkeypatch.setattr(schedule, "default_stages", lambda: {**real, **stubs})

    result = CliRunner().invoke(main, ["run", "weekly", "--set", "schedule.send_briefing=false"])
    assert result.exit_code == 0, result.output
    assert f"{version} not promoted" in result.output and "failed" not in result.output

    (saved,) = load_runs(cfg)
    assert saved["status"] == "ok"
    promote = next(s for s in saved["stages"] if s["name"] == "promote")
    assert promote["status"] == "ok" and promote["figures"]["decision"] == "rejected"
    assert saved["outcome"].startswith(f"{version} not promoted (held-out associations not lifted above base")
    assert "CI -0.030 .. +0.070" in saved["outcome"]  # the deciding check's own figure
    assert "held-out associations" in Path(saved["log"]).read_text()

    run_row = status_report(cfg).runs[0]
    assert run_row["status"] == "ok" and run_row["note"].startswith(f"{version} not promoted")
    (row,) = status_report(cfg).versions  # the eval column is the voice figure, not the first number found
    assert row["eval"] == "voice ppl 30 (base 60)" and row["gate"] == "rejected"
    text = build_briefing(cfg).text
    assert f"Outcome: {version} not promoted" in text
    assert f"{version}: rejected — decided by held-out associations vs base" in text


def test_promote_alone_exits_4_on_a_refusal(state_home):
    """`mothbrain promote` on its own tells a refusal (4) from an error (1) and from nothing to do (3)."""
    cfg = _cfg()
    version = _refusable_version(cfg)
    result = CliRunner().invoke(main, ["promote"])
    assert result.exit_code == 4, result.output
    assert f"{version} not promoted" in result.output and "Traceback" not in result.output
    from mothbrain.core.ledger import open_ledger

    entry = open_ledger(cfg).get(version)
    assert entry["status"] == "rejected" and entry["promotion"]["deciding"] == "held-out associations vs base"
    assert open_ledger(cfg).current() is None


def test_eval_show_with_nothing_evaluated_says_so_plainly(state_home):
    result = CliRunner().invoke(main, ["eval", "--show"])
    assert result.exit_code == 3 and "no version has eval results yet" in result.output

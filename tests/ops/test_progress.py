"""`mothbrain status` shows the stage running now and its step; a killed stage is not shown as running."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time

from click.testing import CliRunner

from mothbrain.cli import main
from mothbrain.config import REPO_ROOT, load_config
from mothbrain.core import progress
from mothbrain.core.progress import StageProgress, progress_path
from mothbrain.ops.status import status_report

DEMO = REPO_ROOT / "configs" / "demo-tiny.yaml"


def test_status_shows_the_running_stage_and_its_step(state_home, monkeypatch, caplog):
    monkeypatch.setattr(progress, "WRITE_EVERY_S", 0.0)
    cfg = load_config(DEMO)
    assert status_report(cfg).running == ""
    with caplog.at_level(logging.INFO, logger="mothbrain.core.progress"):
        with StageProgress(cfg, "train", total=120) as tracker:
            for step in range(1, 41):
                tracker.update(step)
            since = time.strftime("%H:%M")
            assert status_report(cfg).running == f"running: train step 40/120 (since {since})"
            out = CliRunner(env={"COLUMNS": "80"}).invoke(main, ["status"]).output
            assert f"running: train step 40/120 (since {since})" in out
    assert [r.getMessage() for r in caplog.records] == [f"train: step {n}/120" for n in (10, 20, 30, 40)]
    assert not progress_path(cfg).exists() and status_report(cfg).running == ""  # done: nothing runs


def test_the_file_is_written_at_most_every_few_seconds(state_home):
    cfg = load_config(DEMO)
    tracker = StageProgress(cfg, "dream", total=50, unit="prompt")
    tracker.update(5)  # right after the first write: not written again yet
    assert status_report(cfg).running.startswith("running: dream prompt 0/50")
    tracker.update(50)  # the last step is always written
    assert status_report(cfg).running.startswith("running: dream prompt 50/50")
    tracker.done()


def test_a_killed_stage_is_not_running(state_home):
    cfg = load_config(DEMO)
    code = (
        "import sys, time; from mothbrain.config import load_config; from mothbrain.core.progress import StageProgress;"
        f"t = StageProgress(load_config({str(DEMO)!r}), 'train', total=120); t.update(40, 120);"
        "print('ready', flush=True); time.sleep(60)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=os.environ.copy())
    try:
        assert proc.stdout.readline().strip() == "ready"
        assert status_report(cfg).running.startswith("running: train step 0/120")  # alive: shown
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert progress_path(cfg).exists()  # a kill leaves the file behind ...
    assert status_report(cfg).running == ""  # ... and status does not call it running
    assert "running:" not in CliRunner().invoke(main, ["status"]).output


def test_eval_reports_its_steps_and_ends_at_its_total(planted_cfg, monkeypatch):
    """`status` shows `running: eval step N/M` while eval scores; the steps planned are the steps done."""
    from mothbrain.evaluate.stage import run_eval

    monkeypatch.setattr(progress, "WRITE_EVERY_S", 0.0)
    cfg = planted_cfg()
    lines: list[str] = []
    shown: list[str] = []
    real_write = StageProgress._write

    def write(self, force: bool = False) -> None:
        real_write(self, force)
        data = progress.running_stage(cfg)
        lines.append(progress.running_line(data) if data else "")
        if not shown and self.step > 0:
            shown.append(status_report(cfg).running)  # what `mothbrain status` says, mid-eval

    monkeypatch.setattr(StageProgress, "_write", write)
    run_eval(cfg)
    assert lines[0].startswith("running: eval (since")  # loading the models: no total yet
    steps = [tuple(map(int, line.split()[3].split("/"))) for line in lines[1:]]
    totals = {m for _, m in steps}
    assert len(totals) == 1 and totals.pop() > 100
    done = [n for n, _ in steps]
    assert done == sorted(done) and done[0] == 0 and done[-1] == steps[-1][1]  # ends at its total, exactly
    assert len(set(done)) > 10  # written as it goes, not once at the end
    assert shown[0].startswith("running: eval step ") and "/" in shown[0]
    assert not progress_path(cfg).exists() and status_report(cfg).running == ""

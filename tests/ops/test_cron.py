"""The crontab block: idempotent, other lines untouched, runnable from cron's bare environment."""

from __future__ import annotations

import configparser
import json
import shlex
import shutil
import subprocess

import pytest
import yaml
from click.testing import CliRunner

from mothbrain.cli import main
from mothbrain.config import REPO_ROOT, load_config
from mothbrain.core import paths
from mothbrain.errors import MothError
from mothbrain.ops.cron import BLOCK_END, BLOCK_START, cron_block, cron_lines, merge_block

DEMO_CONFIG = REPO_ROOT / "configs" / "demo-tiny.yaml"
# Someone's own crontab (harmless commands: the real round trip installs it for a moment).
USER_TAB = 'MAILTO=""\n# my backups\n15 4 * * * true --backup-all\n@reboot true'


def test_merge_block_is_idempotent_and_keeps_other_lines_exactly():
    cfg = load_config(DEMO_CONFIG)
    block = cron_block(cfg)
    once = merge_block(USER_TAB, block)
    twice = merge_block(once, block)
    assert once == twice and once.count(BLOCK_START) == 1 and once.count(BLOCK_END) == 1
    assert once.startswith(USER_TAB + "\n")  # the user's lines, in order, untouched (a final newline added)
    assert merge_block(once, None) == USER_TAB + "\n"
    # A block in the middle is replaced in place; what follows it stays after it.
    middle = "A=1\n" + block + "0 0 * * * after\n"
    changed = merge_block(middle, block.replace("30 2 * * *", "45 3 * * *"))
    assert changed.startswith("A=1\n# >>> mothbrain >>>") and changed.endswith("# <<< mothbrain <<<\n0 0 * * * after\n")
    assert "45 3 * * *" in changed and "30 2 * * *" not in changed
    with pytest.raises(MothError, match="without '# <<< mothbrain <<<'"):
        merge_block("A=1\n# >>> mothbrain >>>\n0 0 * * * x\n", block)


def test_lines_are_absolute_and_escape_cron_specials(tmp_path, state_home):
    weird = tmp_path / "my 100% configs"
    weird.mkdir()
    data = yaml.safe_load(DEMO_CONFIG.read_text())
    data["sources"] = []
    data["schedule"] = {
        "nightly": {"stages": ["ingest"], "cron": "5 1 * * 1-5"},
        "weekly": {"stages": ["ingest", "train"], "cron": "0 4 * * 0"},
    }
    (weird / "c.yaml").write_text(yaml.safe_dump(data))
    cfg = load_config(weird / "c.yaml")
    nightly, weekly = cron_lines(cfg, python="/opt/venv/bin/python")
    assert nightly.startswith("5 1 * * 1-5 cd ") and weekly.startswith("0 4 * * 0 cd ")
    assert "'" + str(weird / "c.yaml").replace("%", "\\%") + "'" in nightly  # quoted, % escaped for cron
    assert "%" not in nightly.replace("\\%", "")
    assert f"MOTHBRAIN_HOME={state_home}" in nightly and "PATH=/usr/local/bin:/usr/bin:/bin" in nightly
    assert "nice -n 19 " in nightly and "/opt/venv/bin/python -m mothbrain.cli run nightly --config" in nightly
    assert nightly.endswith(f">> {paths.logs_dir(cfg)}/cron-nightly.log 2>&1")
    from croniter import croniter

    assert all(croniter.is_valid(" ".join(line.split()[:5])) for line in (nightly, weekly))


@pytest.mark.skipif(shutil.which("crontab") is None, reason="no crontab binary on this machine")
def test_real_crontab_round_trip_and_the_line_runs_in_a_bare_environment(tmp_path, state_home):
    # A config whose nightly chain is one quick real stage on a tiny source.
    src = tmp_path / "chats"
    src.mkdir()
    (src / "a.jsonl").write_text(
        json.dumps(
            {
                "id": "c1",
                "messages": [
                    {"role": "user", "content": "What do the figs remind you of?"},
                    {"role": "assistant", "content": "Lanterns in a compost heap, slowly glowing."},
                ],
            }
        )
        + "\n"
    )
    data = yaml.safe_load(DEMO_CONFIG.read_text())
    data["sources"] = [{"name": "chats", "kind": "chat_jsonl", "path": str(src)}]
    data["schedule"] = {"nightly": {"stages": ["ingest"]}, "weekly": {"stages": ["ingest"]}}
    config = tmp_path / "cron.yaml"
    config.write_text(yaml.safe_dump(data))

    before = subprocess.run(["crontab", "-l"], capture_output=True, text=True)
    had_tab = before.returncode == 0
    try:
        subprocess.run(["crontab", "-"], input=USER_TAB + "\n", text=True, check=True)
        runner = CliRunner()
        for _ in range(2):
            res = runner.invoke(main, ["cron", "install", "--config", str(config)])
            assert res.exit_code == 0, res.output
        assert "already installed" in res.output
        tab = subprocess.run(["crontab", "-l"], capture_output=True, text=True, check=True).stdout
        assert tab.count(BLOCK_START) == 1 and tab.startswith(USER_TAB + "\n")
        res = runner.invoke(main, ["cron", "show", "--config", str(config)])
        assert "(installed)" in res.output

        # Run the installed nightly line the way cron does: /bin/sh, empty environment, cwd /.
        line = next(ln for ln in tab.splitlines() if " run nightly " in ln)
        command = line.split(None, 5)[5]
        proc = subprocess.run(["/bin/sh", "-c", command], env={}, cwd="/", capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, (proc.stdout, proc.stderr)
        (rec,) = [json.loads(p.read_text()) for p in (state_home / "runs").glob("*.json")]
        assert rec["chain"] == "nightly" and rec["status"] == "ok", rec
        assert rec["stages"][0]["name"] == "ingest" and rec["stages"][0]["status"] == "ok"
        assert (state_home / "logs" / "cron-nightly.log").exists()

        res = runner.invoke(main, ["cron", "remove", "--config", str(config)])
        assert res.exit_code == 0 and "removed" in res.output
        tab = subprocess.run(["crontab", "-l"], capture_output=True, text=True, check=True).stdout
        assert tab == USER_TAB + "\n"
    finally:
        if had_tab:
            subprocess.run(["crontab", "-"], input=before.stdout, text=True, check=True)
        else:
            subprocess.run(["crontab", "-r"], capture_output=True)


def test_systemd_units_match_the_default_schedule():
    cfg = load_config(REPO_ROOT / "configs" / "default.yaml")
    for chain in ("nightly", "weekly"):
        service = configparser.ConfigParser(interpolation=None)
        service.read(REPO_ROOT / "cron" / f"mothbrain-{chain}.service")
        exec_start = shlex.split(service["Service"]["ExecStart"])
        assert exec_start[1:5] == ["-m", "mothbrain.cli", "run", chain] and exec_start[0].endswith("/python")
        assert service["Service"]["Nice"] == "19" and service["Service"]["IOSchedulingClass"] == "idle"
        timer = configparser.ConfigParser(interpolation=None)
        timer.read(REPO_ROOT / "cron" / f"mothbrain-{chain}.timer")
        on_calendar = timer["Timer"]["OnCalendar"]
        minute, hour = getattr(cfg.schedule, chain).cron.split()[:2]
        assert on_calendar.endswith(f"{int(hour):02d}:{int(minute):02d}:00")  # same time as the cron line
        if shutil.which("systemd-analyze"):
            assert subprocess.run(["systemd-analyze", "calendar", on_calendar], capture_output=True).returncode == 0
    template = (REPO_ROOT / "cron" / "mothbrain.crontab").read_text()
    assert "30 1 * * *" in template and "0 2 * * 6" in template  # default.yaml's times

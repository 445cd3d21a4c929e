"""`mothbrain doctor` passes on this machine and fails cleanly, naming the fix, when something is wrong."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import yaml
from click.testing import CliRunner

from mothbrain.cli import main
from mothbrain.config import REPO_ROOT, load_config
from mothbrain.models.preflight import config_check
from mothbrain.ops import doctor

DEMO_CONFIG = REPO_ROOT / "configs" / "demo-tiny.yaml"


def _doctor(*args: str):
    res = CliRunner().invoke(main, ["doctor", "--json", *args])
    assert "Traceback" not in res.output, res.output
    start = res.output.index("{")
    return res.exit_code, {c["name"]: c for c in json.loads(res.output[start:])["checks"]}


def test_doctor_passes_the_basics_here(state_home):
    code, checks = _doctor()
    for name in (
        "python",
        "config",
        "architecture",
        "state dir",
        "torch",
        "memory",
        "bitsandbytes 4-bit",
        "disk",
        "shell",
        "cron environment",
        "smtp",
    ):
        assert checks[name]["status"] == "ok", checks[name]
    assert "NF4 Linear4bit forward works" in checks["bitsandbytes 4-bit"]["detail"]
    assert "predicted" in checks["memory"]["detail"]
    assert checks["tools"]["status"] == ("ok" if shutil.which("crontab") and shutil.which("ionice") else "warn")
    assert code == 0


def test_unwritable_state_dir_fails_with_the_fix(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("")  # a file where the state dir's parent should be: unwritable for everyone, root too
    monkeypatch.setenv("MOTHBRAIN_HOME", str(blocker / "state"))
    code, checks = _doctor()
    assert code == 1
    assert checks["state dir"]["status"] == "fail" and "not writable" in checks["state dir"]["detail"]
    assert "MOTHBRAIN_HOME" in checks["state dir"]["fix"]
    if os.geteuid() != 0:  # permissions do not stop root
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        monkeypatch.setenv("MOTHBRAIN_HOME", str(ro))
        assert doctor._state_dir(load_config(DEMO_CONFIG)).status == "fail"


def test_missing_source_and_open_password_file_fail(tmp_path, state_home, monkeypatch):
    secret = tmp_path / "pw"
    secret.write_text("x")
    secret.chmod(0o644)
    data = yaml.safe_load(DEMO_CONFIG.read_text())
    data["sources"] = [{"name": "chats", "kind": "chat_jsonl", "path": str(tmp_path / "nowhere")}]
    data["briefing"] = {
        "smtp_host": "127.0.0.1",
        "to": "a@example.org",
        "smtp_user": "moth",
        "smtp_password_file": str(secret),
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(data))
    cfg = load_config(tmp_path / "c.yaml")
    cfg_check = config_check(cfg)
    assert cfg_check.status == "fail" and str(tmp_path / "nowhere") in cfg_check.detail
    smtp = doctor._smtp(cfg, smtp_test=False)
    assert smtp.status == "fail" and smtp.fix == f"chmod 600 {secret}"
    secret.chmod(0o600)
    assert doctor._smtp(cfg, smtp_test=False).status == "ok"


def test_restricted_shell_is_caught(monkeypatch):
    monkeypatch.setenv("SHELL", "/bin/rbash")
    check = doctor._shell()
    assert check.status == "fail" and "restricted" in check.detail and check.fix == "export SHELL=/bin/bash"


def test_cron_environment_without_mothbrain_fails(monkeypatch):
    other = shutil.which("python3", path="/usr/bin:/bin")
    if (
        not other
        or subprocess.run(
            [other, "-c", "import mothbrain"], cwd="/", env={"PATH": "/usr/bin:/bin"}, capture_output=True
        ).returncode
        == 0
    ):
        pytest.skip("no interpreter without mothbrain to try")
    monkeypatch.setattr(sys, "executable", other)
    check = doctor._cron_env()
    assert check.status == "fail" and "No module named 'mothbrain'" in check.detail
    assert check.fix == f"{other} -m pip install -e {REPO_ROOT}"


def test_doctor_checks_the_wiki_folder_and_the_reviewer(state_home, tmp_path):
    _, checks = _doctor("--set", f"wiki.path={tmp_path / 'nowhere'}")
    assert checks["wiki-worker"]["status"] == "warn" and "nowhere" in checks["wiki-worker"]["detail"]
    wiki = tmp_path / "wiki"
    wiki.mkdir()
    code, checks = _doctor("--set", f"wiki.path={wiki}", "--set", "wiki.reviewer_url=http://127.0.0.1:9/v1")
    assert checks["wiki-worker"]["status"] == "fail" and "reviewer_model" in checks["wiki-worker"]["detail"]
    assert code != 0
    _, checks = _doctor("--set", f"wiki.path={wiki}")
    assert checks["wiki-worker"]["status"] == "ok" and "local reviewer" in checks["wiki-worker"]["detail"]

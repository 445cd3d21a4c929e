"""The crontab block: one line per chain inside a marked block of the user's crontab
(`# >>> mothbrain >>>` … `# <<< mothbrain <<<`), rendered, installed and removed without touching any
other line, and the marker that says when it was installed."""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mothbrain.config import Config
from mothbrain.core import paths
from mothbrain.core.atomic import save_json
from mothbrain.core.clock import now_iso, parse_time
from mothbrain.errors import MothError
from mothbrain.ops.schedule import CHAINS, chain_config

BLOCK_START = "# >>> mothbrain >>>"
BLOCK_END = "# <<< mothbrain <<<"
# Cron starts jobs with a bare environment (PATH=/usr/bin:/bin, no venv, cwd = $HOME): every path in
# the line is absolute and the variables a run needs are set on the command itself, so nothing leaks
# into the user's other crontab lines.
CRON_PATH = "/usr/local/bin:/usr/bin:/bin"


def _cron_quote(value: str) -> str:
    # `%` ends the command in crontab syntax (the rest becomes stdin) unless escaped.
    return shlex.quote(value).replace("%", "\\%")


def cron_lines(cfg: Config, python: str | None = None) -> list[str]:
    """One crontab line per chain (times from schedule.<chain>.cron), all paths absolute."""
    py = python or sys.executable  # not resolved: a venv's bin/python must stay the venv's
    state = paths.state_dir(cfg)
    logs = paths.logs_dir(cfg)
    config = cfg.config_path or str(Path("configs/demo.yaml").resolve())
    niceness = "nice -n 19 " + ("ionice -c 3 " if shutil.which("ionice") else "")
    lines = []
    for chain in CHAINS:
        cc = chain_config(cfg, chain)
        if not cc.stages:
            continue
        cmd = (
            f"cd {_cron_quote(str(state))} && PATH={CRON_PATH} MOTHBRAIN_HOME={_cron_quote(str(state))} "
            f"{niceness}{_cron_quote(py)} -m mothbrain.cli run {chain} --config {_cron_quote(config)} "
            f">> {_cron_quote(str(logs / f'cron-{chain}.log'))} 2>&1"
        )
        lines.append(f"{cc.cron} {cmd}")
    return lines


def cron_block(cfg: Config, python: str | None = None) -> str:
    head = [
        BLOCK_START,
        f"# managed by `mothbrain cron install` for {cfg.config_path}; change schedule.*.cron in the config",
        "# and run `mothbrain cron install` again, or `mothbrain cron remove`. Lines outside this block are yours.",
    ]
    return "\n".join(head + cron_lines(cfg, python) + [BLOCK_END]) + "\n"


def merge_block(existing: str, block: str | None) -> str:
    """`existing` crontab text with our block replaced by `block` (or removed when None).

    Every line outside the markers is kept byte for byte; the block keeps its place if it had one.
    """
    lines = existing.splitlines(keepends=True)
    out: list[str] = []
    inside, placed, start_at = False, False, -1
    for i, line in enumerate(lines):
        tag = line.strip()
        if tag == BLOCK_START:
            if inside:
                raise MothError(
                    f"your crontab has two '{BLOCK_START}' lines without '{BLOCK_END}' between them; "
                    "fix it with `crontab -e`"
                )
            inside, start_at = True, i
            if block is not None and not placed:
                out.append(block)
                placed = True
            continue
        if tag == BLOCK_END and inside:
            inside = False
            continue
        if not inside:
            out.append(line if line.endswith("\n") else line + "\n")
    if inside:
        raise MothError(
            f"your crontab has '{BLOCK_START}' (line {start_at + 1}) without '{BLOCK_END}'; "
            "fix it with `crontab -e` (nothing was changed)"
        )
    if block is not None and not placed:
        out.append(block)
    return "".join(out)


def _crontab_bin() -> str:
    found = shutil.which("crontab")
    if not found:
        raise MothError(
            "no `crontab` command on this machine: install cron (e.g. `apt-get install cron`) or use "
            "the systemd timer in cron/mothbrain-nightly.timer (see cron/README.md)"
        )
    return found


def read_crontab() -> str:
    proc = subprocess.run([_crontab_bin(), "-l"], capture_output=True, text=True)
    if proc.returncode == 0:
        return proc.stdout
    if "no crontab" in proc.stderr.lower():
        return ""
    raise MothError(f"`crontab -l` failed: {proc.stderr.strip() or proc.returncode}")


def write_crontab(text: str) -> None:
    proc = subprocess.run([_crontab_bin(), "-"], input=text, capture_output=True, text=True)
    if proc.returncode != 0:
        raise MothError(f"`crontab -` refused the new crontab (your old one is unchanged): {proc.stderr.strip()}")


def _install_marker(cfg: Config) -> Path:
    return paths.state_dir(cfg) / "cron.json"


def cron_installed_at(cfg: Config) -> _dt.datetime | None:
    """When `cron install` last ran for this state dir (the briefing counts missed runs from then)."""
    try:
        return parse_time(json.loads(_install_marker(cfg).read_text(encoding="utf-8")).get("installed_at"))
    except (OSError, ValueError, AttributeError):
        return None


@dataclass
class CronReport:
    title: str
    block: str
    changed: bool
    warnings: list[str] = field(default_factory=list)

    def rows(self) -> list[dict[str, Any]]:
        return [{"crontab": line} for line in self.block.splitlines()]

    def to_json(self) -> dict[str, Any]:
        return {"title": self.title, "block": self.block, "changed": self.changed, "warnings": self.warnings}


def cron_show(cfg: Config) -> CronReport:
    block = cron_block(cfg)
    warnings = []
    if shutil.which("crontab"):
        current = read_crontab()
        installed = merge_block(current, block) == current
        title = "crontab block (installed)" if installed else "crontab block (not installed: `mothbrain cron install`)"
    else:
        title = "crontab block (no crontab command here)"
        warnings.append("no `crontab` command: install cron or use the systemd timer in cron/")
    return CronReport(title, block, changed=False, warnings=warnings)


def cron_install(cfg: Config) -> CronReport:
    current = read_crontab()
    block = cron_block(cfg)
    new = merge_block(current, block)
    changed = new != current
    if changed:
        write_crontab(new)
    save_json(_install_marker(cfg), {"installed_at": now_iso(), "lines": cron_lines(cfg)})
    return CronReport("crontab block installed" if changed else "crontab block already installed", block, changed)


def cron_remove(cfg: Config) -> CronReport:
    current = read_crontab()
    new = merge_block(current, None)
    changed = new != current
    if changed:
        write_crontab(new)
    with contextlib.suppress(FileNotFoundError):
        _install_marker(cfg).unlink()
    return CronReport("crontab block removed" if changed else "no mothbrain block in the crontab", "", changed)

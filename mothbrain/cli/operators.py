"""The operator commands: status, briefing, init, doctor and the `cron` group (mothbrain/ops/)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import click

from mothbrain.cli.group import config_options, main, show_report
from mothbrain.config import Config
from mothbrain.errors import MothError


@main.command()
@config_options
def status(cfg: Config, as_json: bool) -> None:
    """The current adapter, the last runs, proposals waiting and every version.

    \b
    Example: mothbrain status --json
    """
    import json

    from rich.console import Console

    from mothbrain.ops.status import status_report
    from mothbrain.report import render_table

    report = status_report(cfg)
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2, default=str))
        return
    console = Console()
    for title, rows in report.sections():
        console.print(render_table(title, rows) if rows else f"[bold]{title}[/bold]")
    for w in report.warnings:
        console.print(f"[yellow]warning:[/yellow] {w}")


@main.command()
@config_options
@click.option("--send", is_flag=True, help="E-mail it through briefing.smtp_* (it is always written to files too).")
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    default=None,
    help="Folder for briefing-<date>.eml/.txt/.html (default: <state>/data/briefings).",
)
def briefing(cfg: Config, as_json: bool, send: bool, out: str | None) -> None:
    """The morning briefing: last night and week, versions, missed runs, proposals, health.

    \b
    Examples:
      mothbrain briefing                 # writes data/briefings/briefing-<date>.eml, .txt, .html
      mothbrain briefing --send          # and e-mails it (briefing.smtp_host, briefing.to)
    """
    import json

    from mothbrain.ops.briefing import run_briefing

    report = run_briefing(cfg, send=send, out=out)
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2, default=str))
        return
    click.echo(report.subject)
    click.echo(f"written to {report.path} (and .txt, .html)")
    if report.sent_to:
        click.echo(f"sent to {report.sent_to}")
    for w in report.warnings:
        click.echo(f"warning: {w}", err=True)


@main.command()
@click.argument("folders", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Config to write (mothbrain-<profile>.yaml).",
)
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where its data, adapters and ledger go (default ~/.local/share/mothbrain/<config name>).",
)
@click.option(
    "--profile",
    type=click.Choice(["cpu", "gpu"]),
    default="cpu",
    help="cpu: SmolLM2-135M on a laptop (as configs/demo.yaml); gpu: Qwen2.5-72B (as configs/default.yaml).",
)
@click.option("--force", is_flag=True, help="Replace the config file if it exists.")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON instead of a table.")
def init(folders: tuple[Path, ...], out: Path | None, state_dir: Path | None, profile: str, force: bool, as_json: bool):
    """Write a starter config for your own material found in FOLDERS (exports, vaults, chat logs, writing).

    \b
    Examples:
      mothbrain init ~/Downloads/exports ~/Notes
      mothbrain init ~/archive --profile gpu --out ~/mothbrain.yaml
    """
    from mothbrain.ops.init import run_init

    try:
        report = run_init(list(folders), out=out, state_dir=state_dir, profile=profile, force=force)
    except MothError as exc:
        raise click.ClickException(str(exc)) from None
    show_report(report, as_json)
    if not as_json:
        click.echo("next:")
        for line in report.next_steps:
            click.echo(f"  {line}")


@main.command()
@config_options
@click.option("--smtp", "smtp_test", is_flag=True, help="Also connect and log in to the SMTP server.")
def doctor(cfg: Config, as_json: bool, smtp_test: bool) -> None:
    """Check everything a night run needs (base, architecture, GPU/RAM, 4-bit, disk, cron, shell, SMTP); exit 1 on a
    failure. A check with nothing to check (GPU memory without CUDA) says "not run".

    \b
    Examples:
      mothbrain doctor
      mothbrain doctor --smtp --config /abs/configs/default.yaml
    """
    from mothbrain.ops.doctor import run_doctor

    report = run_doctor(cfg, smtp_test=smtp_test)
    show_report(report, as_json)
    if report.failed:
        sys.exit(1)


@main.group()
def cron() -> None:
    """Install, show or remove the nightly/weekly lines in your crontab (a marked block only).

    \b
    Examples:
      mothbrain cron show --config /abs/configs/default.yaml
      mothbrain cron install --config /abs/configs/default.yaml
      mothbrain cron remove
    """


def _cron_cmd(action: str) -> Callable:
    def command(cfg: Config, as_json: bool) -> None:
        import json

        from mothbrain.ops import cron as crontab

        report = getattr(crontab, f"cron_{action}")(cfg)
        if as_json:
            click.echo(json.dumps(report.to_json(), indent=2))
            return
        click.echo(f"# {report.title}")
        if report.block:
            click.echo(report.block, nl=False)
        for w in report.warnings:
            click.echo(f"warning: {w}", err=True)

    command.__name__ = f"cron_{action}"
    return command


cron.command("install", help="Add (or update) the mothbrain block in your crontab; other lines are untouched.")(
    config_options(_cron_cmd("install"))
)
cron.command("show", help="Print the block `cron install` would write, and whether it is installed.")(
    config_options(_cron_cmd("show"))
)
cron.command("remove", help="Remove the mothbrain block from your crontab; other lines are untouched.")(
    config_options(_cron_cmd("remove"))
)

"""The pipeline commands: ingest, preprocess, train, dream, eval, promote, and `run` (a chain of them)."""

from __future__ import annotations

import contextlib
import sys

import click

from mothbrain.cli.group import config_options, locked, main, show_report
from mothbrain.config import Config
from mothbrain.errors import GATE_REFUSED_EXIT


@main.command()
@config_options
@click.option("--since", type=float, default=None, help="Only report documents newer than this many days.")
@click.option("--full", is_flag=True, help="Re-read every file, ignoring the manifest.")
def ingest(cfg: Config, as_json: bool, since: float | None, full: bool) -> None:
    """Read new or changed material from the configured sources.

    \b
    Example: mothbrain ingest --full
    """
    from mothbrain.ingest.stage import run_ingest

    with locked(cfg, "ingest"):
        report = run_ingest(cfg, since=since, full=full)
    show_report(report, as_json)


@main.command()
@config_options
@click.option(
    "--since", "since_days", type=float, default=None, help="Days that count as recent (default ingest.since_days)."
)
@click.option("--force", is_flag=True, help="Rebuild even when nothing ingested or configured changed today.")
@click.option(
    "--full",
    is_flag=True,
    help="Process every document again (ignore the document cache) and mine the concept pairs again.",
)
def preprocess(cfg: Config, as_json: bool, since_days: float | None, force: bool, full: bool) -> None:
    """Build the voice-and-association data set (filtered, redacted, deduplicated).

    \b
    Example: mothbrain preprocess --json
    """
    from mothbrain.data.stage import run_preprocess

    with locked(cfg, "preprocess"):
        report = run_preprocess(cfg, since_days=since_days, force=force, full=full)
    show_report(report, as_json)


@main.command()
@config_options
@click.option("--dry-run", is_flag=True, help="Count parameters and estimate memory without loading weights.")
@click.option("--fresh", is_flag=True, help="Do not resume an unfinished version; start a new one.")
@click.option(
    "--force", is_flag=True, help="Train even when the newest version already saw this data set with these settings."
)
def train(cfg: Config, as_json: bool, dry_run: bool, fresh: bool, force: bool) -> None:
    """QLoRA-train a new adapter version on the latest data set (resumes an unfinished one).

    \b
    Examples:
      mothbrain train
      mothbrain train --dry-run --config configs/default.yaml --set lora.r=32
    """
    from mothbrain.train.stage import run_train

    with contextlib.nullcontext() if dry_run else locked(cfg, "train"):
        report = run_train(cfg, dry_run=dry_run, fresh=fresh, force=force)
    if report.text and not as_json:
        click.echo(report.text + "\n")  # the dry-run's memory breakdown
    show_report(report, as_json)


@main.command()
@config_options
@click.option("--version", "version", default=None, help="Adapter version (default: the newest trained).")
def dream(cfg: Config, as_json: bool, version: str | None) -> None:
    """Generate free-associative proposals into the staging queue (never applied anywhere).

    \b
    Example: mothbrain dream && mothbrain proposals list
    """
    from mothbrain.dream.stage import run_dream

    with locked(cfg, "dream"):
        report = run_dream(cfg, version=version)
    show_report(report, as_json)


@main.command(name="eval")
@config_options
@click.option(
    "--version",
    "version",
    default=None,
    help="Adapter version, measured even when already evaluated (default: the newest waiting for eval; "
    "exit 3 when none is).",
)
@click.option("--show", is_flag=True, help="Print the recorded figures and the gate's checks; measure nothing.")
def eval_(cfg: Config, as_json: bool, version: str | None, show: bool) -> None:
    """Score an adapter against the base and the current one; results go to the ledger.

    \b
    Examples:
      mothbrain eval                 # the newest trained version; nothing new: exit 3
      mothbrain eval --version v0003
      mothbrain eval --show          # the newest evaluated version's figures and the gate's checks
    """
    from mothbrain.evaluate.stage import run_eval, show_eval

    if show:
        show_report(show_eval(cfg, version=version), as_json)
        return
    with locked(cfg, "eval"):
        report = run_eval(cfg, version=version)
    show_report(report, as_json)


@main.command()
@config_options
@click.option("--version", "version", default=None, help="Version to promote (default: the newest evaluated).")
@click.option("--rollback", is_flag=True, help="Return to the previously promoted version.")
def promote(cfg: Config, as_json: bool, version: str | None, rollback: bool) -> None:
    """Move the current pointer to an adapter that passes the gate (or roll back).

    \b
    Examples:
      mothbrain promote
      mothbrain promote --rollback
    """
    from mothbrain.promote import run_promote, run_rollback

    with locked(cfg, "promote"):
        report = run_rollback(cfg) if rollback else run_promote(cfg, version=version)
    show_report(report, as_json)
    if report.decision in ("rejected", "undecided"):  # the gate's refusal: not an error, but a script must see it
        if not as_json:
            click.echo(report.title, err=True)
        sys.exit(GATE_REFUSED_EXIT)


@main.command()
@config_options
@click.argument("chain", type=click.Choice(["nightly", "weekly", "wiki"]))
@click.option(
    "--force", is_flag=True, help="Train (and dream) even when there is no new material since the newest version."
)
def run(cfg: Config, as_json: bool, chain: str, force: bool) -> None:
    """Run a chain of stages (from schedule.<chain>.stages), one run at a time.

    \b
    Examples:
      mothbrain run nightly
      nice -n 19 ionice -c 3 mothbrain run weekly --config /abs/configs/default.yaml
    """
    from mothbrain.ops.briefing import send_after_run
    from mothbrain.ops.schedule import run_chain

    if force:
        cfg.train.skip_unchanged = False
    record = run_chain(cfg, chain, on_finish=send_after_run)
    show_report(record, as_json)
    if not as_json:
        click.echo(f"log: {record.log}")  # the whole story of the run (JSON carries it as "log")
    if getattr(record, "failed", False):
        sys.exit(1)

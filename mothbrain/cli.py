"""The `mothbrain` command: click groups that parse, call one plain function, and print.

Every command takes --config PATH and --set key.sub=value (repeatable); a mistake a person can fix
is a one-line message and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import functools
import sys
from typing import Any, Callable

import click

from .config import Config, ConfigError, load_config
from .errors import MothError, NothingToDo


def config_options(fn: Callable) -> Callable:
    """--config/--set/--json on a command; the command receives a loaded `cfg`."""

    @click.option("--config", "config_path", type=click.Path(dir_okay=False), envvar="MOTHBRAIN_CONFIG",
                  help="YAML config (default: $MOTHBRAIN_CONFIG, else configs/demo.yaml).")
    @click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                  help="Override a config value, e.g. --set train.max_steps=20 (repeatable).")
    @click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON instead of a table.")
    @functools.wraps(fn)
    def wrapper(config_path: str | None, overrides: tuple[str, ...], as_json: bool, **kwargs: Any) -> Any:
        try:
            cfg = load_config(config_path, overrides)
            return fn(cfg, as_json=as_json, **kwargs)
        except ConfigError as exc:
            raise click.ClickException(str(exc)) from None
        except NothingToDo as exc:
            click.echo(f"nothing to do: {exc}", err=True)
            sys.exit(exc.exit_code)
        except MothError as exc:
            err = click.ClickException(str(exc))
            err.exit_code = exc.exit_code
            raise err from None
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)

    return wrapper


def _show(report: Any, as_json: bool) -> None:
    from .report import print_report

    print_report(report, as_json=as_json)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="mothbrain")
def main() -> None:
    """MothBrain: grow a LoRA 'System 1' adapter on your system's own material, every night.

    \b
    Examples:
      mothbrain run nightly                     # the whole nightly chain
      mothbrain train --dry-run --config configs/default.yaml
      mothbrain status
    """


# --------------------------------------------------------------------------- pipeline stages


@main.command()
@config_options
@click.option("--since", type=float, default=None, help="Only report documents newer than this many days.")
@click.option("--full", is_flag=True, help="Re-read every file, ignoring the manifest.")
def ingest(cfg: Config, as_json: bool, since: float | None, full: bool) -> None:
    """Read new or changed material from the configured sources.

    \b
    Example: mothbrain ingest --full
    """
    from .ingest import run_ingest

    _show(run_ingest(cfg, since=since, full=full), as_json)


@main.command()
@config_options
@click.option("--since", "since_days", type=float, default=None, help="Days that count as recent (default ingest.since_days).")
def preprocess(cfg: Config, as_json: bool, since_days: float | None) -> None:
    """Build the voice-and-association data set (filtered, redacted, deduplicated).

    \b
    Example: mothbrain preprocess --json
    """
    from .preprocess import run_preprocess

    _show(run_preprocess(cfg, since_days=since_days), as_json)


@main.command()
@config_options
@click.option("--dry-run", is_flag=True, help="Count parameters and estimate memory without loading weights.")
@click.option("--fresh", is_flag=True, help="Do not resume an unfinished version; start a new one.")
def train(cfg: Config, as_json: bool, dry_run: bool, fresh: bool) -> None:
    """QLoRA-train a new adapter version on the latest data set (resumes an unfinished one).

    \b
    Examples:
      mothbrain train
      mothbrain train --dry-run --config configs/default.yaml --set lora.r=32
    """
    from .train import run_train

    _show(run_train(cfg, dry_run=dry_run, fresh=fresh), as_json)


@main.command()
@config_options
@click.option("--version", "version", default=None, help="Adapter version (default: the newest trained).")
def dream(cfg: Config, as_json: bool, version: str | None) -> None:
    """Generate free-associative proposals into the staging queue (never applied anywhere).

    \b
    Example: mothbrain dream && mothbrain proposals list
    """
    from .dream import run_dream

    _show(run_dream(cfg, version=version), as_json)


@main.command(name="eval")
@config_options
@click.option("--version", "version", default=None, help="Adapter version (default: the newest trained).")
def eval_(cfg: Config, as_json: bool, version: str | None) -> None:
    """Score an adapter against the base and the current one; results go to the ledger.

    \b
    Example: mothbrain eval --version v0003
    """
    from .evaluate import run_eval

    _show(run_eval(cfg, version=version), as_json)


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
    from .promote import run_promote, run_rollback

    _show(run_rollback(cfg) if rollback else run_promote(cfg, version=version), as_json)


@main.command()
@config_options
@click.argument("chain", type=click.Choice(["nightly", "weekly"]))
def run(cfg: Config, as_json: bool, chain: str) -> None:
    """Run a chain of stages (from schedule.<chain>.stages), one run at a time.

    \b
    Examples:
      mothbrain run nightly
      nice -n 19 ionice -c 3 mothbrain run weekly --config /abs/configs/default.yaml
    """
    from .schedule import run_chain

    record = run_chain(cfg, chain)
    _show(record, as_json)
    if getattr(record, "failed", False):
        sys.exit(1)


# --------------------------------------------------------------------------- operators
# (status, briefing, doctor, proposals, cron, serve, ask are added below by their modules' owners)


if __name__ == "__main__":  # pragma: no cover
    main()

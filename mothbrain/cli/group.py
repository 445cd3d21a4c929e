"""The `mothbrain` click group and what every command shares: --config/--set/--json/--verbose (`config_options`),
the run lock, printing a report.

Every command takes --config PATH and --set key.sub=value (repeatable); a mistake a person can fix
is a one-line message and a non-zero exit, never a traceback. In the cli modules our own imports (beyond
the config, the errors and this module) stay lazy, inside the command functions, so that `mothbrain --help`
starts fast.
"""

from __future__ import annotations

import contextlib
import functools
import sys
from collections.abc import Callable
from typing import Any

import click

from mothbrain.config import Config, ConfigError, load_config
from mothbrain.errors import MothError, NothingToDo


def config_options(fn: Callable) -> Callable:
    """--config/--set/--json/--verbose on a command; the command receives a loaded `cfg`."""

    @click.option(
        "--config",
        "config_path",
        type=click.Path(dir_okay=False),
        envvar="MOTHBRAIN_CONFIG",
        help="YAML config (default: $MOTHBRAIN_CONFIG, else configs/demo.yaml).",
    )
    @click.option(
        "--set",
        "overrides",
        multiple=True,
        metavar="KEY=VALUE",
        help="Override a config value, e.g. --set train.max_steps=20 (repeatable).",
    )
    @click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON instead of a table.")
    @click.option("--verbose", is_flag=True, help="Show the libraries' warnings (torch, transformers, ...; hidden).")
    @functools.wraps(fn)
    def wrapper(
        config_path: str | None, overrides: tuple[str, ...], as_json: bool, verbose: bool, **kwargs: Any
    ) -> Any:
        from mothbrain.core.noise import library_warnings

        try:
            with library_warnings(verbose):  # set up here, when the command starts: not at import
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
        except OSError as exc:  # the state dir read-only or someone else's, a full disk: one line, no traceback
            raise click.ClickException(_os_error_line(exc)) from None

    return wrapper


def _os_error_line(exc: OSError) -> str:
    import errno

    from mothbrain.core.atomic import describe_write_error

    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        fix = "make it writable, or point MOTHBRAIN_HOME at a state dir you own"
    elif exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        fix = "free disk space"
    else:
        fix = "check the path and the disk"
    return f"cannot use {exc.filename or 'a file'}: {describe_write_error(exc)} — {fix}"


def locked(cfg: Config, command: str) -> contextlib.AbstractContextManager:
    """The run lock for a command that changes state: refused at once while a run (or another one) holds it."""
    from mothbrain.ops.run_lock import command_lock

    return command_lock(cfg, command)


def show_report(report: Any, as_json: bool) -> None:
    from mothbrain.report import print_report

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

    \b
    Exit codes:
      0    ok (a chain whose stages were skipped for lack of new material is ok too)
      1    error: a config mistake, a failed stage or run, the run lock held past its wait
      2    wrong usage (unknown option or argument)
      3    nothing to do (e.g. no new material to train on, nothing new to evaluate or promote)
      4    `mothbrain promote` alone: the gate refused the version (a chain that ends so is ok, 0)
      130  interrupted (Ctrl-C)
    """

"""The libraries' warnings stay off the terminal unless --verbose, on every command."""

from __future__ import annotations

import logging
import sys
import warnings

import click
from click.testing import CliRunner

from mothbrain.cli.group import config_options

DEPRECATION = "`torch.jit.script_method` is deprecated. Please switch to `torch.compile` or `torch.export`."
GENERATION = "The following generation flags are not valid and may be ignored: ['temperature']."


@click.command()
@config_options
def chatty(cfg, as_json: bool) -> None:
    """What loading a model does: a DeprecationWarning from torch and a warning from transformers' logger."""
    logger = logging.getLogger("transformers.generation.configuration_utils")
    handler = logging.StreamHandler(sys.stderr)  # as transformers' own handler: straight to stderr
    logger.addHandler(handler)
    try:
        warnings.warn_explicit(DEPRECATION, DeprecationWarning, "torch/jit/_script.py", 365, module="torch.jit._script")
        logger.warning(GENERATION)
    finally:
        logger.removeHandler(handler)
    click.echo("done")


def invoke(*args: str) -> tuple[str, list[str]]:
    """The command's output and the warnings it let through (recorded: pytest stands in for stderr there)."""
    with warnings.catch_warnings(record=True) as seen:
        result = CliRunner().invoke(chatty, list(args))
    assert result.exit_code == 0, result.output
    assert "done" in result.output
    return result.output, [str(w.message) for w in seen]


def test_library_warnings_only_with_verbose():
    out, shown = invoke()
    assert shown == [] and "generation flags" not in out

    out, shown = invoke("--verbose")
    assert shown == [DEPRECATION] and GENERATION in out


def test_the_settings_are_put_back_after_the_command():
    before = logging.getLogger("transformers").level, list(warnings.filters)
    CliRunner().invoke(chatty, [])
    assert (logging.getLogger("transformers").level, list(warnings.filters)) == before

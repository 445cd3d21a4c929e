"""The `mothbrain` command: click groups that parse, call one plain function, and print.

`main` is the group (mothbrain/cli/group.py); the commands are registered on it by their modules: pipeline
(ingest … promote, run), operators (status, briefing, init, doctor, cron), review (proposals, wiki) and
serving (models, serve, ask).
"""

from __future__ import annotations

from mothbrain.cli import operators, pipeline, review, serving  # noqa: F401  (they register the commands on main)
from mothbrain.cli.group import main

__all__ = ["main"]

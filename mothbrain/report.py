"""How stages hand results to the CLI: a title, table rows, warnings and JSON.

Every `run_*` function returns an object with this shape; the CLI prints the rows as a summary
table (or the JSON with --json) and never reaches into a stage's internals.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Protocol

from rich.console import Console
from rich.table import Table


class Report(Protocol):
    title: str
    warnings: list[str]

    def rows(self) -> list[dict[str, Any]]: ...

    def to_json(self) -> dict[str, Any]: ...


@dataclass
class SimpleReport:
    """A ready-made Report for stages whose result is a few key figures."""

    title: str
    figures: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def rows(self) -> list[dict[str, Any]]:
        return [{"": k, "value": v} for k, v in self.figures.items()]

    def to_json(self) -> dict[str, Any]:
        return {"title": self.title, **self.figures, "warnings": self.warnings}


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:,.4g}" if abs(v) < 1e6 else f"{v:,.0f}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return "" if v is None else str(v)


def render_table(title: str, rows: list[dict[str, Any]]) -> Table:
    table = Table(title=title, title_justify="left")
    cols: list[str] = []
    for r in rows:
        cols.extend(k for k in r if k not in cols)
    for c in cols:
        table.add_column(c, justify="left" if not rows or not isinstance(rows[0].get(c), (int, float)) else "right")
    for r in rows:
        table.add_row(*[_fmt(r.get(c)) for c in cols])
    return table


def print_report(report: Report, as_json: bool = False, console: Console | None = None) -> None:
    if as_json:
        print(json.dumps(report.to_json(), indent=2, default=str))
        return
    console = console or Console()
    rows = report.rows()
    if rows:
        console.print(render_table(report.title, rows))
    else:
        console.print(f"[bold]{report.title}[/bold]")
    for w in report.warnings:
        console.print(f"[yellow]warning:[/yellow] {w}")

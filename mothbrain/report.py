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


def format_cell(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:,.4g}" if abs(v) < 1e6 else f"{v:,.0f}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return "" if v is None else str(v)


# Columns a person copies into the next command: never cut or wrapped, whatever the terminal's width.
WHOLE_COLUMNS = ("id", "version", "run", "run_id", "stage", "status", "source", "file", "path", "log")
WHOLE_MAX = 72  # ... up to this many characters (a longer path wraps rather than pushing out every other column)
WORD_MAX = 30  # a longer "word" (a URL, a hash) may be folded; every shorter one is kept whole


def _longest_word(texts: list[str]) -> int:
    return max([1, *(len(w) for t in texts for w in t.split())])


def render_table(title: str, rows: list[dict[str, Any]], width: int | None = None) -> Table:
    """Rows as a table; identifier and path columns stay whole, the others wrap at spaces, never inside a word.

    Each column gets at least its longest word (rich left alone squeezes columns below that and cuts words
    in the middle), then the room left goes to the columns with the most text. When that does not fit
    `width` (default: the terminal's), each row becomes a record of `column  value` lines instead.
    """
    cols: list[str] = []
    for r in rows:
        cols.extend(k for k in r if k not in cols)
    cells = {c: [format_cell(r.get(c)) for r in rows] for c in cols}
    whole = {c for c in cols if c in WHOLE_COLUMNS or c.endswith(("_id", "_path"))}
    longest = {c: max([len(c), *(len(v) for v in cells[c])]) for c in cols}
    most = {c: min(longest[c], WHOLE_MAX) if c in whole else longest[c] for c in cols}
    least = {c: most[c] if c in whole else min(_longest_word([c, *cells[c]]), WORD_MAX) for c in cols}
    room = (width or Console().width) - (3 * len(cols) + 1)  # each column costs 3 for its border and padding
    if sum(least.values()) > room:
        return _records(title, cols, rows)
    widths = dict(least)
    spare = room - sum(widths.values())
    while spare > 0:  # one character at a time to the column that still misses the most
        c = max(cols, key=lambda c: most[c] - widths[c])
        if most[c] <= widths[c]:
            break
        widths[c] += 1
        spare -= 1
    table = Table(title=title, title_justify="left")
    for c in cols:
        numeric = bool(rows) and isinstance(rows[0].get(c), (int, float))
        table.add_column(
            c,
            justify="right" if numeric else "left",
            no_wrap=c in whole,
            width=widths[c],
            overflow="fold",  # reached only by a word longer than WORD_MAX
        )
    for r in rows:
        table.add_row(*[format_cell(r.get(c)) for c in cols])
    return table


def _records(title: str, cols: list[str], rows: list[dict[str, Any]]) -> Table:
    """The vertical layout: one block of `column  value` lines per row."""
    table = Table(title=title, title_justify="left", show_header=False)
    table.add_column("column", style="bold", no_wrap=True)
    table.add_column("value", overflow="fold")
    for i, r in enumerate(rows):
        if i:
            table.add_section()
        for c in cols:
            if r.get(c) not in (None, ""):
                table.add_row(c, format_cell(r.get(c)))
    return table


def train_loss_text(first: float | None, final: float | None) -> str:
    """THE loss figure, named "train loss" wherever it is shown: the mean of the last 10% of the logged
    losses, after the same mean over the first 10% (mothbrain.train.stage.loss_summary; README)."""
    if final is None:
        return "n/a"
    return f"{first:.3f} → {final:.3f}" if first is not None else f"{final:.3f}"


def cut_at_word(text: str, width: int) -> str:
    """`text` on one line, cut at a word boundary to at most `width` characters (with "…")."""
    text = " ".join(text.split())
    if len(text) <= width:
        return text
    head = text[: max(width - 1, 1)]
    return (head.rsplit(" ", 1)[0] if " " in head else head) + "…"


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

"""The screens tell the truth at 80 columns: no word is cut in the middle by a table or its wrapping."""

from __future__ import annotations

from click.testing import CliRunner
from test_schedule import _cfg, _ok, _refusable_version

from mothbrain.cli import main
from mothbrain.report import WORD_MAX, format_cell, render_table

BOX = str.maketrans({ch: " " for ch in "│┃┏┓┗┛┡┩└┘┌┐├┤┬┴┼━─╇╈┳┻╋═"})


def words_cut(output: str, rows: list[dict]) -> list[str]:
    """The words of `rows` that the output does not show whole (a word folded over two lines is missing)."""
    shown = set(output.translate(BOX).split())
    words = {w for r in rows for v in r.values() for w in format_cell(v).split() if len(w) <= WORD_MAX}
    return sorted(w for w in words if w not in shown)


def cli80(*args: str) -> str:
    result = CliRunner(env={"COLUMNS": "80"}).invoke(main, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_status_eval_show_and_the_run_table_cut_no_word_at_80_columns(state_home, monkeypatch):
    from mothbrain.evaluate.stage import show_eval
    from mothbrain.ops import schedule
    from mothbrain.ops.status import status_report

    cfg = _cfg("schedule.send_briefing=false")
    version = _refusable_version(cfg)
    real = schedule.default_stages()
    monkeypatch.setattr(
        schedule, "default_stages", lambda: {**real, **{n: _ok(n) for n in ("ingest", "preprocess", "train", "dream")}}
    )

    records = []
    run_chain = schedule.run_chain
    monkeypatch.setattr(schedule, "run_chain", lambda *a, **k: records.append(run_chain(*a, **k)) or records[-1])
    out = cli80("run", "weekly", "--set", "schedule.send_briefing=false")
    rows = records[0].rows()
    assert any("decided without data sanity (not run)" in r["result"] for r in rows)  # the whole outcome
    assert words_cut(out, rows) == []

    out = cli80("status")
    sections = status_report(cfg).sections()
    assert [r["version"] for r in sections[2][1]] == [version]
    assert words_cut(out, [r for _, rows in sections for r in rows]) == []

    out = cli80("eval", "--show")
    assert words_cut(out, show_eval(cfg).rows()) == []


def test_a_table_too_wide_for_whole_words_becomes_records():
    from io import StringIO

    from rich.console import Console

    rows = [{"a": "word " * 5, "b": "longerword " * 5, "c": "x" * 25, "d": "y" * 25, "e": "z" * 25}]
    console = Console(width=80, file=StringIO())
    console.print(render_table("t", rows, width=80))
    assert words_cut(console.file.getvalue(), rows) == []

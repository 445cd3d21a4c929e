"""The proposal queue: staged, reviewed, and only the accepted ones ever exported."""

from __future__ import annotations

import json
import sqlite3

import pytest
from click.testing import CliRunner

from mothbrain.cli import main
from mothbrain.config import REPO_ROOT, load_config
from mothbrain.errors import MothError

DEMO = str(REPO_ROOT / "configs" / "demo-tiny.yaml")


def _stage(cfg, n=3):
    from mothbrain.proposals.queue import add_proposals

    return add_proposals(
        cfg,
        [
            {
                "text": f"dream {i}: the kiln and the tide",
                "source": f"wiki/p{i}.md",
                "source_title": f"Page {i}",
                "style": "reminds_me",
                "adapter_version": "v0001",
                "prompt": f"prompt {i}",
            }
            for i in range(n)
        ]
        + [{"text": "   "}],
    )


def test_round_trip_and_export_only_accepted(state_home):
    from mothbrain.proposals import queue

    cfg = load_config(DEMO)
    assert queue.list_proposals(cfg) == [] and not queue.queue_path(cfg).exists()  # reading creates nothing
    ids = _stage(cfg)
    assert len(ids) == 3  # the blank one was not staged
    assert [p["status"] for p in queue.list_proposals(cfg)] == ["pending"] * 3
    queue.update_scores(cfg, ids[0], novelty=0.61, relevance=0.33)
    a = queue.set_status(cfg, ids[0], "accepted", note="worth a page")
    r = queue.set_status(cfg, ids[1], "rejected")
    assert a["note"] == "worth a page" and a["reviewed_at"] and a["novelty"] == 0.61 and r["status"] == "rejected"
    assert [p["id"] for p in queue.list_proposals(cfg, status="pending")] == [ids[2]]
    assert len(queue.list_proposals(cfg, limit=2)) == 2

    path, n = queue.export_accepted(cfg)
    assert n == 1 and path.parent == queue.queue_path(cfg).parent / "exports" and path.name.startswith("accepted-")
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert [x["id"] for x in lines] == [ids[0]] and lines[0]["text"].startswith("dream 0")
    assert lines[0]["adapter_version"] == "v0001" and lines[0]["note"] == "worth a page"

    with pytest.raises(MothError, match="no proposal 999"):
        queue.get(cfg, 999)
    with pytest.raises(MothError, match="no proposal 999"):
        queue.set_status(cfg, 999, "accepted")
    with pytest.raises(MothError, match="unknown proposal status"):
        queue.set_status(cfg, ids[0], "applied")
    assert sqlite3.connect(queue.queue_path(cfg)).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_cli_review(state_home, tmp_path):
    cfg = load_config(DEMO)
    ids = _stage(cfg)
    run = lambda *a: CliRunner().invoke(main, ["proposals", *a, "--config", DEMO])  # noqa: E731
    res = run("list", "--status", "pending", "--json")
    assert res.exit_code == 0 and len(json.loads(res.output)) == 3
    assert run("accept", str(ids[2]), "--note", "yes").exit_code == 0
    assert run("reject", str(ids[0])).exit_code == 0
    show = run("show", str(ids[2]))
    assert (
        show.exit_code == 0 and "accepted" in show.output and "prompt 2" in show.output and "note: yes" in show.output
    )
    out = tmp_path / "x" / "accepted.jsonl"
    res = run("export", "--out", str(out))
    assert res.exit_code == 0 and "1 accepted" in res.output
    assert [json.loads(x)["id"] for x in out.read_text().splitlines()] == [ids[2]]
    bad = run("accept", "4242")
    assert bad.exit_code == 1 and "no proposal 4242" in bad.output and "Traceback" not in bad.output


def test_damaged_or_newer_queue_is_a_clean_error_and_left_untouched(state_home):
    from mothbrain.proposals import queue

    cfg = load_config(DEMO)
    p = queue.queue_path(cfg)
    p.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(MothError, match="damaged"):
        queue.list_proposals(cfg)
    assert p.read_bytes().startswith(b"this is not sqlite")

    p.unlink()
    con = sqlite3.connect(p)
    con.execute("PRAGMA user_version = 99")
    con.close()
    with pytest.raises(MothError, match="newer than this MothBrain"):
        _stage(cfg)


def test_list_limit_shows_the_newest_first_and_an_empty_list_says_so(state_home):
    cfg = load_config(REPO_ROOT / "configs" / "demo-tiny.yaml")
    ids = _stage(cfg, n=4)
    out = CliRunner().invoke(main, ["proposals", "list", "--limit", "2", "--json"]).output
    assert [p["id"] for p in json.loads(out)] == [ids[3], ids[2]]
    empty = CliRunner().invoke(main, ["proposals", "list", "--status", "accepted"])
    assert empty.exit_code == 0 and empty.output.strip() == "no accepted proposals"


def test_a_busy_or_full_queue_says_what_it_is_not_move_it_aside(state_home, monkeypatch):
    from mothbrain.proposals import queue

    cfg = load_config(DEMO)
    _stage(cfg, n=1)
    path = queue.queue_path(cfg)

    # A writer holding the queue past the wait (a second real connection with an open write).
    monkeypatch.setattr(queue, "BUSY_TIMEOUT_S", 0.2)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(MothError) as busy:
            _stage(cfg, n=1)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert "busy" in str(busy.value) and "try again" in str(busy.value), busy.value
    assert "move it aside" not in str(busy.value) and "damaged" not in str(busy.value)

    # A full disk (sqlite's own SQLITE_FULL, reached through a page cap on the connection).
    real_connect = sqlite3.connect

    def capped(*args, **kwargs):
        con = real_connect(*args, **kwargs)
        pages = con.execute("PRAGMA page_count").fetchone()[0]
        con.execute(f"PRAGMA max_page_count = {pages}")
        return con

    monkeypatch.setattr(queue.sqlite3, "connect", capped)
    with pytest.raises(MothError) as full:
        _stage(cfg, n=200)
    assert "full" in str(full.value) and "free" in str(full.value) and str(path.parent) in str(full.value)
    assert "move it aside" not in str(full.value) and "damaged" not in str(full.value)
    monkeypatch.setattr(queue.sqlite3, "connect", real_connect)
    assert len(queue.list_proposals(cfg)) == 1  # nothing half-written, nothing lost


def test_deciding_again_needs_force_and_keeps_the_history(state_home):
    cfg = load_config(DEMO)
    (pid,) = _stage(cfg, n=1)
    run = lambda *a: CliRunner().invoke(main, ["proposals", *a, "--config", DEMO])  # noqa: E731
    assert run("accept", str(pid), "--note", "worth a page").exit_code == 0

    again = run("reject", str(pid), "--note", "on second thought")
    assert again.exit_code == 1 and "Traceback" not in again.output
    assert f"proposal {pid} was already accepted" in again.output and "--force" in again.output
    assert "worth a page" in again.output

    forced = run("reject", str(pid), "--note", "on second thought", "--force")
    assert forced.exit_code == 0, forced.output
    shown = json.loads(run("show", str(pid), "--json").output)
    assert shown["status"] == "rejected" and shown["note"] == "on second thought"
    assert [(h["status"], h["note"]) for h in shown["history"]] == [
        ("accepted", "worth a page"),
        ("rejected", "on second thought"),
    ]
    assert all(h["decided_at"] and h["decided_by"] for h in shown["history"])
    text = run("show", str(pid)).output
    assert "accepted" in text and "worth a page" in text and "on second thought" in text


def test_a_queue_from_before_the_history_is_upgraded_with_its_decisions(state_home):
    from mothbrain.proposals import queue

    cfg = load_config(DEMO)
    path = queue.queue_path(cfg)
    path.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(path)  # schema 1, as an older MothBrain left it, with one decided proposal
    con.executescript(queue.MIGRATIONS[0][1])
    con.execute(
        "INSERT INTO proposals (created_at, text, status, note, reviewed_at) "
        "VALUES ('2026-01-01T00:00:00Z', 'kiln', 'accepted', 'old note', '2026-01-02T00:00:00Z')"
    )
    con.execute("PRAGMA user_version = 1")
    con.commit()
    con.close()
    (p,) = queue.list_proposals(cfg)
    shown = queue.get(cfg, p["id"])
    assert shown["history"] == [
        {"status": "accepted", "note": "old note", "decided_at": "2026-01-02T00:00:00Z", "decided_by": ""}
    ]


def test_at_80_columns_a_proposal_is_one_line_cut_at_a_word_and_ids_stay_whole(state_home, monkeypatch):
    from mothbrain.proposals.queue import add_proposals

    monkeypatch.setenv("COLUMNS", "80")
    cfg = load_config(DEMO)
    long_text = "the kiln remembers every apology we never made " * 6
    add_proposals(cfg, [{"text": long_text, "style": "free_association", "adapter_version": "v0123"}] * 3)
    out = CliRunner().invoke(main, ["proposals", "list", "--config", DEMO]).output
    lines = out.splitlines()
    assert all(len(line) <= 80 for line in lines), out
    rows = [line for line in lines if "v0123" in line]
    assert len(rows) == 3, out  # one line per proposal, its id and version whole
    assert all("free_association" in r for r in rows)
    text_cell = rows[0].split("│")[-2].strip()
    assert text_cell.endswith("…") and long_text.startswith(text_cell[:-1])
    assert long_text[len(text_cell) - 1] == " "  # cut at a word boundary


def test_identifier_and_path_columns_are_never_cut_at_80_columns():
    from rich.console import Console

    from mothbrain.report import render_table

    run_id = "20261206-024611-nightly-2"
    log = "/home/operator/mothbrain/logs/20261206-024611-nightly-2.log"
    rows = [{"run": run_id, "status": "failed", "note": "a long explanation " * 8, "log": log}]
    console = Console(width=80, record=True)
    console.print(render_table("runs", rows, width=80))  # too wide for 80 columns: one record per row
    out = console.export_text()
    assert run_id in out and log in out, out  # each whole on one line
    assert max(len(line) for line in out.splitlines()) <= 80
    console = Console(width=200, record=True)
    console.print(render_table("runs", rows, width=200))  # wide enough: a table, the note wrapped if need be
    out = console.export_text()
    assert run_id in out and log in out and "┃ run" in out, out

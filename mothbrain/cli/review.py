"""The review commands: the `proposals` group (the staging queue, mothbrain/proposals/) and the `wiki` group
(the wiki-worker: scan, review, merge, revert; mothbrain/wiki/)."""

from __future__ import annotations

from collections.abc import Callable

import click

from mothbrain.cli.group import config_options, locked, main, show_report
from mothbrain.config import Config


@main.group()
def proposals() -> None:
    """Review what dreaming and the wiki-worker proposed. Dreams are only exported, never applied; an
    accepted wiki proposal is applied by `mothbrain wiki merge`.

    \b
    Examples:
      mothbrain proposals list --status pending
      mothbrain proposals list --kind crosslink
      mothbrain proposals show 12
      mothbrain proposals accept 12 --note "worth a wiki page"
      mothbrain proposals reject 13
      mothbrain proposals export --out /tmp/accepted.jsonl
    """


@proposals.command("list")
@config_options
@click.option(
    "--status",
    type=click.Choice(["pending", "accepted", "rejected"]),
    default=None,
    help="Only proposals with this status.",
)
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Only the newest N, newest first.")
@click.option(
    "--kind",
    type=click.Choice(["dream", "crosslink", "split", "frame", "staleness"]),
    default=None,
    help="Only proposals of this kind.",
)
def proposals_list(cfg: Config, as_json: bool, status: str | None, limit: int | None, kind: str | None) -> None:
    """List staged proposals, oldest first (with --limit: the newest N, newest first)."""
    import json

    from rich.console import Console

    from mothbrain.proposals.queue import list_proposals
    from mothbrain.report import cut_at_word, format_cell, render_table

    rows = list_proposals(cfg, status=status, limit=limit, kind=kind)
    if as_json:
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    if not rows:
        click.echo(f"no {status + ' ' if status else ''}proposals")
        return
    wiki = any(r["kind"] != "dream" for r in rows)
    short = []
    for r in rows:
        s = {
            "id": r["id"],
            "status": r["status"] + (f"/{r['merge_state']}" if r["merge_state"] else ""),
            "kind": r["kind"] if r["kind"] != "dream" else r["style"],
            "version": r["adapter_version"],
        }
        if wiki:  # a wiki proposal's figure is its score (a dream's, with --kind dream)
            s["score"] = r["score"]
        else:
            s.update(novelty=r["novelty"], relevance=r["relevance"])
        s["text"] = ""
        short.append(s)
    # One line per proposal: the text gets what the other columns leave (each column costs 3 for its border
    # and padding), cut at a word boundary; `proposals show ID` prints the whole of it.
    console = Console()
    used = sum(max(len(k), *(len(format_cell(s[k])) for s in short)) + 3 for k in short[0] if k != "text") + 4
    for s, r in zip(short, rows):
        s["text"] = cut_at_word(r["text"], max(console.width - used, 12))
    console.print(render_table(f"proposals ({status or 'all'}): {len(rows)}", short))


@proposals.command("show")
@config_options
@click.argument("proposal_id", type=int)
def proposals_show(cfg: Config, as_json: bool, proposal_id: int) -> None:
    """Show one proposal in full, with its prompt."""
    import json

    from mothbrain.proposals.queue import get

    p = get(cfg, proposal_id)
    if as_json:
        click.echo(json.dumps(p, indent=2, ensure_ascii=False))
        return
    click.echo(
        f"#{p['id']}  {p['status']}  {p['style']}  {p['adapter_version']}  from {p['source_title'] or p['source']}"
    )
    click.echo(
        (f"novelty {p['novelty']}  relevance {p['relevance']}  " if p["kind"] == "dream" else "")
        + f"created {p['created_at']}"
        + (f"  reviewed {p['reviewed_at']}" if p["reviewed_at"] else "")
        + (f"  note: {p['note']}" if p["note"] else "")
    )
    for h in p.get("history", []):
        click.echo(
            f"  {h['decided_at']}  {h['status']}"
            + (f" by {h['decided_by']}" if h["decided_by"] else "")
            + (f"  note: {h['note']}" if h["note"] else "")
        )
    if p["kind"] == "dream":
        click.echo("\n--- prompt\n" + p["prompt"] + "\n--- proposal\n" + p["text"])
        return
    click.echo(f"kind {p['kind']}  page {p['target']}  score {p['score']}")
    if p["merge_state"]:
        click.echo(f"merge: {p['merge_state']} at {p['merged_at']}  {p['merge_note']}")
    prov = p.get("provenance") or {}
    if prov:
        click.echo("provenance: " + ", ".join(f"{k} {v}" for k, v in prov.items()))
    click.echo("\n--- proposal\n" + p["text"] + "\n--- why\n" + p["rationale"])
    click.echo("--- patch\n" + (p.get("patch") or {}).get("diff", "").rstrip())


def _review(status: str) -> Callable:
    def command(cfg: Config, as_json: bool, proposal_id: int, note: str, force: bool) -> None:
        import json

        from mothbrain.proposals.queue import set_status

        p = set_status(cfg, proposal_id, status, note, force=force)
        click.echo(json.dumps(p, indent=2, ensure_ascii=False) if as_json else f"proposal {proposal_id}: {status}")

    command.__name__ = f"proposals_{status}"
    return command


for _verb, _status in (("accept", "accepted"), ("reject", "rejected")):
    proposals.command(_verb, help=f"Mark a proposal {_status} (with an optional --note).")(
        click.argument("proposal_id", type=int)(
            click.option("--note", default="", help="Why, for the record.")(
                click.option(
                    "--force", is_flag=True, help="Decide again a proposal already decided (kept in its history)."
                )(config_options(_review(_status)))
            )
        )
    )


@proposals.command("export")
@config_options
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    default=None,
    help="JSONL file (default: <state>/data/proposals/exports/accepted-<date>.jsonl).",
)
def proposals_export(cfg: Config, as_json: bool, out: str | None) -> None:
    """Write the accepted proposals (only those) as JSON lines for the coordinating model."""
    import json

    from mothbrain.proposals.queue import export_accepted

    path, n = export_accepted(cfg, out)
    click.echo(json.dumps({"path": str(path), "accepted": n}) if as_json else f"{n} accepted proposal(s) → {path}")


@main.group()
def wiki() -> None:
    """The wiki-worker: find crosslinks, splits, frames and stale statements; review; merge.

    \b
    Examples:
      mothbrain wiki scan                  # stage proposals (see `mothbrain proposals list --kind crosslink`)
      mothbrain wiki review                # the reviewer decides them (wiki.reviewer_url, else local rules)
      mothbrain wiki merge                 # apply the accepted ones (one git commit each in a git wiki)
      mothbrain wiki revert 42             # undo merged proposal 42, byte for byte
      mothbrain run wiki                   # all three, as cron runs them
    """


def _wiki_stage(name: str, module: str, fn: str, doc: str) -> None:
    def command(cfg: Config, as_json: bool) -> None:
        import importlib

        with locked(cfg, f"wiki {name}"):
            report = getattr(importlib.import_module(module), fn)(cfg)
        show_report(report, as_json)

    command.__name__ = f"wiki_{name}"
    command.__doc__ = doc
    wiki.command(name)(config_options(command))


_wiki_stage("scan", "mothbrain.wiki.scan", "run_scan", "Read the wiki and stage typed proposals (nothing is written).")
_wiki_stage(
    "review", "mothbrain.wiki.review", "run_review", "Let the reviewer accept or reject waiting wiki proposals."
)
_wiki_stage(
    "merge", "mothbrain.wiki.merge", "run_merge", "Apply accepted wiki proposals (stale ones are never forced)."
)


@wiki.command("revert")
@config_options
@click.argument("proposal_id", type=int)
def wiki_revert(cfg: Config, as_json: bool, proposal_id: int) -> None:
    """Undo a merged wiki proposal byte for byte (git revert in a git wiki)."""
    import json

    from mothbrain.wiki.merge import revert

    with locked(cfg, "wiki revert"):
        done = revert(cfg, proposal_id)
    click.echo(json.dumps(done) if as_json else f"proposal {proposal_id}: reverted ({done['reverted']})")

"""The `mothbrain` command: click groups that parse, call one plain function, and print.

Every command takes --config PATH and --set key.sub=value (repeatable); a mistake a person can fix
is a one-line message and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import contextlib
import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from mothbrain.config import Config, ConfigError, load_config
from mothbrain.errors import GATE_REFUSED_EXIT, MothError, NothingToDo


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


def _locked(cfg: Config, command: str) -> contextlib.AbstractContextManager:
    """The run lock for a command that changes state: refused at once while a run (or another one) holds it."""
    from mothbrain.ops.run_lock import command_lock

    return command_lock(cfg, command)


def _show(report: Any, as_json: bool) -> None:
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
    from mothbrain.ingest.stage import run_ingest

    with _locked(cfg, "ingest"):
        report = run_ingest(cfg, since=since, full=full)
    _show(report, as_json)


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

    with _locked(cfg, "preprocess"):
        report = run_preprocess(cfg, since_days=since_days, force=force, full=full)
    _show(report, as_json)


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

    with contextlib.nullcontext() if dry_run else _locked(cfg, "train"):
        report = run_train(cfg, dry_run=dry_run, fresh=fresh, force=force)
    if report.text and not as_json:
        click.echo(report.text + "\n")  # the dry-run's memory breakdown
    _show(report, as_json)


@main.command()
@config_options
@click.option("--version", "version", default=None, help="Adapter version (default: the newest trained).")
def dream(cfg: Config, as_json: bool, version: str | None) -> None:
    """Generate free-associative proposals into the staging queue (never applied anywhere).

    \b
    Example: mothbrain dream && mothbrain proposals list
    """
    from mothbrain.dream.stage import run_dream

    with _locked(cfg, "dream"):
        report = run_dream(cfg, version=version)
    _show(report, as_json)


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
        _show(show_eval(cfg, version=version), as_json)
        return
    with _locked(cfg, "eval"):
        report = run_eval(cfg, version=version)
    _show(report, as_json)


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

    with _locked(cfg, "promote"):
        report = run_rollback(cfg) if rollback else run_promote(cfg, version=version)
    _show(report, as_json)
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
    _show(record, as_json)
    if not as_json:
        click.echo(f"log: {record.log}")  # the whole story of the run (JSON carries it as "log")
    if getattr(record, "failed", False):
        sys.exit(1)


# ---- models section: prepared local bases (mothbrain/models/prepare.py)


@main.group()
def models() -> None:
    """Prepare local base models: a GGUF file or a Hugging Face folder made into a ready base, once.

    \b
    Examples:
      mothbrain models prepare SmolLM2-135M-Instruct.Q4_1.gguf --name smollm2-135m
      mothbrain models prepare /data/hf/Qwen2.5-72B --name qwen2.5-72b --config configs/default.yaml
      mothbrain models verify smollm2-135m          # every file's sha256 against the manifest
    Then set model.base to the name (model.build_tiny: false).
    """


@models.command("prepare")
@config_options
@click.argument("source", type=click.Path(path_type=str))
@click.option("--name", default=None, help="Folder under <state>/data/models/ and model.base (default: from SOURCE).")
@click.option("--gguf-file", default=None, help="Which .gguf when the SOURCE folder holds several.")
@click.option(
    "--quantize/--no-quantize",
    default=None,
    help="Also save an NF4 copy in <name>/nf4/ (default: when model.quantization.load_in_4bit is on).",
)
@click.option(
    "--dtype",
    type=click.Choice(["auto", "bfloat16", "float16", "float32"]),
    default="auto",
    help="Weights' dtype (auto: a GGUF becomes bfloat16, an HF folder's safetensors are copied as they are).",
)
@click.option("--force", is_flag=True, help="Replace a base already prepared under the name.")
def models_prepare(
    cfg: Config,
    as_json: bool,
    source: str,
    name: str | None,
    gguf_file: str | None,
    quantize: bool | None,
    dtype: str,
    force: bool,
) -> None:
    """Turn SOURCE (a .gguf, a folder holding one, or an HF folder) into <state>/data/models/<name>/.

    \b
    Example: mothbrain models prepare ~/models/SmolLM2-135M-Instruct.Q4_1.gguf --name smollm2-135m
    """
    from mothbrain.models.prepare import prepare_base

    with _locked(cfg, "models prepare"):  # a night run must not load a base while it is being replaced
        report = prepare_base(
            cfg,
            source,
            name,
            gguf_file=gguf_file,
            quantize=quantize,
            dtype=dtype,
            force=force,
            progress=lambda msg: click.echo(msg, err=True),
        )
    _show(report, as_json)


@models.command("verify")
@config_options
@click.argument("name")
def models_verify(cfg: Config, as_json: bool, name: str) -> None:
    """Check a prepared base against its manifest, every file's sha256 included; exit 1 on a mismatch.

    \b
    Example: mothbrain models verify qwen2.5-72b
    """
    from mothbrain.models.prepare import verify_report

    report = verify_report(cfg, name)
    _show(report, as_json)
    if report.warnings:
        sys.exit(1)


# ---- end of models section


# --------------------------------------------------------------------------- operators
# (status, briefing, doctor, proposals, cron, serve, ask are added below by their modules' owners)

# ---- schedule section: status, briefing, doctor, cron (mothbrain/status.py, briefing.py, doctor.py, cron.py)


@main.command()
@config_options
def status(cfg: Config, as_json: bool) -> None:
    """The current adapter, the last runs, proposals waiting and every version.

    \b
    Example: mothbrain status --json
    """
    import json

    from rich.console import Console

    from mothbrain.ops.status import status_report
    from mothbrain.report import render_table

    report = status_report(cfg)
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2, default=str))
        return
    console = Console()
    for title, rows in report.sections():
        console.print(render_table(title, rows) if rows else f"[bold]{title}[/bold]")
    for w in report.warnings:
        console.print(f"[yellow]warning:[/yellow] {w}")


@main.command()
@config_options
@click.option("--send", is_flag=True, help="E-mail it through briefing.smtp_* (it is always written to files too).")
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    default=None,
    help="Folder for briefing-<date>.eml/.txt/.html (default: <state>/data/briefings).",
)
def briefing(cfg: Config, as_json: bool, send: bool, out: str | None) -> None:
    """The morning briefing: last night and week, versions, missed runs, proposals, health.

    \b
    Examples:
      mothbrain briefing                 # writes data/briefings/briefing-<date>.eml, .txt, .html
      mothbrain briefing --send          # and e-mails it (briefing.smtp_host, briefing.to)
    """
    import json

    from mothbrain.ops.briefing import run_briefing

    report = run_briefing(cfg, send=send, out=out)
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2, default=str))
        return
    click.echo(report.subject)
    click.echo(f"written to {report.path} (and .txt, .html)")
    if report.sent_to:
        click.echo(f"sent to {report.sent_to}")
    for w in report.warnings:
        click.echo(f"warning: {w}", err=True)


@main.command()
@click.argument("folders", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Config to write (mothbrain-<profile>.yaml).",
)
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where its data, adapters and ledger go (default ~/.local/share/mothbrain/<config name>).",
)
@click.option(
    "--profile",
    type=click.Choice(["cpu", "gpu"]),
    default="cpu",
    help="cpu: SmolLM2-135M on a laptop (as configs/demo.yaml); gpu: Qwen2.5-72B (as configs/default.yaml).",
)
@click.option("--force", is_flag=True, help="Replace the config file if it exists.")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON instead of a table.")
def init(folders: tuple[Path, ...], out: Path | None, state_dir: Path | None, profile: str, force: bool, as_json: bool):
    """Write a starter config for your own material found in FOLDERS (exports, vaults, chat logs, writing).

    \b
    Examples:
      mothbrain init ~/Downloads/exports ~/Notes
      mothbrain init ~/archive --profile gpu --out ~/mothbrain.yaml
    """
    from mothbrain.ops.init import run_init

    try:
        report = run_init(list(folders), out=out, state_dir=state_dir, profile=profile, force=force)
    except MothError as exc:
        raise click.ClickException(str(exc)) from None
    _show(report, as_json)
    if not as_json:
        click.echo("next:")
        for line in report.next_steps:
            click.echo(f"  {line}")


@main.command()
@config_options
@click.option("--smtp", "smtp_test", is_flag=True, help="Also connect and log in to the SMTP server.")
def doctor(cfg: Config, as_json: bool, smtp_test: bool) -> None:
    """Check everything a night run needs (GPU/RAM, 4-bit, disk, cron, shell, SMTP); exit 1 on a failure.

    \b
    Examples:
      mothbrain doctor
      mothbrain doctor --smtp --config /abs/configs/default.yaml
    """
    from mothbrain.ops.doctor import run_doctor

    report = run_doctor(cfg, smtp_test=smtp_test)
    _show(report, as_json)
    if report.failed:
        sys.exit(1)


@main.group()
def cron() -> None:
    """Install, show or remove the nightly/weekly lines in your crontab (a marked block only).

    \b
    Examples:
      mothbrain cron show --config /abs/configs/default.yaml
      mothbrain cron install --config /abs/configs/default.yaml
      mothbrain cron remove
    """


def _cron_cmd(action: str) -> Callable:
    def command(cfg: Config, as_json: bool) -> None:
        import json

        from mothbrain.ops import cron as crontab

        report = getattr(crontab, f"cron_{action}")(cfg)
        if as_json:
            click.echo(json.dumps(report.to_json(), indent=2))
            return
        click.echo(f"# {report.title}")
        if report.block:
            click.echo(report.block, nl=False)
        for w in report.warnings:
            click.echo(f"warning: {w}", err=True)

    command.__name__ = f"cron_{action}"
    return command


cron.command("install", help="Add (or update) the mothbrain block in your crontab; other lines are untouched.")(
    config_options(_cron_cmd("install"))
)
cron.command("show", help="Print the block `cron install` would write, and whether it is installed.")(
    config_options(_cron_cmd("show"))
)
cron.command("remove", help="Remove the mothbrain block from your crontab; other lines are untouched.")(
    config_options(_cron_cmd("remove"))
)

# ---- end of schedule section

# ---- proposals section: the dream staging queue (mothbrain/queue.py)


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


# ---- end of proposals section

# ---- wiki section: the wiki-worker (mothbrain/wiki/)


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

        with _locked(cfg, f"wiki {name}"):
            report = getattr(importlib.import_module(module), fn)(cfg)
        _show(report, as_json)

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

    with _locked(cfg, "wiki revert"):
        done = revert(cfg, proposal_id)
    click.echo(json.dumps(done) if as_json else f"proposal {proposal_id}: reverted ({done['reverted']})")


# ---- serve section: serve and ask (mothbrain/serve.py, coordinator.py)


@main.command()
@config_options
@click.option("--host", default=None, help="Bind address (default serve.host, 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (default serve.port, 8377).")
@click.option(
    "--engine",
    type=click.Choice(["transformers", "vllm"]),
    default="transformers",
    help="transformers: serve here; vllm: print the equivalent `vllm serve` command.",
)
@click.option("--launch", is_flag=True, help="With --engine vllm: run that command instead of printing it.")
@click.option(
    "--allow-remote", is_flag=True, help="Bind a non-loopback --host (plain HTTP: prefer an SSH tunnel or TLS proxy)."
)
def serve(
    cfg: Config, as_json: bool, host: str | None, port: int | None, engine: str, launch: bool, allow_remote: bool
) -> None:
    """Serve System 1 (base + promoted adapter) as an OpenAI-compatible API; follows promotions live.

    \b
    Examples:
      MOTHBRAIN_API_TOKEN=... mothbrain serve                  # http://127.0.0.1:8377/v1, model "mothbrain"
      mothbrain serve --engine vllm                            # print the vLLM command for a GPU box
      ssh -N -L 8377:127.0.0.1:8377 user@trainbox              # reach it from another machine
    """
    import json
    import shlex

    from mothbrain.serve.app import check_host, run_server
    from mothbrain.serve.vllm import launch_vllm, vllm_command

    check_host(host or cfg.serve.host, port or cfg.serve.port, allow_remote)
    if engine == "vllm":
        cmd, notes = vllm_command(cfg, host, port)
        if launch:
            launch_vllm(cfg, cmd)
        if as_json:
            click.echo(json.dumps({"command": cmd, "notes": notes}, indent=2))
            return
        click.echo(f'VLLM_API_KEY="${cfg.serve.token_env}" ' + shlex.join(cmd))
        for n in notes:
            click.echo(f"# {n}", err=True)
        return
    run_server(cfg, host, port, echo=lambda m: click.echo(m, err=True), allow_remote=allow_remote)


@main.command()
@config_options
@click.argument("question")
def ask(cfg: Config, as_json: bool, question: str) -> None:
    """Ask System 2, System 1 and the wiki at once; System 2 weighs the lizard brain's words.

    \b
    Examples:
      mothbrain ask "what should we do about the figs?"
      mothbrain ask --json "..." --set coordinator.system2_url=http://127.0.0.1:8000/v1 \\
                                  --set coordinator.system2_model=qwen2.5-72b-instruct
    """
    import json

    from rich.console import Console
    from rich.panel import Panel
    from rich.text import Text

    from mothbrain.ask.coordinator import ask as run_ask
    from mothbrain.report import render_table

    result = run_ask(cfg, question)  # the libraries' warnings: hidden unless --verbose (config_options)
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2, ensure_ascii=False, default=str))
    else:
        console = Console()
        for layer in result.layers.values():
            if result.degraded and layer.status == "ok" and layer.text and layer.text in result.answer:
                continue  # printed once, in the answer it makes up
            # Text(), not markup: wiki notes are full of [[links]] that rich would read as tags. Who spoke is the
            # body's first line, not the title: a long source wraps there, where a panel title would be cut.
            body = Text.assemble(
                (f"{layer.source or layer.name}\n", "bold"),
                layer.text or "(empty)"
                if layer.status == "ok"
                else Text.assemble((layer.status, "yellow"), f": {layer.error}"),
            )
            console.print(Panel(body, title=f"{layer.name} · {layer.seconds:.1f}s", title_align="left"))
        title = "answer" + (" (degraded: " + ", ".join(result.failed) + ")" if result.degraded else "")
        console.print(
            Panel(
                Text(result.answer or "(no answer)"),
                title=Text(title),
                title_align="left",
                border_style="yellow" if result.degraded else "green",
            )
        )
        console.print(Text(f"answer by {result.answer_by}"))  # a line, not a panel title: it wraps, never cut
        console.print(render_table("layers", result.rows()))
        for w in result.warnings:
            console.print(f"[yellow]warning:[/yellow] {w}")
    if not result.answer:
        raise MothError("no layer answered: " + "; ".join(f"{k} {v}" for k, v in result.failed.items()))


# ---- end of serve section


if __name__ == "__main__":  # pragma: no cover
    main()

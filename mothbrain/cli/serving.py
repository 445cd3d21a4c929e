"""The model-facing commands: the `models` group (prepared local bases, mothbrain/models/prepare.py), `serve`
(the OpenAI-compatible endpoint) and `ask` (the coordinator, mothbrain/ask/)."""

from __future__ import annotations

import sys

import click

from mothbrain.cli.group import config_options, locked, main, show_report
from mothbrain.config import Config
from mothbrain.errors import MothError


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

    with locked(cfg, "models prepare"):  # a night run must not load a base while it is being replaced
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
    show_report(report, as_json)


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
    show_report(report, as_json)
    if report.warnings:
        sys.exit(1)


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
    from mothbrain.serve.vllm_serve import launch_vllm, vllm_command

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

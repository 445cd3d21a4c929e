"""`mothbrain serve --engine vllm`: the equivalent `vllm serve` command, and launching it."""

from __future__ import annotations

import json
import os
from pathlib import Path

from mothbrain.config import Config
from mothbrain.core.api import MODEL_ID, load_token
from mothbrain.core.current import current_adapter
from mothbrain.errors import MothError
from mothbrain.models.loading import base_location

VLLM_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)


def vllm_command(cfg: Config, host: str | None = None, port: int | None = None) -> tuple[list[str], list[str]]:
    """The `vllm serve` line equivalent to ours (model "mothbrain" = the current adapter) and notes."""

    host, port = host or cfg.serve.host, port or cfg.serve.port
    pointer = current_adapter(cfg)
    base = base_location(cfg, build=False)
    cmd = ["vllm", "serve", str(base), "--host", host, "--port", str(port)]
    notes = [
        f"the token is read from $VLLM_API_KEY (set it to ${cfg.serve.token_env}); "
        "it never goes on the command line, where `ps` would show it"
    ]
    if pointer.path is not None:
        rank = _adapter_rank(pointer.path, cfg.lora.r)
        vrank = next((r for r in VLLM_LORA_RANKS if rank <= r), None)
        if vrank is None:
            raise MothError(f"adapter {pointer.version} has rank {rank}, above vLLM's largest (512)")
        cmd += [
            "--served-model-name",
            f"{MODEL_ID}-base",
            "--enable-lora",
            "--max-loras",
            "1",
            "--max-lora-rank",
            str(vrank),
            "--lora-modules",
            f"{MODEL_ID}={pointer.path}",
        ]
        notes.append(
            f"vLLM loads adapter {pointer.version} once: after a promote, restart it (re-run this "
            "command), or start it with VLLM_ALLOW_RUNTIME_LORA_UPDATING=True and POST "
            "/v1/load_lora_adapter"
        )
    else:
        cmd += ["--served-model-name", MODEL_ID]
        notes.append("no promoted adapter: vLLM would serve the base model as 'mothbrain'")
    if cfg.model.quantization.load_in_4bit:
        cmd += ["--quantization", "bitsandbytes"]  # the NF4 base the adapter was trained on
    if cfg.model.trust_remote_code:
        cmd += ["--trust-remote-code"]
    return cmd, notes


def _adapter_rank(path: Path, default: int) -> int:
    try:
        return int(json.loads((Path(path) / "adapter_config.json").read_text()).get("r") or default)
    except (OSError, ValueError):
        return default


def launch_vllm(cfg: Config, cmd: list[str]) -> None:
    """Replace this process with vLLM (token passed in the environment)."""
    import shutil

    if shutil.which(cmd[0]) is None:
        raise MothError(
            "vLLM is not installed here (`pip install vllm` on the GPU machine), or run the printed command there"
        )
    env = dict(os.environ, VLLM_API_KEY=load_token(cfg))
    os.execvpe(cmd[0], cmd, env)

"""The checks a night fails on, shared by `mothbrain doctor` (ops/doctor.py) and by `train`, which runs them
before it opens a version: a night doctor would fail never leaves a failed version in the ledger.

    config         every source path exists
    base model     model.base is there and whole (a prepared base against its manifest)
    architecture   the base's own config.json against the config: lora.target_modules are module names of
                   that architecture, and model.config_json (what the estimate sizes) is the same model
    disk           what a night writes on the state dir's filesystem — the base's weights while it is not
                   prepared yet, train.keep_checkpoints checkpoints, the adapter, a new data set — against
                   the free space

Each returns a Check (ok / warn / fail / not run) with a one-line detail and, when not ok, its fix.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mothbrain.config import Config
from mothbrain.core import paths
from mothbrain.core.base_location import base_model_location, in_hub_cache, is_prepared
from mothbrain.errors import MothError
from mothbrain.models.loading import bnb_config, prepared_nf4
from mothbrain.models.memory import MemoryEstimate, estimate_memory
from mothbrain.models.parameter_count import base_config_source, module_names
from mothbrain.models.prepare import verify_prepared
from mothbrain.models.tiny import is_built

GIB = 1024**3
NOT_RUN = "not run"
# Before the first preprocess there is no data set to measure: ingest's store and the data set took 1.2x and
# 1.9x the sample material's bytes (data/sample: 186 kB → 226 kB ingested, 348 kB data set).
NEW_MATERIAL_FACTOR = 3.1


@dataclass
class Check:
    name: str
    status: str  # ok | warn | fail | not run
    detail: str
    fix: str = ""

    def line(self) -> str:
        """The check as one line, as `train` refuses with it."""
        return f"{self.name}: {self.detail}" + (f" — fix: {self.fix}" if self.fix else "")


def night_checks(cfg: Config) -> list[Check]:
    """The checks whose failure fails a night (what `train` runs before it opens a version)."""
    estimate, why = night_estimate(cfg)
    return [config_check(cfg), base_model_check(cfg), architecture_check(cfg), disk_check(cfg, estimate, why)]


def refuse_failing_night(cfg: Config) -> None:
    """MothError with the first failing check's line, before anything is recorded."""
    for check in night_checks(cfg):
        if check.status == "fail":
            raise MothError(check.line() + " (`mothbrain doctor` shows every check)")


def night_estimate(cfg: Config, device: str | None = None) -> tuple[MemoryEstimate | None, str]:
    """The dry run's estimate (its "on disk" sizes), or None and why not (no config.json to count from)."""
    try:
        return estimate_memory(cfg, device=device), ""
    except MothError as exc:
        return None, str(exc)


# --------------------------------------------------------------------------- config


def config_check(cfg: Config) -> Check:
    missing = [
        f"sources[{i}] {s.name}: {cfg.resolve_path(s.path)}"
        for i, s in enumerate(cfg.sources)
        if not cfg.resolve_path(s.path).exists()
    ]
    if missing:
        return Check(
            "config",
            "fail",
            f"{cfg.config_path}: source path not found: " + "; ".join(missing),
            f"fix sources[].path in {cfg.config_path} (relative paths are relative to the config file)",
        )
    if not cfg.sources:
        return Check(
            "config",
            "warn",
            f"{cfg.config_path}: no sources configured",
            f"add your material under sources: in {cfg.config_path}",
        )
    return Check("config", "ok", f"{cfg.config_path} loads; {len(cfg.sources)} sources found")


# --------------------------------------------------------------------------- base model


def base_model_check(cfg: Config) -> Check:
    """model.base is there and whole: the tiny demo base (built on first use), a prepared base that matches
    its manifest, a local Hugging Face folder with config.json and weights, or a hub id in the local cache.

    A prepared base is checked for every file's size and each safetensors header against its file's length
    (truncation, a damaged header), with sha256 of every file up to 2 GiB in all (the demo's bases) and of
    the small files only above that: hashing the 72B's 145 GB takes minutes (`mothbrain models verify`)."""

    name, base = "base model", cfg.model.base
    try:
        loc = base_model_location(cfg)
    except MothError as exc:
        detail, _, fix = str(exc).partition("; ")
        return Check(name, "fail", detail, fix or f"fix model.base in {cfg.config_path}")
    if cfg.model.build_tiny:
        if is_built(Path(loc)):
            return Check(name, "ok", f"tiny demo base {base!r} at {loc}")
        return Check(name, "ok", f"tiny demo base {base!r}: built on first use at {loc} (a minute or two on CPU)")
    if isinstance(loc, str):
        if in_hub_cache(loc):
            return Check(name, "ok", f"hub model {loc!r} in the local Hugging Face cache")
        return Check(
            name,
            "fail",
            f"model.base {loc!r}: not in the local Hugging Face cache (nothing is downloaded at run time)",
            f"download it once (`huggingface-cli download {loc}`), or `mothbrain models prepare <its folder> "
            "--name NAME` and set model.base: NAME",
        )
    if is_prepared(loc):
        return _prepared_base(cfg, loc)
    config = loc / "config.json"
    fix = (
        "point model.base at a Hugging Face model folder, or "
        f"`mothbrain models prepare <gguf file or folder> --name {base}`"
    )
    if not config.is_file():
        return Check(name, "fail", f"model.base {base!r}: {loc} has no config.json", fix)
    if not any(loc.glob("*.safetensors")) and not any(loc.glob("*.bin")):
        return Check(name, "fail", f"model.base {base!r}: {loc} has config.json but no weights", fix)
    data = _config_json(config)
    arch = (data.get("architectures") or [data.get("model_type")])[0]
    if arch is None:
        return Check(name, "fail", f"model.base {base!r}: {config} names no architecture (unreadable?)", fix)
    return Check(name, "ok", f"{arch} at {loc}: config.json and weights present (no manifest to check them against)")


def _prepared_base(cfg: Config, loc: Path) -> Check:

    name, base = "base model", cfg.model.base
    v = verify_prepared(loc)
    m = v.manifest
    again = (
        f"mothbrain models prepare {(m.get('source') or {}).get('path') or '<gguf file or HF folder>'} --name {base}"
    )
    if v.problems:
        more = f" (and {len(v.problems) - 1} more)" if len(v.problems) > 1 else ""
        return Check(name, "fail", f"model.base {base!r} at {loc}: {v.problems[0]}{more}", f"run `{again} --force`")
    detail = (
        f"{m.get('architecture')}, {m.get('parameters', 0):,} parameters ({m.get('dtype')}) at {loc}; "
        f"files match the manifest (sizes, safetensors headers, sha256 of {v.hashed})"
    )
    if not cfg.model.quantization.load_in_4bit:
        return Check(name, "ok", detail)
    try:
        nf4 = prepared_nf4(str(loc), bnb_config(cfg))
    except MothError:  # model.device cuda on a machine without one: the memory check says so
        return Check(name, "ok", detail)
    if nf4 is None:
        return Check(
            name,
            "warn",
            detail + "; no NF4 copy made with model.quantization's settings: every run quantizes while loading",
            f"`{again} --force --quantize` on the machine that trains",
        )
    return Check(name, "ok", detail + "; 4-bit runs load its NF4 copy")


def _config_json(path: Path | str) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


# --------------------------------------------------------------------------- architecture


def architecture_check(cfg: Config) -> Check:
    """The base's own config.json against the config, from the meta-device model (no weights read)."""
    name = "architecture"
    source = base_config_source(cfg)
    if source is None:
        return Check(name, NOT_RUN, "not run (the base is not here yet: see the base model check)")
    kind, value = source
    if kind == "hub" and not in_hub_cache(value):
        return Check(name, NOT_RUN, f"not run ({value!r} is not in the local Hugging Face cache)")
    mtime = Path(value).stat().st_mtime_ns if kind == "file" else 0
    try:
        arch, model_type, modules = module_names(kind, value, mtime, cfg.model.trust_remote_code)
    except MothError as exc:
        return Check(name, "fail", str(exc), f"point model.base at a causal language model ({cfg.config_path})")
    leaves = {m.rsplit(".", 1)[-1] for m in modules}
    missing = [t for t in cfg.lora.target_modules if t not in leaves and t not in modules]
    if missing:
        linear_like = sorted(x for x in leaves if x.endswith(("proj", "fc1", "fc2", "dense", "c_attn", "c_fc")))
        return Check(
            name,
            "fail",
            f"lora.target_modules {missing} are not modules of {arch} ({model_type}); it has "
            f"{', '.join(linear_like) or ', '.join(sorted(leaves)[:12])}",
            f"set lora.target_modules in {cfg.config_path} to names from that list",
        )
    if cfg.model.config_json and kind == "file":
        sized = cfg.resolve_path(cfg.model.config_json)
        sized = sized / "config.json" if sized.is_dir() else sized
        other = _config_json(sized)
        other_type = other.get("model_type")
        if other and other_type != model_type:
            return Check(
                name,
                "fail",
                f"model.config_json {sized} describes {other_type!r} but the base at {Path(value).parent} is "
                f"{model_type!r}: the memory estimate sizes another model",
                f"point model.config_json at {value}, or remove it (the base's own config.json is read)",
            )
    return Check(
        name, "ok", f"{arch} ({model_type}) has every lora.target_modules ({', '.join(cfg.lora.target_modules)})"
    )


# --------------------------------------------------------------------------- GPU memory


def gpu_memory_check(cuda: bool, free: int, total: int, est: MemoryEstimate | None, name: str = "") -> Check:
    """The dry run's predicted peak against the card (torch.cuda.mem_get_info: free now and total)."""
    if not cuda:
        return Check("gpu memory", NOT_RUN, "not run (no CUDA)")
    if est is None:
        return Check("gpu memory", NOT_RUN, "not run (no estimate to compare with: see the memory check)")
    peak = est.peak_bytes
    text = f"{name + ': ' if name else ''}{size(free)} free of {size(total)}; predicted training peak {size(peak)}"
    if peak > total:
        fix = est.advice or (
            f"set hardware.memory_gb to the card's {total / 1e9:.0f} and follow `mothbrain train --dry-run`'s advice"
        )
        return Check("gpu memory", "fail", f"{text}: does not fit", fix)
    if peak > free:
        return Check(
            "gpu memory",
            "warn",
            f"{text}: fits the card but not what is free now ({size(total - free)} in use)",
            "see what holds it (`nvidia-smi`) before the night run",
        )
    return Check("gpu memory", "ok", f"{text}: fits")


# --------------------------------------------------------------------------- disk


def _existing(p: Path) -> Path:
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _dir_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else 0


def _base_to_prepare(cfg: Config) -> bool:
    """model.base is a plain name not prepared yet: `models prepare` will write its weights into the state dir."""
    base = cfg.model.base
    if cfg.model.build_tiny or "/" in base or base.startswith((".", "~")):
        return False
    return not is_prepared(paths.models_dir(cfg) / base) and not cfg.resolve_path(base).exists()


def _dataset_bytes(cfg: Config) -> int:
    """A new data set's bytes: about the newest one's, or before the first, the material's times a measured factor."""
    latest = paths.datasets_dir(cfg) / "latest.json"
    try:
        return _dir_bytes(paths.datasets_dir(cfg) / json.loads(latest.read_text())["path"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    material = 0
    for s in cfg.sources:
        p = cfg.resolve_path(s.path)
        material += p.stat().st_size if p.is_file() else _dir_bytes(p)
    return int(material * NEW_MATERIAL_FACTOR)


def disk_needs(cfg: Config, est: MemoryEstimate) -> list[tuple[str, int]]:
    """(what, bytes) a night writes on the state dir's filesystem, from the dry run's "on disk" sizes."""
    adapter = est.disk["adapter"]
    optimizer = sum(c["bytes"] for c in est.components if c["key"] == "optimizer")
    keep = max(1, cfg.train.keep_checkpoints)
    needs = []
    if _base_to_prepare(cfg):
        nf4 = est.disk["base_quantized"] if cfg.model.quantization.load_in_4bit else 0
        what = "the base's weights, to prepare" + (" (+ NF4 copy)" if nf4 else "")
        needs.append((what, est.disk["base_checkpoint"] + nf4))
    # A trainer checkpoint is the adapter and its optimizer states; keep_checkpoints of them live at once.
    needs.append((f"{keep} checkpoint{'s' if keep > 1 else ''}", keep * (adapter + optimizer)))
    needs.append(("the adapter", adapter))
    needs.append(("a new data set", _dataset_bytes(cfg)))
    return needs


def disk_check(cfg: Config, est: MemoryEstimate | None, why_no_estimate: str = "") -> Check:
    state = paths.state_dir(cfg)
    try:
        free = shutil.disk_usage(_existing(state)).free
    except OSError as exc:
        return Check("disk", "fail", f"cannot read free space of {state}: {exc}", "fix the state dir check first")
    return disk_verdict(cfg, state, free, disk_needs(cfg, est) if est is not None else None, why_no_estimate)


def disk_verdict(cfg: Config, state: Path, free: int, needs: list[tuple[str, int]] | None, why: str = "") -> Check:
    if needs is None:
        return Check(
            "disk",
            "warn",
            f"{size(free)} free in {state}; the night's needs cannot be sized ({why or 'no estimate'})",
            "see `mothbrain train --dry-run`",
        )
    need = sum(b for _, b in needs)
    text = (
        f"{size(free)} free in {state}; a night needs ~{size(need)} ("
        + ", ".join(f"{what} {size(b)}" for what, b in needs)
        + ")"
    )
    where = f"the disk of {state} or move the state dir (MOTHBRAIN_HOME / state_dir in {cfg.config_path})"
    if free < need:
        return Check("disk", "fail", f"{text}: {size(need - free)} short", f"free {size(need - free)} on {where}")
    if free < 2 * need:
        return Check("disk", "warn", text + " — less than two nights' worth", f"free space soon on {where}")
    return Check("disk", "ok", text)


def size(n: int) -> str:
    if n >= GIB:
        return f"{n / GIB:.1f} GiB"
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 1024:.0f} KiB"

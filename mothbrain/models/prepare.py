"""`mothbrain models prepare`: a GGUF file or a local Hugging Face folder made into a ready local base, once.

    mothbrain models prepare ~/models/SmolLM2-135M-Instruct.Q4_1.gguf --name smollm2-135m
    mothbrain models prepare /data/hf/Qwen2.5-72B --name qwen2.5-72b       # then model.base: qwen2.5-72b

The base lands in <state>/data/models/<name>/ as a plain Hugging Face folder (safetensors weights, the
tokenizer and its chat template) with a manifest.json recording what made it: the source's path, size and
sha256, every written file's size and sha256, the architecture, parameter count and dtype. When the config
loads 4-bit, an NF4 copy (bitsandbytes' own 4-bit serialization) goes into nf4/ as well, so a night reads
the 4-bit weights (~40 GB for the 72B) instead of quantizing the full-precision ones (~145 GB) again.

Everything is written under a hidden temporary name beside the final folder, the manifest last, and the
folder is renamed into place: a kill mid-way leaves no folder that looks prepared (`is_prepared` looks for
the manifest), and the next prepare clears what it left.

A GGUF is de-quantized by transformers (weights, tokenizer and chat template from the file's metadata) and
saved in `dtype` (auto: bfloat16, what these models' own checkpoints ship in; its rounding is far below a
4- or 8-bit GGUF's quantization step). An HF folder's safetensors are copied byte for byte (hashed on the
way) unless another dtype is asked for; a folder with .bin weights only is loaded and saved as safetensors.
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mothbrain
from mothbrain.core.atomic import describe_write_error, free_space, replace_folder, write_json_atomically
from mothbrain.core.base_location import MANIFEST, NF4_DIR, is_prepared, not_prepared_message, prepared_path
from mothbrain.core.clock import now_iso
from mothbrain.core.paths import models_dir
from mothbrain.errors import MothError
from mothbrain.models.loading import compute_dtype, nf4_config, nf4_settings, quiet_libraries, resolve_device

FORMAT = 1  # manifest.json's layout version
CHUNK = 8 * 2**20  # bytes per read when copying and hashing
ALWAYS_HASH = 64 * 2**20  # files up to this size (config, tokenizer) are hashed by every quick check too
WEIGHT_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".gguf", ".onnx")  # not copied from HF
DTYPES = ("auto", "bfloat16", "float16", "float32")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_QUANT_TAG = re.compile(r"[.-](i?q\d[\w]*|f16|f32|bf16)$", re.IGNORECASE)  # '.Q4_1', '-q8_0', '.f16'


@dataclass
class Source:
    kind: str  # gguf | hf
    path: Path  # the .gguf file or the HF folder
    folder: Path  # where transformers reads from
    gguf_file: str = ""  # the file's name inside `folder` (gguf only)


@dataclass
class PrepareReport:
    name: str
    path: Path
    manifest: dict[str, Any]
    already: bool = False
    warnings: list[str] = field(default_factory=list)

    @property
    def title(self) -> str:
        state = "already prepared" if self.already else "prepared"
        return f"models prepare: {self.name} {state} at {self.path}"

    def rows(self) -> list[dict[str, Any]]:
        m = self.manifest
        nf4 = m.get("nf4") or {}
        figures = {
            "source": f"{m['source']['path']} ({m['source']['kind']}, {_gb(m['source']['size'])})",
            "architecture": m["architecture"],
            "parameters": m["parameters"],
            "dtype": m["dtype"],
            "weights": _gb(m["weights_bytes"]),
            "NF4 copy": f"{_gb(nf4['bytes'])} in {NF4_DIR}/" if nf4 else m.get("nf4_skipped") or "none",
            "model.base": self.name,
        }
        if not self.already:
            figures.update({f"{k} s": v for k, v in m["seconds"].items()})
        return [{"": k, "value": v} for k, v in figures.items()]

    def to_json(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "name": self.name,
            "path": str(self.path),
            "already": self.already,
            "manifest": self.manifest,
            "warnings": self.warnings,
        }


def prepare_base(
    cfg,
    source: str | os.PathLike,
    name: str | None = None,
    *,
    gguf_file: str | None = None,
    quantize: bool | None = None,
    dtype: str = "auto",
    force: bool = False,
    progress: Callable[[str], None] | None = None,
) -> PrepareReport:
    """Make `source` (a .gguf, a folder holding one, or an HF folder) the ready base <state>/data/models/<name>.

    `quantize` None: an NF4 copy when the config loads 4-bit. An already prepared base from the same
    unchanged source is left as it is; anything else under the name needs `force`."""
    say = progress or (lambda _msg: None)
    if dtype not in DTYPES:
        raise MothError(f"--dtype {dtype!r}: expected one of {', '.join(DTYPES)}")
    src = resolve_source(source, gguf_file)
    name = name or default_name(src)
    if not _NAME.match(name):
        raise MothError(f"--name {name!r}: use letters, digits, '.', '-' and '_' (it becomes a folder and model.base)")
    want_nf4 = cfg.model.quantization.load_in_4bit if quantize is None else quantize
    final = prepared_path(cfg, name)
    identity = _identity(src)
    if final.exists() and not is_prepared(final) and not force:
        raise MothError(
            f"{final} exists and is not a prepared base (no {MANIFEST}); pass --force or pick another --name"
        )
    if is_prepared(final):
        manifest = _read_manifest(final)
        why = _differs(manifest, identity, want_nf4)
        if not why:
            return PrepareReport(name, final, manifest, already=True)
        if not force:
            raise MothError(
                f"{final} already holds a prepared base ({why}); pass --force to replace it or pick another --name"
            )
    _clear_temps(final)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".tmp", dir=models_dir(cfg)))
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp's 0700 would keep a server run by another user (vLLM) out
    warnings: list[str] = []
    try:
        seconds: dict[str, float] = {}
        t0 = time.perf_counter()
        copied: dict[str, str] = {}  # name → sha256 of the files an HF copy hashed on the way
        if src.kind == "gguf":
            say(f"hashing {src.path}")
            source_sha = sha256_file(src.path)
            seconds["hash source"] = _since(t0)
            t0 = time.perf_counter()
            say(f"de-quantizing {src.path.name} into safetensors ({dtype if dtype != 'auto' else 'bfloat16'})")
            _write_from_gguf(src, tmp, "bfloat16" if dtype == "auto" else dtype)
            seconds["convert"] = _since(t0)
        else:
            say(f"copying {src.path}")
            source_sha, copied = _write_from_hf(cfg, src, tmp, dtype)
            seconds["copy" if dtype == "auto" else "convert"] = _since(t0)
        t0 = time.perf_counter()
        files = file_records(tmp, known=copied)  # before nf4/ exists: the full-precision files
        seconds["hash output"] = _since(t0)
        params, dtypes = safetensors_summary(tmp)
        config = json.loads((tmp / "config.json").read_text())
        nf4, skipped = None, None
        if want_nf4:
            t0 = time.perf_counter()
            say(f"quantizing to NF4 into {NF4_DIR}/")
            nf4, skipped = _write_nf4(cfg, tmp)
            seconds["nf4"] = _since(t0)
            if nf4 is not None:
                nf4_files = file_records(tmp / NF4_DIR, prefix=f"{NF4_DIR}/")
                nf4["bytes"] = sum(f["size"] for f in nf4_files.values())
                files.update(nf4_files)
            else:
                warnings.append(skipped)
        manifest = {
            "format": FORMAT,
            "name": name,
            "source": {**identity, "sha256": source_sha},
            "architecture": (config.get("architectures") or [config.get("model_type", "?")])[0],
            "model_type": config.get("model_type"),
            "parameters": params,
            "dtype": "+".join(sorted(dtypes)),
            "weights_bytes": sum(f["size"] for k, f in files.items() if k.endswith(".safetensors") and "/" not in k),
            "files": files,
            "nf4": nf4,
            "nf4_skipped": skipped,
            "created_at": now_iso(),
            "seconds": seconds,
            **_versions(),
        }
        write_json_atomically(tmp / MANIFEST, manifest)  # last: from here on the folder is a prepared base
        replace_folder(tmp, final)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise MothError(
            f"could not write {final}: {describe_write_error(exc, models_dir(cfg))}; nothing was prepared"
        ) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return PrepareReport(name, final, manifest, warnings=warnings)


# --------------------------------------------------------------------------- the source


def resolve_source(source: str | os.PathLike, gguf_file: str | None = None) -> Source:
    """What `source` is: a .gguf file, a folder with one .gguf (or `gguf_file`), or an HF folder."""
    path = Path(source).expanduser().resolve()
    if not path.exists():
        raise MothError(f"{source}: no such file or folder; give a .gguf file or a Hugging Face model folder")
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise MothError(f"{path}: not a .gguf file; give a .gguf file or a Hugging Face model folder")
        _check_gguf(path)
        return Source("gguf", path, path.parent, path.name)
    ggufs = sorted(p.name for p in path.glob("*.gguf") if p.is_file())
    if gguf_file:
        if gguf_file not in ggufs:
            found = f"it holds {', '.join(ggufs)}" if ggufs else "it holds no .gguf"
            raise MothError(f"--gguf-file {gguf_file!r} is not in {path} ({found})")
        _check_gguf(path / gguf_file)
        return Source("gguf", path / gguf_file, path, gguf_file)
    if (path / "config.json").is_file():
        if not _weight_files(path):
            raise MothError(f"{path}: config.json but no weights (*.safetensors or *.bin); is the download complete?")
        return Source("hf", path, path)
    if len(ggufs) == 1:
        _check_gguf(path / ggufs[0])
        return Source("gguf", path / ggufs[0], path, ggufs[0])
    if ggufs:
        raise MothError(f"{path} holds {len(ggufs)} .gguf files ({', '.join(ggufs)}); pick one with --gguf-file")
    raise MothError(f"{path}: neither a Hugging Face model folder (config.json + weights) nor a folder with a .gguf")


def _check_gguf(path: Path) -> None:
    """A readable GGUF header (before anything heavy is loaded): magic, version and tensor table."""
    try:
        from gguf import GGUFReader

        GGUFReader(path)
    except ImportError:
        raise MothError("reading a GGUF needs the `gguf` package: pip install gguf") from None
    except Exception as exc:  # noqa: BLE001 - a damaged file raises all sorts
        raise MothError(f"{path}: not a readable GGUF file ({_first_line(exc)})") from None


def _weight_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in (".safetensors", ".bin"))


def default_name(src: Source) -> str:
    """'SmolLM2-135M-Instruct.Q4_1.gguf' → 'smollm2-135m-instruct'; an HF cache snapshot
    (models--Qwen--Qwen2.5-72B/snapshots/<hash>) → 'qwen2.5-72b'; another folder → its name."""
    if src.kind == "gguf":
        stem = _QUANT_TAG.sub("", Path(src.gguf_file).stem)
    elif src.path.parent.name == "snapshots" and src.path.parent.parent.name.startswith("models--"):
        stem = src.path.parent.parent.name.split("--")[-1]
    else:
        stem = src.path.name
    return re.sub(r"[^a-z0-9._-]+", "-", stem.lower()).strip("-.") or "base"


def _identity(src: Source) -> dict[str, Any]:
    """The source as the manifest records it; path, size and mtime tell a rerun it has nothing to do."""
    files = [src.path] if src.kind == "gguf" else _hf_files(src.path)
    stats = [f.stat() for f in files]
    return {
        "path": str(src.path),
        "kind": src.kind,
        "gguf_file": src.gguf_file or None,
        "size": sum(s.st_size for s in stats),
        "mtime_ns": max(s.st_mtime_ns for s in stats),
        "sha256_of": "the file" if src.kind == "gguf" else "its files' `sha256sum` lines, sorted by name",
    }


def _differs(manifest: dict[str, Any], identity: dict[str, Any], want_nf4: bool) -> str:
    """Why an existing prepared base is not what this call would make ('' when it is)."""
    was = manifest.get("source") or {}
    if any(was.get(k) != identity[k] for k in ("path", "gguf_file", "size", "mtime_ns")):
        return f"from {was.get('path')}{'' if was.get('path') != identity['path'] else ', since changed'}"
    if want_nf4 and not manifest.get("nf4"):
        return "without an NF4 copy"
    return ""


def _hf_files(folder: Path) -> list[Path]:
    """An HF folder's top-level files worth copying: config, tokenizer, chat template, code, weights
    (safetensors when there are any; other weight formats never)."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    has_st = any(p.suffix == ".safetensors" for p in files)
    return [
        p
        for p in files
        if not p.name.endswith(WEIGHT_SUFFIXES)
        and not p.name.endswith(".bin.index.json")
        and (has_st or p.suffix != ".safetensors")
    ]


# --------------------------------------------------------------------------- writing


def _write_from_gguf(src: Source, out: Path, dtype: str) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    quiet_libraries()
    kwargs: dict[str, Any] = {"gguf_file": src.gguf_file, "dtype": getattr(torch, dtype)}
    try:  # transformers >= 5 may keep GGUF blocks packed (not serializable): ask for plain dense weights
        from transformers import GgufConfig

        kwargs["quantization_config"] = GgufConfig(dequantize=True)
    except ImportError:  # older transformers always de-quantize
        pass
    try:
        model = AutoModelForCausalLM.from_pretrained(str(src.folder), **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(str(src.folder), gguf_file=src.gguf_file)
    except Exception as exc:  # noqa: BLE001 - unsupported architectures and damaged files raise all sorts
        raise MothError(f"{src.path}: transformers cannot load this GGUF ({_first_line(exc)})") from None
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:  # de-quantized already; only the record of the GGUF 'quantization' is left
        quantizer.remove_quantization_config(model)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)  # tokenizer.json, tokenizer_config.json and the chat template
    del model
    gc.collect()


def _write_from_hf(cfg, src: Source, out: Path, dtype: str) -> tuple[str, dict[str, str]]:
    """Copy (hashing on the way) or convert an HF folder into `out`: (the source's sha256 as the manifest
    records it: of its files' sha256sum-style lines, sorted by name; {name: sha256} of the copied files)."""
    files = _hf_files(src.path)
    convert = dtype != "auto" or not any(p.suffix == ".safetensors" for p in files)
    weights = _weight_files(src.path) if convert else []
    copied = [p for p in files if not (convert and ".safetensors" in p.name)]
    need = sum(p.stat().st_size for p in copied + weights)
    if shutil.disk_usage(out).free < need:
        raise MothError(f"preparing {src.path} needs ~{_gb(need)}; {free_space(out)}: free disk space first")
    hashes = {p.name: copy_and_hash(p, out / p.name) for p in copied}
    source = dict(hashes)
    if convert:
        _convert_hf(cfg, src, out, dtype)
        source.update({p.name: sha256_file(p) for p in weights})
    listing = "".join(f"{h}  {n}\n" for n, h in sorted(source.items()))
    return hashlib.sha256(listing.encode()).hexdigest(), ({} if convert else hashes)


def _convert_hf(cfg, src: Source, out: Path, dtype: str) -> None:
    """.bin weights (or another dtype) loaded and saved as safetensors beside the copied tokenizer files."""
    import torch
    from transformers import AutoModelForCausalLM

    quiet_libraries()
    try:
        model = AutoModelForCausalLM.from_pretrained(
            str(src.folder),
            dtype="auto" if dtype == "auto" else getattr(torch, dtype),
            trust_remote_code=cfg.model.trust_remote_code,
        )
    except Exception as exc:  # noqa: BLE001
        raise MothError(f"{src.path}: transformers cannot load this model folder ({_first_line(exc)})") from None
    model.save_pretrained(out)
    del model
    gc.collect()


def _write_nf4(cfg, folder: Path) -> tuple[dict[str, Any] | None, str | None]:
    """An NF4 copy of the base in `folder`/nf4 with the config's 4-bit settings on its device:
    (its manifest record, None), or (None, why it was skipped)."""
    from transformers import AutoModelForCausalLM

    quiet_libraries()
    device = resolve_device(cfg)
    quant = nf4_config(cfg)
    try:
        model = AutoModelForCausalLM.from_pretrained(
            str(folder),
            quantization_config=quant,
            dtype=compute_dtype(cfg),
            device_map={"": 0 if device == "cuda" else "cpu"},
            trust_remote_code=cfg.model.trust_remote_code,
        )
        # Saved before any forward pass: on CPU, bitsandbytes repacks the weights for its kernel on the
        # first forward, and a save after that re-quantizes the constants (the copy would differ slightly).
        model.save_pretrained(folder / NF4_DIR)
    except OSError:
        raise  # a full disk is the caller's error, not a reason to skip
    except Exception as exc:  # noqa: BLE001 - whatever bitsandbytes cannot do here, the base itself is fine
        shutil.rmtree(folder / NF4_DIR, ignore_errors=True)
        return None, (
            f"no NF4 copy: bitsandbytes could not quantize and save 4-bit on {device} ({_first_line(exc)}); "
            "each run quantizes the base while it loads instead"
        )
    del model
    gc.collect()
    return {"settings": nf4_settings(quant), "device": device}, None


# --------------------------------------------------------------------------- files, hashes, checks


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def copy_and_hash(src: Path, dst: Path) -> str:
    """Copy `src` to `dst` and return its sha256, reading it once."""
    h = hashlib.sha256()
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        while chunk := fin.read(CHUNK):
            h.update(chunk)
            fout.write(chunk)
        fout.flush()
        os.fsync(fout.fileno())
    return h.hexdigest()


def file_records(folder: Path, prefix: str = "", known: dict[str, str] | None = None) -> dict[str, dict[str, Any]]:
    """{relative path: {size, sha256}} for every regular file under `folder` (the manifest's `files`);
    `known` sha256s (of files just copied and hashed on the way) are not read again."""
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.name != MANIFEST:
            rel = prefix + p.relative_to(folder).as_posix()
            if rel.startswith(f"{NF4_DIR}/") and not prefix:
                continue  # the NF4 copy is recorded on its own (file_records(folder / NF4_DIR, "nf4/"))
            out[rel] = {"size": p.stat().st_size, "sha256": (known or {}).get(rel) or sha256_file(p)}
    return out


def safetensors_header(path: Path) -> tuple[int, dict[str, Any]]:
    """(the header's length, the header) of a .safetensors file: tensor names, dtypes, shapes, byte offsets."""
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        if n <= 0 or n > path.stat().st_size - 8:
            raise ValueError(f"header length {n} does not fit the file")
        return n, json.loads(f.read(n))


def safetensors_summary(folder: Path) -> tuple[int, set[str]]:
    """(parameters, dtypes) of the top-level .safetensors weights, from their headers (no weights read).
    A tied weight is stored once, so the count is the model's own `num_parameters()`."""
    from math import prod

    params, dtypes = 0, set()
    for p in sorted(folder.glob("*.safetensors")):
        for key, t in safetensors_header(p)[1].items():
            if key != "__metadata__":
                params += prod(t["shape"])
                dtypes.add(_DTYPE_NAMES.get(t["dtype"], t["dtype"]))
    return params, dtypes


_DTYPE_NAMES = {"BF16": "bfloat16", "F16": "float16", "F32": "float32", "U8": "uint8", "I64": "int64"}


@dataclass
class Verification:
    path: Path
    manifest: dict[str, Any]
    problems: list[str]
    hashed: str  # what sha256 was checked of: 'every file' | 'files up to 64 MiB' | 'none'

    @property
    def title(self) -> str:
        verdict = "matches its manifest" if not self.problems else f"{len(self.problems)} problem(s)"
        return f"{self.path}: {verdict}"

    @property
    def warnings(self) -> list[str]:
        return self.problems

    def rows(self) -> list[dict[str, Any]]:
        files = self.manifest.get("files") or {}
        figures = {
            "architecture": self.manifest.get("architecture"),
            "parameters": self.manifest.get("parameters"),
            "files": len(files),
            "bytes": sum(f.get("size", 0) for f in files.values()),
            "sha256 checked": self.hashed,
            "source": (self.manifest.get("source") or {}).get("path"),
        }
        return [{"": k, "value": v} for k, v in figures.items()]

    def to_json(self) -> dict[str, Any]:
        return {"title": self.title, "path": str(self.path), "problems": self.problems, "hashed": self.hashed}


def verify_report(cfg, name: str) -> Verification:
    """`mothbrain models verify NAME`: the whole check, every file's sha256 included."""
    folder = prepared_path(cfg, name)
    if not is_prepared(folder):
        raise MothError(not_prepared_message(cfg, name))
    return verify_prepared(folder, hash_all_up_to=None)


def verify_prepared(folder: Path, hash_all_up_to: int | None = 2 * 2**30) -> Verification:
    """Does the prepared base at `folder` match its manifest? Every file's size; each safetensors
    header against its file's length (a truncated or damaged weight file); config.json's architecture;
    and sha256 of every file when all of them together are at most `hash_all_up_to` bytes, else of the
    small ones only (hashing a 145 GB base takes minutes: `mothbrain models verify` does it; None: always)."""
    folder = Path(folder)
    try:
        manifest = _read_manifest(folder)
        files = manifest["files"]
    except (MothError, KeyError, TypeError) as exc:
        return Verification(folder, {}, [f"{MANIFEST} unreadable ({exc})"], "none")
    problems: list[str] = []
    total = sum(f["size"] for f in files.values())
    hash_all = hash_all_up_to is None or total <= hash_all_up_to
    for rel, rec in files.items():
        p = folder / rel
        if not p.is_file():
            problems.append(f"{rel} is missing")
            continue
        size = p.stat().st_size
        if size != rec["size"]:
            problems.append(f"{rel} has {size:,} bytes, the manifest says {rec['size']:,}")
            continue
        if p.suffix == ".safetensors":
            try:
                head, header = safetensors_header(p)
                end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
                if 8 + head + end != size:
                    problems.append(f"{rel}: its header describes {8 + head + end:,} bytes, the file has {size:,}")
                    continue
            except (ValueError, KeyError, TypeError) as exc:
                problems.append(f"{rel}: unreadable safetensors header ({_first_line(exc)})")
                continue
        if (hash_all or size <= ALWAYS_HASH) and sha256_file(p) != rec["sha256"]:
            problems.append(f"{rel}: sha256 differs from the manifest (the file changed or is damaged)")
    try:
        config = json.loads((folder / "config.json").read_text())
        arch = (config.get("architectures") or [config.get("model_type")])[0]
        if not arch:
            problems.append("config.json names no architecture (architectures / model_type)")
    except (OSError, ValueError, AttributeError) as exc:
        problems.append(f"config.json unreadable ({_first_line(exc)})")
    return Verification(folder, manifest, problems, "every file" if hash_all else "files up to 64 MiB")


def _read_manifest(folder: Path) -> dict[str, Any]:
    try:
        data = json.loads((Path(folder) / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise MothError(f"{Path(folder) / MANIFEST}: unreadable ({_first_line(exc)})") from None
    if not isinstance(data, dict):
        raise MothError(f"{Path(folder) / MANIFEST}: not a JSON object")
    return data


def _clear_temps(final: Path) -> None:
    """Remove what an interrupted prepare of the same name left (`.<name>.*.tmp`); the caller holds the run lock."""
    for p in final.parent.glob(f".{final.name}.*.tmp"):
        shutil.rmtree(p, ignore_errors=True)


def _versions() -> dict[str, str]:
    import torch
    import transformers

    return {
        "mothbrain_version": mothbrain.__version__,
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
    }


def _since(t0: float) -> float:
    return round(time.perf_counter() - t0, 2)


def _gb(n: int) -> str:
    return f"{n / 1e9:.2f} GB"


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]

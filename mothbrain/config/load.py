"""Loading the configuration: defaults < YAML file < `--set a.b=c` overrides, then validation.

The loader rejects unknown keys and wrong types with one message naming the file, the dotted key and what
was expected. Relative paths in a config file are resolved against the file's own directory, so
a crontab line that runs from `/` reads the same files as a person in the repo.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import os
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml

from mothbrain.config.schema import DEFAULT_CHAINS, KNOWN_STAGES, ChainConfig, Config, yaml_key

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
DEFAULT_CONFIG = REPO_ROOT / "configs" / "demo.yaml"


def parse_pinned_time(value: Any) -> float | None:
    """`ingest.now` as seconds since the epoch: None when empty (the clock), else an ISO 8601 time
    ("2025-05-20", "2025-05-20T00:00:00Z"; no zone means UTC). Raises ValueError when unreadable."""
    if value in (None, ""):
        return None
    if isinstance(value, datetime.date) and not isinstance(value, datetime.datetime):  # YAML reads 2025-05-20 as a date
        value = datetime.datetime(value.year, value.month, value.day)
    if isinstance(value, str):
        text = value.strip()
        value = datetime.datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
    if not isinstance(value, datetime.datetime):
        raise ValueError(f"not a time: {value!r}")
    return (value if value.tzinfo else value.replace(tzinfo=datetime.timezone.utc)).timestamp()


class ConfigError(Exception):
    """A config problem a person must fix: the message names file, key and expectation."""


# --------------------------------------------------------------------------- loading


def _type_hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (list,):
        (inner,) = typing.get_args(tp)
        return f"a list of {_describe(inner)}"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(tp, str(tp))


def _build(tp: Any, value: Any, key: str, src: str) -> Any:
    """Turn a YAML value into `tp`, or raise ConfigError naming `src` and the dotted `key`."""
    where = f"{src}: {key}" if key else src
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected {_describe(tp)}, got {type(value).__name__} {value!r}")
        return _build_dataclass(tp, value, key, src)
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise ConfigError(f"{where}: expected {_describe(tp)}, got {value!r}")
        return value
    if origin is list:
        (inner,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected {_describe(tp)}, got {type(value).__name__} {value!r}")
        return [_build(inner, v, f"{key}[{i}]", src) for i, v in enumerate(value)]
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _build(args[0], value, key, src)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if isinstance(value, datetime.date):  # YAML reads an unquoted 2025-05-20T00:00:00Z as a time
            return value.isoformat()
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def _build_dataclass(cls: type, data: dict, prefix: str, src: str) -> Any:
    hints = _type_hints(cls)
    fields = {yaml_key(f): f for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
    for k in data:
        if k not in fields:
            where = f"{prefix}.{k}" if prefix else str(k)
            known = ", ".join(sorted(fields))
            raise ConfigError(f"{src}: unknown key '{where}' (known keys here: {known})")
    kwargs = {}
    for ykey, f in fields.items():
        dotted = f"{prefix}.{ykey}" if prefix else ykey
        tp = hints[f.name]
        if ykey in data:
            kwargs[f.name] = _build(tp, data[ykey], dotted, src)
        elif dataclasses.is_dataclass(tp):
            kwargs[f.name] = _build(tp, {}, dotted, src)
    obj = cls(**kwargs)
    return obj


def _apply_override(data: dict, override: str) -> None:
    if "=" not in override:
        raise ConfigError(f"--set {override!r}: expected key.sub=value")
    dotted, raw = override.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    if isinstance(value, str):
        try:  # YAML 1.1 reads "1e-4" as a string; on the command line it means a number
            value = float(value) if any(c in value.lower() for c in ".e") else int(value)
        except ValueError:
            pass
    parts = dotted.strip().split(".")
    node = data
    for part in parts[:-1]:
        nxt = node.get(part)
        if nxt is None:
            nxt = node[part] = {}
        if not isinstance(nxt, dict):
            raise ConfigError(f"--set {dotted}: '{part}' is not a section")
        node = nxt
    node[parts[-1]] = value


# (dotted key, lowest, highest, lowest allowed?, highest allowed?): numbers outside their range are refused when
# the config loads, so a config that cannot train (or serve) never starts a run or a ledger version.
INF = float("inf")
RANGES: tuple[tuple[str, float, float, bool, bool], ...] = (
    ("lora.alpha", 0, INF, False, True),
    ("lora.dropout", 0, 1, True, False),
    ("ingest.since_days", 0, INF, False, True),
    ("ingest.max_file_mb", 0, INF, False, True),
    ("ingest.max_file_seconds", 0, INF, False, True),
    ("ingest.max_json_depth", 1, 800, True, True),  # 800: below the ~900 levels CPython's JSON decoder can read
    ("preprocess.context_turns", 0, INF, True, True),
    ("preprocess.max_chars", 1, INF, True, True),
    ("preprocess.dedup_threshold", 0, 1, False, True),
    ("preprocess.association_pairs", 0, INF, True, True),
    ("preprocess.association_min_docs", 1, INF, True, True),
    ("preprocess.workers", 0, INF, True, True),
    ("preprocess.filters.max_code_block_lines", 0, INF, True, True),
    ("preprocess.filters.min_chars", 0, INF, True, True),
    ("train.num_epochs", 0, INF, False, True),
    ("train.learning_rate", 0, INF, False, True),
    ("train.warmup_ratio", 0, INF, True, True),
    ("train.weight_decay", 0, INF, True, True),
    ("train.max_grad_norm", 0, INF, True, True),
    ("train.logging_steps", 1, INF, True, True),
    ("train.keep_checkpoints", 1, INF, True, True),
    ("neighbour.nice", 0, 19, True, True),
    ("neighbour.yield.interval_s", 0, INF, False, True),
    ("neighbour.yield.cpu_load_threshold", 0, INF, True, True),
    ("neighbour.yield.quiet_s", 0, INF, True, True),
    ("hardware.memory_gb", 0, INF, False, True),
    ("hardware.overhead_gb", 0, INF, True, True),
    ("dream.num_prompts", 1, INF, True, True),
    ("dream.max_new_tokens", 1, INF, True, True),
    ("dream.temperature", 0, INF, False, True),
    ("dream.top_p", 0, 1, False, True),
    ("dream.batch_size", 1, INF, True, True),
    ("eval.max_heldout_samples", 1, INF, True, True),
    ("eval.association_pairs", 0, INF, True, True),
    ("eval.distractors", 1, INF, True, True),
    ("eval.surprise_prompts", 0, INF, True, True),
    ("eval.surprise_distance", 0, 2, True, True),
    ("eval.relevance_min", -1, 1, True, True),
    ("promote.gate.min_improvement_vs_base_pct", -100, 100, True, False),
    ("promote.gate.min_association_lift", 0, INF, True, True),
    ("promote.gate.max_regression_vs_current_pct", 0, INF, True, True),
    ("promote.gate.max_data_ppl_ratio_vs_general", 0, INF, False, True),
    ("promote.gate.min_data_word_order_nats", 0, INF, True, True),
    ("schedule.nightly.wait_for_lock_s", 0, INF, True, True),
    ("schedule.weekly.wait_for_lock_s", 0, INF, True, True),
    ("schedule.wiki.wait_for_lock_s", 0, INF, True, True),
    ("wiki.crosslink_threshold", 0, 1, True, True),
    ("wiki.max_crosslinks_per_page", 0, INF, True, True),
    ("wiki.split_min_sections", 2, INF, True, True),
    ("wiki.split_min_gap", 0, 2, False, True),
    ("wiki.split_min_group", 1, INF, True, True),
    ("wiki.split_single_gap", 0, 2, False, True),
    ("wiki.frame_min_similarity", -1, 1, True, True),
    ("wiki.max_frames", 0, INF, True, True),
    ("wiki.staleness_days", 0, INF, False, True),
    ("wiki.reviewer_timeout_s", 0, INF, False, True),
    ("wiki.reviewer_max_retries", 0, INF, True, True),
    ("wiki.reviews_per_hour", 0, INF, True, True),
    ("wiki.max_reviews", 0, INF, True, True),
    ("wiki.local_accept_score", 0, 1, True, True),
    ("briefing.smtp_port", 1, 65535, True, True),
    ("serve.port", 1, 65535, True, True),
    ("serve.max_request_bytes", 1, INF, True, True),
    ("serve.max_tokens", 1, INF, True, True),
    ("serve.max_concurrent", 1, INF, True, True),
    ("serve.max_queue", 0, INF, True, True),
    ("serve.header_timeout_s", 0, INF, True, True),
    ("serve.max_connections", 1, INF, True, True),
    ("coordinator.system1_timeout_s", 0, INF, False, True),
    ("coordinator.system2_timeout_s", 0, INF, False, True),
    ("coordinator.wiki_timeout_s", 0, INF, False, True),
    ("coordinator.synthesis_timeout_s", 0, INF, False, True),
    ("coordinator.system1_max_tokens", 1, INF, True, True),
    ("coordinator.system1_temperature", 0, INF, True, True),
    ("coordinator.wiki_top_k", 0, INF, True, True),
)


def _get(cfg: Config, dotted: str) -> Any:
    node: Any = cfg
    for part in dotted.split("."):
        node = getattr(node, "yield_" if part == "yield" else part)
    return node


def _range_text(lo: float, hi: float, lo_ok: bool, hi_ok: bool) -> str:
    low = f"{'>=' if lo_ok else '>'} {lo:g}"
    if hi == INF:
        return f"a number {low}"
    if lo_ok and hi_ok:
        return f"a number from {lo:g} to {hi:g}"
    return f"a number {low} and {'<=' if hi_ok else '<'} {hi:g}"


NEGATIVE_OK = {"train.max_steps"}  # -1: run train.num_epochs instead (checked below)


def _numbers(obj: Any, prefix: str = "") -> typing.Iterator[tuple[str, int | float]]:
    """(dotted key, value) of every number in the config, lists of sections included."""
    for f in dataclasses.fields(obj):
        if f.metadata.get("internal"):
            continue
        v, key = getattr(obj, f.name), f"{prefix}{yaml_key(f)}"
        if dataclasses.is_dataclass(v):
            yield from _numbers(v, key + ".")
        elif isinstance(v, list):
            for i, item in enumerate(v):
                if dataclasses.is_dataclass(item):
                    yield from _numbers(item, f"{key}[{i}].")
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            yield key, v


def _check_ranges(cfg: Config, src: str) -> None:
    for key, v in _numbers(cfg):  # every number first: no .inf or .nan reaches a run
        if isinstance(v, float) and not math.isfinite(v):
            raise ConfigError(f"{src}: {key}: expected a finite number, got {v!r}")
    for key, lo, hi, lo_ok, hi_ok in RANGES:
        v = _get(cfg, key)
        inside = (v >= lo if lo_ok else v > lo) and (v <= hi if hi_ok else v < hi)
        if not inside or v != v:  # v != v: NaN
            raise ConfigError(f"{src}: {key}: expected {_range_text(lo, hi, lo_ok, hi_ok)}, got {v!r}")
    if cfg.train.max_steps < 1 and cfg.train.max_steps != -1:
        raise ConfigError(
            f"{src}: train.max_steps: expected a number of steps >= 1, or -1 for train.num_epochs passes "
            f"over the data, got {cfg.train.max_steps}"
        )


REPORT_TO = ("tensorboard",)  # train.report_to: the Trainer integrations we support


def _validate(cfg: Config, src: str) -> None:
    """Rules that span fields (like trl's __post_init__ checks), and every number's allowed range."""
    _check_ranges(cfg, src)
    names = [s.name for s in cfg.sources]
    for i, s in enumerate(cfg.sources):
        if not s.name:
            raise ConfigError(f"{src}: sources[{i}].name: every source needs a name")
        if not s.path:
            raise ConfigError(f"{src}: sources[{i}].path: every source needs a path")
        if s.weight < 0:
            raise ConfigError(f"{src}: sources[{i}].weight: expected a number >= 0, got {s.weight}")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"{src}: sources: names must be unique, repeated: {', '.join(dupes)}")
    if cfg.lora.r < 1:
        raise ConfigError(f"{src}: lora.r: expected an integer >= 1, got {cfg.lora.r}")
    try:
        parse_pinned_time(cfg.ingest.now)
    except (TypeError, ValueError):
        raise ConfigError(
            f"{src}: ingest.now: expected an ISO 8601 time such as 2025-05-20T00:00:00Z, or empty for the clock, "
            f"got {cfg.ingest.now!r}"
        ) from None
    if not 0.0 <= cfg.preprocess.heldout_fraction < 1.0:
        raise ConfigError(f"{src}: preprocess.heldout_fraction: expected 0 <= x < 1")
    if cfg.preprocess.dedup_window < 0:
        raise ConfigError(
            f"{src}: preprocess.dedup_window: expected 0 (no limit) or a number of samples, "
            f"got {cfg.preprocess.dedup_window}"
        )
    if not 0.0 <= cfg.train.replay_share < 1.0:
        raise ConfigError(f"{src}: train.replay_share: expected 0 <= x < 1")
    unknown = [r for r in cfg.train.report_to if r not in REPORT_TO]
    if unknown:
        raise ConfigError(
            f"{src}: train.report_to: unknown {', '.join(map(repr, unknown))} (known: {', '.join(REPORT_TO)}; "
            "empty = off)"
        )
    for name in ("micro_batch_size", "gradient_accumulation", "max_seq_len", "save_steps"):
        if getattr(cfg.train, name) < 1:
            raise ConfigError(f"{src}: train.{name}: expected an integer >= 1")
    for chain_name in ("nightly", "weekly", "wiki"):
        chain: ChainConfig = getattr(cfg.schedule, chain_name)
        if not chain.stages and chain_name != "wiki":  # the wiki chain runs only where it is asked for
            chain.stages = list(DEFAULT_CHAINS[chain_name].stages)
        if not chain.cron:
            chain.cron = DEFAULT_CHAINS[chain_name].cron
        for st in chain.stages:
            if st not in KNOWN_STAGES:
                raise ConfigError(
                    f"{src}: schedule.{chain_name}.stages: unknown stage {st!r} (known: {', '.join(KNOWN_STAGES)})"
                )
        if len(chain.cron.split()) != 5:
            raise ConfigError(f"{src}: schedule.{chain_name}.cron: expected 5 crontab fields, got {chain.cron!r}")
    for key, v in _numbers(cfg):  # last, after the rules with their own words: no negative count anywhere
        if isinstance(v, int) and v < 0 and key not in NEGATIVE_OK:
            raise ConfigError(f"{src}: {key}: expected a number >= 0, got {v!r}")


def load_config(path: str | os.PathLike | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Load `path` (or $MOTHBRAIN_CONFIG, or the bundled demo config), apply overrides, validate."""
    chosen = Path(path or os.environ.get("MOTHBRAIN_CONFIG") or DEFAULT_CONFIG).expanduser()
    src = str(chosen)
    if not chosen.is_file():
        raise ConfigError(f"{src}: config file not found (pass --config PATH or set MOTHBRAIN_CONFIG)")
    try:
        data = yaml.safe_load(chosen.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        mark = getattr(exc, "problem_mark", None)  # where the parser stopped: 0-based line and column
        where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        what = getattr(exc, "problem", None) or (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConfigError(f"{src}{where}: not valid YAML ({what})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{src}: expected a mapping at the top level, got {type(data).__name__}")
    for ov in overrides:
        _apply_override(data, ov)
    src_desc = src + (" (with --set overrides)" if overrides else "")
    cfg = _build_dataclass(Config, data, "", src_desc)
    cfg.config_path = str(chosen.resolve())
    _validate(cfg, src_desc)
    return cfg

"""`mothbrain ask`: System 2, System 1 and the wiki at once, then System 2 weighs what it heard.

    mothbrain ask "what should we do about the figs?"
    mothbrain ask --json "..." | jq .answer
    mothbrain ask "..." --set coordinator.system2_url=http://127.0.0.1:8000/v1 --set coordinator.system2_model=qwen

Three layers start together, each with its own timeout (coordinator.*_timeout_s):
  system2  the coordinating model's own draft, from any OpenAI-compatible endpoint (system2_url)
  system1  the adapter: `mothbrain serve` at system1_url, or loaded in this process when it is empty
  wiki     the nearest passages of the ingested wiki pages (mothbrain.ask.retrieval)
Then the synthesis prompt (configs/synthesis_prompt.txt, editable) hands System 1's words to System 2
as what its lizard brain said: a provocation to accept, refine or discard. A layer that is slow or
dead is left out and named; when System 2 itself is down the answer is System 1 plus the wiki,
marked degraded. Every exchange is appended to <data>/exchanges/<date>.jsonl (System 1's and
System 2's answers to the same question, so the surprise rate can be computed on real use).
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mothbrain.ask.retrieval import search
from mothbrain.config import REPO_ROOT, Config
from mothbrain.core import paths
from mothbrain.core.api import ADAPTER_HEADER, MODEL_ID, load_token
from mothbrain.core.openai_client import chat
from mothbrain.data.format import voice_name
from mothbrain.errors import MothError
from mothbrain.models import generation  # noqa: F401
from mothbrain.models.generation import local_engine, render_chat, trim_at_stop

log = logging.getLogger(__name__)

DEFAULT_TEMPLATE = REPO_ROOT / "configs" / "synthesis_prompt.txt"
REQUIRED_PLACEHOLDERS = ("{question}", "{system1}")
LAYERS = ("system2", "system1", "wiki")


@dataclass
class Layer:
    name: str
    status: str = "skipped"  # ok | error | timeout | skipped
    text: str = ""
    seconds: float = 0.0
    error: str = ""
    detail: dict[str, Any] = field(default_factory=dict)  # adapter version, passages, model
    source: str = ""  # who produced it, for people: "System 1 (adapter v0003 on tiny-qwen2)"


@dataclass
class AskResult:
    question: str
    answer: str
    degraded: bool
    failed: dict[str, str]  # layer → why it is missing from the answer
    layers: dict[str, Layer]
    synthesis: Layer
    seconds: float
    exchange_id: str
    log_path: str = ""
    warnings: list[str] = field(default_factory=list)
    title: str = "ask"
    answer_by: str = ""  # which layers the answer is made of, named as in `source`

    def rows(self) -> list[dict[str, Any]]:
        return [
            {
                "layer": L.source or L.name,
                "status": L.status,
                "seconds": round(L.seconds, 2),
                "note": L.error,
            }
            for L in [*self.layers.values(), self.synthesis]
        ]

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.exchange_id,
            "question": self.question,
            "answer": self.answer,
            "answer_by": self.answer_by,
            "degraded": self.degraded,
            "failed": self.failed,
            "layers": {k: asdict(v) for k, v in self.layers.items()},
            "synthesis": asdict(self.synthesis),
            "seconds": round(self.seconds, 3),
            "log": self.log_path,
            "warnings": self.warnings,
        }


# --------------------------------------------------------------------------- config and template


def check_config(cfg: Config) -> None:
    c = cfg.coordinator
    for name in ("system1_timeout_s", "system2_timeout_s", "wiki_timeout_s", "synthesis_timeout_s"):
        if getattr(c, name) <= 0:
            raise MothError(f"coordinator.{name} must be > 0 seconds, got {getattr(c, name)}")
    for name in ("system1_url", "system2_url"):
        url = getattr(c, name)
        if url and not url.startswith(("http://", "https://")):
            raise MothError(
                f"coordinator.{name} {url!r} must start with http:// or https:// (e.g. http://127.0.0.1:8377/v1)"
            )
    if c.system2_url and not c.system2_model:
        raise MothError("coordinator.system2_model is empty; name the model served at coordinator.system2_url")


def load_template(cfg: Config) -> str:
    """The synthesis template, without its leading '#' comment lines."""
    path = (
        cfg.resolve_path(cfg.coordinator.synthesis_template) if cfg.coordinator.synthesis_template else DEFAULT_TEMPLATE
    )
    try:
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    except (OSError, UnicodeDecodeError) as exc:
        raise MothError(
            f"coordinator.synthesis_template {path} cannot be read ({getattr(exc, 'strerror', None) or exc}); "
            f"fix the path or leave it empty for {DEFAULT_TEMPLATE}"
        ) from None
    while lines and lines[0].startswith("#"):
        lines.pop(0)
    text = "".join(lines).strip()
    missing = [p for p in REQUIRED_PLACEHOLDERS if p not in text]
    if missing:
        raise MothError(
            f"synthesis template {path} lacks {', '.join(missing)}; add them where the question and "
            "System 1's words belong"
        )
    return text


def fill_template(template: str, values: dict[str, str]) -> str:
    """Plain replacement, not str.format: questions and notes may contain braces."""
    out = template
    for key, value in values.items():
        out = out.replace("{" + key + "}", value)
    return out


# --------------------------------------------------------------------------- talking to endpoints


def ask_system1(cfg: Config, question: str) -> tuple[str, dict[str, Any]]:
    c = cfg.coordinator
    messages = [{"role": "user", "content": question}]
    if c.system1_url:
        try:
            token = load_token(cfg)
        except MothError as exc:  # say it in ask's terms: it is ask that needs the served System 1's token
            raise MothError(
                f"ask: coordinator.system1_url ({c.system1_url}) needs the token that `mothbrain serve` uses: "
                f"{str(exc).split(': ', 1)[-1].replace(' before `mothbrain serve`', '')} — or empty "
                "coordinator.system1_url to load System 1 in-process"
            ) from None
        text, headers = chat(
            c.system1_url,
            MODEL_ID,
            messages,
            api_key=token,
            timeout=c.system1_timeout_s,
            max_tokens=c.system1_max_tokens,
            temperature=c.system1_temperature,
        )
        return text.strip(), {"adapter": headers.get(ADAPTER_HEADER.lower(), "?"), "via": c.system1_url}

    engine = local_engine(cfg)
    engine.reload_if_changed()
    prompt, stops = render_chat(messages, voice_name(cfg))
    raw = engine.generate([prompt], c.system1_max_tokens, c.system1_temperature, 0.95, stops)[0]
    detail = {"adapter": engine.version or "base", "via": "in-process"}
    if engine.last_error and not engine.version:  # a promoted adapter that did not load: say so, not "none"
        detail["why_base"] = engine.last_error
    return trim_at_stop(raw, stops)[0].strip(), detail


def _system2_key(cfg: Config) -> str:
    env = cfg.coordinator.system2_api_key_env
    return os.environ.get(env, "") if env else ""


def ask_system2(cfg: Config, prompt: str, timeout: float) -> tuple[str, dict[str, Any]]:
    c = cfg.coordinator
    if not c.system2_url:
        raise ConnectionError("not configured (set coordinator.system2_url and coordinator.system2_model)")
    text, _ = chat(
        c.system2_url,
        c.system2_model,
        [{"role": "user", "content": prompt}],
        api_key=_system2_key(cfg),
        timeout=timeout,
    )
    return text.strip(), {"model": c.system2_model}


def ask_wiki(cfg: Config, question: str) -> tuple[str, dict[str, Any]]:

    hits = search(cfg, question, cfg.coordinator.wiki_top_k)
    text = "\n".join(f"- [{h.title}] {h.text}" for h in hits)
    return text, {"passages": [asdict(h) for h in hits]}


# --------------------------------------------------------------------------- naming the layers


def system1_source(cfg: Config, detail: dict[str, Any]) -> str:
    """System 1 as a person should read it: which adapter on which base, or the base alone and why."""
    base = cfg.model.base
    adapter = detail.get("adapter")
    where = f" at {cfg.coordinator.system1_url}" if cfg.coordinator.system1_url else ""
    if adapter and adapter not in ("base", "?"):
        return f"System 1 (adapter {adapter} on {base}{where})"
    if adapter == "base":
        why = detail.get("why_base") or ("the server loads no adapter" if where else "no promoted adapter")
        return f"System 1 (base only: {why}; {base}{where})"
    return f"System 1 ({base}{where or ', in-process'})"  # it did not answer: what was asked


def system2_source(cfg: Config) -> str:
    c = cfg.coordinator
    return f"System 2 ({c.system2_model} at {c.system2_url})" if c.system2_url else "System 2: not configured"


def _name_layers(cfg: Config, layers: dict[str, Layer], synthesis: Layer) -> None:
    layers["system1"].source = system1_source(cfg, layers["system1"].detail)
    layers["system2"].source = system2_source(cfg)
    passages = layers["wiki"].detail.get("passages")
    layers["wiki"].source = f"wiki ({len(passages)} passages)" if passages is not None else "wiki"
    synthesis.source = "synthesis by " + system2_source(cfg) if cfg.coordinator.system2_url else "synthesis: skipped"


def _answer_by(layers: dict[str, Layer], synthesis: Layer) -> str:
    s1, s2, wiki = layers["system1"], layers["system2"], layers["wiki"]
    if synthesis.status == "ok":
        heard = [L.source for L in (s1, wiki) if L.status == "ok" and L.text]
        return f"{s2.source}, weighing " + (" and ".join(heard) if heard else "nothing else")
    if s2.status == "ok":
        return f"{s2.source}, its own draft (the synthesis {synthesis.status})"
    made_of = [L.source for L in (s1, wiki) if L.status == "ok" and L.text]
    return " and ".join(made_of) if made_of else "no layer"


# --------------------------------------------------------------------------- running layers with timeouts


class _Running:
    """A layer in a daemon thread: a layer past its timeout is abandoned, never waited for."""

    def __init__(self, name: str, fn: Callable[[], tuple[str, dict[str, Any]]], timeout: float):
        self.layer = Layer(name)
        self.timeout = timeout
        self.done = threading.Event()
        self.t0 = time.monotonic()
        threading.Thread(target=self._run, args=(fn,), name=f"ask-{name}", daemon=True).start()

    def _run(self, fn) -> None:
        try:
            text, detail = fn()
            self.layer.text, self.layer.detail, self.layer.status = text, detail, "ok"
        except Exception as exc:  # noqa: BLE001 - any failure degrades the answer, it does not end it
            self.layer.status = "timeout" if isinstance(exc, TimeoutError) else "error"
            self.layer.error = (str(exc).splitlines() or [type(exc).__name__])[0][:300]
        finally:
            self.layer.seconds = time.monotonic() - self.t0
            self.done.set()

    def result(self) -> Layer:
        if not self.done.wait(max(0.0, self.t0 + self.timeout - time.monotonic())):
            return Layer(
                self.layer.name,
                "timeout",
                seconds=self.timeout,
                error=f"no answer within {self.timeout:g}s (coordinator.{self.layer.name}_timeout_s)",
            )
        return self.layer


# --------------------------------------------------------------------------- ask


def _import_once() -> None:
    """Import what the layers use here, first: transformers' lazy imports are not thread-safe, and two
    layers importing at once fail with "cannot import name 'AutoModel'"."""
    import openai  # noqa: F401
    from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer  # noqa: F401


def ask(cfg: Config, question: str, *, log_exchange: bool = True) -> AskResult:
    """Ask all three layers, synthesise through System 2, log the exchange; never hangs past the timeouts."""
    question = question.strip()
    if not question:
        raise MothError("the question is empty")
    check_config(cfg)
    template = load_template(cfg)
    _import_once()
    c = cfg.coordinator
    t0 = time.monotonic()
    running = {
        "system2": _Running("system2", lambda: ask_system2(cfg, question, c.system2_timeout_s), c.system2_timeout_s),
        "system1": _Running("system1", lambda: ask_system1(cfg, question), c.system1_timeout_s),
        "wiki": _Running("wiki", lambda: ask_wiki(cfg, question), c.wiki_timeout_s),
    }
    layers = {name: r.result() for name, r in running.items()}
    failed = {name: f"{L.status}: {L.error}" for name, L in layers.items() if L.status != "ok"}

    s1, wiki, s2 = layers["system1"], layers["wiki"], layers["system2"]
    synthesis = Layer("synthesis")
    if s2.status == "ok":
        prompt = fill_template(
            template,
            {
                "question": question,
                "system1": s1.text
                if s1.status == "ok" and s1.text
                else f"(nothing this time: {s1.status} {s1.error})".strip(),
                "wiki": wiki.text if wiki.status == "ok" and wiki.text else "(no wiki notes found)",
                "system2": s2.text,
            },
        )
        synthesis = _Running(
            "synthesis", lambda: ask_system2(cfg, prompt, c.synthesis_timeout_s), c.synthesis_timeout_s
        ).result()
        synthesis.detail["prompt"] = prompt
        if synthesis.status != "ok":
            failed["synthesis"] = f"{synthesis.status}: {synthesis.error}"
    else:
        synthesis.error = "System 2 unavailable"
        failed["synthesis"] = "skipped: System 2 unavailable"

    _name_layers(cfg, layers, synthesis)
    if synthesis.status == "ok":
        answer = synthesis.text
    elif s2.status == "ok":
        answer = s2.text  # System 2's own draft, without the lizard brain's provocation
    else:
        answer = _fallback_answer(s1, wiki)
    result = AskResult(
        answer_by=_answer_by(layers, synthesis),
        question=question,
        answer=answer,
        degraded=bool(failed),
        failed=failed,
        layers=layers,
        synthesis=synthesis,
        seconds=time.monotonic() - t0,
        exchange_id=uuid.uuid4().hex[:12],
    )
    if log_exchange:
        try:
            result.log_path = str(log_exchange_record(cfg, result))
        except OSError as exc:
            result.warnings.append(f"the exchange was not logged ({exc.strerror or exc}); free disk space")
    return result


def _fallback_answer(s1: Layer, wiki: Layer) -> str:
    parts = []
    if s1.status == "ok" and s1.text:
        parts.append(f"{s1.source} said (intuition, not fact):\n{s1.text}")
    if wiki.status == "ok" and wiki.text:
        parts.append(f"From the wiki:\n{wiki.text}")
    return "\n\n".join(parts)


def log_exchange_record(cfg: Config, result: AskResult) -> Path:
    """Append one JSON line to <data>/exchanges/<UTC date>.jsonl (locked: several `ask`s may run at once)."""
    from filelock import FileLock

    folder = paths.data_dir(cfg) / "exchanges"
    folder.mkdir(parents=True, exist_ok=True)
    now = _dt.datetime.now(_dt.timezone.utc)
    path = folder / f"{now:%Y-%m-%d}.jsonl"
    record = {
        "at": now.isoformat(timespec="seconds"),
        **result.to_json(),
        "system2_model": cfg.coordinator.system2_model,
        "system1_adapter": result.layers["system1"].detail.get("adapter"),
    }
    record.pop("log", None)
    line = json.dumps(record, ensure_ascii=False, default=str) + "\n"
    with FileLock(str(path) + ".lock", timeout=30):
        with open(path, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
    return path

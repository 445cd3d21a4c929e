"""Text generation, shared by serve, ask, dream, eval and the wiki-worker: the engine that holds the base and
swaps adapters, chat rendering, stop handling and cancellation."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

from mothbrain.config import Config
from mothbrain.core import paths
from mothbrain.core.api import MODEL_ID
from mothbrain.core.current import AdapterPointer, adapter_is_complete, current_adapter
from mothbrain.data.format import render_prompt, speaker_name, stop_strings
from mothbrain.errors import MothError
from mothbrain.models.loading import MODEL_BUILD_LOCK, load_base_model, load_tokenizer, resolve_device

log = logging.getLogger(__name__)


class Engine(Protocol):
    """What the HTTP layer needs; tests inject a fake with the same shape."""

    model_id: str
    version: str | None  # the adapter in use, None = base
    max_parallel: int | None  # generations the hardware runs at once (None = no limit of its own)

    def generate(
        self,
        prompts: list[str],
        max_tokens: int,
        temperature: float,
        top_p: float,
        stop: list[str],
        cancel: threading.Event | None = None,
    ) -> list[str]: ...

    def stream(
        self,
        prompt: str,
        max_tokens: int,
        temperature: float,
        top_p: float,
        stop: list[str],
        cancel: threading.Event | None = None,
    ) -> Iterator[str]: ...

    def reload_if_changed(self) -> bool: ...


class _RWLock:
    """Many generations share the model; an adapter swap waits for them and holds new ones back."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0

    @contextlib.contextmanager
    def read(self):
        with self._cond:
            while self._writer or self._writers_waiting:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                self._cond.notify_all()

    @contextlib.contextmanager
    def write(self):
        with self._cond:
            self._writers_waiting += 1
            while self._writer or self._readers:
                self._cond.wait()
            self._writers_waiting -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


class TransformersEngine:
    """The base model (4-bit when configured) loaded once; adapters swapped in and out of it."""

    model_id = MODEL_ID

    def __init__(self, cfg: Config):

        self.cfg = cfg
        self.device = resolve_device(cfg)
        # Two generations on the same CPU cores only slow each other down.
        self.max_parallel = 1 if self.device == "cpu" else None
        self.tokenizer = load_tokenizer(cfg)
        self.model = load_base_model(cfg)
        self.context = int(getattr(self.model.config, "max_position_embeddings", 0) or 4096)
        self.version: str | None = None
        self.adapter_path: Path | None = None
        self.last_error = ""
        self._peft = False
        self._active: str | None = None  # peft's name of the loaded adapter
        self._loads = 0
        self._seen: AdapterPointer | None = None  # the pointer last acted on (loaded or refused)
        self._swap = _RWLock()
        self._reload = threading.Lock()
        self.reload_if_changed()

    # ------------------------------------------------------------------ adapters

    def reload_if_changed(self) -> bool:
        """Follow the promoted pointer; True when a different adapter (or the base) now serves."""
        try:
            pointer = current_adapter(self.cfg)
        except MothError as exc:  # e.g. a corrupt ledger: keep serving what we have
            self.last_error = str(exc)
            return False
        if pointer == self._seen:
            return False
        with self._reload:
            if pointer == self._seen:
                return False  # another request loaded it while we waited
            self._seen = pointer  # a bad adapter is tried once, not on every request
            try:
                self._switch(pointer)
            except Exception as exc:  # noqa: BLE001 - any failure keeps the old adapter serving
                first = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
                self.last_error = (
                    f"adapter {pointer.version} at {pointer.path} was not loaded ({first}); "
                    f"still serving {self.version or 'the base model'}"
                )
                log.warning(self.last_error)
                return False
            self.last_error = ""
            log.warning("now serving %s", f"adapter {self.version}" if self.version else "the base model")
            return True

    def _switch(self, pointer: AdapterPointer) -> None:

        if pointer.path is None:
            with self._swap.write():
                if self._peft:
                    self.model.base_model.disable_adapter_layers()
                self.version, self.adapter_path = None, None
            return
        if not adapter_is_complete(pointer.path):
            raise MothError("incomplete: no adapter_config.json or weights")
        self._loads += 1
        name = f"adapter{self._loads}"  # unique, so re-promoting an old version loads it afresh

        with self._swap.write(), MODEL_BUILD_LOCK:
            if not self._peft:
                from peft import PeftModel

                self.model = PeftModel.from_pretrained(
                    self.model, str(pointer.path), adapter_name=name, is_trainable=False
                )
                self._peft = True
            else:
                try:
                    self.model.load_adapter(str(pointer.path), adapter_name=name, is_trainable=False)
                except BaseException:
                    with contextlib.suppress(Exception):
                        self.model.delete_adapter(name)
                    raise
                self.model.set_adapter(name)
                self.model.base_model.enable_adapter_layers()
                if self._active and self._active != name:
                    self.model.delete_adapter(self._active)
            self.model.eval()
            self._active = name
            self.version, self.adapter_path = pointer.version, pointer.path

    # ------------------------------------------------------------------ generation

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _kwargs(
        self,
        prompts: list[str],
        max_tokens: int,
        temperature: float,
        top_p: float,
        stop: list[str],
        cancel: threading.Event | None,
    ) -> dict[str, Any]:
        from transformers import StoppingCriteria, StoppingCriteriaList

        class _Cancelled(StoppingCriteria):
            def __call__(self, input_ids, scores, **kw):
                import torch

                return torch.full(
                    (input_ids.shape[0],), bool(cancel and cancel.is_set()), dtype=torch.bool, device=input_ids.device
                )

        tok = self.tokenizer
        side, tside = tok.padding_side, tok.truncation_side
        tok.padding_side, tok.truncation_side = "left", "left"  # keep the prompt's end, next to the answer
        try:
            enc = tok(
                prompts,
                return_tensors="pt",
                padding=True,
                truncation=True,
                max_length=max(1, self.context - max_tokens),
            )
        finally:
            tok.padding_side, tok.truncation_side = side, tside
        device = next(self.model.parameters()).device
        kwargs: dict[str, Any] = dict(
            **{k: v.to(device) for k, v in enc.items()},
            max_new_tokens=max_tokens,
            do_sample=temperature > 0,
            pad_token_id=tok.pad_token_id,
            eos_token_id=tok.eos_token_id,
            stopping_criteria=StoppingCriteriaList([_Cancelled()]),
        )
        if temperature > 0:
            kwargs.update(temperature=temperature, top_p=top_p)
        if stop:
            kwargs.update(stop_strings=list(stop), tokenizer=tok)  # stop early; the text is cut exactly later
        return kwargs

    def generate(
        self,
        prompts: list[str],
        max_tokens: int,
        temperature: float,
        top_p: float,
        stop: list[str],
        cancel: threading.Event | None = None,
    ) -> list[str]:
        import torch

        with self._swap.read():
            kwargs = self._kwargs(prompts, max_tokens, temperature, top_p, stop, cancel)
            with torch.inference_mode():
                out = self.model.generate(**kwargs)
        new = out[:, kwargs["input_ids"].shape[1] :]
        return [self.tokenizer.decode(row, skip_special_tokens=True) for row in new]

    def stream(
        self,
        prompt: str,
        max_tokens: int,
        temperature: float,
        top_p: float,
        stop: list[str],
        cancel: threading.Event | None = None,
    ) -> Iterator[str]:
        import torch
        from transformers import TextIteratorStreamer

        cancel = cancel or threading.Event()
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        failure: list[BaseException] = []

        def work() -> None:
            try:
                with self._swap.read():
                    kwargs = self._kwargs([prompt], max_tokens, temperature, top_p, stop, cancel)
                    with torch.inference_mode():
                        self.model.generate(**kwargs, streamer=streamer)
            except BaseException as exc:  # noqa: BLE001 - handed to the reader below
                failure.append(exc)
                streamer.end()

        threading.Thread(target=work, name="mothbrain-stream", daemon=True).start()
        try:
            for piece in streamer:
                if piece:
                    yield piece
            if failure:
                raise failure[0]
        finally:
            cancel.set()  # a closed stream (client gone) stops the generation at the next token


class BadMessages(ValueError):
    """Chat messages that cannot be rendered into a prompt; the server answers 400 with this message."""


def render_chat(messages: list[dict[str, Any]], voice: str) -> tuple[str, list[str]]:
    """OpenAI messages → the training text format: "Speaker: text" lines ending with "<voice>:".

    `voice` is the voice's speaker name (`mothbrain.data.format.voice_name(cfg)`); assistant messages
    are the voice's earlier turns. System and tool messages are left out, as preprocess leaves them
    out of the training data (a base model follows no instructions). Returns the prompt and stop
    strings: any speaker starting a line.
    """
    lines: list[tuple[str, str]] = []
    speakers = {voice}
    for m in messages:
        role = str(m.get("role") or "").strip().lower()
        if role in ("system", "developer", "tool", "function"):
            continue
        text = _content_text(m.get("content"))
        if not text.strip():
            continue
        name = str(m.get("name") or "").strip() or (voice if role == "assistant" else speaker_name(role))
        speakers.add(name)
        lines.append((name, text.strip()))
    if not lines:
        raise BadMessages("messages hold no user or assistant text (system and tool messages are not used)")
    return render_prompt(lines, voice), stop_strings(speakers)


def _content_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text":
                raise BadMessages("only text content parts are supported")
            parts.append(str(part.get("text") or ""))
        return "".join(parts)
    raise BadMessages("message content must be a string or a list of text parts")


class StopTrimmer:
    """Cut streamed text at the first stop string, holding back just enough to see one arrive."""

    def __init__(self, stops: list[str]):
        self.stops = [s for s in stops if s]
        self.hold = max((len(s) for s in self.stops), default=1) - 1
        self.buf = ""
        self.stopped = False

    def feed(self, piece: str) -> str:
        if self.stopped:
            return ""
        self.buf += piece
        cuts = [i for i in (self.buf.find(s) for s in self.stops) if i >= 0]
        if cuts:
            out, self.buf, self.stopped = self.buf[: min(cuts)], "", True
            return out
        safe = len(self.buf) - self.hold
        if safe <= 0:
            return ""
        out, self.buf = self.buf[:safe], self.buf[safe:]
        return out

    def flush(self) -> str:
        out, self.buf = ("" if self.stopped else self.buf), ""
        return out


def trim_at_stop(text: str, stops: list[str]) -> tuple[str, bool]:
    t = StopTrimmer(stops)
    out = t.feed(text) + t.flush()
    return out, t.stopped


_ENGINES: dict[str, Any] = {}  # one local engine per config, shared by ask and the wiki-worker
_ENGINE_LOCK = threading.Lock()


def local_engine(cfg: Config):
    """System 1 in this process (the tiny demo model, or a box without `mothbrain serve`), loaded once."""

    key = f"{paths.state_dir(cfg)}|{cfg.model.base}"
    with _ENGINE_LOCK:
        if key not in _ENGINES:
            _ENGINES[key] = TransformersEngine(cfg)
        return _ENGINES[key]


def generate_batched(
    model,
    tokenizer,
    prompts: list[str],
    *,
    batch_size: int,
    max_new_tokens: int,
    temperature: float,
    top_p: float,
    seed: int,
    sort_by_length: bool = True,
    max_prompt_tokens: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[list[str], int]:
    """Sampled continuations of `prompts` (in their order) and the number of tokens generated.

    Prompts are sorted by length and left-padded in batches of `batch_size`: one `generate` call per
    batch, and similar lengths keep padding (wasted compute) small. Counted tokens stop at EOS.
    """
    import torch

    if not prompts:
        return [], 0
    device = next(model.parameters()).device
    lengths = [len(tokenizer(p)["input_ids"]) for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: lengths[i]) if sort_by_length else list(range(len(prompts)))
    limit = max_prompt_tokens or max(1, _context_length(model) - max_new_tokens)
    side, tside = tokenizer.padding_side, tokenizer.truncation_side
    tokenizer.padding_side, tokenizer.truncation_side = "left", "left"  # keep the prompt's end, next to the answer
    torch.manual_seed(seed)
    texts: list[str] = [""] * len(prompts)
    total = 0
    eos = tokenizer.eos_token_id
    try:
        for start in range(0, len(order), max(1, batch_size)):
            idx = order[start : start + max(1, batch_size)]
            enc = tokenizer(
                [prompts[i] for i in idx], return_tensors="pt", padding=True, truncation=True, max_length=limit
            ).to(device)
            with torch.inference_mode():
                out = model.generate(
                    **enc,
                    do_sample=temperature > 0,
                    temperature=max(temperature, 1e-5),
                    top_p=top_p,
                    max_new_tokens=max_new_tokens,
                    pad_token_id=tokenizer.pad_token_id,
                    eos_token_id=eos,
                )
            new = out[:, enc["input_ids"].shape[1] :].tolist()
            for i, row in zip(idx, new):
                n = row.index(eos) + 1 if eos in row else len(row)
                total += n
                texts[i] = tokenizer.decode(row[:n], skip_special_tokens=True)
            if progress:
                progress(len(idx))
    finally:
        tokenizer.padding_side, tokenizer.truncation_side = side, tside
    return texts, total


def _context_length(model) -> int:
    cfg = getattr(model, "config", None)
    return int(getattr(cfg, "max_position_embeddings", 0) or 4096)

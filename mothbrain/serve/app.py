"""`mothbrain serve`: System 1 (the base + the promoted adapter) behind an OpenAI-compatible API.

    export MOTHBRAIN_API_TOKEN=$(python -c "import secrets; print(secrets.token_urlsafe(32))")
    mothbrain serve --config configs/default.yaml            # http://127.0.0.1:8377/v1
    mothbrain serve --engine vllm [--launch]                  # the equivalent `vllm serve` command

Routes: POST /v1/chat/completions, POST /v1/completions (both with `stream: true` as SSE),
GET /v1/models, GET /health (no token). Model id "mothbrain"; every response carries the adapter
version it was generated with in the `X-MothBrain-Adapter` header ("base" when none is promoted).

The adapter is whatever `adapters/current` points at (promote swaps that link atomically; the
ledger's `current` is the fallback when there is no link). Before each request the link is read
once; when it moved, the new adapter is loaded into the running model while generations wait, and
one that is incomplete or fails to load is reported in /v1/models while the old one keeps serving.

Safety: loopback by default, a bearer token always (from serve.token_env, or serve.token_file with
mode 0600), bounded request bodies (413), max_tokens (400), generations (serve.max_concurrent, one
at a time on CPU) and a bounded wait queue (503 + Retry-After beyond serve.max_queue).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import math
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from fastapi.security import HTTPAuthorizationCredentials
from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request as HTTPRequest  # at module level: FastAPI resolves route annotations here

from mothbrain.config import Config
from mothbrain.core import paths
from mothbrain.data.format import render_prompt, speaker_name, stop_strings, voice_name
from mothbrain.errors import MothError

log = logging.getLogger(__name__)

MODEL_ID = "mothbrain"
ADAPTER_HEADER = "X-MothBrain-Adapter"
GEN_MS_HEADER = "X-MothBrain-Generation-Ms"  # time in the model, without queueing and HTTP
MIN_TOKEN_CHARS = 16
MAX_STOPS = 4  # as OpenAI
DISCONNECT_POLL_S = 0.25  # how often a non-streaming request checks that its client is still there
LOOPBACK = ("127.0.0.1", "::1", "localhost")
TOKEN_HINT = 'python -c "import secrets; print(secrets.token_urlsafe(32))"'


# --------------------------------------------------------------------------- the token


def load_token(cfg: Config) -> str:
    """The bearer token every /v1 request must carry; refuses a missing, short or exposed one."""
    from mothbrain.core.secrets import read_secret

    s = cfg.serve
    try:
        token = read_secret(cfg, s.token_env, s.token_file, "serve.token_file")
    except MothError as exc:
        raise MothError(f"{exc}; make a token with: {TOKEN_HINT}") from None
    if not token:
        where = f"${s.token_env}" + (f" or serve.token_file ({s.token_file})" if s.token_file else "")
        raise MothError(f"no API token: set {where} before `mothbrain serve` (make one with: {TOKEN_HINT})")
    if len(token) < MIN_TOKEN_CHARS:
        raise MothError(f"the API token is {len(token)} characters; use at least {MIN_TOKEN_CHARS} ({TOKEN_HINT})")
    return token


# --------------------------------------------------------------------------- which adapter is current


@dataclass(frozen=True)
class AdapterPointer:
    version: str | None  # None: nothing promoted, serve the base
    path: Path | None


def current_adapter(cfg: Config) -> AdapterPointer:
    """The promoted adapter: `adapters/current` resolved once (so a swap during a load cannot mix two
    versions), else the ledger's current version; nothing when neither names one. The link is first made to
    agree with the ledger (a promotion killed half-way leaves them apart)."""
    from mothbrain.promote import reconcile_current

    with contextlib.suppress(MothError):
        reconcile_current(cfg, wait=10.0)  # a move in flight finishes within this; else serve what is there
    link = paths.current_adapter_link(cfg)
    if link.is_symlink() or link.exists():
        try:
            target = link.resolve(strict=True)
            return AdapterPointer(target.name, target)
        except OSError:
            pass  # a dangling link: fall back to the ledger
    from mothbrain.core.ledger import open_ledger

    version = open_ledger(cfg).current()
    if version:
        return AdapterPointer(version, paths.adapter_dir(cfg, version).resolve())
    return AdapterPointer(None, None)


# --------------------------------------------------------------------------- the engine


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
        from mothbrain.models.loading import load_base_model, load_tokenizer, resolve_device

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
        from mothbrain.models.loading import adapter_is_complete

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
        from mothbrain.models.loading import MODEL_BUILD_LOCK

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


# --------------------------------------------------------------------------- text helpers


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
        raise ApiError(
            400, "messages hold no user or assistant text (system and tool messages are not used)", param="messages"
        )
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
                raise ApiError(400, "only text content parts are supported", param="messages")
            parts.append(str(part.get("text") or ""))
        return "".join(parts)
    raise ApiError(400, "message content must be a string or a list of text parts", param="messages")


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


# --------------------------------------------------------------------------- admission


class Overloaded(Exception):
    def __init__(self, retry_after: int):
        self.retry_after = retry_after


def expected_wait(mean_s: float, running_for: list[float], waiting: int, limit: int) -> float:
    """Seconds until a request arriving now would start: each slot frees when its generation ends (a
    generation takes `mean_s`, and those running have run `running_for`), and the `waiting` requests
    ahead take the first slots that free."""
    ends = sorted(max(0.0, mean_s - r) for r in running_for)
    ends += [0.0] * max(0, limit - len(ends))  # a free slot
    ends = ends[:limit]
    for _ in range(waiting):  # each queued request takes the earliest slot and holds it for mean_s
        ends.sort()
        ends[0] += mean_s
    return min(ends)


class Admission:
    """At most `limit` generations at once, at most `queue` waiting; beyond that, Overloaded, with a
    Retry-After from the real expected wait (expected_wait), not a guess."""

    def __init__(self, limit: int, queue: int):
        self.limit, self.queue = max(1, limit), max(0, queue)
        self.waiting = 0
        self.mean_s = 1.0  # moving average of a generation's seconds, for Retry-After
        self._started: dict[int, float] = {}  # running generations: token → start time
        self._next = 0
        self._sem: asyncio.Semaphore | None = None

    @property
    def active(self) -> int:
        return len(self._started)

    def retry_after(self) -> int:
        now = time.monotonic()
        running = [now - t for t in self._started.values()]
        return max(1, math.ceil(expected_wait(self.mean_s, running, self.waiting, self.limit)))

    async def acquire(self) -> float:
        if self._sem is None:
            self._sem = asyncio.Semaphore(self.limit)
        if self.active >= self.limit and self.waiting >= self.queue:
            raise Overloaded(self.retry_after())
        self.waiting += 1
        try:
            await self._sem.acquire()
        finally:
            self.waiting -= 1
        started = time.monotonic()
        self._next += 1
        self._started[self._next] = started
        return self._next

    def release(self, slot: int) -> None:
        started = self._started.pop(slot)
        self.mean_s = 0.8 * self.mean_s + 0.2 * (time.monotonic() - started)
        assert self._sem is not None
        self._sem.release()


# --------------------------------------------------------------------------- the HTTP app


class _Req(BaseModel):
    model_config = ConfigDict(extra="ignore", protected_namespaces=())  # clients send more than we use
    model: str
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(1.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    stop: str | list[str] | None = None
    stream: bool = False
    n: int = 1


class ChatRequest(_Req):
    messages: list[dict[str, Any]] = Field(min_length=1)


class CompletionRequest(_Req):
    prompt: str | list[str]


class ApiError(Exception):
    """A request the client must fix (or may retry), answered in OpenAI's error shape."""

    def __init__(
        self,
        status: int,
        message: str,
        type_: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.param = status, message, type_, code, param
        self.headers = headers or {}


def error_body(message: str, type_: str, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def _json_error(
    status: int,
    message: str,
    type_: str,
    code: str | None = None,
    param: str | None = None,
    headers: dict[str, str] | None = None,
):
    from fastapi.responses import JSONResponse

    return JSONResponse(error_body(message, type_, code, param), status_code=status, headers=headers)


class _BodyLimit:
    """Pure ASGI middleware: refuse a body over the size cap (chunked bodies counted too) before the app reads it."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        too_large = _json_error(
            413,
            f"request body is larger than serve.max_request_bytes ({self.max_bytes} bytes)",
            "invalid_request_error",
            "request_too_large",
        )
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            return await too_large(scope, receive, send)
        # Read the (small, bounded) body here, so an oversized one is refused whatever the app does.
        body, more = b"", True
        while more:
            msg = await receive()
            if msg["type"] != "http.request":
                return  # the client went away
            body += msg.get("body", b"")
            more = msg.get("more_body", False)
            if len(body) > self.max_bytes:
                return await too_large(scope, receive, send)
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # later calls wait for the disconnect, as usual

        await self.app(scope, replay, send)


def create_app(cfg: Config, engine: Engine | None = None, token: str | None = None):
    """The FastAPI app. Loads the token first (refusing fast), then the engine unless one is given."""
    from fastapi import APIRouter, Depends, FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, StreamingResponse
    from fastapi.security import HTTPBearer
    from starlette.exceptions import HTTPException as StarletteHTTPException

    token = token or load_token(cfg)
    engine = engine if engine is not None else TransformersEngine(cfg)
    s = cfg.serve
    voice = voice_name(cfg)  # the speaker name the voice's turns were trained under
    limit = min(s.max_concurrent, engine.max_parallel or s.max_concurrent)
    gate = Admission(limit, s.max_queue)
    pool = ThreadPoolExecutor(max_workers=max(1, limit), thread_name_prefix="mothbrain-gen")

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        yield
        pool.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(
        title="MothBrain System 1", version="1", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None
    )
    app.add_middleware(_BodyLimit, max_bytes=s.max_request_bytes)
    bearer = HTTPBearer(auto_error=False)
    expected = token.encode()

    def require_token(cred: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:  # noqa: B008
        if cred is None or not hmac.compare_digest(cred.credentials.strip().encode(), expected):
            raise ApiError(
                401,
                "missing or wrong bearer token (Authorization: Bearer <token>)",
                "authentication_error",
                "invalid_api_key",
                headers={"WWW-Authenticate": "Bearer"},
            )

    v1 = APIRouter(prefix="/v1", dependencies=[Depends(require_token)])
    app.state.engine, app.state.gate = engine, gate

    # ------------------------------------------------------------------ errors in OpenAI's shape

    @app.exception_handler(ApiError)
    async def _api_error(_r: Request, exc: ApiError):
        return _json_error(exc.status, exc.message, exc.type, exc.code, exc.param, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_r: Request, exc: RequestValidationError):
        errs = exc.errors()
        first = errs[0] if errs else {}
        loc = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        msg = first.get("msg", "invalid request")
        if first.get("type") == "json_invalid":
            msg, loc = "request body is not valid JSON", ""
        return _json_error(
            400, f"{loc}: {msg}" if loc else msg, "invalid_request_error", "invalid_request", loc or None
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_r: Request, exc: StarletteHTTPException):
        return _json_error(exc.status_code, str(exc.detail), "invalid_request_error", None)

    @app.exception_handler(Exception)
    async def _bug(_r: Request, exc: Exception):
        log.exception("error while serving a request")
        return _json_error(500, f"internal error ({type(exc).__name__}); see the server log", "server_error")

    # ------------------------------------------------------------------ helpers

    def check(req: _Req) -> tuple[int, list[str]]:
        if req.model not in (MODEL_ID, engine.version or MODEL_ID):
            raise ApiError(
                404, f"model {req.model!r} is not served here; use {MODEL_ID!r}", code="model_not_found", param="model"
            )
        if req.n != 1:
            raise ApiError(400, "only n=1 is supported", param="n")
        asked = req.max_completion_tokens or req.max_tokens or s.max_tokens
        if asked > s.max_tokens:
            raise ApiError(
                400,
                f"max_tokens {asked} is above this server's limit (serve.max_tokens={s.max_tokens})",
                code="max_tokens_too_large",
                param="max_tokens",
            )
        stops = [req.stop] if isinstance(req.stop, str) else list(req.stop or [])
        if len(stops) > MAX_STOPS:
            raise ApiError(400, f"at most {MAX_STOPS} stop sequences", param="stop")
        return asked, [x for x in stops if x]

    async def admit() -> int:
        try:
            return await gate.acquire()
        except Overloaded as exc:
            raise ApiError(
                503,
                f"busy: {gate.active} generating and {gate.waiting} waiting; retry in {exc.retry_after}s",
                "server_overloaded",
                "overloaded",
                headers={"Retry-After": str(exc.retry_after)},
            ) from None

    class ClosingStream(StreamingResponse):
        """Runs `on_close` however the response ends: finished, failed, or never started (client gone)."""

        def __init__(self, content, on_close: Callable[[], None], **kw):
            super().__init__(content, **kw)
            self.on_close = on_close

        async def __call__(self, scope, receive, send):
            try:
                await super().__call__(scope, receive, send)
            finally:
                self.on_close()

    async def in_pool(fn, *args):
        return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)

    def reload_version() -> str | None:
        engine.reload_if_changed()
        return engine.version

    def count(text: str) -> int:
        counter = getattr(engine, "count_tokens", None)
        return counter(text) if counter else len(text.split())

    def headers(version: str | None) -> dict[str, str]:
        return {ADAPTER_HEADER: version or "base"}

    async def complete(req: _Req, prompts: list[str], chat: bool, extra_stops: list[str], request=None):
        max_tokens, stops = check(req)
        stops = stops + [x for x in extra_stops if x not in stops]
        if req.stream and len(prompts) != 1:
            raise ApiError(400, "streaming takes a single prompt", param="prompt")
        rid = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24]
        created = int(time.time())
        started = await admit()
        try:
            version = await in_pool(reload_version)
            if req.stream:
                cancel = threading.Event()
                slot = started

                def close() -> None:
                    cancel.set()  # stops the generation at its next token if it still runs
                    gate.release(slot)

                pieces = engine.stream(prompts[0], max_tokens, req.temperature, req.top_p, stops, cancel)
                resp = ClosingStream(
                    sse(pieces, rid, created, chat, stops, max_tokens),
                    close,
                    media_type="text/event-stream",
                    headers={**headers(version), "Cache-Control": "no-cache"},
                )
                started = None  # the response releases the slot when it ends
                return resp
            t_gen = time.monotonic()
            cancel = threading.Event()
            job = asyncio.ensure_future(
                in_pool(engine.generate, prompts, max_tokens, req.temperature, req.top_p, stops, cancel)
            )
            while not job.done():  # a client that went away stops the generation, as a closed stream does
                await asyncio.wait({job}, timeout=DISCONNECT_POLL_S)
                if not job.done() and request is not None and await request.is_disconnected():
                    cancel.set()
                    await job  # ends at the next token; then the slot is free
                    log.info("request %s: the client went away; generation stopped", rid)
                    raise ApiError(499, "client closed the request", "client_closed")
            raw = job.result()
            gen_ms = round((time.monotonic() - t_gen) * 1000)
        finally:
            if started is not None:
                gate.release(started)
        choices, used = [], 0
        for i, text in enumerate(raw):
            cut, stopped = trim_at_stop(text, stops)
            n = count(text)
            used += count(cut)
            finish = "length" if not stopped and n >= max_tokens else "stop"
            if chat:
                choices.append(
                    {"index": i, "message": {"role": "assistant", "content": cut.strip()}, "finish_reason": finish}
                )
            else:
                choices.append({"index": i, "text": cut, "logprobs": None, "finish_reason": finish})
        prompt_tokens = sum(count(p) for p in prompts)
        return JSONResponse(
            {
                "id": rid,
                "object": "chat.completion" if chat else "text_completion",
                "created": created,
                "model": MODEL_ID,
                "system_fingerprint": version or "base",
                "choices": choices,
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": used,
                    "total_tokens": prompt_tokens + used,
                },
            },
            headers={**headers(version), GEN_MS_HEADER: str(gen_ms)},
        )

    async def sse(pieces: Iterator[str], rid: str, created: int, chat: bool, stops: list[str], max_tokens: int):
        from starlette.concurrency import iterate_in_threadpool

        obj = "chat.completion.chunk" if chat else "text_completion"

        def chunk(delta: str | None, finish: str | None = None, role: bool = False) -> str:
            if chat:
                d: dict[str, Any] = {"role": "assistant"} if role else ({"content": delta} if delta else {})
                choice = {"index": 0, "delta": d, "finish_reason": finish}
            else:
                choice = {"index": 0, "text": delta or "", "logprobs": None, "finish_reason": finish}
            return (
                "data: "
                + json.dumps({"id": rid, "object": obj, "created": created, "model": MODEL_ID, "choices": [choice]})
                + "\n\n"
            )

        trim = StopTrimmer(stops)
        raw, sent_any = [], False
        try:
            if chat:
                yield chunk(None, role=True)
            async for piece in iterate_in_threadpool(pieces):
                raw.append(piece)
                out = trim.feed(piece)
                if chat and not sent_any:
                    out = out.lstrip()  # the completion starts with the space after "Assistant:"
                if out:
                    sent_any = True
                    yield chunk(out)
                if trim.stopped:
                    break
            tail = trim.flush()
            if tail and not (chat and not sent_any and not tail.strip()):
                yield chunk(tail.lstrip() if chat and not sent_any else tail)
            finish = "length" if not trim.stopped and count("".join(raw)) >= max_tokens else "stop"
            yield chunk(None, finish=finish)
            yield "data: [DONE]\n\n"
        except Exception as exc:  # noqa: BLE001 - the stream has begun: report in-band, then end it
            log.exception("error while streaming")
            yield (
                "data: " + json.dumps(error_body(f"generation failed ({type(exc).__name__})", "server_error")) + "\n\n"
            )

    # ------------------------------------------------------------------ routes

    @app.get("/health")
    async def health():
        return {"status": "ok"}

    @v1.get("/models")
    async def models():
        await asyncio.get_running_loop().run_in_executor(None, engine.reload_if_changed)
        version = engine.version
        entry = {
            "id": MODEL_ID,
            "object": "model",
            "created": int(time.time()),
            "owned_by": "mothbrain",
            "base": cfg.model.base,
            "adapter": version,
            "adapter_path": str(getattr(engine, "adapter_path", "") or "") or None,
            "serving": f"adapter {version}" if version else "base model: no promoted adapter",
            "last_error": getattr(engine, "last_error", "") or None,
        }
        return JSONResponse({"object": "list", "data": [entry]}, headers=headers(version))

    @v1.post("/chat/completions")
    async def chat_completions(req: ChatRequest, request: HTTPRequest):
        prompt, speaker_stops = render_chat(req.messages, voice)
        return await complete(req, [prompt], True, speaker_stops, request)

    @v1.post("/completions")
    async def completions(req: CompletionRequest, request: HTTPRequest):
        prompts = [req.prompt] if isinstance(req.prompt, str) else list(req.prompt)
        if not prompts or len(prompts) > 8:
            raise ApiError(400, "prompt must be a string or a list of 1 to 8 strings", param="prompt")
        return await complete(req, prompts, False, [], request)

    app.include_router(v1)
    return app


# --------------------------------------------------------------------------- running it


def _check_port(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise MothError(
                f"cannot listen on {host}:{port} ({exc.strerror}); is another `mothbrain serve` "
                "running? pick another --port"
            ) from None


def check_host(host: str, port: int, allow_remote: bool) -> None:
    """Loopback only, unless the operator says otherwise: plain HTTP carries the token and the answers."""
    if host in LOOPBACK or allow_remote:
        return
    raise MothError(
        f"serve: {host} is not a loopback address, and this is plain HTTP (the token and the answers travel in "
        f"clear); reach it through an SSH tunnel (ssh -N -L {port}:127.0.0.1:{port} you@this-box) or a TLS proxy, "
        "or pass --allow-remote to bind it anyway"
    )


def run_server(
    cfg: Config, host: str | None = None, port: int | None = None, echo=print, allow_remote: bool = False
) -> None:
    """Check the address, the token and the port, load the model, serve until Ctrl-C."""
    import uvicorn

    host, port = host or cfg.serve.host, port or cfg.serve.port
    check_host(host, port, allow_remote)
    token = load_token(cfg)
    _check_port(host, port)
    if host not in LOOPBACK:
        echo(f"warning: listening on {host} (--allow-remote): put a TLS proxy in front of it")
    echo(f"loading {cfg.model.base} …")
    engine = TransformersEngine(cfg)
    app = create_app(cfg, engine=engine, token=token)
    what = (
        f"adapter {engine.version} ({engine.adapter_path})"
        if engine.version
        else "the base model (no promoted adapter yet)"
    )
    if engine.last_error:
        echo(f"warning: {engine.last_error}")
    limit = min(cfg.serve.max_concurrent, engine.max_parallel or cfg.serve.max_concurrent)
    echo(
        f"serving {what} as model '{MODEL_ID}' on http://{host}:{port}/v1 — {limit} generation(s) at once"
        f"{' (CPU)' if engine.max_parallel == 1 else ''}, queue {cfg.serve.max_queue}; Ctrl-C stops"
    )
    from mothbrain.serve.connections import connection_cap, install_log_filter, raise_open_files_limit

    open_files = raise_open_files_limit()  # each connection is a descriptor
    cap = connection_cap(cfg.serve.max_connections, open_files)
    if cap < cfg.serve.max_connections:
        echo(
            f"warning: serve.max_connections {cfg.serve.max_connections} is more than `ulimit -n` ({open_files}) "
            f"allows; holding {cap} (raise the hard limit to allow more)"
        )
    config = server_config(cfg, app, host, port, max_connections=cap)
    install_log_filter(cap)  # after uvicorn's Config, which sets up its loggers
    uvicorn.Server(config).run()


def server_config(
    cfg: Config, app: Any, host: str, port: int, log_level: str = "warning", max_connections: int | None = None
) -> Any:
    """Uvicorn's settings: our guarded h11 protocol (a deadline for each request, a cap on open connections:
    see connections.py) and, beyond the cap with every connection busy, uvicorn's own 503 (`limit_concurrency`
    counts open connections, and the protocol keeps them at the cap by closing idle ones first)."""
    import uvicorn

    from mothbrain.serve.connections import guarded_protocol

    cap = max_connections or cfg.serve.max_connections
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        timeout_graceful_shutdown=5,
        http=guarded_protocol(cfg.serve.header_timeout_s, cap),
        limit_concurrency=cap + 1,
    )


# --------------------------------------------------------------------------- vLLM


VLLM_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)


def vllm_command(cfg: Config, host: str | None = None, port: int | None = None) -> tuple[list[str], list[str]]:
    """The `vllm serve` line equivalent to ours (model "mothbrain" = the current adapter) and notes."""
    from mothbrain.models.loading import base_location

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

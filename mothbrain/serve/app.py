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

Beside this module: schemas.py (request bodies, ApiError), admission.py (the generation slots and the
queue), body_limit.py (the 413), connections.py (header timeout, connection cap) and vllm.py (`--engine vllm`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fastapi.security import HTTPAuthorizationCredentials
from starlette.requests import Request as HTTPRequest  # at module level: FastAPI resolves route annotations here

from mothbrain.config import Config
from mothbrain.core.api import ADAPTER_HEADER, GEN_MS_HEADER, MODEL_ID, load_token
from mothbrain.data.format import voice_name
from mothbrain.errors import MothError
from mothbrain.models.generation import BadMessages, Engine, StopTrimmer, TransformersEngine, render_chat, trim_at_stop
from mothbrain.serve.admission import Admission, Overloaded
from mothbrain.serve.body_limit import BodyLimit
from mothbrain.serve.connections import (
    Server,
    accept_backlog,
    connection_cap,
    guarded_protocol,
    install_log_filter,
    raise_open_files_limit,
)
from mothbrain.serve.schemas import ApiError, ChatRequest, CompletionRequest, GenerationRequest, error_body, json_error

log = logging.getLogger(__name__)

MAX_STOPS = 4  # as OpenAI
DISCONNECT_POLL_S = 0.25  # how often a non-streaming request checks that its client is still there
LOOPBACK = ("127.0.0.1", "::1", "localhost")


# --------------------------------------------------------------------------- the HTTP app


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
    app.add_middleware(BodyLimit, max_bytes=s.max_request_bytes)
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
        return json_error(exc.status, exc.message, exc.type, exc.code, exc.param, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_r: Request, exc: RequestValidationError):
        errs = exc.errors()
        first = errs[0] if errs else {}
        loc = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        msg = first.get("msg", "invalid request")
        if first.get("type") == "json_invalid":
            msg, loc = "request body is not valid JSON", ""
        return json_error(400, f"{loc}: {msg}" if loc else msg, "invalid_request_error", "invalid_request", loc or None)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_r: Request, exc: StarletteHTTPException):
        return json_error(exc.status_code, str(exc.detail), "invalid_request_error", None)

    @app.exception_handler(Exception)
    async def _bug(_r: Request, exc: Exception):
        log.exception("error while serving a request")
        return json_error(500, f"internal error ({type(exc).__name__}); see the server log", "server_error")

    # ------------------------------------------------------------------ helpers

    def check(req: GenerationRequest) -> tuple[int, list[str]]:
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

    async def complete(req: GenerationRequest, prompts: list[str], chat: bool, extra_stops: list[str], request=None):
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
        try:
            prompt, speaker_stops = render_chat(req.messages, voice)
        except BadMessages as exc:
            raise ApiError(400, str(exc), param="messages") from None
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

    open_files = raise_open_files_limit()  # each connection is a descriptor
    cap = connection_cap(cfg.serve.max_connections, open_files)
    if cap < cfg.serve.max_connections:
        echo(
            f"warning: serve.max_connections {cfg.serve.max_connections} is more than `ulimit -n` ({open_files}) "
            f"allows; holding {cap} (raise the hard limit to allow more)"
        )
    config = server_config(cfg, app, host, port, max_connections=cap, backlog=accept_backlog(open_files))
    install_log_filter(cap)  # after uvicorn's Config, which sets up its loggers
    Server(config).run()  # uvicorn's, with a deeper listen queue than its accept batch


def server_config(
    cfg: Config,
    app: Any,
    host: str,
    port: int,
    log_level: str = "warning",
    max_connections: int | None = None,
    backlog: int = 2048,
) -> Any:
    """Uvicorn's settings: our guarded h11 protocol (a deadline for each request, a cap on open connections:
    see connections.py) and, beyond the cap with every connection busy, uvicorn's own 503 (`limit_concurrency`
    counts open connections, and the protocol keeps them at the cap by closing idle ones first); `backlog` is also
    how many connections asyncio accepts at once (`accept_backlog`)."""
    import uvicorn

    cap = max_connections or cfg.serve.max_connections
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        timeout_graceful_shutdown=5,
        http=guarded_protocol(cfg.serve.header_timeout_s, cap),
        limit_concurrency=cap + 1,
        backlog=backlog,
    )

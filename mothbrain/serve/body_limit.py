"""The request-body size cap (serve.max_request_bytes), as ASGI middleware that answers 413 before the app reads."""

from __future__ import annotations

from mothbrain.serve.schemas import json_error


class BodyLimit:
    """Pure ASGI middleware: refuse a body over the size cap (chunked bodies counted too) before the app reads it."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        too_large = json_error(
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

"""A stand-in OpenAI-compatible chat endpoint: a real HTTP server on loopback, for the tests and benches.

    with ChatStandIn(lambda body: "hello") as server:   # server.url ends in /v1
        ...                                              # server.seen: every request (path, auth, body)

`reply(body)` decides each answer: a string is the assistant's text; ("json", obj) the text is obj as
JSON; ("status", code) an error reply with that HTTP code (Retry-After 0); ("raw", bytes) a body that
is not a chat completion; ("sleep", seconds) no answer for that long.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Reply = Callable[[dict[str, Any]], Any]


def completion(model: str, text: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-standin",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110},
    }


class ChatStandIn:
    def __init__(self, reply: Reply, headers: dict[str, str] | None = None):
        self.reply = reply
        self.headers = headers or {}
        self.seen: list[dict[str, Any]] = []
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                standin.seen.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
                answer = standin.reply(body)
                kind, value = answer if isinstance(answer, tuple) else ("text", answer)
                if kind == "sleep":
                    time.sleep(value)
                    return
                status, extra = 200, dict(standin.headers)
                if kind == "status":
                    status, extra["Retry-After"] = value, "0"
                    data = b'{"error": {"message": "the stand-in refused"}}'
                elif kind == "raw":
                    data = value
                else:
                    text = json.dumps(value) if kind == "json" else value
                    data = json.dumps(completion(body.get("model", "?"), text)).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for name, v in extra.items():
                        self.send_header(name, v)
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the client gave up waiting

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.block_on_close = False
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> ChatStandIn:
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

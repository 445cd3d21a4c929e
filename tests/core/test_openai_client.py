"""The one OpenAI-compatible client: text and headers back; every failure one line naming the endpoint."""

from __future__ import annotations

import socket

import pytest
from openai_standin import ChatStandIn

from mothbrain.core.openai_client import base_url, chat

HELLO = [{"role": "user", "content": "hello"}]


def test_text_headers_and_the_request_as_sent():
    with ChatStandIn(lambda body: "hi there", headers={"X-Adapter": "v0003"}) as server:
        text, headers = chat(
            server.url + "/chat/completions/",  # a pasted full URL works too
            "m",
            HELLO,
            api_key="sk-1",
            timeout=5,
            max_tokens=7,
            temperature=0.0,
        )
    assert text == "hi there" and headers["x-adapter"] == "v0003"
    (seen,) = server.seen
    assert seen["path"] == "/v1/chat/completions" and seen["auth"] == "Bearer sk-1"
    assert seen["body"]["max_tokens"] == 7 and seen["body"]["temperature"] == 0.0 and seen["body"]["model"] == "m"


def test_base_url():
    assert base_url(" http://h:1/v1/chat/completions/ ") == "http://h:1/v1"
    assert base_url("http://h:1/v1") == "http://h:1/v1"


@pytest.mark.parametrize(
    ("reply", "error", "words"),
    [
        (lambda body: ("status", 503), ConnectionError, "answered HTTP 503: the stand-in refused"),
        (lambda body: ("raw", b'{"hello": "world"}'), ConnectionError, "did not answer in the OpenAI chat format"),
        (lambda body: ("sleep", 2.0), TimeoutError, "within 0.5s"),
    ],
)
def test_failures_are_one_line_naming_the_endpoint(reply, error, words):
    with ChatStandIn(reply) as server, pytest.raises(error) as caught:
        chat(server.url, "m", HELLO, timeout=0.5)
    message = str(caught.value)
    assert words in message and server.url + "/chat/completions" in message and "\n" not in message


def test_nothing_listening_is_unreachable():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # free once closed: nothing listens there
    with pytest.raises(ConnectionError, match=f"127.0.0.1:{port}/v1/chat/completions unreachable"):
        chat(f"http://127.0.0.1:{port}/v1", "m", HELLO, timeout=2)

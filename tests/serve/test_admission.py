"""Admission: Retry-After from the queue's real expected wait; a non-streaming client that goes away stops
its generation (as a closed stream does) and frees its slot."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import httpx
import pytest

from mothbrain.config import REPO_ROOT, load_config
from mothbrain.serve.admission import Admission, Overloaded, expected_wait
from mothbrain.serve.app import create_app

TOKEN = "test-token-0123456789abcdef"
DEMO = REPO_ROOT / "configs" / "demo-tiny.yaml"


def test_expected_wait_counts_what_runs_and_what_waits():
    assert expected_wait(10.0, [], 0, 1) == 0.0  # a free slot
    assert expected_wait(10.0, [9.0], 0, 1) == pytest.approx(1.0)  # nearly done
    assert expected_wait(10.0, [1.0], 0, 1) == pytest.approx(9.0)  # just started
    assert expected_wait(10.0, [1.0], 2, 1) == pytest.approx(29.0)  # and two ahead in the queue
    assert expected_wait(10.0, [1.0, 8.0], 1, 2) == pytest.approx(9.0)  # two slots: the queued one takes the first


def test_retry_after_follows_the_running_generation_not_a_fixed_guess():
    async def scenario():
        gate = Admission(limit=1, queue=0)
        gate.mean_s = 30.0
        slot = await gate.acquire()
        with pytest.raises(Overloaded) as fresh:
            await gate.acquire()
        gate._started[slot] -= 25.0  # the running one has had 25 of its 30 s
        with pytest.raises(Overloaded) as late:
            await gate.acquire()
        gate.release(slot)
        return fresh.value.retry_after, late.value.retry_after, gate.active

    fresh, late, active = asyncio.run(scenario())
    assert fresh == 30 and late == 5 and active == 0


class SlowEngine:
    """Generates until told to stop (or 20 s): what a long answer on a busy GPU looks like."""

    model_id = "mothbrain"
    version = None
    max_parallel = 1

    def __init__(self):
        self.cancelled = threading.Event()
        self.finished = threading.Event()

    def generate(self, prompts, max_tokens, temperature, top_p, stop, cancel=None):
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if cancel is not None and cancel.is_set():
                self.cancelled.set()
                break
            time.sleep(0.02)
        self.finished.set()
        return ["late"] * len(prompts)

    def stream(self, prompt, max_tokens, temperature, top_p, stop, cancel=None):
        yield "late"

    def reload_if_changed(self) -> bool:
        return False


def test_a_client_that_goes_away_stops_a_non_streaming_generation(state_home):
    import uvicorn

    cfg = load_config(DEMO)
    engine = SlowEngine()
    app = create_app(cfg, engine=engine, token=TOKEN)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        body = {"model": "mothbrain", "prompt": "tell me everything", "max_tokens": 8}
        with pytest.raises(httpx.ReadTimeout):  # the client gives up after 1 s and closes the connection
            httpx.post(
                f"http://127.0.0.1:{port}/v1/completions",
                json=body,
                headers={"Authorization": f"Bearer {TOKEN}"},
                timeout=1.0,
            )
        assert engine.cancelled.wait(5), "the generation ran on after its client left"
        deadline = time.monotonic() + 5
        while app.state.gate.active and time.monotonic() < deadline:
            time.sleep(0.05)
        assert app.state.gate.active == 0  # the slot is free for the next request
    finally:
        server.should_exit = True
        thread.join(10)

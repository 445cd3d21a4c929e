"""`mothbrain serve`: the real HTTP server (uvicorn on loopback) over the tiny model and real adapters.

One server is started for the module (loading the model is the slow part); each test points
MOTHBRAIN_HOME back at the module's state directory, which the server reads at request time.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from fakes import PASSING_EVAL

from mothbrain.config import REPO_ROOT, load_config
from mothbrain.core import paths
from mothbrain.errors import MothError

DEMO = REPO_ROOT / "configs" / "demo-tiny.yaml"
TOKEN = "test-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
OVERRIDES = ["serve.max_queue=2", "serve.max_tokens=64", "serve.max_request_bytes=4096"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_adapter(cfg, version: str, seed: int) -> Path:
    """A real PEFT adapter with random (non-zero) LoRA weights, so it visibly changes the output."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from mothbrain.models.loading import base_location

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base_location(cfg))
    peft_cfg = LoraConfig(
        r=cfg.lora.r, lora_alpha=cfg.lora.alpha, target_modules=cfg.lora.target_modules, init_lora_weights=False
    )
    model = get_peft_model(model, peft_cfg)
    out = paths.adapter_dir(cfg, version)
    model.save_pretrained(out)
    (out / "mothbrain.json").write_text(json.dumps({"version": version, "test": True}))
    return out


def promote(cfg, version: str) -> None:
    """Through the real promote stage (gate figures written as eval would)."""
    from mothbrain.core.ledger import open_ledger
    from mothbrain.promote import run_promote

    ledger = open_ledger(cfg)
    current = ledger.current()
    ledger.update(
        version,
        status="evaluated",
        eval={**PASSING_EVAL, "evaluated_at": "now", "current_version": current},
    )
    assert run_promote(cfg, version).decision == "promoted"


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Server:
    def __init__(self, cfg, app):
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="error"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.time() + 30
        while not self.server.started:
            assert time.time() < deadline, "server did not start"
            time.sleep(0.05)

    def stop(self):
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(scope="module")
def module_home(tmp_path_factory, tiny_model_into):
    home = tiny_model_into(tmp_path_factory.mktemp("serve") / "state")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MOTHBRAIN_HOME", str(home))
        cfg = load_config(DEMO, OVERRIDES)
        from mothbrain.core.ledger import open_ledger

        for i, version in enumerate(("v0001", "v0002")):
            make_adapter(cfg, version, seed=i + 1)
            open_ledger(cfg).new_version(status="trained")
    return home


@pytest.fixture(scope="module")
def live(module_home):
    from mothbrain.serve.app import create_app

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MOTHBRAIN_HOME", str(module_home))
        cfg = load_config(DEMO, OVERRIDES)
        app = create_app(cfg, token=TOKEN)
        server = Server(cfg, app)
    yield server, cfg, app.state.engine
    server.stop()


@pytest.fixture
def served(live, module_home, monkeypatch):
    monkeypatch.setenv("MOTHBRAIN_HOME", str(module_home))  # the server reads the pointer at request time
    return live


def complete(url: str, prompt: str, **kw) -> httpx.Response:
    body = {"model": "mothbrain", "prompt": prompt, "max_tokens": 12, "temperature": 0, **kw}
    return httpx.post(f"{url}/v1/completions", json=body, headers=AUTH, timeout=60)


# --------------------------------------------------------------------------- token rules (no server)


def test_token_is_required_and_its_file_private(demo_cfg, tmp_path, monkeypatch):
    from mothbrain.core.api import load_token

    monkeypatch.delenv("MOTHBRAIN_API_TOKEN", raising=False)
    cfg = demo_cfg()
    with pytest.raises(MothError, match="no API token"):
        load_token(cfg)
    monkeypatch.setenv("MOTHBRAIN_API_TOKEN", "short")
    with pytest.raises(MothError, match="at least"):
        load_token(cfg)
    monkeypatch.delenv("MOTHBRAIN_API_TOKEN")
    f = tmp_path / "token"
    f.write_text(TOKEN + "\n")
    f.chmod(0o644)
    cfg = demo_cfg(f"serve.token_file={f}")
    with pytest.raises(MothError, match="chmod 600"):
        load_token(cfg)
    f.chmod(0o600)
    assert load_token(cfg) == TOKEN
    with pytest.raises(MothError, match="does not exist"):
        load_token(demo_cfg(f"serve.token_file={tmp_path / 'missing'}"))


# --------------------------------------------------------------------------- the HTTP contract


def test_auth_limits_and_error_shape(served):
    server, cfg, _ = served
    url = server.url
    assert httpx.get(f"{url}/health").json() == {"status": "ok"}
    r = httpx.get(f"{url}/v1/models")
    assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
    r = httpx.get(f"{url}/v1/models", headers={"Authorization": "Bearer wrong-token-wrong-token"})
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    r = httpx.get(f"{url}/v1/models", headers={"Authorization": AUTH["Authorization"].replace("Bearer", "Basic")})
    assert r.status_code == 401
    r = httpx.post(f"{url}/v1/completions", json={"prompt": 3})  # checked before the body is: no token, no details
    assert r.status_code == 401
    r = httpx.post(f"{url}/v1/completions", json={"model": "mothbrain", "prompt": "x" * 5000}, headers=AUTH)
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"

    def chunked():  # no Content-Length: the limit must hold on the bytes actually received
        for _ in range(10):
            yield b" " * 1000

    r = httpx.post(f"{url}/v1/completions", content=chunked(), headers={**AUTH, "Content-Type": "application/json"})
    assert r.status_code == 413
    r = complete(url, "hello", max_tokens=cfg.serve.max_tokens + 1)
    assert r.status_code == 400 and r.json()["error"]["code"] == "max_tokens_too_large"
    r = httpx.post(f"{url}/v1/completions", content=b"{not json", headers={**AUTH, "Content-Type": "application/json"})
    assert r.status_code == 400 and "JSON" in r.json()["error"]["message"]
    r = httpx.post(f"{url}/v1/chat/completions", json={"model": "mothbrain"}, headers=AUTH)
    assert r.status_code == 400 and "messages" in r.json()["error"]["message"]
    r = httpx.post(
        f"{url}/v1/chat/completions",
        json={"model": "mothbrain", "messages": [{"role": "system", "content": "be brief"}]},
        headers=AUTH,
    )
    assert r.status_code == 400
    assert complete(url, "hi", model="gpt-4").status_code == 404
    assert complete(url, "hi", n=2).status_code == 400
    assert complete(url, "hi", temperature=5).status_code == 400


def test_promote_swaps_the_adapter_for_the_next_request(served, module_home):
    server, cfg, engine = served
    url = server.url
    prompt = "User: what do the figs teach?\nAssistant:"
    models = httpx.get(f"{url}/v1/models", headers=AUTH).json()["data"][0]
    assert models["adapter"] is None and "no promoted adapter" in models["serving"]
    r = complete(url, prompt)
    assert r.status_code == 200 and r.headers["x-mothbrain-adapter"] == "base"
    base_text = r.json()["choices"][0]["text"]

    promote(cfg, "v0001")
    r = complete(url, prompt)
    assert r.headers["x-mothbrain-adapter"] == "v0001"
    v1_text = r.json()["choices"][0]["text"]
    assert v1_text != base_text  # the adapter really acts on the generation

    promote(cfg, "v0002")
    r = complete(url, prompt)
    assert r.headers["x-mothbrain-adapter"] == "v0002"
    v2_text = r.json()["choices"][0]["text"]
    assert v2_text not in (v1_text, base_text)
    assert httpx.get(f"{url}/v1/models", headers=AUTH).json()["data"][0]["adapter"] == "v0002"

    # A half-written adapter behind the pointer (link and ledger both name it): the server keeps serving
    # v0002 and says why.
    broken = paths.adapter_dir(cfg, "v0003")
    broken.mkdir()
    (broken / "adapter_config.json").write_text("{}")
    link = paths.current_adapter_link(cfg)
    _point_both(cfg, "v0003")
    r = complete(url, prompt)
    assert r.status_code == 200 and r.headers["x-mothbrain-adapter"] == "v0002"
    assert r.json()["choices"][0]["text"] == v2_text
    info = httpx.get(f"{url}/v1/models", headers=AUTH).json()["data"][0]
    assert info["adapter"] == "v0002" and "v0003" in info["last_error"]

    # Back to a good one (as `promote --rollback` would): the very next request follows.
    _point_both(cfg, "v0001")
    assert os.readlink(link) == "v0001"
    r = complete(url, prompt)
    assert r.headers["x-mothbrain-adapter"] == "v0001" and r.json()["choices"][0]["text"] == v1_text


def _point_both(cfg, version: str) -> None:
    """Point the ledger's current and adapters/current at `version` by hand, bypassing promote's checks."""
    from mothbrain.core.ledger import open_ledger

    with open_ledger(cfg).transaction() as data:
        data["current"] = version
    link = paths.current_adapter_link(cfg)
    tmp = link.with_name(".current.test")
    os.symlink(version, tmp)
    os.replace(tmp, link)


def test_serve_follows_the_ledger_when_the_link_disagrees(state_home):
    """A promotion killed between the link swap and the ledger write: serve settles the pair, ledger first."""
    from mothbrain.config import load_config
    from mothbrain.core.current import current_adapter
    from mothbrain.core.ledger import open_ledger

    cfg = load_config(DEMO)
    led = open_ledger(cfg)
    for _ in range(2):
        v = led.new_version(status="evaluated")["id"]
        d = paths.adapter_dir(cfg, v)
        d.mkdir(parents=True)
        (d / "adapter_config.json").write_text("{}")
        (d / "adapter_model.safetensors").write_bytes(b"\0")
    _point_both(cfg, "v0001")
    link = paths.current_adapter_link(cfg)
    os.symlink("v0002", link.with_name(".current.kill"))
    os.replace(link.with_name(".current.kill"), link)  # the swap happened, the ledger write did not
    assert current_adapter(cfg).version == "v0001"
    assert os.readlink(link) == "v0001" and led.current() == "v0001"


def _sse(url: str, path: str, body: dict) -> list[dict | str]:
    events: list[dict | str] = []
    with httpx.stream("POST", f"{url}{path}", json=body, headers=AUTH, timeout=60) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("data: "):
                data = line[6:]
                events.append(data if data == "[DONE]" else json.loads(data))
    return events


def test_streaming_matches_the_plain_answer(served):
    server, _, _ = served
    url = server.url
    messages = [{"role": "user", "content": "Tell me about the lantern."}]
    body = {"model": "mothbrain", "messages": messages, "max_tokens": 24, "temperature": 0}
    plain = httpx.post(f"{url}/v1/chat/completions", json=body, headers=AUTH, timeout=60).json()
    events = _sse(url, "/v1/chat/completions", {**body, "stream": True})
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant"}
    assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")
    content = [c["choices"][0]["delta"].get("content", "") for c in chunks]
    assert sum(1 for c in content if c) >= 2  # really streamed, token by token
    assert "".join(content).strip() == plain["choices"][0]["message"]["content"]

    events = _sse(
        url,
        "/v1/completions",
        {"model": "mothbrain", "prompt": "The figs", "max_tokens": 8, "stream": True, "temperature": 0},
    )
    assert events[-1] == "[DONE]" and all(e["object"] == "text_completion" for e in events[:-1])


def test_overload_is_answered_and_memory_stays_flat(served):
    server, cfg, _ = served
    url = server.url
    body = {"model": "mothbrain", "prompt": "User: the compost?\nAssistant:", "max_tokens": 16}

    def fire(_):
        try:
            r = httpx.post(f"{url}/v1/completions", json=body, headers=AUTH, timeout=60)
            return r.status_code, r.headers.get("retry-after")
        except httpx.HTTPError as exc:  # a dropped connection is a failure of the server
            return type(exc).__name__, None

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(fire, range(8)))  # warm up: allocator pools, thread stacks
        before = rss_mb()
        t0 = time.time()
        results = list(pool.map(fire, range(40)))
        elapsed = time.time() - t0
    after = rss_mb()
    codes = [c for c, _ in results]
    assert set(codes) <= {200, 503}, codes
    assert codes.count(200) >= 3 and codes.count(503) >= 1  # 1 generating + 2 queued on CPU; the rest told to wait
    assert all(ra and int(ra) >= 1 for c, ra in results if c == 503)
    assert elapsed < 60
    assert after - before < 150, f"RSS grew {after - before:.0f} MB over 40 requests"
    assert complete(url, "still alive?").status_code == 200


def test_ask_through_the_served_system1(served, monkeypatch):
    """The coordinator reaches System 1 over HTTP and System 2 on a fake loopback endpoint."""
    from fakes import FakeSystem2

    from mothbrain.ask.coordinator import ask

    server, _, _ = served
    monkeypatch.setenv("MOTHBRAIN_API_TOKEN", TOKEN)
    with FakeSystem2() as s2:
        cfg = load_config(
            DEMO,
            OVERRIDES
            + [
                f"coordinator.system1_url={server.url}/v1",
                f"coordinator.system2_url={s2.url}",
                "coordinator.system2_model=fake",
                "coordinator.wiki_timeout_s=0.001",
                "coordinator.system1_max_tokens=32",
            ],
        )
        result = ask(cfg, "what do the figs teach?", log_exchange=False)
    s1 = result.layers["system1"]
    assert s1.status == "ok" and s1.text and s1.detail["via"].startswith("http://127.0.0.1")
    assert s1.detail["adapter"] in ("base", "v0001", "v0002")
    assert result.answer.startswith("SYNTH") and s1.text[:20] in s2.synthesis_prompts[-1]
    assert result.degraded and set(result.failed) == {"wiki"}  # only the wiki was given no time


def test_vllm_command(served):
    from mothbrain.core.current import current_adapter
    from mothbrain.serve.vllm_serve import vllm_command

    _, cfg, _ = served
    cmd, notes = vllm_command(cfg, port=9000)
    pointer = current_adapter(cfg)
    assert cmd[:2] == ["vllm", "serve"] and "--enable-lora" in cmd
    assert f"mothbrain={pointer.path}" in cmd and Path(str(pointer.path)).is_absolute()
    assert cmd[cmd.index("--max-lora-rank") + 1] == "16" and cmd[cmd.index("--quantization") + 1] == "bitsandbytes"
    assert not any(TOKEN in c for c in cmd)


def test_a_non_loopback_address_needs_allow_remote(state_home, monkeypatch):
    from click.testing import CliRunner

    from mothbrain.cli import main

    monkeypatch.delenv("MOTHBRAIN_API_TOKEN", raising=False)
    refused = CliRunner().invoke(main, ["serve", "--host", "0.0.0.0", "--port", "8399"])
    assert refused.exit_code == 1 and "Traceback" not in refused.output
    assert "0.0.0.0 is not a loopback address" in refused.output and "--allow-remote" in refused.output
    assert "ssh -N -L 8399:127.0.0.1:8399" in refused.output
    vllm = CliRunner().invoke(main, ["serve", "--engine", "vllm", "--host", "0.0.0.0"])
    assert vllm.exit_code == 1 and "--allow-remote" in vllm.output
    # Allowed: it goes on to the next check (here: no token), not refused for the address.
    allowed = CliRunner().invoke(main, ["serve", "--host", "0.0.0.0", "--port", "8399", "--allow-remote"])
    assert allowed.exit_code == 1 and "no API token" in allowed.output and "loopback" not in allowed.output

"""`mothbrain ask`: System 2 on a fake loopback endpoint, System 1 in-process (tiny model), the real wiki
search; a dead or slow System 2 degrades the answer instead of blocking it."""

from __future__ import annotations

import json
import socket
import time

import pytest
from click.testing import CliRunner
from fakes import FakeSystem2

from mothbrain.config import REPO_ROOT, ConfigError, load_config
from mothbrain.core import paths
from mothbrain.errors import MothError

DEMO = REPO_ROOT / "configs" / "demo-tiny.yaml"


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"  # nothing listens there once the socket is closed


@pytest.fixture(scope="module")
def module_home(tmp_path_factory, tiny_model_into):
    from mothbrain.ingest.stage import run_ingest

    home = tiny_model_into(tmp_path_factory.mktemp("ask") / "state")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MOTHBRAIN_HOME", str(home))
        run_ingest(load_config(DEMO))
    return home


@pytest.fixture
def cfg_for(module_home, monkeypatch):
    monkeypatch.setenv("MOTHBRAIN_HOME", str(module_home))  # one state dir: model and wiki index load once

    def load(*overrides: str):
        return load_config(DEMO, ["coordinator.system2_model=fake", *overrides])

    return load


def test_ask_synthesises_the_three_layers(cfg_for):
    from mothbrain.ask.coordinator import ask

    with FakeSystem2() as s2:
        cfg = cfg_for(f"coordinator.system2_url={s2.url}")
        result = ask(cfg, "What do the figs teach {us}?")
    assert not result.degraded, result.failed
    assert result.answer.startswith("SYNTH")
    s1, wiki = result.layers["system1"], result.layers["wiki"]
    assert s1.status == "ok" and s1.text and s1.detail == {"adapter": "base", "via": "in-process"}
    # each part names the layer that produced it
    assert s1.source == "System 1 (base only: no promoted adapter; tiny-qwen2)"
    assert result.layers["system2"].source == f"System 2 (fake at {s2.url})"
    assert (
        result.answer_by
        == f"System 2 (fake at {s2.url}), weighing {s1.source} and wiki ({cfg.coordinator.wiki_top_k} passages)"
    )
    assert wiki.status == "ok" and len(wiki.detail["passages"]) == cfg.coordinator.wiki_top_k
    assert any("fig" in p["text"].lower() for p in wiki.detail["passages"])  # found by meaning, nearest first
    assert s2.drafts == ["What do the figs teach {us}?"]  # braces in a question survive the template
    (prompt,) = s2.synthesis_prompts
    assert "What do the figs teach {us}?" in prompt and s1.text in prompt
    assert wiki.detail["passages"][0]["text"] in prompt and "DRAFT: patience" in prompt
    assert not prompt.startswith("#")  # the template's comment lines are not sent

    lines = (paths.data_dir(cfg) / "exchanges").glob("*.jsonl")
    records = [json.loads(line) for f in lines for line in f.read_text().splitlines()]
    rec = next(r for r in records if r["id"] == result.exchange_id)
    assert rec["answer"] == result.answer and rec["layers"]["system1"]["text"] == s1.text
    assert rec["layers"]["system2"]["text"].startswith("DRAFT") and rec["system2_model"] == "fake"


def test_slow_system2_degrades_within_its_timeout(cfg_for):
    from mothbrain.ask.coordinator import ask

    ask(cfg_for("coordinator.system2_url=" + closed_port_url()), "warm up")  # model and index loaded
    with FakeSystem2(delay=20) as s2:
        cfg = cfg_for(f"coordinator.system2_url={s2.url}", "coordinator.system2_timeout_s=1.5")
        t0 = time.monotonic()
        result = ask(cfg, "what does the lantern remember?")
        elapsed = time.monotonic() - t0
    others = max(result.layers["system1"].seconds, result.layers["wiki"].seconds)
    assert elapsed < max(others, 1.5) + 2.0, (elapsed, others)  # not the 20 s System 2 takes
    assert result.degraded and result.layers["system2"].status == "timeout"
    assert set(result.failed) == {"system2", "synthesis"} and "skipped" in result.failed["synthesis"]
    assert result.layers["system1"].text in result.answer and "From the wiki" in result.answer
    assert s2.synthesis_prompts == []


def test_dead_system2_from_the_cli(cfg_for, module_home):
    from mothbrain.cli import main

    cfg_for()
    r = CliRunner().invoke(
        main,
        [
            "ask",
            "--json",
            "how is the harbour?",
            "--set",
            f"coordinator.system2_url={closed_port_url()}",
            "--set",
            "coordinator.system2_model=fake",
        ],
    )
    assert r.exit_code == 0, r.output
    out = json.loads(r.output[r.output.index("{") :])
    assert out["degraded"] and out["layers"]["system2"]["status"] == "error"
    assert "unreachable" in out["failed"]["system2"] and out["answer"]


def test_json_names_each_layer_and_an_unconfigured_system2(cfg_for, module_home):
    from mothbrain.cli import main

    cfg_for()
    r = CliRunner().invoke(main, ["ask", "--json", "how is the harbour?", "--set", "coordinator.system2_url="])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output[r.output.index("{") :])
    assert out["layers"]["system2"]["source"] == "System 2: not configured"
    s1 = out["layers"]["system1"]["source"]
    assert s1 == "System 1 (base only: no promoted adapter; tiny-qwen2)"
    assert out["answer_by"].startswith(s1) and out["answer"].startswith(s1 + " said")


def test_system1_names_the_adapter_and_base_it_ran_on(state_home):
    from mothbrain.ask.coordinator import system1_source

    cfg = load_config(DEMO)
    assert system1_source(cfg, {"adapter": "v0003"}) == "System 1 (adapter v0003 on tiny-qwen2)"
    why = "adapter v0003 at /x was not loaded (bad file); still serving the base model"
    assert system1_source(cfg, {"adapter": "base", "why_base": why}) == f"System 1 (base only: {why}; tiny-qwen2)"
    served = load_config(DEMO, ["coordinator.system1_url=http://127.0.0.1:8377/v1"])
    assert (
        system1_source(served, {"adapter": "v0002"})
        == "System 1 (adapter v0002 on tiny-qwen2 at http://127.0.0.1:8377/v1)"
    )


def test_template_and_config_mistakes_are_clear(cfg_for, tmp_path):
    from mothbrain.ask.coordinator import ask

    bad = tmp_path / "t.txt"
    bad.write_text("# comment\nQuestion: {question}\n")
    with pytest.raises(MothError, match=r"lacks \{system1\}"):
        ask(cfg_for(f"coordinator.synthesis_template={bad}"), "q")
    with pytest.raises(MothError, match="cannot be read"):
        ask(cfg_for(f"coordinator.synthesis_template={tmp_path / 'none.txt'}"), "q")
    with pytest.raises(ConfigError, match="coordinator.system1_timeout_s: expected a number > 0"):
        ask(cfg_for("coordinator.system1_timeout_s=0"), "q")  # refused when the config loads
    with pytest.raises(MothError, match="http://"):
        ask(cfg_for("coordinator.system2_url=localhost:8000"), "q")


def test_a_missing_token_is_named_in_asks_own_settings(state_home, monkeypatch):
    from mothbrain.ask.coordinator import ask_system1

    monkeypatch.delenv("MOTHBRAIN_API_TOKEN", raising=False)
    cfg = load_config(REPO_ROOT / "configs" / "demo-tiny.yaml", ["coordinator.system1_url=http://127.0.0.1:9/v1"])
    with pytest.raises(MothError) as err:
        ask_system1(cfg, "what do the figs say?")
    msg = str(err.value)
    assert msg.startswith("ask: coordinator.system1_url (http://127.0.0.1:9/v1) needs the token"), msg
    assert "$MOTHBRAIN_API_TOKEN" in msg and "before `mothbrain serve`" not in msg


def test_the_cli_prints_each_layer_once_and_keeps_library_warnings_out_of_stderr(cfg_for, module_home):
    """A fresh process (warnings fire once per process): a degraded answer is made of System 1's and the
    wiki's words, so they are printed in it and not again in panels of their own; stderr stays clean."""
    import os
    import subprocess
    import sys

    cfg_for()
    cmd = [sys.executable, "-m", "mothbrain.cli", "ask", "how is the harbour?", "--config", str(DEMO)]
    cmd += ["--set", f"coordinator.system2_url={closed_port_url()}", "--set", "coordinator.system2_model=fake"]
    env = {**os.environ, "MOTHBRAIN_HOME": str(module_home), "COLUMNS": "200", "PYTHONWARNINGS": "default"}
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "System 1 (base only: no promoted adapter; tiny-qwen2) said" in r.stdout and "From the wiki" in r.stdout
    assert "answer by System 1 (base only" in r.stdout
    assert "─ system1 ·" not in r.stdout and "─ wiki ·" not in r.stdout  # no second copy in a panel
    assert "─ system2 ·" in r.stdout and "unreachable" in r.stdout  # the failed layer is still shown
    assert "Warning" not in r.stderr, r.stderr[-2000:]

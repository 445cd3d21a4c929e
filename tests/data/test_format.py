"""One text format: preprocess, dream, serve and ask render the same conversation with the same voice prefix."""

from __future__ import annotations

from dataclasses import replace

import pytest

from mothbrain.config import REPO_ROOT, load_config
from mothbrain.data import format as fmt
from mothbrain.sources.records import Document, Turn

DEMO = REPO_ROOT / "configs" / "demo-tiny.yaml"
TOKEN = "test-token-0123456789abcdef"
QUESTION = "What do the figs remind you of?"


class RecordingEngine:
    """The serve Engine's shape; remembers the prompts it is handed and answers nothing much."""

    model_id = "mothbrain"
    version = None
    last_error = ""
    max_parallel = 1

    def __init__(self):
        self.prompts: list[str] = []

    def generate(self, prompts, max_tokens, temperature, top_p, stop, cancel=None):
        self.prompts.extend(prompts)
        return [" Lanterns."] * len(prompts)

    def stream(self, prompt, max_tokens, temperature, top_p, stop, cancel=None):
        self.prompts.append(prompt)
        yield " Lanterns."

    def reload_if_changed(self) -> bool:
        return False


def conversation(voice_role: str, voice_speaker: str = "") -> Document:
    """A chat that ends with the user's question (the voice answers next)."""
    return Document(
        source="chats",
        kind="chat",
        doc_id="c1",
        turns=[
            Turn("user", "Tell me about the harbour."),
            Turn(
                voice_role, "The harbour keeps its lantern lit through every single night of the year.", voice_speaker
            ),
            Turn("user", QUESTION),
            Turn(voice_role, "Lanterns, mostly, and the slow patience of the orchard in late summer.", voice_speaker),
        ],
    )


def preprocess_prompt(cfg, doc: Document) -> str:
    from mothbrain.data.samples import process_document

    source = next(s for s in cfg.sources if s.name == doc.source)
    result = process_document(doc, cfg, source)
    return [s.prompt for s in result.samples if s.sample_type == "voice"][-1]


def dream_prompt(cfg, doc: Document) -> str:
    from mothbrain.data.prompts import render_thread

    source = next(s for s in cfg.sources if s.name == doc.source)
    return render_thread(doc, fmt.voice_roles(cfg, source), cfg.preprocess.context_turns)


def serve_prompt(cfg) -> str:
    from starlette.testclient import TestClient

    from mothbrain.serve.app import create_app

    engine = RecordingEngine()
    with TestClient(create_app(cfg, engine=engine, token=TOKEN)) as client:
        r = client.post(
            "/v1/chat/completions",
            json={"model": "mothbrain", "messages": [{"role": "user", "content": QUESTION}], "max_tokens": 8},
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
    assert r.status_code == 200, r.text
    (prompt,) = engine.prompts
    return prompt


def ask_prompt(cfg, monkeypatch) -> str:
    from mothbrain.ask import coordinator

    engine = RecordingEngine()
    monkeypatch.setattr(coordinator, "local_engine", lambda cfg: engine)
    text, _ = coordinator.ask_system1(cfg, QUESTION)
    assert text == "Lanterns."
    (prompt,) = engine.prompts
    return prompt


def test_every_stage_renders_the_same_voice_prefix(monkeypatch):
    cfg = load_config(DEMO)
    doc = conversation("assistant")
    expected_end = f"{fmt.user_name()}: {QUESTION}\n{fmt.voice_prefix(fmt.voice_name(cfg))}"
    assert expected_end == f"User: {QUESTION}\nAssistant:"
    prompts = {
        "preprocess": preprocess_prompt(cfg, doc),
        "dream": dream_prompt(cfg, replace(doc, turns=doc.turns[:3])),
        "serve": serve_prompt(cfg),
        "ask": ask_prompt(cfg, monkeypatch),
    }
    for stage, prompt in prompts.items():
        assert prompt.endswith(expected_end), (stage, prompt)
    assert prompts["preprocess"] == prompts["dream"]  # the same context turns, rendered the same way
    assert prompts["serve"] == prompts["ask"] == expected_end


@pytest.mark.parametrize("role", ["moth", "Moth"])
def test_changing_voice_roles_changes_what_serve_and_ask_prompt_with(monkeypatch, role):
    cfg = load_config(DEMO, [f"preprocess.voice_roles=[{role}]"])
    assert fmt.voice_name(cfg) == "Moth"
    # Training on that voice: "Moth" turns (as a transcript reads them) become "Moth:" prompts ...
    doc = conversation("moth", "Moth")
    assert preprocess_prompt(cfg, doc).endswith(f"User: {QUESTION}\nMoth:")
    # ... and serve and ask prompt the adapter with the prefix it was trained on.
    assert serve_prompt(cfg) == f"User: {QUESTION}\nMoth:"
    assert ask_prompt(cfg, monkeypatch) == f"User: {QUESTION}\nMoth:"
    default = load_config(DEMO)
    assert serve_prompt(default).endswith("\nAssistant:")


def test_names_follow_the_training_rules():
    assert fmt.speaker_name("assistant") == "Assistant"
    assert fmt.speaker_name("", "") == "Someone"
    assert fmt.speaker_name("user", " Priya Nair ") == "Priya Nair"
    assert fmt.render_prompt([("User", "hi"), ("Moth", "hello")], "User") == "User: hi\nMoth: hello\nUser:"
    assert fmt.stop_strings(["Moth", "User", "Moth"]) == ["\nMoth:", "\nUser:"]

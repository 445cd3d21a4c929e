"""`mothbrain init` finds one's own material, writes a config that loads, doctors and ingests, and never
overwrites one without --force."""

from __future__ import annotations

import json
import re
import shutil
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from mothbrain.cli import main
from mothbrain.config import load_config
from mothbrain.core import paths

FIX = Path(__file__).parents[1] / "fixtures" / "sources"


def make_material(root: Path) -> dict[str, Path]:
    """A ChatGPT export zip, a Claude.ai export and an Obsidian vault, as a person's downloads hold them."""
    root.mkdir(parents=True)
    chatgpt = root / "chatgpt-2025-05-01.zip"
    with zipfile.ZipFile(chatgpt, "w") as zf:
        zf.write(FIX / "chatgpt" / "conversations.json", "conversations.json")
        zf.writestr("chat.html", "<html></html>")
    claude = root / "claude-export" / "conversations.json"
    claude.parent.mkdir()
    shutil.copy(FIX / "claude" / "conversations.json", claude)
    vault = root / "vault"
    (vault / ".obsidian").mkdir(parents=True)
    (vault / ".obsidian" / "app.json").write_text("{}")
    (vault / "Lantern.md").write_text("# Lantern\n\nThe lantern keeps the [[Tide]] honest, and the [[Heron]] too.\n")
    (vault / "Tide.md").write_text("# Tide\n\nThe tide comes back to the [[Lantern]] every night.\n")
    (vault / "birds").mkdir()
    (vault / "birds" / "Heron.md").write_text("# Heron\n\nThe heron waits at the weir, patient as figs.\n")
    return {"chatgpt_export": chatgpt, "claude_export": claude, "wiki": vault}


def init(*args: str):
    res = CliRunner().invoke(main, ["init", *args])
    assert "Traceback" not in res.output, res.output
    return res


@pytest.fixture
def own_state(monkeypatch):
    """The generated config's own state dir must be the one used: $MOTHBRAIN_HOME would win over it."""
    monkeypatch.delenv("MOTHBRAIN_HOME", raising=False)


def test_init_finds_the_material_and_the_config_doctors_and_ingests(tmp_path, own_state):
    expected = make_material(tmp_path / "downloads")
    out, state = tmp_path / "mine.yaml", tmp_path / "my-state"
    res = init(str(tmp_path / "downloads"), "--out", str(out), "--state-dir", str(state))
    assert res.exit_code == 0, res.output
    assert f"mothbrain doctor --config {out}" in res.output and "mothbrain models prepare" in res.output

    cfg = load_config(out)
    assert {s.kind: Path(s.path) for s in cfg.sources} == expected
    assert len(cfg.sources) == 3 and all(Path(s.path).is_absolute() for s in cfg.sources)
    assert paths.state_dir(cfg) == state
    assert cfg.model.base == "smollm2-135m" and cfg.model.device == "cpu"
    assert "--name smollm2-135m" in out.read_text()  # the comment says how to prepare the base

    doctor = CliRunner().invoke(main, ["doctor", "--json", "--config", str(out)])
    checks = {c["name"]: c for c in json.loads(doctor.output[doctor.output.index("{") :])["checks"]}
    for name in ("config", "state dir", "wiki-worker"):
        assert checks[name]["status"] == "ok", checks[name]
    assert "3 sources found" in checks["config"]["detail"]
    assert str(expected["wiki"]) in checks["wiki-worker"]["detail"]  # the vault is the wiki-worker's wiki
    # The SmolLM2 base is not prepared in this state dir yet: doctor says so, naming the command.
    assert checks["base model"]["status"] == "fail" and "models prepare" in json.dumps(checks["base model"])

    ingest = CliRunner().invoke(main, ["ingest", "--json", "--config", str(out)])
    assert ingest.exit_code == 0, ingest.output
    stored = {s["kind"]: s["documents"] for s in json.loads(ingest.output[ingest.output.index("{") :])["sources"]}
    assert stored == {"chatgpt_export": 2, "claude_export": 2, "wiki": 3}
    assert (state / "data" / "ingest" / "manifest.json").is_file()


def test_an_existing_config_is_kept_without_force(tmp_path, own_state):
    make_material(tmp_path / "downloads")
    out = tmp_path / "mine.yaml"
    out.write_text("# my own edits\n")
    res = init(str(tmp_path / "downloads"), "--out", str(out), "--state-dir", str(tmp_path / "s"))
    assert res.exit_code == 1
    assert res.output.strip().splitlines() == [
        f"Error: init: {out} already exists; pass --force to replace it, or --out another file"
    ]
    assert out.read_text() == "# my own edits\n"
    res = init(str(tmp_path / "downloads"), "--out", str(out), "--state-dir", str(tmp_path / "s"), "--force")
    assert res.exit_code == 0 and len(load_config(out).sources) == 3


def test_an_empty_folder_says_what_is_looked_for(tmp_path, own_state):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "sub" / "photo.jpg").write_bytes(b"\xff\xd8")
    res = init(str(tmp_path / "empty"), "--out", str(tmp_path / "c.yaml"))
    assert res.exit_code == 1
    (line,) = res.output.strip().splitlines()
    assert "no material found in" in line and "ChatGPT or Claude.ai exports" in line and "Obsidian vaults" in line
    assert not (tmp_path / "c.yaml").exists()


def test_notes_transcripts_and_chat_logs_get_a_folder_each(tmp_path, own_state):
    root = tmp_path / "archive"
    shutil.copytree(FIX / "transcript", root / "meetings")
    shutil.copytree(FIX / "writing", root / "stories")
    (root / "logs" / "2025").mkdir(parents=True)
    line = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "The tide."}]}
    (root / "logs" / "2025" / "may.jsonl").write_text(json.dumps(line) + "\n")
    (root / "README.md").write_text("What this folder is.\n")  # beside the others: left out, and said so
    out = tmp_path / "c.yaml"
    res = init(str(root), "--out", str(out), "--state-dir", str(tmp_path / "s"))
    assert res.exit_code == 0, res.output
    kinds = {s.kind: Path(s.path) for s in load_config(out).sources}
    assert kinds == {"transcript": root / "meetings", "writing": root / "stories", "chat_jsonl": root / "logs" / "2025"}
    assert "left out README.md" in " ".join(res.output.split())


def test_the_commented_blocks_load_once_uncommented(tmp_path, own_state):
    expected = make_material(tmp_path / "downloads")
    out = tmp_path / "c.yaml"
    assert init(str(tmp_path / "downloads"), "--out", str(out), "--state-dir", str(tmp_path / "s")).exit_code == 0
    text = out.read_text()
    uncommented, inside = [], False
    for line in text.splitlines():
        if re.match(r"^# (briefing|coordinator|wiki):", line):
            inside = True
        elif not line.startswith("#   "):
            inside = False
        uncommented.append(line[2:] if inside else line)
    (tmp_path / "full.yaml").write_text("\n".join(uncommented))
    cfg = load_config(tmp_path / "full.yaml")
    assert cfg.briefing.to == "you@example.org" and cfg.briefing.smtp_host == "smtp.example.org"
    assert cfg.coordinator.system2_model == "your-model"
    assert Path(cfg.wiki.path) == expected["wiki"] and cfg.wiki.git_commit is True


def test_the_gpu_profile_is_production_with_its_own_state_dir(tmp_path, own_state, monkeypatch):
    make_material(tmp_path / "downloads")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.chdir(tmp_path)
    assert init(str(tmp_path / "downloads"), "--profile", "gpu").exit_code == 0
    assert init(str(tmp_path / "downloads")).exit_code == 0
    gpu, cpu = load_config(tmp_path / "mothbrain-gpu.yaml"), load_config(tmp_path / "mothbrain-cpu.yaml")
    assert gpu.model.base == "Qwen/Qwen2.5-72B" and gpu.model.device == "cuda" and gpu.lora.r == 16
    assert Path(gpu.model.config_json).is_file()  # made absolute: the config lives outside configs/
    assert paths.state_dir(gpu) == tmp_path / "xdg" / "mothbrain" / "mothbrain-gpu"
    assert paths.state_dir(cpu) == tmp_path / "xdg" / "mothbrain" / "mothbrain-cpu"


def test_the_init_config_passes_doctor_once_its_base_is_prepared(tmp_path, own_state):
    """The README's walk, with a tiny Llama standing in for SmolLM2: init, `models prepare` under the name the
    config gives, then doctor has no failed check (a box may still warn, e.g. no crontab binary)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from mothbrain.models.tiny import train_tokenizer

    make_material(tmp_path / "downloads")
    out = tmp_path / "mine.yaml"
    assert init(str(tmp_path / "downloads"), "--out", str(out), "--state-dir", str(tmp_path / "st")).exit_code == 0
    tok = train_tokenizer(["The lantern keeps the tide honest, and the heron waits at the weir."] * 20, 300)
    tok.chat_template = "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}{% endfor %}"
    torch.manual_seed(0)
    eos = tok.eos_token_id
    arch = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), bos_token_id=eos, eos_token_id=eos, **arch))
    model.save_pretrained(tmp_path / "stand-in")
    tok.save_pretrained(tmp_path / "stand-in")

    prepared = CliRunner().invoke(
        main, ["models", "prepare", str(tmp_path / "stand-in"), "--name", "smollm2-135m", "--config", str(out)]
    )
    assert prepared.exit_code == 0, prepared.output
    doctor = CliRunner().invoke(main, ["doctor", "--json", "--config", str(out)])
    checks = json.loads(doctor.output[doctor.output.index("{") :])["checks"]
    assert not [c for c in checks if c["status"] == "fail"], checks
    assert doctor.exit_code == 0, doctor.output
    by_name = {c["name"]: c for c in checks}
    assert by_name["base model"]["status"] == "ok" and by_name["architecture"]["status"] == "ok", by_name

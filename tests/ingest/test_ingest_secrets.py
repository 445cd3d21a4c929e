"""No raw secret reaches the state dir: ingest stores redacted text (keeping the counts) in a private store,
and nothing preprocess writes (caches, data set) holds one either."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import yaml

from mothbrain.config import load_config
from mothbrain.data.dataset import load_latest_dataset
from mothbrain.data.stage import run_preprocess
from mothbrain.ingest.stage import run_ingest

PRIVATE_KEY_BODY = "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW"
SECRETS = {
    "openai_key": "sk-proj-Zq81TmWx0Lr5Kd2Pv7Hn4Bc9Yf3Ja6Ue1Gs8Ni5Ow2Qt7Xe",
    "anthropic_key": "sk-ant-api03-Xk9mQ2vR7tY4wP1zL8nB3cF6hJ0dS5gA2eK7uM9iO4qW1rT6yU3pE8xC0vN5bZ2aD7fG4hJ9kL1mQ3sR6t"
    "V8wX0yZ2-AbCdEfAA",
    "github_token": "ghp_9a8B7c6D5e4F3g2H1i0J9k8L7m6N5o4P3q2R",
    "aws_access_key": "AKIAQ7Z3M2K4L5N6P7R8",
    "password": "Kiln7839!x",
    "private_key": PRIVATE_KEY_BODY,
    "email": "tomas.reyes@harbourtown.example",
    "phone": "+44 20 7946 0958",
}
PRIVATE_KEY = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\n"
    f"{PRIVATE_KEY_BODY}\n"
    "QyNTUxOQAAACDq3Y8mP1Zr0sN4fQ2wK7hT9cB6vX1aJ5eL8uR3oG0yWgAAAJgV2k9mFdpP\n"
    "-----END OPENSSH PRIVATE KEY-----"
)


def planted_text() -> str:
    s = SECRETS
    return (
        f"The lantern keeps my key {s['openai_key']} and the other one {s['anthropic_key']}; someone pasted "
        f"{s['github_token']} and {s['aws_access_key']} into the harbour log, and password={s['password']} too. "
        f"Write to {s['email']} or call {s['phone']} about the tide.\n\n{PRIVATE_KEY}\n\nThe tide forgives."
    )


def write_material(root: Path) -> None:
    text = planted_text()
    (root / "chats").mkdir(parents=True)
    line = {
        "id": "c1",
        "messages": [
            {"role": "user", "content": f"Keep this safe: {text}"},
            {"role": "assistant", "content": f"I would rather not. {text} The lantern and the tide agree."},
        ],
    }
    (root / "chats" / "log.jsonl").write_text(json.dumps(line) + "\n")
    conv = {
        "uuid": "5a1e0000-0000-4000-8000-00000000aaaa",
        "name": f"Keys for {SECRETS['email']}",
        "created_at": "2025-04-30T10:00:00Z",
        "chat_messages": [
            {"sender": "human", "text": text, "content": [{"type": "text", "text": text}]},
            {"sender": "assistant", "text": f"Rotate them. {text}", "content": []},
        ],
    }
    (root / "claude").mkdir()
    (root / "claude" / "conversations.json").write_text(json.dumps([conv]))
    (root / "wiki").mkdir()
    front = f"---\ntitle: Lantern\nowner: {SECRETS['email']}\napi_key: {SECRETS['openai_key']}\n---\n"
    (root / "wiki" / "lantern.md").write_text(front + f"# Lantern\n\n{text}\n\nSee [[tide]].\n")


def make_cfg(root: Path, redaction: bool = True):
    data = {
        "sources": [
            {"name": "chats", "kind": "chat_jsonl", "path": "chats"},
            {"name": "claude", "kind": "claude_export", "path": "claude"},
            {"name": "wiki", "kind": "wiki", "path": "wiki"},
        ],
        "model": {"base": str(root / "no-model-here")},
        "preprocess": {"workers": 1, "heldout_fraction": 0.0, "redaction": {"enabled": redaction}},
    }
    (root / "cfg.yaml").write_text(yaml.safe_dump(data))
    return load_config(root / "cfg.yaml")


def files_holding(folder: Path, secrets: dict[str, str]) -> dict[str, list[str]]:
    """secret name → the files under `folder` (every one, read as bytes) that hold it."""
    found: dict[str, list[str]] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = path.read_bytes()
        for name, secret in secrets.items():
            if secret.encode() in data:
                found.setdefault(name, []).append(str(path.relative_to(folder)))
    return found


def test_no_raw_secret_anywhere_in_the_state_dir(tmp_path, state_home):
    write_material(tmp_path)
    cfg = make_cfg(tmp_path)
    # The search works: every secret is in every source file (the Claude export holds them as JSON strings).
    assert set(files_holding(tmp_path, SECRETS)) == set(SECRETS)
    assert all(len(files) >= 3 for files in files_holding(tmp_path, SECRETS).values())

    report = run_ingest(cfg)
    stored = {s.name: s for s in report.sources}
    assert all(s.documents == 1 for s in stored.values())
    for kind in SECRETS:  # each secret counted where it was redacted
        assert all(s.redacted.get(kind, 0) >= 1 for s in stored.values()), kind
    assert stored["wiki"].redacted["email"] >= 2  # the front matter's address too
    run_preprocess(cfg, progress=False)
    dd, meta = load_latest_dataset(cfg)
    for kind in SECRETS:  # preprocess reports what ingest redacted
        assert meta["redacted"].get(kind, 0) >= 1, kind

    assert files_holding(state_home, SECRETS) == {}
    rows = [r for split in dd.values() for r in split]
    assert any("<secret:openai_key>" in r["completion"] and "<email>" in r["completion"] for r in rows)

    # The store is private: its folder 0700, the stored documents and the manifest 0600.
    ingest_dir = state_home / "data" / "ingest"
    assert stat.S_IMODE(ingest_dir.stat().st_mode) == 0o700
    stored_files = [*ingest_dir.glob("shards/*/*.jsonl"), ingest_dir / "manifest.json"]
    assert len(stored_files) == 4 and all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in stored_files)


def test_with_redaction_off_the_store_would_hold_them(tmp_path, state_home):
    """The null case: the same walk finds the secrets once nothing redacts them."""
    write_material(tmp_path)
    run_ingest(make_cfg(tmp_path, redaction=False))
    assert set(files_holding(state_home / "data" / "ingest", SECRETS)) == set(SECRETS)

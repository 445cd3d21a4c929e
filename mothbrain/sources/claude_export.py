"""Claude.ai data export: `conversations.json` (or the export .zip holding it), streamed.

A list of {uuid, name, created_at, chat_messages: [{sender, text, content: [{type, text}], created_at}]}.
Text content blocks are preferred (they exclude tool use and thinking); `text` is the fallback.
"""

from __future__ import annotations

from typing import Any

from mothbrain.config import SourceConfig
from mothbrain.sources._jsonstream import export_reader
from mothbrain.sources.base import Problems, parse_time, record_time
from mothbrain.sources.records import Document, Turn

ROLES = {"human": "user", "user": "user", "assistant": "assistant"}
MARKER = "chat_messages"  # the key every Claude conversation has (and a ChatGPT one lacks)


def _message_text(msg: dict) -> str:
    blocks = msg.get("content")
    if isinstance(blocks, list):
        texts = [
            b["text"]
            for b in blocks
            if isinstance(b, dict) and b.get("type") == "text" and isinstance(b.get("text"), str)
        ]
        if any(t.strip() for t in texts):
            return "\n\n".join(t.strip() for t in texts if t.strip())
    text = msg.get("text")
    return text.strip() if isinstance(text, str) else ""


def conversation(conv: Any, index: int, rel: str, source: SourceConfig, problems: Problems) -> Document | None:
    if not isinstance(conv, dict):
        problems.add(rel, f"conversation {index}", f"a JSON {type(conv).__name__}, expected an object")
        return None
    cid = conv["uuid"] if isinstance(conv.get("uuid"), str) and conv["uuid"] else f"{index}"
    where = f"conversation {cid}"
    msgs = conv.get("chat_messages")
    if not isinstance(msgs, list):
        problems.add(rel, where, "no 'chat_messages' list; skipped")
        return None
    turns, first_t = [], None
    for i, m in enumerate(msgs):
        if not isinstance(m, dict) or not isinstance(m.get("sender"), str) or m["sender"] not in ROLES:
            problems.add(rel, f"{where} message {i}", "message without a known 'sender'; skipped")
            continue
        text = _message_text(m)
        if text:
            turns.append(Turn(role=ROLES[m["sender"]], text=text))
            first_t = first_t or parse_time(m.get("created_at"))
    if not turns:
        problems.add(rel, where, "no message text; skipped")
        return None
    if any("\ufffd" in t.text for t in turns):
        problems.add(rel, where, "invalid UTF-8 bytes replaced with U+FFFD; conversation kept")
    title = conv.get("name") if isinstance(conv.get("name"), str) else ""
    ts = record_time([("created_at", conv.get("created_at"))], rel, where, problems) or first_t
    return Document(
        source=source.name,
        kind="chat",
        doc_id=f"{rel}#{cid}",
        title=title,
        turns=turns,
        meta={"file": rel, "conversation_id": cid, "index": index},
        timestamp=ts,
    )


READER = export_reader("claude_export", MARKER, conversation)

"""ChatGPT data export: `conversations.json` (or the export .zip holding it), streamed.

Each conversation is a tree (`mapping`: node id → {message, parent, children}) because edits and
regenerations branch it. What the person last saw is the branch ending at `current_node`; we walk
it back to the root via `parent` and emit it root → leaf. System, tool and hidden nodes, calls to
tools, non-text content (code, browsing, reasoning) and non-text parts (images) are skipped.
"""

from __future__ import annotations

from typing import Any

from mothbrain.config import SourceConfig
from mothbrain.sources._jsonstream import export_reader
from mothbrain.sources.base import Problems, parse_time, record_time
from mothbrain.sources.records import Document, Turn

TEXT_TYPES = ("text", "multimodal_text")
MARKER = "mapping"  # the key every ChatGPT conversation has (and a Claude one lacks): tells the exports apart


def _parts_text(parts: list) -> str:
    texts = []
    for p in parts:
        if isinstance(p, str):
            texts.append(p)
        elif isinstance(p, dict) and p.get("content_type") == "audio_transcription" and isinstance(p.get("text"), str):
            texts.append(p["text"])  # voice mode: the spoken words are text too
    return "\n".join(texts).strip()


def _latest_leaf(mapping: dict) -> Any:
    """Fallback when current_node is missing: the childless node with the newest message."""
    best, best_t = None, -1.0
    for nid, node in mapping.items():
        if not isinstance(node, dict) or node.get("children"):
            continue
        msg = node.get("message")
        t = parse_time(msg.get("create_time")) if isinstance(msg, dict) else None
        if best is None or (t or 0.0) > best_t:
            best, best_t = nid, t or 0.0
    return best


def branch(mapping: dict, current: Any, rel: str, where: str, problems: Problems) -> list[dict]:
    """The nodes from the root to `current`, following `parent` links."""
    if not isinstance(current, str) or current not in mapping:
        current = _latest_leaf(mapping)
        problems.add(rel, where, "no usable current_node; followed the newest leaf instead")
    nodes, seen, nid = [], set(), current
    while nid is not None:
        if not isinstance(nid, str):
            problems.add(rel, where, f"parent link is a {type(nid).__name__}, not a node id; kept the branch up to it")
            break
        if nid in seen:
            problems.add(rel, where, "cycle in the message tree; kept the branch up to it")
            break
        node = mapping.get(nid)
        if not isinstance(node, dict):
            problems.add(rel, where, f"broken parent link to {str(nid)[:40]!r}; kept the branch up to it")
            break
        seen.add(nid)
        nodes.append(node)
        nid = node.get("parent")
    nodes.reverse()
    return nodes


def conversation(conv: Any, index: int, rel: str, source: SourceConfig, problems: Problems) -> Document | None:
    if not isinstance(conv, dict):
        problems.add(rel, f"conversation {index}", f"a JSON {type(conv).__name__}, expected an object")
        return None
    cid = next((conv[k] for k in ("conversation_id", "id") if isinstance(conv.get(k), str) and conv[k]), f"{index}")
    where = f"conversation {cid}"
    mapping = conv.get("mapping")
    if not isinstance(mapping, dict):
        problems.add(rel, where, "no 'mapping' object; skipped")
        return None
    turns = []
    for node in branch(mapping, conv.get("current_node"), rel, where, problems):
        msg = node.get("message")
        if not isinstance(msg, dict):
            continue  # the root and other structural nodes carry no message
        author = msg.get("author") if isinstance(msg.get("author"), dict) else {}
        role = author.get("role")
        if role not in ("user", "assistant"):
            continue  # system, tool, or unknown
        if msg.get("recipient") not in (None, "all"):
            continue  # the assistant addressing a tool (browser, python), not the person
        meta = msg.get("metadata")
        if isinstance(meta, dict) and meta.get("is_visually_hidden_from_conversation"):
            continue
        content = msg.get("content")
        if not isinstance(content, dict):
            problems.add(rel, f"{where} node {str(msg.get('id', '?'))[:40]}", "message has no content object; skipped")
            continue
        if content.get("content_type") not in TEXT_TYPES:
            continue
        parts = content.get("parts")
        if not isinstance(parts, list):
            problems.add(
                rel, f"{where} node {str(msg.get('id', '?'))[:40]}", "text message without a 'parts' list; skipped"
            )
            continue
        text = _parts_text(parts)
        if text:
            name = author.get("name")
            turns.append(Turn(role=role, text=text, speaker=name if isinstance(name, str) else ""))
    if not turns:
        problems.add(rel, where, "no user or assistant text on the current branch; skipped")
        return None
    if any("\ufffd" in t.text for t in turns):
        problems.add(rel, where, "invalid UTF-8 bytes replaced with U+FFFD; conversation kept")
    title = conv.get("title") if isinstance(conv.get("title"), str) else ""
    ts = record_time([(k, conv.get(k)) for k in ("create_time", "update_time")], rel, where, problems)
    model = conv.get("default_model_slug")
    meta = {"file": rel, "conversation_id": cid, "index": index, **({"model": model} if isinstance(model, str) else {})}
    return Document(
        source=source.name, kind="chat", doc_id=f"{rel}#{cid}", title=title, turns=turns, meta=meta, timestamp=ts
    )


READER = export_reader("chatgpt_export", MARKER, conversation)

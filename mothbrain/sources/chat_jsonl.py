"""Chat logs as JSON lines: OpenAI-style `{"messages": [...]}` or ShareGPT `{"conversations": [...]}`.

The style is detected per line, so one file may mix both. A line is one conversation; its doc id is
`<file>#<id>` when the line carries an id, else `<file>#L<line number>` (stable for append-only logs).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mothbrain.config import SourceConfig
from mothbrain.sources._jsondepth import depth_over
from mothbrain.sources.base import Problems, Reader, record_time
from mothbrain.sources.limits import json_depth, too_deep_reason
from mothbrain.sources.records import Document, Turn

# ShareGPT speaker names → roles (the format was never standardised; these are the ones seen in the wild).
SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "chatgpt": "assistant",
    "bard": "assistant",
    "bing": "assistant",
    "model": "assistant",
    "system": "system",
    "tool": "tool",
    "function": "tool",
    "function_call": "tool",
    "observation": "tool",
}
TIME_KEYS = ("created_at", "create_time", "timestamp", "time", "date")
ID_KEYS = ("id", "conversation_id", "uuid")


def content_text(content: Any) -> str | None:
    """Message content as text: a string, or the text parts of an OpenAI content-part list; None if neither."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if isinstance(part, str):
                texts.append(part)
            elif isinstance(part, dict) and part.get("type") in ("text", "input_text", "output_text"):
                if isinstance(part.get("text"), str):
                    texts.append(part["text"])
        return "\n".join(texts)
    return None


def _openai_turns(msgs: Any, where: str, rel: str, problems: Problems) -> list[Turn] | None:
    if not isinstance(msgs, list):
        problems.add(rel, where, f"'messages' is a {type(msgs).__name__}, expected a list")
        return None
    turns = []
    for i, m in enumerate(msgs):
        if type(m) is dict and type(m.get("role")) is str and type(m.get("content")) is str:
            # The common case (a plain text message), without the general path's checks.
            text = m["content"].strip()
            if text:
                role = m["role"].strip().lower()
                turns.append(
                    Turn(
                        role="tool" if role in ("function", "ipython") else role,
                        text=text,
                        speaker=str(m.get("name") or ""),
                    )
                )
            continue
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            problems.add(rel, f"{where} message {i}", "message without a string 'role'; skipped")
            continue
        role = m["role"].strip().lower()
        role = "tool" if role in ("function", "ipython") else role
        text = content_text(m.get("content"))
        if text is None:
            if m.get("content") is None and (m.get("tool_calls") or m.get("function_call")):
                continue  # an assistant tool call has no words of its own
            problems.add(rel, f"{where} message {i}", "message 'content' is neither text nor content parts; skipped")
            continue
        if text.strip():
            turns.append(Turn(role=role, text=text.strip(), speaker=str(m.get("name") or "")))
    return turns


def _sharegpt_turns(conv: Any, where: str, rel: str, problems: Problems) -> list[Turn] | None:
    if not isinstance(conv, list):
        problems.add(rel, where, f"'conversations' is a {type(conv).__name__}, expected a list")
        return None
    turns = []
    for i, m in enumerate(conv):
        if not isinstance(m, dict) or not isinstance(m.get("from"), str) or not isinstance(m.get("value"), str):
            problems.add(rel, f"{where} turn {i}", "turn without string 'from' and 'value'; skipped")
            continue
        who = m["from"].strip().lower()
        if m["value"].strip():
            turns.append(Turn(role=SHAREGPT_ROLES.get(who, who), text=m["value"].strip()))
    return turns


def parse_line(raw: bytes, line_no: int, rel: str, source: SourceConfig, problems: Problems) -> Document | None:
    """One JSONL line → a Document, or None (blank, or reported as bad)."""
    text = _line_text(raw, line_no, rel, problems)
    obj = None if text is None else _load(text, line_no, rel, problems)
    return None if obj is None else _document(obj, line_no, rel, source, problems)


def _line_text(raw: bytes, line_no: int, rel: str, problems: Problems) -> str | None:
    """The line's text, or None (blank, or reported as not UTF-8)."""
    try:
        text = raw.decode("utf-8").lstrip("\ufeff")
    except UnicodeDecodeError as exc:
        problems.add(rel, f"line {line_no}", f"not UTF-8 (byte {exc.start}); line skipped")
        return None
    return None if not text or text.isspace() else text


def _load(text: str, line_no: int, rel: str, problems: Problems) -> Any:
    """The JSON object of one line's text, or None (reported: not JSON, or nested past ingest.max_json_depth)."""
    where = f"line {line_no}"
    try:
        obj = json.loads(text)
    except RecursionError:
        problems.add(rel, where, too_deep_reason())
        return None
    except ValueError as exc:
        msg = exc.msg if isinstance(exc, json.JSONDecodeError) else type(exc).__name__
        problems.add(rel, where, f"not valid JSON ({msg}); line skipped")
        return None
    if isinstance(obj, (dict, list)) and (depth := depth_over(text, 0, len(text), json_depth())) is not None:
        problems.add(rel, where, too_deep_reason(depth))
        return None
    if not isinstance(obj, dict):
        problems.add(rel, where, f"a JSON {type(obj).__name__}, expected an object with 'messages' or 'conversations'")
        return None
    return obj


def _document(obj: dict, line_no: int, rel: str, source: SourceConfig, problems: Problems) -> Document | None:
    """The Document of one line's object, or None (reported)."""
    where = f"line {line_no}"
    if "messages" in obj:
        turns, style = _openai_turns(obj["messages"], where, rel, problems), "openai"
    elif "conversations" in obj:
        turns, style = _sharegpt_turns(obj["conversations"], where, rel, problems), "sharegpt"
    else:
        keys = ", ".join(sorted(map(str, obj))[:6]) or "none"
        problems.add(rel, where, f"no 'messages' or 'conversations' key (keys: {keys})")
        return None
    if turns is None:
        return None
    if not turns:
        problems.add(rel, where, "conversation has no text; skipped")
        return None
    conv_id = next(
        (obj[k] for k in ID_KEYS if isinstance(obj.get(k), (str, int)) and not isinstance(obj.get(k), bool)), None
    )
    ts = record_time(((k, obj.get(k)) for k in TIME_KEYS), rel, where, problems)
    title = obj.get("title") if isinstance(obj.get("title"), str) else ""
    return Document(
        source=source.name,
        kind="chat",
        doc_id=f"{rel}#{conv_id}" if conv_id is not None else f"{rel}#L{line_no}",
        title=title,
        turns=turns,
        meta={"file": rel, "line": line_no, "style": style},
        timestamp=ts,
    )


def read_from(
    path: Path,
    rel: str,
    source: SourceConfig,
    problems: Problems,
    offset: int = 0,
    first_line: int = 1,
    end: int | None = None,
) -> Iterator[Document]:
    """Documents of the lines starting in [offset, end): ingest resumes appended logs at `offset`
    (the start of line `first_line`) and stops at `end`, the size it hashed, so a log still being
    written is read exactly as far as its recorded hash covers."""
    try:
        f = path.open("rb")
    except OSError as exc:
        problems.add(rel, "file", f"unreadable ({exc.strerror or exc}); check its permissions")
        return
    with f:
        f.seek(offset)
        pos, line_no = offset, first_line
        while (end is None or pos < end) and (raw := f.readline()):
            pos += len(raw)
            # a line's bytes, then its text, are let go as soon as they are decoded: a long line (one conversation)
            # costs about twice its size while it is read, not its bytes, text and objects at once
            text, raw = _line_text(raw, line_no, rel, problems), None
            obj, text = (None if text is None else _load(text, line_no, rel, problems)), None
            doc, obj = (None if obj is None else _document(obj, line_no, rel, source, problems)), None
            if doc is not None:
                yield doc
            line_no += 1


def read(path: Path, rel: str, source: SourceConfig, problems: Problems) -> Iterator[Document]:
    return read_from(path, rel, source, problems)


READER = Reader(kind="chat_jsonl", read=read, suffixes=(".jsonl", ".ndjson"), read_from=read_from)

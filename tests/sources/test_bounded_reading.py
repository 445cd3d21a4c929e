"""Nothing runs away (#29): a record nested past ingest.max_json_depth is refused as that record (its file and
index or line), its neighbours kept, without reading it token by token; a long single-line chat log is read and
stored within about twice that line's size."""

from __future__ import annotations

import json
import math
import tracemalloc
from pathlib import Path

import pytest
import yaml

import mothbrain.sources._jsonstream as jsonstream
import mothbrain.store.documents as documents
from mothbrain.config import SourceConfig, load_config
from mothbrain.ingest.stage import run_ingest
from mothbrain.sources.base import Problems
from mothbrain.sources.limits import file_limit
from mothbrain.sources.registry import get_reader
from mothbrain.store.documents import iter_documents


def conversation(i: int, extra: str = "") -> str:
    msg = {"author": {"role": "user"}, "content": {"content_type": "text", "parts": [f"words of {i}"]}}
    mapping = {"a": {"id": "a", "parent": None, "children": [], "message": msg}}
    text = json.dumps({"title": f"t{i}", "mapping": mapping, "current_node": "a", "conversation_id": f"c{i}"})
    return text.replace('"parent": null', f'"parent": null{extra}')


def nested(shape: str, depth: int) -> str:
    return "[" * depth + "1" + "]" * depth if shape == "list" else '{"a": ' * depth + '"x"' + "}" * depth


def read_export(tmp_path: Path, parts: list[str]) -> tuple[list, Problems, str]:
    text = "[" + ", ".join(parts) + "]"
    path = tmp_path / "conversations.json"
    path.write_text(text)
    problems = Problems()
    src = SourceConfig(name="s", kind="chatgpt_export", path=str(path))
    return list(get_reader("chatgpt_export").read(path, "conversations.json", src, problems)), problems, text


@pytest.mark.parametrize("shape", ["list", "object"])
@pytest.mark.parametrize("depth", [300, 20_000])  # one the decoder reads, one too deep for it
def test_an_export_value_nested_past_the_limit_is_refused_by_index_and_its_neighbours_kept(
    tmp_path, monkeypatch, shape, depth
):
    def no_repair(*args, **kw):
        raise AssertionError("a value that is only deep was read token by token, as damage")

    monkeypatch.setattr(jsonstream, "recover", no_repair)  # the slow reading of damage is not how it is read
    parts = [conversation(0), conversation(1, ', "deep": ' + nested(shape, depth)), conversation(2)]
    docs, problems, text = read_export(tmp_path, parts)
    assert [(d.meta["index"], d.meta["conversation_id"]) for d in docs] == [(0, "c0"), (2, "c2")]
    ((file, where, reason),) = problems.items
    assert (file, where) == ("conversations.json", f"conversation 1 (char {text.index(parts[1])})")
    assert "ingest.max_json_depth (256)" in reason and "neighbours kept" in reason
    if depth == 300:
        assert reason.startswith("nested 303 deep")  # the conversation's own three levels, then the value's


def test_the_depth_limit_is_the_setting(tmp_path):
    parts = [conversation(0, ', "deep": ' + nested("list", 20)), conversation(1)]
    with file_limit(math.inf, max_json_depth=10):
        docs, problems, _ = read_export(tmp_path, parts)
    assert [d.meta["index"] for d in docs] == [1]
    assert problems.items[0][2].startswith("nested 23 deep, past ingest.max_json_depth (10)")
    with file_limit(math.inf, max_json_depth=30):
        docs, problems, _ = read_export(tmp_path, parts)
    assert [d.meta["index"] for d in docs] == [0, 1] and not problems.items


def test_a_chat_log_line_nested_past_the_limit_is_refused_by_its_line(tmp_path):
    line = lambda i, extra="": (
        json.dumps({"id": f"c{i}", "messages": [{"role": "user", "content": f"hi {i}"}]})[:-1] + f"{extra}}}"
    )  # noqa: E731
    path = tmp_path / "log.jsonl"
    deep = [', "x": ' + nested("object", 300), ', "x": ' + nested("list", 20_000)]
    path.write_text("\n".join([line(1), line(2, deep[0]), line(3, deep[1]), line(4)]) + "\n")
    problems = Problems()
    src = SourceConfig(name="s", kind="chat_jsonl", path=str(path))
    docs = list(get_reader("chat_jsonl").read(path, "log.jsonl", src, problems))
    assert [d.doc_id for d in docs] == ["log.jsonl#c1", "log.jsonl#c4"]
    assert [(w, r.split(",")[0]) for _, w, r in problems.items] == [
        ("line 2", "nested 301 deep"),
        ("line 3", "nested more than 256 deep"),
    ]
    assert all("ingest.max_json_depth (256)" in r for _, _, r in problems.items)


def test_a_long_single_line_chat_log_is_read_and_stored_within_about_twice_its_size(tmp_path, monkeypatch):
    # a smaller "large document" than ingest's 8 MB, so a test-sized line is stored a piece at a time too
    monkeypatch.setattr(documents, "LARGE_DOC_CHARS", 1 << 20, raising=False)
    monkeypatch.setattr(documents, "PIECE_CHARS", 1 << 16, raising=False)
    msgs = [
        {"role": ("user", "assistant")[k % 2], "content": f"{k:07d} " + "moth kiln tide " * 60} for k in range(6000)
    ]
    big = json.dumps({"id": "big", "messages": msgs}) + "\n"
    path = tmp_path / "log.jsonl"
    path.write_text(big + json.dumps({"id": "small", "messages": [{"role": "user", "content": "hi"}]}) + "\n")
    cfg_file = tmp_path / "mothbrain.yaml"
    cfg_file.write_text(yaml.safe_dump({"sources": [{"name": "chats", "kind": "chat_jsonl", "path": str(path)}]}))
    cfg = load_config(cfg_file)
    del msgs
    tracemalloc.start()
    try:
        run_ingest(cfg)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    stored = {d.doc_id: d for d in iter_documents(cfg)}
    assert len(stored["log.jsonl#big"].turns) == 6000 and "log.jsonl#small" in stored
    # the line's bytes, its text and its objects were all held at once, then its stored line as bytes and text
    # beside the document: 4.9x the line; now 2.7x (its text and its objects, which Python keeps larger)
    assert peak < 3 * len(big), f"peak {peak / len(big):.2f}x the line"

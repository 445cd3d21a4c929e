"""Nothing runs away: a zip member is held to ingest.max_file_mb by its declared size and by the bytes it really
inflates to, and whitespace padding between conversations is skipped without being kept in memory."""

from __future__ import annotations

import io
import json
import struct
import time
import tracemalloc
import zipfile
from pathlib import Path

import pytest
import yaml

from mothbrain.config import SourceConfig, load_config
from mothbrain.ingest.stage import run_ingest
from mothbrain.sources._jsonstream import iter_array
from mothbrain.sources.base import Problems
from mothbrain.sources.limits import CappedReader, CappedText, FileRefused, file_limit
from mothbrain.sources.registry import get_reader
from mothbrain.store.documents import iter_documents

FIX = Path(__file__).parents[1] / "fixtures" / "sources"
GOOD = json.loads((FIX / "chatgpt" / "conversations.json").read_text())  # two conversations and a system-only one
MB = 1_000_000


def padded_export(padding: int) -> str:
    """The fixture's conversations with `padding` spaces after the first one."""
    first, *rest = (json.dumps(c) for c in GOOD)
    return "[" + first + "," + " " * padding + ",".join(rest) + "]"


def write_zip(path: Path, text: str) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("chatgpt-export/conversations.json", text)


def declare_size(path: Path, size: int) -> None:
    """Make the zip's headers lie: its only member says it inflates to `size` bytes."""
    data = bytearray(path.read_bytes())
    local, central = data.index(b"PK\x03\x04"), data.index(b"PK\x01\x02")
    struct.pack_into("<I", data, local + 22, size)  # local file header: uncompressed size
    struct.pack_into("<I", data, central + 24, size)  # central directory: uncompressed size (what zipfile uses)
    path.write_bytes(bytes(data))


def export_cfg(tmp_path: Path, *overrides: str):
    cfg_file = tmp_path / "mothbrain.yaml"
    cfg_file.write_text(yaml.safe_dump({"sources": [{"name": "gpt", "kind": "chatgpt_export", "path": "src"}]}))
    return load_config(cfg_file, list(overrides))


def titles(cfg) -> list[str]:
    return sorted(d.title for d in iter_documents(cfg))


def read_zip(path: Path, max_file_mb: float):
    reader = get_reader("chatgpt_export")
    problems = Problems()
    with file_limit(max_file_mb):
        docs = list(
            reader.read(path, path.name, SourceConfig(name="s", kind="chatgpt_export", path=str(path)), problems)
        )
    return docs, problems


def test_a_member_declaring_more_than_the_limit_is_refused_by_name_and_loses_nothing(tmp_path):
    (tmp_path / "src").mkdir()
    export = tmp_path / "src" / "export.zip"
    write_zip(export, padded_export(0))
    cfg = export_cfg(tmp_path, "ingest.max_file_mb=1")
    run_ingest(cfg)
    assert titles(cfg) == ["Figs", "Lanterns and the tide"]

    write_zip(export, padded_export(5 * MB))  # a newer export: 5 MB of text, a few KB zipped
    assert export.stat().st_size < 100_000
    t0 = time.monotonic()
    report = run_ingest(cfg)
    assert time.monotonic() - t0 < 10
    (gpt,) = report.sources
    where = {(f, w): r for f, w, r in gpt.problems}
    reason = where[("export.zip", "member chatgpt-export/conversations.json")]
    assert "5 MB" in reason and "ingest.max_file_mb (1 MB)" in reason and "raise ingest.max_file_mb" in reason
    assert gpt.skipped == 1
    assert titles(cfg) == ["Figs", "Lanterns and the tide"]  # what the older export gave stays stored

    report = run_ingest(export_cfg(tmp_path, "ingest.max_file_mb=10"))  # raised: read in full
    assert titles(cfg) == ["Figs", "Lanterns and the tide"]
    assert report.sources[0].skipped == 0 and not [p for p in report.sources[0].problems if "member" in p[1]]


def test_the_declared_size_is_checked_before_anything_is_inflated(tmp_path):
    export = tmp_path / "export.zip"
    write_zip(export, padded_export(5 * MB))
    with pytest.raises(FileRefused) as refused:
        read_zip(export, max_file_mb=1)
    assert refused.value.where == "member chatgpt-export/conversations.json"
    docs, problems = read_zip(export, max_file_mb=6)
    assert [d.title for d in docs] == ["Lanterns and the tide", "Figs"]


def test_a_lying_header_inflates_no_more_than_it_declares_and_keeps_what_came_before(tmp_path):
    export = tmp_path / "export.zip"
    text = padded_export(3 * MB)
    write_zip(export, text)
    cut = text.index(" " * 1000) + 100_000  # the first conversation, then part of the padding
    declare_size(export, cut)  # says 0.1 MB, under the 1 MB limit; inflates to 3 MB
    docs, problems = read_zip(export, max_file_mb=1)
    assert [d.title for d in docs] == ["Lanterns and the tide"]
    assert problems.count == 1, problems.items
    assert "rest of file skipped" in problems.items[0][2]


def test_bytes_inflated_past_the_limit_stop_the_read_and_keep_what_came_before():
    """The counting reader: whatever a header says, a stream stops at the limit, reported, earlier elements kept."""
    text = padded_export(3 * MB).encode()
    capped = CappedReader(io.BytesIO(text), 1 * MB, "member conversations.json of export.zip")
    stream = CappedText(io.BufferedReader(capped), encoding="utf-8")
    problems = Problems()
    got = [obj["title"] for _, obj in iter_array(stream, "export.zip", problems, lambda o: "mapping" in o)]
    assert got == ["Lanterns and the tide"]
    assert capped.count == 1 * MB
    assert problems.count == 1, problems.items  # one line: no second 'truncated export?' for the same cut
    reason = problems.items[0][2]
    assert "member conversations.json of export.zip" in reason and "ingest.max_file_mb (1 MB)" in reason


def test_a_stream_within_the_limit_is_read_whole():
    capped = CappedReader(io.BytesIO(b"x" * 1000), 1000, "m")
    assert capped.read() == b"x" * 1000 and capped.read() == b"" and capped.error is None


def test_whitespace_padding_between_conversations_is_not_kept_in_memory(tmp_path):
    padding = 50 * MB
    path = tmp_path / "conversations.json"
    path.write_text(padded_export(padding))
    problems = Problems()
    tracemalloc.start()
    try:
        with path.open(encoding="utf-8") as stream:
            got = [obj["title"] for _, obj in iter_array(stream, "c.json", problems, lambda o: "mapping" in o)]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert got == ["Lanterns and the tide", "Figs", GOOD[2]["title"]] and problems.count == 0
    assert peak < padding / 5, f"peak {peak / MB:.1f} MB for {padding / MB:.0f} MB of padding"


def test_offsets_stay_true_after_padding_is_dropped():
    text = "[1," + " " * 5000 + "x, 2" + ", 3" * 10 + "]"
    problems = Problems()
    got = [obj for _, obj in iter_array(io.StringIO(text), "f", problems, lambda o: True, chunk=64)]
    assert got == [1, 2] + [3] * 10
    assert problems.items[0][1] == f"conversation 1 (char {text.index('x')})"

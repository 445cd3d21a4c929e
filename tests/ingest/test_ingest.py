"""Incremental ingest: only new/changed files are read, removed ones dropped, bad input counted."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest
import yaml

import mothbrain.ingest.file_job as file_job
import mothbrain.ingest.stage as ingest
from mothbrain.config import load_config
from mothbrain.core import paths
from mothbrain.errors import MothError
from mothbrain.ingest.stage import run_ingest
from mothbrain.store.documents import iter_documents

FIX = Path(__file__).parents[1] / "fixtures" / "sources"


def make_cfg(tmp_path: Path, sources: list[dict]):
    cfg_file = tmp_path / "mothbrain.yaml"
    cfg_file.write_text(yaml.safe_dump({"sources": sources}))
    return load_config(cfg_file)


def chat_line(i: int, ts: float | None = None) -> str:
    obj = {"id": f"c{i}", "messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]}
    if ts is not None:
        obj["created_at"] = ts
    return json.dumps(obj) + "\n"


@pytest.fixture
def corpus(tmp_path):
    """A small live archive: a chat log folder and a wiki folder, plus a config pointing at them."""
    chats, wiki = tmp_path / "src" / "chats", tmp_path / "src" / "wiki"
    chats.mkdir(parents=True)
    (chats / "log.jsonl").write_text("".join(chat_line(i, 1746000000 + i) for i in range(5)))
    (chats / "other.jsonl").write_text(chat_line(100))
    shutil.copytree(FIX / "wiki", wiki)
    cfg = make_cfg(
        tmp_path,
        [
            {"name": "chats", "kind": "chat_jsonl", "path": "src/chats"},
            {"name": "wiki", "kind": "wiki", "path": "src/wiki"},
        ],
    )
    return cfg, chats, wiki


def stats(report, name):
    return next(s for s in report.sources if s.name == name)


def doc_ids(cfg, **kw):
    return sorted(d.doc_id for d in iter_documents(cfg, **kw))


def shard_state(cfg):
    root = paths.ingest_dir(cfg) / "shards"
    return {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


def test_cold_then_unchanged_rerun_reads_nothing(corpus, monkeypatch):
    cfg, chats, wiki = corpus
    r1 = run_ingest(cfg)
    assert (stats(r1, "chats").new, stats(r1, "chats").documents) == (2, 6)
    assert (stats(r1, "wiki").new, stats(r1, "wiki").documents) == (4, 4)
    assert len(doc_ids(cfg)) == 10 and r1.changed
    before = shard_state(cfg)

    def boom(*a, **k):
        raise AssertionError("an unchanged file was opened")

    monkeypatch.setattr(file_job, "_scan", boom)
    monkeypatch.setattr(file_job, "_ingest_file", boom)
    r2 = run_ingest(cfg)
    assert r2.bytes_read == 0 and not r2.changed
    assert stats(r2, "chats").unchanged == 2 and stats(r2, "wiki").unchanged == 4
    assert stats(r2, "chats").documents == 6
    assert shard_state(cfg) == before  # no shard rewritten


def test_changed_touched_and_removed_files(corpus):
    cfg, chats, wiki = corpus
    run_ingest(cfg)
    page = wiki / "Compost.md"
    page.write_text("# Compost heap\n\nMemory is compost, turned weekly.\n")
    os.utime(wiki / "figs.md", ns=(time.time_ns(), time.time_ns() + 10**9))  # touched, same bytes
    (chats / "other.jsonl").unlink()
    r = run_ingest(cfg)
    w, c = stats(r, "wiki"), stats(r, "chats")
    assert (w.changed, w.unchanged, w.documents_read) == (1, 3, 1)
    assert (c.removed, c.unchanged, c.documents) == (1, 1, 5)
    texts = {d.doc_id: d.text for d in iter_documents(cfg)}
    assert "turned weekly" in texts["Compost.md"]
    assert "other.jsonl#c100" not in doc_ids(cfg)
    assert len(list((paths.ingest_dir(cfg) / "shards").rglob("*.jsonl"))) == 5  # the removed file's shard is gone
    assert not run_ingest(cfg).changed


def test_appended_log_is_resumed_not_reread(corpus):
    cfg, chats, wiki = corpus
    log = chats / "log.jsonl"
    run_ingest(cfg)
    with log.open("a") as f:
        f.write(chat_line(5) + chat_line(6).rstrip("\n"))  # the last line is still being written
    r = run_ingest(cfg)
    c = stats(r, "chats")
    assert c.changed == 1 and c.documents_read == 2 and c.documents == 8
    with log.open("a") as f:
        f.write("\n" + chat_line(7))
    r = run_ingest(cfg)
    c = stats(r, "chats")
    assert c.documents_read == 2  # line 7 (c6) re-read because it was unterminated, plus c7
    ids = [i for i in doc_ids(cfg) if i.startswith("log.jsonl")]
    assert ids == [f"log.jsonl#c{i}" for i in range(8)]  # no duplicates, nothing lost
    # rewriting the middle of the log falls back to a full read
    log.write_text(log.read_text().replace('"q2"', '"Q2"'))
    c = stats(run_ingest(cfg), "chats")
    assert c.documents_read == 8 and c.documents == 9
    assert [d.turns[0].text for d in iter_documents(cfg) if d.doc_id == "log.jsonl#c2"] == ["Q2"]


def test_full_rereads_an_appended_log_from_its_start(corpus):
    """`ingest --full` re-reads every file as its help says: an appended chat log is not resumed."""
    cfg, chats, wiki = corpus
    log = chats / "log.jsonl"
    run_ingest(cfg)
    with log.open("a") as f:
        f.write(chat_line(5))
    c = stats(run_ingest(cfg, full=True), "chats")
    assert c.documents_read == 6 + 1  # all six lines of log.jsonl, and other.jsonl's one
    assert c.bytes_read == log.stat().st_size + (chats / "other.jsonl").stat().st_size
    assert [i for i in doc_ids(cfg) if i.startswith("log.jsonl")] == [f"log.jsonl#c{i}" for i in range(6)]


def test_a_file_with_bad_records_is_named_on_every_run_until_fixed(corpus):
    cfg, chats, wiki = corpus
    bad = chats / "broken.jsonl"
    bad.write_text(chat_line(200) + "{not json\n" + "[1, 2]\n")
    first = run_ingest(cfg)
    assert stats(first, "chats").bad_records == 2 and any("broken.jsonl" in w for w in first.warnings)

    second = run_ingest(cfg)  # nothing changed: the file is not read again, but it is named again
    assert stats(second, "chats").bad_records == 0
    (line,) = [w for w in second.warnings if "still have bad records" in w]
    assert "chats: broken.jsonl: 2 bad record(s), first line 2" in line, line

    with bad.open("a") as f:  # an appended line: resumed, and the earlier bad records still count
        f.write(chat_line(201))
    third = run_ingest(cfg)
    assert stats(third, "chats").documents_read == 1
    (line,) = [w for w in run_ingest(cfg).warnings if "still have bad records" in w]
    assert "broken.jsonl: 2 bad record(s)" in line
    bad.write_text(chat_line(200) + chat_line(201))  # fixed
    run_ingest(cfg)
    assert not [w for w in run_ingest(cfg).warnings if "broken.jsonl" in w]


def test_full_rereads_and_config_change_invalidates(corpus, tmp_path):
    cfg, chats, wiki = corpus
    run_ingest(cfg)
    r = run_ingest(cfg, full=True)
    assert stats(r, "wiki").changed == 0 and stats(r, "wiki").unchanged == 4 and r.bytes_read > 0
    # same path, new kind: everything stored for the source is re-read under the new kind
    cfg2 = make_cfg(
        tmp_path,
        [
            {"name": "chats", "kind": "chat_jsonl", "path": "src/chats"},
            {"name": "wiki", "kind": "writing", "path": "src/wiki"},
        ],
    )
    with pytest.raises(MothError, match="run `mothbrain ingest`"):
        list(iter_documents(cfg2))
    r = run_ingest(cfg2)
    assert stats(r, "wiki").new == 5  # writing also takes notes/readme.txt
    assert {d.kind for d in iter_documents(cfg2) if d.source == "wiki"} == {"writing"}
    # a source dropped from the config drops its documents
    cfg3 = make_cfg(tmp_path, [{"name": "chats", "kind": "chat_jsonl", "path": "src/chats"}])
    r = run_ingest(cfg3)
    assert r.dropped_sources == ["wiki"] and r.changed
    assert not list((paths.ingest_dir(cfg3) / "shards").glob("wiki-*"))


def test_missing_source_path_is_one_clean_error(tmp_path):
    cfg = make_cfg(tmp_path, [{"name": "notes", "kind": "wiki", "path": "nowhere/vault"}])
    with pytest.raises(MothError) as err:
        run_ingest(cfg)
    msg = str(err.value)
    assert "notes" in msg and str(tmp_path / "nowhere" / "vault") in msg and "sources[0].path" in msg
    with pytest.raises(MothError, match="run `mothbrain ingest` first"):
        list(iter_documents(cfg))


def test_bad_input_counted_with_file_and_line(tmp_path):
    src = tmp_path / "logs"
    src.mkdir()
    (src / "a.jsonl").write_bytes(
        chat_line(1).encode() + b"{broken\n" + b'{"messages": "x"}\n' + b"\xff\xfe\n" + chat_line(2).encode()
    )
    shutil.copytree(FIX / "chatgpt", tmp_path / "gpt")
    cfg = make_cfg(
        tmp_path,
        [
            {"name": "logs", "kind": "chat_jsonl", "path": "logs"},
            {"name": "gpt", "kind": "chatgpt_export", "path": "gpt"},
        ],
    )
    r = run_ingest(cfg)
    logs = stats(r, "logs")
    assert logs.documents == 2 and logs.bad_records == 3
    assert [(f, w) for f, w, _ in logs.problems] == [
        ("a.jsonl", "line 2"),
        ("a.jsonl", "line 3"),
        ("a.jsonl", "line 4"),
    ]
    assert any("logs: a.jsonl: line 4: not UTF-8" in p for p in r.problems())
    assert stats(r, "gpt").documents == 2 and stats(r, "gpt").bad_records == 1
    row = next(x for x in r.rows() if x["source"] == "total")
    assert row["bad_records"] == 4 and row["documents"] == 4
    assert json.loads(json.dumps(r.to_json()))["bad_records"] == 4


def test_unknown_kind_counted_and_others_go_on(corpus):
    cfg, chats, wiki = corpus
    cfg.sources[1].kind = "mystery"
    r = run_ingest(cfg)
    assert stats(r, "wiki").bad_records == 1 and "unknown source kind" in stats(r, "wiki").problems[0][2]
    assert stats(r, "chats").documents == 6


def test_crash_mid_run_loses_nothing(corpus, monkeypatch):
    cfg, chats, wiki = corpus
    run_ingest(cfg)
    (wiki / "Compost.md").write_text("# Compost\n\nNew text.\n")
    (wiki / "figs.md").write_text("# Figs\n\nNew figs.\n")
    real = file_job._ingest_file
    calls = []

    def crash_on_second(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # kill mid-run, after one shard was replaced
        return real(*a, **k)

    monkeypatch.setattr(file_job, "_ingest_file", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        run_ingest(cfg)
    assert len(doc_ids(cfg)) == 10  # every document still there
    assert not list((paths.ingest_dir(cfg) / "shards").rglob("*.tmp"))
    monkeypatch.setattr(file_job, "_ingest_file", real)
    run_ingest(cfg)
    texts = {d.doc_id: d.text for d in iter_documents(cfg)}
    assert texts["Compost.md"].endswith("New text.") and texts["figs.md"].endswith("New figs.")
    assert len(texts) == 10


def test_since_days_uses_timestamp_then_file_mtime(tmp_path):
    src = tmp_path / "logs"
    src.mkdir()
    now = time.time()
    (src / "dated.jsonl").write_text(chat_line(1, now - 2 * 86400) + chat_line(2, now - 30 * 86400))
    (src / "undated.jsonl").write_text(chat_line(3))
    (src / "old-undated.jsonl").write_text(chat_line(4))
    os.utime(src / "old-undated.jsonl", (now - 90 * 86400, now - 90 * 86400))
    cfg = make_cfg(tmp_path, [{"name": "logs", "kind": "chat_jsonl", "path": "logs"}])
    r = run_ingest(cfg, since=7)
    assert stats(r, "logs").recent == 2
    assert doc_ids(cfg, since_days=7) == ["dated.jsonl#c1", "undated.jsonl#c3"]
    assert len(doc_ids(cfg, since_days=60)) == 3 and len(doc_ids(cfg)) == 4


def test_sample_corpus_ingests(tmp_path):
    sample = Path(__file__).parents[2] / "data" / "sample"
    cfg = make_cfg(
        tmp_path,
        [
            {"name": "chats", "kind": "chat_jsonl", "path": str(sample / "chats")},
            {"name": "wiki", "kind": "wiki", "path": str(sample / "wiki")},
            {"name": "writing", "kind": "writing", "path": str(sample / "writing")},
            {"name": "meetings", "kind": "transcript", "path": str(sample / "transcripts")},
        ],
    )
    r = run_ingest(cfg)
    assert r.bad_records == 0 and r.documents >= 100
    docs = list(iter_documents(cfg))
    assert sum("figs" in d.plain_text().lower() for d in docs) >= 10
    assert any(t.role == "moth" for d in docs if d.kind == "transcript" for t in d.turns)


def test_lone_surrogate_is_stored_replaced_and_reported(tmp_path):
    src = tmp_path / "logs"
    src.mkdir()
    (src / "s.jsonl").write_text('{"messages": [{"role": "assistant", "content": "half a pair \\ud800 here"}]}\n')
    cfg = make_cfg(tmp_path, [{"name": "logs", "kind": "chat_jsonl", "path": "logs"}])
    r = run_ingest(cfg)
    assert stats(r, "logs").bad_records == 1 and "surrogate" in stats(r, "logs").problems[0][2]
    (doc,) = iter_documents(cfg)
    assert doc.turns[0].text == "half a pair ? here"


def test_process_pool_ingest_equals_serial(tmp_path, state_home, monkeypatch):
    """Files read on the process pool give the same documents, counts and problems as read here."""
    chats = tmp_path / "src" / "chats"
    chats.mkdir(parents=True)
    for n in range(4):
        lines = [chat_line(n * 10 + i, 1746000000 + i) for i in range(6)]
        lines.insert(3, "{not json\n")  # one bad record per file, counted with its line
        (chats / f"log{n}.jsonl").write_text("".join(lines))
    cfg = make_cfg(tmp_path, [{"name": "chats", "kind": "chat_jsonl", "path": "src/chats"}])

    serial = run_ingest(cfg)
    serial_docs = [d.to_json() for d in iter_documents(cfg)]
    shutil.rmtree(paths.ingest_dir(cfg))
    monkeypatch.setattr(ingest, "PARALLEL_INGEST_BYTES", 0)
    monkeypatch.setattr(ingest.os, "sched_getaffinity", lambda _pid: {0, 1}, raising=False)
    pooled = run_ingest(cfg)
    assert [d.to_json() for d in iter_documents(cfg)] == serial_docs and len(serial_docs) == 24
    a, b = stats(serial, "chats"), stats(pooled, "chats")
    assert (b.new, b.documents_read, b.bad_records) == (a.new, a.documents_read, a.bad_records) == (4, 24, 4)
    assert sorted(b.problems) == sorted(a.problems) and all("log" in p[0] for p in b.problems)


def test_fast_json_agrees_with_the_standard_library():
    """orjson where it can, json where it refuses: the same values and the same errors as json."""
    from mothbrain.core.jsonfast import dumps_compact, loads

    for text in (
        '{"a": [1, 2.5, "x\\u00e9", null, true], "t": 1732520000.125}',
        '{"s": "\\ud800 lone"}',
        '{"k": 1, "k": 2}',
        '{"n": NaN, "i": -Infinity}',
    ):
        got, want = loads(text), json.loads(text)
        assert repr(got) == repr(want)
    for bad in ('{"a": }', "[1, 2", ""):
        with pytest.raises(ValueError) as fast:
            loads(bad)
        with pytest.raises(ValueError) as slow:
            json.loads(bad)
        assert str(fast.value) == str(slow.value)
    for obj in ({"a": "é ✓", "b": [1, 2.5, None]}, {1: "int key"}, {"big": 2**70}, {"s": "\ud800"}):
        assert dumps_compact(obj) == json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def _ingest_in_subprocess(cfg_file: Path, drop_privileges: bool) -> dict:
    """Ingest in a child process; as root, with its capabilities dropped so that mode 000 means unreadable."""
    import subprocess
    import sys

    code = (
        "import json, sys\n"
        "from mothbrain.config import load_config\n"
        "from mothbrain.ingest.stage import run_ingest\n"
        "r = run_ingest(load_config(sys.argv[1]))\n"
        "print(json.dumps({s.name: {'removed': s.removed, 'documents': s.documents, 'problems': s.problems}"
        " for s in r.sources}))\n"
    )
    cmd = [sys.executable, "-c", code, str(cfg_file)]
    if drop_privileges:
        cmd = [shutil.which("setpriv"), "--inh-caps=-all", "--bounding-set=-all", *cmd]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_unreadable_subfolder_keeps_its_stored_documents(corpus, tmp_path):
    cfg, chats, wiki = corpus
    is_root = os.geteuid() == 0
    if is_root and not shutil.which("setpriv"):
        pytest.skip("root without setpriv: a folder cannot be made unreadable")
    sub = wiki / "garden"
    sub.mkdir()
    (sub / "Plums.md").write_text("# Plums\n\nPlums are patience with a stone in it.\n")
    first = run_ingest(cfg)
    assert stats(first, "wiki").documents == 5
    sub.chmod(0)
    try:
        after = _ingest_in_subprocess(tmp_path / "mothbrain.yaml", drop_privileges=is_root)["wiki"]
    finally:
        sub.chmod(0o755)
    assert after["removed"] == 0 and after["documents"] == 5  # nothing stored was dropped
    assert any(p[0] == "garden" and "unreadable" in p[2] for p in after["problems"]), after["problems"]
    assert "garden/Plums.md" in doc_ids(cfg)


def test_fifo_and_symlink_alias_are_not_read(corpus):
    cfg, chats, wiki = corpus
    os.mkfifo(chats / "pipe.jsonl")  # reading it would block ingest for good, holding the run lock
    (chats / "alias.jsonl").symlink_to(chats / "log.jsonl")  # the same file under a second name
    r = run_ingest(cfg)
    c = stats(r, "chats")
    assert c.documents == 6 and sorted(i.split("#")[0] for i in doc_ids(cfg) if "jsonl" in i).count("log.jsonl") == 5
    reasons = {p[0]: p[2] for p in c.problems}
    assert "not a regular file" in reasons["pipe.jsonl"]
    assert "log.jsonl" in reasons["alias.jsonl"]


def test_a_file_size_limit_is_named_not_called_unreadable(tmp_path, state_home):
    """EFBIG (`ulimit -f`) while storing shards: the run stops naming the cause; readable files are not 'unreadable'."""
    import resource
    import subprocess
    import sys

    chats = tmp_path / "src" / "chats"
    chats.mkdir(parents=True)
    for n in range(12):
        (chats / f"log{n}.jsonl").write_text("".join(chat_line(i + 1000 * n, 1746000000 + i) for i in range(400)))
    cfg_file = tmp_path / "mothbrain.yaml"
    cfg_file.write_text(yaml.safe_dump({"sources": [{"name": "chats", "kind": "chat_jsonl", "path": "src/chats"}]}))

    def limit_file_size():
        resource.setrlimit(resource.RLIMIT_FSIZE, (16_000, 16_000))  # bytes; Python ignores SIGXFSZ

    res = subprocess.run(
        [sys.executable, "-m", "mothbrain", "ingest", "--config", str(cfg_file)],
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=limit_file_size,
    )
    assert res.returncode == 1, (res.stdout, res.stderr)
    assert "File too large" in res.stderr and "EFBIG" in res.stderr and "log" in res.stderr, res.stderr
    assert "unreadable" not in res.stdout + res.stderr
    assert "Traceback" not in res.stderr
    # With the limit lifted the same files ingest whole.
    report = run_ingest(load_config(cfg_file))
    assert stats(report, "chats").documents == 12 * 400 and report.bad_records == 0


def test_a_file_that_hangs_is_given_up_after_its_time_budget(corpus, monkeypatch):
    """A read that does not return (a hung mount) costs that file this run, never the run or its documents."""
    import signal

    cfg, chats, _ = corpus
    assert stats(run_ingest(cfg), "chats").documents == 6
    (chats / "other.jsonl").write_text(chat_line(100) + chat_line(101))  # changed: it must be read again
    real = file_job._scan

    def hung(path, *args):
        if path.name == "other.jsonl":
            time.sleep(120)
        return real(path, *args)

    monkeypatch.setattr(file_job, "_scan", hung)
    handler = signal.getsignal(signal.SIGALRM)
    limited = load_config(cfg.config_path, ["ingest.max_file_seconds=0.5"])
    t0 = time.monotonic()
    c = stats(run_ingest(limited), "chats")
    assert time.monotonic() - t0 < 20
    assert c.skipped == 1 and c.documents == 6  # the file's earlier document is kept
    assert "max_file_seconds (0.5 s)" in {p[0]: p[2] for p in c.problems}["other.jsonl"]
    assert signal.getsignal(signal.SIGALRM) is handler and signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    monkeypatch.setattr(file_job, "_scan", real)
    assert stats(run_ingest(limited), "chats").documents == 7  # read in full once it answers


def test_a_full_disk_during_parallel_ingest_leaves_no_partial_shard(tmp_path, monkeypatch):
    """One worker's disk fills while the others are still writing: the pool is torn down with their shards half
    written. The ingest fails in one line, the documents stored before are all still there, and no `.tmp`
    shard is left behind in the store (not only after the next ingest)."""
    import errno

    chats = tmp_path / "src" / "chats"
    chats.mkdir(parents=True)
    for n in range(6):
        (chats / f"log{n}.jsonl").write_text("".join(chat_line(10 * n + i, 1746000000 + i) for i in range(3)))
    cfg = make_cfg(tmp_path, [{"name": "chats", "kind": "chat_jsonl", "path": "src/chats"}])
    run_ingest(cfg)
    before = [d.doc_id for d in iter_documents(cfg)]
    for n in range(6):  # every file changed: all six are read again, on the pool
        with (chats / f"log{n}.jsonl").open("a") as f:
            f.write(chat_line(100 + n, 1746000100))
    monkeypatch.setattr(ingest, "PARALLEL_INGEST_BYTES", 0)
    monkeypatch.setattr(ingest.os, "sched_getaffinity", lambda _pid: {0, 1}, raising=False)
    real_storing = file_job._storing

    def storing(op, *args):  # forked workers inherit this
        if op is os.fsync:
            name = os.readlink(f"/proc/self/fd/{args[0]}")
            if "log2" in name:
                return real_storing(_raise_enospc, name)
            time.sleep(2)  # still writing when the failure tears the pool down
        return real_storing(op, *args)

    def _raise_enospc(name):
        raise OSError(errno.ENOSPC, "No space left on device", name)

    monkeypatch.setattr(file_job, "_storing", storing)
    with pytest.raises(MothError, match="No space left on device"):
        run_ingest(cfg)
    assert not list(paths.ingest_dir(cfg).rglob("*.tmp"))
    assert set(before) <= {d.doc_id for d in iter_documents(cfg)}  # files read in full before it are new

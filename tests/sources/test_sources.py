"""Source readers: every kind on realistic fixtures, and thousands of malformed records thrown at each."""

from __future__ import annotations

import io
import json
import random
import zipfile
from pathlib import Path

import pytest

from mothbrain.config import SourceConfig
from mothbrain.sources._jsonstream import iter_array
from mothbrain.sources.base import Problems, list_files, parse_time
from mothbrain.sources.registry import get_reader

FIX = Path(__file__).parents[1] / "fixtures" / "sources"


def read_all(kind: str, root: Path, cap: int = 10**6):
    """(documents, problems) of a reader over a file or folder, as ingest would call it."""
    reader = get_reader(kind)
    src = SourceConfig(name="s", kind=kind, path=str(root))
    problems = Problems(cap=cap)
    docs = []
    for f in list_files(root, reader).files:
        rel = f.relative_to(root).as_posix() if f != root else f.name
        docs += list(reader.read(f, rel, src, problems))
    return docs, problems


def turns(doc):
    return [(t.role, t.text) for t in doc.turns]


# --------------------------------------------------------------------------- fixtures of every kind


def test_chat_jsonl_openai_and_sharegpt():
    docs, problems = read_all("chat_jsonl", FIX / "chat")
    by_id = {d.doc_id: d for d in docs}
    assert set(by_id) == {"latin1.jsonl#L1", "mixed.jsonl#o1", "mixed.jsonl#L2", "mixed.jsonl#L3"}
    o1 = by_id["mixed.jsonl#o1"]
    # image part dropped, the content-less tool call skipped, the tool's output kept as role "tool"
    assert turns(o1) == [
        ("system", "You are Moth."),
        ("user", "How do I stay patient?"),
        ("assistant", "Think of the figs."),
        ("tool", "tool output"),
        ("assistant", "Patience is cheaper."),
    ]
    assert o1.timestamp == 1746000000 and o1.kind == "chat" and o1.source == "s"
    assert by_id["mixed.jsonl#L2"].timestamp == parse_time("2025-05-01T12:00:00+00:00")
    assert turns(by_id["mixed.jsonl#L3"]) == [
        ("system", "Be brief."),
        ("user", "Deadline?"),
        ("assistant", "A deadline is a heron."),
    ]
    bad = {(f, w) for f, w, _ in problems.items}
    assert bad == {
        ("mixed.jsonl", "line 5"),
        ("mixed.jsonl", "line 6"),
        ("mixed.jsonl", "line 7"),
        ("latin1.jsonl", "line 2"),
    }
    assert problems.count == 4


def test_chatgpt_export_follows_current_branch_only():
    docs, problems = read_all("chatgpt_export", FIX / "chatgpt")
    assert [d.title for d in docs] == ["Lanterns and the tide", "Figs"]
    first, second = docs
    assert first.doc_id == "conversations.json#c0ffee00-0000-4000-8000-000000000001"
    # root → current_node, the regenerated answer only; system, tool call, tool output, thoughts,
    # the image part and empty parts skipped
    assert turns(first) == [
        ("user", "Why do you light the lantern when the tide turns?"),
        ("assistant", "Habit, mostly. Some comfort. The tide does not read my notes."),
        ("user", "Look up tonight's high water?"),
        ("assistant", "High water is at eleven forty. Hang the lantern low."),
        ("user", "Thanks."),
    ]
    assert "OLD BRANCH" not in first.plain_text()
    assert first.timestamp == 1746000000.0 and first.meta["model"] == "gpt-4o"
    assert turns(second) == [("user", "When will the figs ripen?"), ("assistant", "Figs teach patience.")]
    # the third conversation holds only a system message: counted, not silently dropped
    assert problems.count == 1 and "000000000003" in problems.items[0][1]


def test_chatgpt_export_zip_truncated_and_corrupt(tmp_path):
    good = (FIX / "chatgpt" / "conversations.json").read_text()
    want, _ = read_all("chatgpt_export", FIX / "chatgpt")

    z = tmp_path / "export.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("chatgpt-export/conversations.json", good)
        zf.writestr("chatgpt-export/user.json", "{}")
    got, problems = read_all("chatgpt_export", z)
    assert [turns(d) for d in got] == [turns(d) for d in want] and problems.count == 1

    # a cut anywhere keeps every conversation that ended before it, and reports the cut
    for cut in range(50, len(good) - 5, 397):
        (tmp_path / "cut.json").write_text(good[:cut])
        docs, problems = read_all("chatgpt_export", tmp_path / "cut.json")
        assert [turns(d) for d in docs] == [turns(d) for d in want[: len(docs)]]
        assert problems.count >= 1

    # garbage between conversations costs only the broken one
    convs = json.loads(good)
    text = "[" + json.dumps(convs[0]) + ', {"title": "broken", "mapping": {"x": ]]]}, ' + json.dumps(convs[1]) + "]"
    (tmp_path / "mid.json").write_text(text)
    docs, problems = read_all("chatgpt_export", tmp_path / "mid.json")
    assert [d.title for d in docs] == ["Lanterns and the tide", "Figs"]
    assert problems.count == 1 and "invalid JSON" in problems.items[0][2]


def test_stream_decoder_matches_json_load_with_tiny_buffers():
    data = [{"a": "x" * n, "b": [1, 2.5, None, True, {"c": 'é\\"}'}], "n": 12345678901234} for n in range(40)]
    text = json.dumps(data, indent=1)
    for chunk in (1, 7, 64, 1000):
        problems = Problems()
        got = [obj for _, obj in iter_array(io.StringIO(text), "f", problems, lambda o: True, chunk=chunk)]
        assert got == data and problems.count == 0


def test_claude_export_prefers_text_blocks():
    docs, problems = read_all("claude_export", FIX / "claude")
    assert problems.count == 0
    a, b = docs
    assert a.title == "Compost and memory" and a.doc_id.endswith("#5a1e0000-0000-4000-8000-000000000001")
    assert turns(a) == [
        ("user", "What do you do with old notes?"),
        ("assistant", "Memory is compost.\n\nWhat rots well feeds what comes next."),
    ]
    assert "SECRET" not in a.plain_text() and "TOOL RESULT" not in a.plain_text()
    assert turns(b)[1] == ("assistant", "The council is still talking about the bridge repair.")  # text fallback
    assert a.timestamp == parse_time("2025-04-30T10:00:00Z")


def test_wiki_pages_links_titles_front_matter():
    docs, problems = read_all("wiki", FIX / "wiki")
    by_id = {d.doc_id: d for d in docs}
    assert set(by_id) == {"figs.md", "Compost.md", "broken-yaml.md", "notes/untitled-page.md"}  # .txt not a page
    figs = by_id["figs.md"]
    assert figs.title == "Figs" and figs.meta["tags"] == ["garden", "priority"] and figs.kind == "wiki"
    assert figs.links == ["patience", "Compost", "Garden"]
    assert "Figs teach the long kind of waiting. See Compost and the south wall." in figs.text
    assert "[[" not in figs.text and "fig-photo" not in figs.text and "## Notes" in figs.text
    assert figs.timestamp == parse_time("2025-04-18")
    assert by_id["Compost.md"].title == "Compost heap"
    assert by_id["notes/untitled-page.md"].title == "untitled-page"
    assert by_id["notes/untitled-page.md"].links == ["figs"]
    assert "The body still counts." in by_id["broken-yaml.md"].text
    assert [f for f, _, _ in problems.items] == ["broken-yaml.md"]


def test_writing():
    docs, problems = read_all("writing", FIX / "writing")
    by_id = {d.doc_id: d for d in docs}
    assert by_id["letter.txt"].title == "letter" and by_id["letter.txt"].text.startswith("Dear fig tree,")
    poem = by_id["poem.md"]
    assert poem.title == "Almanac of the Low Tide" and poem.kind == "writing" and "---" not in poem.text
    assert poem.timestamp == parse_time("2025-03-20") and problems.count == 0


def test_transcript_turns_timestamps_continuations():
    (doc,), problems = read_all("transcript", FIX / "transcript")
    assert problems.count == 0
    assert [(t.speaker, t.role) for t in doc.turns] == [
        ("Chair Okafor", "chair okafor"),
        ("Moth", "moth"),
        ("Tomas Reyes", "tomas reyes"),
        ("Moth", "moth"),
        ("MOTH", "moth"),
    ]
    assert doc.turns[2].text == (
        "The engineer's report is in. The east span needs new decking before winter."
        "\n\nIt's always higher than we hoped."
    )
    assert doc.turns[3].text.startswith("Fast bridge repair") and "https://example.org/x" in doc.turns[3].text
    assert doc.title == "Harbour council" and doc.meta["present"].startswith("Chair Okafor")
    assert doc.timestamp == parse_time("2025-05-08")


def test_sample_corpus_reads_cleanly():
    sample = Path(__file__).parents[2] / "data" / "sample"
    counts = {}
    for kind, sub in [("chat_jsonl", "chats"), ("wiki", "wiki"), ("writing", "writing"), ("transcript", "transcripts")]:
        docs, problems = read_all(kind, sample / sub)
        assert problems.count == 0, problems.items
        counts[kind] = len(docs)
    assert counts["chat_jsonl"] >= 60 and counts["wiki"] >= 15 and counts["transcript"] >= 1


# --------------------------------------------------------------------------- fuzz: malformed records


def _good_chat(i: int) -> dict:
    return {
        "id": f"g{i}",
        "messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}],
    }


def _bad_chat_lines(rng: random.Random, i: int) -> bytes:
    good = json.dumps(_good_chat(i))
    kind = rng.randrange(10)
    if kind == 0:
        return good[: rng.randrange(1, len(good) - 1)].encode()  # truncated
    if kind == 1:
        return json.dumps({"messages": rng.choice(["str", 3, {"a": 1}, None, True])}).encode()  # wrong type
    if kind == 2:
        return json.dumps({"messages": [{"role": rng.choice([1, None, []]), "content": "x"}]}).encode()
    if kind == 3:
        return json.dumps({"messages": [{"role": "user", "content": rng.choice([1, [1, 2], {"x": 1}])}]}).encode()
    if kind == 4:
        return b"\xff" + bytes(rng.choice([b for b in range(256) if b != 10]) for _ in range(rng.randrange(1, 40)))
    if kind == 5:
        return json.dumps({"conversations": [{"from": "human"}, {"value": "x"}, 7]}).encode()  # missing keys
    if kind == 6:
        return b"[" * rng.choice([10, 100_000]) + b"]" * rng.choice([0, 10])  # deeply wrong JSON
    if kind == 7:
        return json.dumps(rng.choice([[1, 2], "s", 1.5, None, {"other": 1}])).encode()
    if kind == 8:
        return json.dumps({"messages": []}).encode()
    return good.encode().replace(b'"', b"'", 1)


def test_fuzz_chat_jsonl(tmp_path):
    rng = random.Random(7)
    good_ids, bad_lines = set(), set()
    with (tmp_path / "fuzz.jsonl").open("wb") as f:
        for n in range(1, 3001):
            if rng.random() < 0.5:
                f.write(json.dumps(_good_chat(n)).encode() + b"\n")
                good_ids.add(f"fuzz.jsonl#g{n}")
            else:
                f.write(_bad_chat_lines(rng, n) + b"\n")
                bad_lines.add(f"line {n}")
    docs, problems = read_all("chat_jsonl", tmp_path / "fuzz.jsonl")
    assert {d.doc_id for d in docs} == good_ids
    assert {w.split(" message")[0].split(" turn")[0] for _, w, _ in problems.items} == bad_lines


def _mutate_chatgpt(rng: random.Random, conv: dict) -> dict:
    c = json.loads(json.dumps(conv))
    k = rng.randrange(9)
    if k == 0:
        c["mapping"] = rng.choice([None, [], "x", 5])
    elif k == 1:
        c["mapping"] = {}
    elif k == 2:  # every message unusable: wrong content types
        for n in c["mapping"].values():
            if n.get("message"):
                n["message"]["content"] = rng.choice([None, "text", 5, {"content_type": "text", "parts": "nope"}])
    elif k == 3:  # a parent cycle and no text
        for n in c["mapping"].values():
            n["parent"] = c["current_node"]
            if n.get("message"):
                n["message"]["author"] = {"role": "tool"}
    elif k == 4:
        for n in c["mapping"].values():
            if n.get("message"):
                n["message"]["author"] = rng.choice([None, "user", {"role": 3}])
    elif k == 5:
        c["mapping"] = {k2: rng.choice([None, 1, "s", []]) for k2 in c["mapping"]}
    elif k == 6:
        return rng.choice([[1, 2], "conversation", 3, None])
    elif k == 7:
        for n in c["mapping"].values():
            if n.get("message"):
                n["message"]["content"]["parts"] = [rng.choice([None, 5, {"content_type": "image_asset_pointer"}, ""])]
    else:
        del c["mapping"]
    return c


def test_fuzz_chatgpt_export(tmp_path):
    rng = random.Random(11)
    template = json.loads((FIX / "chatgpt" / "conversations.json").read_text())[1]  # a simple valid one
    convs, good, bad = [], set(), set()
    for i in range(1500):
        c = json.loads(json.dumps(template))
        c["conversation_id"] = c["id"] = f"id-{i}"
        if rng.random() < 0.5:
            good.add(f"conversations.json#id-{i}")
        else:
            c = _mutate_chatgpt(rng, c)
            bad.add(i)
        convs.append(c)
    (tmp_path / "conversations.json").write_text(json.dumps(convs))
    docs, problems = read_all("chatgpt_export", tmp_path / "conversations.json")
    assert {d.doc_id for d in docs} == good
    reported = {int(w.split()[1].removeprefix("id-")) for _, w, _ in problems.items}
    assert reported == bad


def test_fuzz_claude_export_with_syntax_damage(tmp_path):
    rng = random.Random(13)
    good, chunks, n_bad = set(), [], 0
    for i in range(1500):
        conv = {
            "uuid": f"u{i}",
            "name": "n",
            "created_at": "2025-05-01T00:00:00Z",
            "chat_messages": [{"sender": "human", "text": f"h{i}"}, {"sender": "assistant", "text": f"a{i}"}],
        }
        r = rng.random()
        if r < 0.6:
            chunks.append(json.dumps(conv))
            good.add(f"conversations.json#u{i}")
            continue
        n_bad += 1
        if r < 0.75:
            conv["chat_messages"] = rng.choice([None, "x", [{"sender": "robot", "text": "x"}], [3]])
            chunks.append(json.dumps(conv))
        elif r < 0.9:  # broken JSON syntax inside one conversation
            text = json.dumps(conv)
            chunks.append(text[: rng.randrange(5, len(text) - 3)] + rng.choice(["]]", ", , ", "\x00", "}"]))
        else:
            chunks.append(json.dumps(rng.choice([1, "s", None, [1]])))
    raw = ("[" + ",\n".join(chunks) + "]").encode()
    raw = raw.replace(b'"h7"', b'"h\xff7"')  # a non-UTF-8 byte: replaced, reported, kept
    (tmp_path / "conversations.json").write_bytes(raw)
    docs, problems = read_all("claude_export", tmp_path / "conversations.json")
    assert {d.doc_id for d in docs} == good
    # every bad conversation is reported (a broken one may also report its resync), plus the bad byte
    assert problems.count >= n_bad + (1 if "conversations.json#u7" in good else 0)
    assert all(f == "conversations.json" for f, _, _ in problems.items)


@pytest.mark.parametrize("kind", ["wiki", "writing", "transcript"])
def test_fuzz_text_sources(tmp_path, kind):
    rng = random.Random(17)
    n_binary = 0
    for i in range(300):
        r = rng.random()
        if r < 0.3:
            data = b"\xff\xfe" + bytes(rng.randrange(256) for _ in range(rng.randrange(0, 200)))
            n_binary += 1
        elif r < 0.6:
            data = (
                "---\n"
                + rng.choice(["title: [x", ": :", "- a\n- b", "x: 1", ""])
                + rng.choice(["\n---\n", "\n"])
                + "".join(
                    rng.choice(["[[", "]]", "|", "#", ":", "Moth: ", "\n", "a", " ", "[00:01]"])
                    for _ in range(rng.randrange(0, 80))
                )
            ).encode()
        else:
            data = bytes(rng.randrange(32, 127) for _ in range(rng.randrange(0, 300)))
        (tmp_path / f"f{i:03d}.md").write_bytes(data)
    docs, problems = read_all(kind, tmp_path)
    not_utf8 = [p for p in problems.items if "not UTF-8" in p[2]]
    assert len(not_utf8) == n_binary
    assert all(d.doc_id.endswith(".md") for d in docs)


# Type confusion anywhere in a record: every record ends up as a document or a counted problem.
ODD_VALUES = [None, 0, -1, 1.5, 10**30, "", "x", [], {}, [None], {"a": None}, True, "\ud800", [[[]]]]
KEEP_KEYS = {"id", "conversation_id", "uuid"}


def _paths(obj, prefix=()):
    if isinstance(obj, dict):
        for k, v in obj.items():
            if not (len(prefix) == 0 and k in KEEP_KEYS):
                yield prefix + (k,)
                yield from _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield prefix + (i,)
            yield from _paths(v, prefix + (i,))


def _scramble(rng: random.Random, obj):
    obj = json.loads(json.dumps(obj))
    for _ in range(rng.randint(1, 3)):
        paths = list(_paths(obj))
        if not paths:
            break
        *parent, last = rng.choice(paths)
        node = obj
        for k in parent:
            node = node[k]
        node[last] = json.loads(json.dumps(rng.choice(ODD_VALUES)))  # a fresh copy each time
    return obj


@pytest.mark.parametrize("kind", ["chat_jsonl", "chatgpt_export", "claude_export"])
def test_fuzz_type_confusion_every_record_accounted(tmp_path, kind):
    rng = random.Random(23)
    if kind == "chat_jsonl":
        seeds = [json.loads(x) for x in (FIX / "chat" / "mixed.jsonl").read_text().splitlines()[:3]]
    else:
        sub = "chatgpt" if kind == "chatgpt_export" else "claude"
        seeds = json.loads((FIX / sub / "conversations.json").read_text())[:2]
    records = []
    for i in range(1000):
        rec = _scramble(rng, seeds[i % len(seeds)])
        if isinstance(rec, dict):
            for k in KEEP_KEYS & set(rec):
                rec[k] = f"r{i}"
            if kind == "chat_jsonl":
                rec["id"] = f"r{i}"
        records.append(rec)
    if kind == "chat_jsonl":
        (tmp_path / "f.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    else:
        (tmp_path / "conversations.json").write_text(json.dumps(records))
    docs, problems = read_all(kind, tmp_path)
    accounted = {d.doc_id.split("#")[1] for d in docs}
    for _, where, _ in problems.items:
        word = where.split()[1]
        accounted.add(f"r{int(word) - 1}" if kind == "chat_jsonl" else (word if word.startswith("r") else f"r{word}"))
    assert accounted == {f"r{i}" for i in range(1000)}


# --------------------------------------------------------------------------- impossible timestamps

# Values a time field can hold that no clock can: each must cost its record only the time.
IMPOSSIBLE_TIMES = ["inf", "Infinity", "-inf", "nan", "1e400", 1e300, -5, "2026-02-30", "2026-01-01T00:00:00+25:00"]
IMPOSSIBLE_RAW_JSON = ["Infinity", "-Infinity", "NaN", "1e400", "1" * 4300]  # written straight into the JSON text


def test_parse_time_is_total():
    for v in [*IMPOSSIBLE_TIMES, float("inf"), float("nan"), 10**4300, "9" * 5000, [1], {"a": 1}, object()]:
        assert parse_time(v) is None, v
    assert parse_time("2025-05-01T00:00:00Z") == 1746057600.0
    assert parse_time(1746057600000) == 1746057600.0  # milliseconds still read


def _chat_line_with_time(i: int, raw_time: str) -> str:
    return f'{{"id": "c{i}", "created_at": {raw_time}, "messages": [{{"role": "user", "content": "q"}}]}}\n'


@pytest.mark.parametrize("raw", [json.dumps(v) for v in IMPOSSIBLE_TIMES] + IMPOSSIBLE_RAW_JSON)
def test_one_impossible_time_costs_only_that_record_its_time_chat_jsonl(tmp_path, raw):
    lines = [_chat_line_with_time(i, str(1746000000 + i)) for i in range(100)]
    lines[50] = _chat_line_with_time(50, raw)
    (tmp_path / "log.jsonl").write_text("".join(lines))
    docs, problems = read_all("chat_jsonl", tmp_path / "log.jsonl")
    assert len(docs) == 100
    assert [d.timestamp is None for d in docs].count(True) == 1 and docs[50].timestamp is None
    assert problems.count == 1 and problems.items[0][1] == "line 51" and "created_at" in problems.items[0][2]


@pytest.mark.parametrize("raw", ['"inf"', "1e400", '"2026-02-30"'])
def test_one_impossible_time_costs_only_that_record_its_time_exports(tmp_path, raw):
    claude = [
        json.dumps({"uuid": f"u{i}", "created_at": "@T@", "chat_messages": [{"sender": "human", "text": "h"}]}).replace(
            '"@T@"', raw if i == 3 else '"2025-05-01T00:00:00Z"'
        )
        for i in range(10)
    ]
    (tmp_path / "claude").mkdir()
    (tmp_path / "claude" / "conversations.json").write_text("[" + ",".join(claude) + "]")
    docs, problems = read_all("claude_export", tmp_path / "claude" / "conversations.json")
    assert len(docs) == 10 and docs[3].timestamp is None and problems.count == 1

    template = json.loads((FIX / "chatgpt" / "conversations.json").read_text())[1]
    convs = []
    for i in range(10):
        c = dict(template, id=f"id-{i}", conversation_id=f"id-{i}", create_time="@T@", update_time=None)
        convs.append(json.dumps(c).replace('"@T@"', raw if i == 3 else "1746000000"))
    (tmp_path / "gpt").mkdir()
    (tmp_path / "gpt" / "conversations.json").write_text("[" + ",".join(convs) + "]")
    docs, problems = read_all("chatgpt_export", tmp_path / "gpt" / "conversations.json")
    assert len(docs) == 10 and docs[3].timestamp is None and problems.count == 1


@pytest.mark.parametrize(
    "line",
    [
        "date: .inf",
        "date: 2026-02-30",
        "date: 2026-01-01T00:00:00+25:00",
        "date: " + "1" * 4300,
        "date: " + "1" * 5000,
        "date: 0001-01-01T00:00:00+01:00",
    ],
)
@pytest.mark.parametrize("kind", ["wiki", "writing", "transcript"])
def test_impossible_front_matter_date_keeps_the_page_and_its_other_fields(tmp_path, kind, line):
    body = "Ann: hello there\nBob: hi\n" if kind == "transcript" else "# Page\n\nbody text\n"
    (tmp_path / "good.md").write_text(f"---\ntitle: Fine\ndate: 2025-05-01\n---\n{body}")
    (tmp_path / "bad.md").write_text(f"---\ntitle: Kept\n{line}\n---\n{body}")
    docs, problems = read_all(kind, tmp_path)
    by_name = {d.meta["file"]: d for d in docs}
    assert set(by_name) == {"good.md", "bad.md"}
    assert by_name["bad.md"].timestamp is None and by_name["bad.md"].title == "Kept"
    assert by_name["good.md"].timestamp == 1746057600.0
    assert problems.count == 1 and problems.items[0][0] == "bad.md"


def test_front_matter_nested_beyond_the_stack_is_a_counted_problem(tmp_path):
    (tmp_path / "deep.md").write_text("---\nx: " + "[" * 5000 + "]" * 5000 + "\n---\n# Deep\n\nbody\n")
    docs, problems = read_all("wiki", tmp_path)
    assert len(docs) == 1 and docs[0].text.endswith("body")
    assert problems.count == 1


def test_front_matter_alias_bomb_is_a_counted_problem_not_a_hang(tmp_path):
    # "Billion laughs": ~600 bytes of YAML aliases that expand to 10^9 strings (ran past 120 s at 3.1 GB).
    levels = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i, name in enumerate("bcdefghi"):
        prev = "abcdefghi"[i]
        levels.append(f"{name}: &{name} [" + ",".join(f"*{prev}" for _ in range(9)) + "]")
    (tmp_path / "bomb.md").write_text("---\ntitle: Bomb\n" + "\n".join(levels) + "\n---\n# Bomb\n\nbody\n")
    (tmp_path / "anchors.md").write_text("---\ntitle: Fine\nbase: &b {x: 1}\nother: *b\n---\n# Fine\n\nbody\n")
    docs, problems = read_all("wiki", tmp_path)
    by_name = {d.meta["file"]: d for d in docs}
    assert set(by_name) == {"bomb.md", "anchors.md"} and by_name["bomb.md"].text.endswith("body")
    assert problems.count == 1 and problems.items[0][0] == "bomb.md" and "alias" in problems.items[0][2]


# --------------------------------------------------------------------------- broken export elements


def _claude_conv(i: int) -> dict:
    return {"uuid": f"u{i}", "name": "n", "chat_messages": [{"sender": "human", "text": f"h{i}"}]}


# Damage that leaves an element's brackets and strings balanced, so its extent is knowable.
BALANCED_DAMAGE = [
    lambda t: t.replace('"name":', '"name"', 1),  # a missing colon
    lambda t: t.replace('"n"', '"n" "m"', 1),  # two values
    lambda t: t.replace("[", "[ , ", 1),  # an empty slot
    lambda t: t.replace('"name"', '"na\x00me"', 1),  # a control character in a string
    lambda t: t[:-1] + "]]]}",  # stray closers inside
    lambda t: t.replace('"n"', "nope", 1),  # a bare word
]
# Elements that are fine JSON but no conversation; after a broken one, the old resync skipped them uncounted.
NOT_CONVERSATIONS = ["1", '"s"', "null", "[1, 2]", '{"other": 1}', "true"]


def _index_of(where: str) -> int | None:
    head = where.split(" (")[0].split()
    return int(head[1]) if len(head) == 2 and head[1].isdigit() else None


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_every_export_element_is_stored_or_counted_at_its_true_index(tmp_path, seed):
    rng = random.Random(seed)
    chunks, good, bad = [], set(), set()
    for i in range(600):
        text = json.dumps(_claude_conv(i))
        r = rng.random()
        if r < 0.6:
            good.add(i)
        elif r < 0.85:
            text = rng.choice(BALANCED_DAMAGE)(text)
            bad.add(i)
        else:
            text = rng.choice(NOT_CONVERSATIONS)
            bad.add(i)
        chunks.append(text)
    (tmp_path / "conversations.json").write_text("[" + ",\n".join(chunks) + "]")
    docs, problems = read_all("claude_export", tmp_path / "conversations.json")
    stored = {d.meta["index"] for d in docs}
    assert stored == good
    assert {d.doc_id for d in docs} == {f"conversations.json#u{i}" for i in good}
    counted = {_index_of(w) for _, w, _ in problems.items}
    assert counted == bad and problems.count == len(bad)


def test_a_string_cut_open_loses_no_good_conversation(tmp_path):
    rng = random.Random(5)
    chunks, good = [], set()
    for i in range(600):
        text = json.dumps(_claude_conv(i))
        if rng.random() < 0.15:
            text = text[: rng.randrange(5, len(text) - 3)] + rng.choice(['"', "]]", "}"])
        else:
            good.add(f"conversations.json#u{i}")
        chunks.append(text)
    (tmp_path / "conversations.json").write_text("[" + ",\n".join(chunks) + "]")
    docs, problems = read_all("claude_export", tmp_path / "conversations.json")
    assert {d.doc_id for d in docs} == good


# --------------------------------------------------------------------------- every record accounted for, all six kinds

TEXT_KINDS = ("wiki", "writing", "transcript")


def _damaged_export_text(rng: random.Random, records: list, n_bad: int) -> str:
    """A JSON array of `records` in which about `n_bad` elements have broken JSON syntax."""
    chunks = []
    for rec in records:
        text = json.dumps(rec)
        if rng.random() < n_bad / len(records) and len(text) > 10:
            # cut anywhere after its first key's name, inside its opening too; a cut inside that name leaves
            # nothing that says an element was there (a known limit)
            cut = rng.randrange(text.index(":"), len(text) - 3)
            text = text[:cut] + rng.choice(["]]", ", , ", "\x00", "}", "{", '"'])
        chunks.append(text)
    return "[" + ",\n".join(chunks) + "]"


def _fuzzed_text_file(rng: random.Random, kind: str) -> bytes:
    r = rng.random()
    if r < 0.15:
        return b"\xff\xfe" + bytes(rng.randrange(256) for _ in range(rng.randrange(0, 120)))
    if r < 0.25:
        return rng.choice([b"", b"   \n\n", b"---\n", b"---\n---\n", b"\x00\x00"])
    if r < 0.55:
        front = rng.choice(["title: [x", ": :", "- a\n- b", "x: 1", "", "a: &x [*x]", "date: .inf"])
        body = "".join(
            rng.choice(["[[", "]]", "|", "#", ":", "Moth: ", "Ana: ", "\n", "a", " ", "[00:01]", "word"])
            for _ in range(rng.randrange(0, 80))
        )
        return ("---\n" + front + rng.choice(["\n---\n", "\n"]) + body).encode()
    if kind == "transcript":
        return "".join(f"{rng.choice(['Moth', 'Ana'])}: line {i} of it\n" for i in range(rng.randrange(1, 6))).encode()
    return " ".join(rng.choice(["the", "moth", "kiln", "tide", "figs"]) for _ in range(rng.randrange(1, 60))).encode()


def test_ten_thousand_malformed_records_across_all_six_kinds_none_vanish(tmp_path):
    """Each record is stored, or counted as bad with its file and position: zero vanished (#19)."""
    rng = random.Random(2026)
    vanished: dict[str, list] = {}
    total = 0

    # chat_jsonl: a record is a line
    folder = tmp_path / "chat_jsonl"
    folder.mkdir()
    with (folder / "f.jsonl").open("wb") as f:
        for n in range(1, 2001):
            f.write((json.dumps(_good_chat(n)).encode() if rng.random() < 0.4 else _bad_chat_lines(rng, n)) + b"\n")
    docs, problems = read_all("chat_jsonl", folder)
    seen = {int(d.meta["line"]) for d in docs}
    seen |= {int(where.split()[1]) for _, where, _ in problems.items if where.startswith("line ")}
    vanished["chat_jsonl"] = sorted(set(range(1, 2001)) - seen)
    total += 2000

    # the two exports: a record is an element of the array (mutated fields and broken syntax both)
    chatgpt_seed = json.loads((FIX / "chatgpt" / "conversations.json").read_text())[1]
    claude_seed = {
        "uuid": "u",
        "name": "n",
        "created_at": "2025-05-01T00:00:00Z",
        "chat_messages": [{"sender": "human", "text": "h"}, {"sender": "assistant", "text": "a"}],
    }
    for kind, seed, id_key in (
        ("chatgpt_export", chatgpt_seed, "conversation_id"),
        ("claude_export", claude_seed, "uuid"),
    ):
        # two exports of 1,000 each: one with wrong types anywhere (every element valid JSON, some not objects),
        # one with broken JSON syntax in about 300 of its conversations
        folder = tmp_path / kind
        folder.mkdir()
        for part, offset in (("types", 0), ("syntax", 1000)):
            records = []
            for i in range(offset, offset + 1000):
                rec = json.loads(json.dumps(seed))
                rec[id_key] = f"r{i}"
                if kind == "chatgpt_export":
                    rec["id"] = f"r{i}"
                if part == "types" and rng.random() < 0.5:
                    rec = _mutate_chatgpt(rng, rec) if kind == "chatgpt_export" else _scramble(rng, rec)
                    if isinstance(rec, dict) and kind == "claude_export":
                        rec[id_key] = f"r{i}"
                records.append(rec)
            sub = folder / part
            sub.mkdir()
            text = json.dumps(records) if part == "types" else _damaged_export_text(rng, records, n_bad=300)
            (sub / "conversations.json").write_text(text)
        docs, problems = read_all(kind, folder)
        seen = {d.doc_id.split("#", 1)[1] for d in docs}
        for file, where, _ in problems.items:
            words = where.split()
            if words[0] == "conversation":
                offset = 0 if file.startswith("types") else 1000
                seen.add(words[1] if words[1].startswith("r") else f"r{int(words[1]) + offset}")
        vanished[kind] = sorted({f"r{i}" for i in range(2000)} - seen, key=lambda r: int(r[1:]))
        total += 2000

    # the text kinds: a record is a file
    for kind in TEXT_KINDS:
        folder = tmp_path / kind
        folder.mkdir()
        for i in range(1400):
            (folder / f"p{i:04d}.md").write_bytes(_fuzzed_text_file(rng, kind))
        docs, problems = read_all(kind, folder)
        seen = {d.doc_id.split("#", 1)[0] for d in docs} | {file for file, _, _ in problems.items}
        vanished[kind] = sorted({f"p{i:04d}.md" for i in range(1400)} - seen)
        total += 1400

    assert total >= 10_000
    assert {k: v[:5] for k, v in vanished.items() if v} == {}, {k: len(v) for k, v in vanished.items()}

"""Preprocess on small synthetic documents: samples, redaction on disk, dedup, split, concepts, saving."""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path

import pytest
import yaml

from mothbrain.config import REPO_ROOT, ConfigError, FilterConfig, load_config
from mothbrain.data import assemble, process
from mothbrain.data.dataset import fingerprint, load_latest_dataset
from mothbrain.data.dedup import Deduper
from mothbrain.data.filters import apply_filters, drop_long_code_blocks, drop_tables, replace_urls
from mothbrain.data.samples import split_to_chunks
from mothbrain.data.stage import run_preprocess
from mothbrain.data.writer import features
from mothbrain.errors import MothError, NothingToDo
from mothbrain.sources.records import Document, Turn

NOW = time.time()
DAY = 86400.0
SECRETS = {
    "openai": "sk-proj-Zq81TmWx0Lr5Kd2Pv7Hn4Bc9Yf3Ja6Ue1Gs8Ni5Ow2Qt7Xe",
    "github": "ghp_9a8B7c6D5e4F3g2H1i0J9k8L7m6N5o4P3q2R",
    "email": "tomas.reyes@harbourtown.example",
    "phone": "+44 20 7946 0958",
    "aws": "AKIAQ7Z3M2K4L5N6P7R8",
    "password": "Kiln7839!x",
}
LONG = (
    "The kiln cools slowly through the night and the potters sleep beside it, dreaming of glazes "
    "that never crack and apologies that never need making. In the morning the shelves are "
    "counted grain by grain, pot by pot, and the broken ones are set aside for the garden wall. "
    "Nobody hurries a kiln twice; the first time teaches you, the second time is a choice, and "
    "the third time is a story you tell the new apprentice while the bricks tick and settle."
)


def make_cfg(tmp_path: Path, **preprocess) -> object:
    data = {
        "sources": [
            {"name": "chats", "kind": "chat_jsonl", "path": "chats"},
            {"name": "wiki", "kind": "wiki", "path": "wiki"},
            {"name": "council", "kind": "transcript", "path": "tr", "voice_roles": ["MOTH"]},
            {"name": "loud", "kind": "chat_jsonl", "path": "loud", "weight": 2.0},
        ],
        "model": {"base": str(tmp_path / "no-model-here")},
        "preprocess": {
            "context_turns": 2,
            "max_chars": 400,
            "heldout_fraction": 0.3,
            "workers": 1,
            "association_min_docs": 3,
            "association_pairs": 40,
            "priority_concepts": [
                {"name": "figs", "min_samples": 50},
                {"name": "lantern", "min_samples": 1, "aliases": ["lanterns"]},
            ],
            **preprocess,
        },
    }
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_config(path)


def chat(doc_id: str, *turns: tuple[str, str], source: str = "chats", ts: float = NOW - 30 * DAY) -> Document:
    return Document(
        source=source, kind="chat", doc_id=doc_id, turns=[Turn(role=r, text=t) for r, t in turns], timestamp=ts
    )


def corpus() -> list[Document]:
    docs = [
        chat(
            "a.jsonl#1",
            ("system", "You are Moth."),
            ("user", f"My key is {SECRETS['openai']} and my mail {SECRETS['email']}, can you keep it?"),
            (
                "assistant",
                "I keep lanterns, not keys. The tide takes what the lantern shows, and I would "
                "rather you rotated that key tonight.",
            ),
            ("tool", '{"result": "lookup done"}'),
            ("user", f"Call me on {SECRETS['phone']} then."),
            (
                "assistant",
                f"No. Also, password={SECRETS['password']} is not a password, it is a confession. "
                "The lantern and the tide agree with me.",
            ),
        ),
        chat(
            "a.jsonl#2",
            ("user", "Tell me about the harbour."),
            (
                "assistant",
                "The harbour at night: a lantern on every post, the tide under all of them. "
                f"Someone pasted {SECRETS['github']} into the log once; we burned the log.",
            ),
        ),
        chat(
            "a.jsonl#3",
            ("user", "And the weir?"),
            (
                "assistant",
                "At the weir the heron waits. The lantern is for people, the tide is for nobody. "
                "Here is the table you wanted:\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\nSee https://example.org/weir.",
            ),
        ),
        chat(
            "a.jsonl#4",
            ("user", "Code?"),
            (
                "assistant",
                "Here:\n\n```python\n" + "\n".join(f"x{i} = {i}" for i in range(30)) + "\n```\n\n"
                "That is too long to remember, which is the point of the compost heap.",
            ),
        ),
        chat("a.jsonl#5", ("user", "Long one please."), ("assistant", LONG)),
        # A near-duplicate of #5 (one word changed) and an exact duplicate in another conversation.
        chat("b.jsonl#1", ("user", "Again?"), ("assistant", LONG.replace("grain by grain", "grain after grain"))),
        chat("b.jsonl#2", ("user", "Once more"), ("assistant", LONG)),
        chat(
            "b.jsonl#3",
            ("user", "A recent one."),
            ("assistant", "Recent things: a lantern repaired, the tide higher than last year, figs ripening."),
            ts=NOW - DAY,
        ),
        Document(
            source="council",
            kind="transcript",
            doc_id="council.txt",
            title="Council",
            turns=[
                Turn(role="chair okafor", speaker="Chair Okafor", text="Item one, the bridge. Moth?"),
                Turn(
                    role="moth",
                    speaker="Moth",
                    text="The bridge repair can wait for the tide, not for us. "
                    "The lantern on the bridge is the only part that works.",
                ),
                Turn(role="priya nair", speaker="Priya Nair", text=f"Write to me: {SECRETS['email']}"),
                Turn(role="moth", speaker="Moth", text="Noted, and redacted in my head at least."),
            ],
            timestamp=NOW - 40 * DAY,
        ),
        Document(
            source="wiki",
            kind="wiki",
            doc_id="lanterns.md",
            title="Lanterns",
            text="# Lanterns\n\nA lantern is a small promise to whoever is out after dark, said the keeper.\n\n"
            "## Field notes\n\nNobody has ever stopped a tide with a lantern. People still light them.\n\n"
            f"The keeper's AWS key was {SECRETS['aws']}, which is now a field note too.\n\n"
            "## See also\n\nThe tide page, and the harbour page, both worth reading.",
            links=["tide", "harbour"],
            timestamp=NOW - 50 * DAY,
        ),
        Document(
            source="wiki",
            kind="wiki",
            doc_id="tide.md",
            title="Tide",
            text="# Tide\n\nThe tide comes up the lane twice a day and takes the lantern light with it.",
            links=["lanterns"],
            timestamp=NOW - 50 * DAY,
        ),
    ]
    docs += [
        chat(
            f"loud.jsonl#{i}",
            ("user", "Shout."),
            ("assistant", f"The loud source, take {i}: figs and patience, {i} times over."),
            source="loud",
        )
        for i in range(6)
    ]
    # Conversations about other things, so that lantern and tide are not in most documents.
    docs += [
        chat(
            f"c.jsonl#{i}",
            ("user", "Bread?"),
            ("assistant", f"Bread number {i} wants flour, water, salt and an oven that keeps its word, topic {i}."),
        )
        for i in range(8)
    ]
    return docs


def all_strings(dd) -> str:
    parts = []
    for split in dd.values():
        for row in split:
            parts += [row["prompt"], row["completion"], row["source"], row["doc_id"], *row["concepts"]]
    return "\n".join(parts)


@pytest.fixture
def built(tmp_path, state_home):
    cfg = make_cfg(tmp_path)
    report = run_preprocess(cfg, documents=corpus(), progress=False)
    dd, meta = load_latest_dataset(cfg)
    return cfg, report, dd, meta


def test_voice_samples_come_only_from_voice_roles(built):
    cfg, report, dd, meta = built
    rows = [r for s in dd.values() for r in s]
    voice = [r for r in rows if r["sample_type"] == "voice"]
    assert voice
    for r in voice:
        last = r["prompt"].rsplit("\n", 1)[-1]
        assert last in ("Assistant:", "Moth:"), r["prompt"]
        assert r["completion"].startswith(" ") and len(r["completion"].strip()) >= 20
        assert "Item one" not in r["completion"] and "Tell me about" not in r["completion"]
    # Transcript voice is matched on the speaker name, case-insensitively (voice_roles: [MOTH]).
    council = [r for r in voice if r["source"] == "council"]
    assert council and all(r["prompt"].endswith("Moth:") for r in council)
    assert council[0]["prompt"].startswith("Chair Okafor: Item one, the bridge. Moth?\nMoth:")
    # Context: preceding turns as "Speaker: text" lines, tool and system turns gone.
    assert any(r["prompt"].startswith("User: ") for r in voice)
    assert not any("lookup done" in r["prompt"] or "You are Moth" in r["prompt"] for r in rows)
    assert meta["filtered"]["tool_turns"] == 1 and meta["filtered"]["system_turns"] == 1
    assert not report.warnings or all("voice role" not in w for w in report.warnings)


def test_no_planted_secret_reaches_the_saved_dataset(built, state_home):
    cfg, report, dd, meta = built
    text = all_strings(dd)
    on_disk = b"".join(p.read_bytes() for p in Path(report.path).rglob("*") if p.is_file())
    for name, secret in SECRETS.items():
        assert secret not in text, name
        assert secret.encode() not in on_disk, name
    assert "<secret:openai_key>" in text and "<email>" in text and "<phone>" in text
    for kind in ("openai_key", "github_token", "aws_access_key", "email", "phone", "password"):
        assert meta["redacted"].get(kind, 0) >= 1, kind


def test_filters_apply_and_are_counted(built):
    cfg, report, dd, meta = built
    text = all_strings(dd)
    assert "x29 = 29" not in text and "|---|" not in text and "https://example.org" not in text
    assert "<url>" in text and "compost heap" in text  # the prose around a dropped code block stays
    assert meta["filtered"]["code_blocks"] == 1 and meta["filtered"]["tables"] == 1 and meta["filtered"]["urls"] == 1


def test_near_and_exact_duplicates_removed(built):
    cfg, report, dd, meta = built
    rows = [r for s in dd.values() for r in s]
    assert sum("grain by grain" in r["completion"] or "grain after grain" in r["completion"] for r in rows) == 1
    assert meta["filtered"]["near_duplicates"] >= 1 and meta["filtered"]["exact_duplicates"] >= 1


def test_long_voice_turns_split_at_paragraphs(tmp_path, state_home):
    cfg = make_cfg(tmp_path, max_chars=120, context_turns=1)
    paras = [f"Paragraph {i} is about the lantern and the tide and how they disagree politely." for i in range(5)]
    doc = chat("long.jsonl#1", ("user", "Go on."), ("assistant", "\n\n".join(paras)))
    run_preprocess(
        cfg, documents=[doc, chat("x#2", ("user", "hi"), ("assistant", "A second conversation here."))], progress=False
    )
    dd, _ = load_latest_dataset(cfg)
    parts = sorted((r for s in dd.values() for r in s if r["doc_id"] == "long.jsonl#1"), key=lambda r: r["completion"])
    assert len(parts) == 5 and all(len(r["completion"]) <= 121 for r in parts)
    assert [p["completion"].strip() for p in parts] == paras
    # Each later part has the earlier part as the voice's own context line.
    assert parts[1]["prompt"] == f"Assistant: {paras[0]}\nAssistant:"


def test_wiki_text_samples(built):
    cfg, report, dd, meta = built
    rows = [r for s in dd.values() for r in s if r["sample_type"] == "text" and r["doc_id"] == "lanterns.md"]
    assert rows and all(r["prompt"].startswith("# Lanterns\n\n") for r in rows)
    notes = [r for r in rows if "## Field notes" in r["prompt"]]
    assert notes and notes[0]["completion"].startswith("Nobody has ever stopped a tide")


def test_heldout_split_is_document_level_and_stable(tmp_path, state_home):
    cfg = make_cfg(tmp_path)
    docs = corpus()
    run_preprocess(cfg, documents=docs, progress=False)
    dd, meta = load_latest_dataset(cfg)
    side = {}
    for split in ("train", "heldout"):
        for r in dd[split]:
            if r["sample_type"] != "association":
                assert side.setdefault(r["doc_id"], split) == split, r["doc_id"]
    assert "heldout" in side.values() and "train" in side.values()

    more = docs + [
        chat(f"new.jsonl#{i}", ("user", "New?"), ("assistant", f"A new conversation number {i} about kilns."))
        for i in range(5)
    ]
    run_preprocess(cfg, documents=more, progress=False)
    dd2, _ = load_latest_dataset(cfg)
    side2 = {r["doc_id"]: split for split in ("train", "heldout") for r in dd2[split]}
    assert all(side2[d] == s for d, s in side.items() if d in side2)


def test_heldout_guarantee_and_function():
    keys = [("s", "a"), ("s", "b")]
    assert len(assemble.heldout_docs(keys, 0.01)) == 1  # at least one held out with >= 2 documents
    assert len(assemble.heldout_docs(keys, 0.99)) == 1  # and at least one left to train on
    assert assemble.heldout_docs([("s", "a")], 0.5) <= {("s", "a")} and assemble.heldout_docs(keys, 0.0) == set()
    many = [("s", str(i)) for i in range(2000)]
    share = len(assemble.heldout_docs(many, 0.1)) / 2000
    assert 0.07 < share < 0.13


def test_priority_concept_under_minimum_warns(built):
    cfg, report, dd, meta = built
    figs = meta["priority_concepts"]["figs"]
    assert not figs["ok"] and figs["train"] < 50
    assert any("figs" in w and "minimum of 50" in w for w in report.warnings)
    assert meta["priority_concepts"]["lantern"]["ok"]
    assert not any("'lantern'" in w for w in report.warnings)
    lantern_rows = [r for r in dd["train"] if "lantern" in r["concepts"]]
    assert len(lantern_rows) == meta["priority_concepts"]["lantern"]["train"]


def test_association_pairs_found_for_a_planted_pair(built):
    cfg, report, dd, meta = built
    pairs = {frozenset(p[:2]) for p in meta["concept_pairs"]}
    assert frozenset({"lantern", "tide"}) in pairs  # co-occurs in >= 3 documents
    assert frozenset({"lanterns", "tide"}) in pairs  # wiki link, reciprocal
    assert all(isinstance(p[2], float) and 0 < p[2] <= 1 for p in meta["concept_pairs"])
    assoc = [r for s in dd.values() for r in s if r["sample_type"] == "association"]
    prompts = {x: [t.format(a=x) for t in cfg.preprocess.association_templates] for x in ("lantern", "tide")}
    assert any(r["prompt"] in prompts["lantern"] and r["completion"] == " tide" for r in assoc)
    assert any(r["prompt"] in prompts["tide"] and r["completion"] == " lantern" for r in assoc)


def test_source_weight_upsamples_train(built):
    cfg, report, dd, meta = built
    loud_train = [r for r in dd["train"] if r["source"] == "loud"]
    loud_docs = {r["doc_id"] for r in loud_train}
    for d in loud_docs:
        n = sum(r["doc_id"] == d for r in loud_train)
        assert n == 2  # weight 2.0: every train sample twice
    assert loud_docs and meta["composition"]["by_source"]["loud"]["weight"] == 2.0


def test_repeats_follow_fractional_weights():
    n = sum(assemble.repeats(1.5, f"k{i}") for i in range(4000))
    assert 5700 < n < 6300 and assemble.repeats(0.0, "x") == 0 and assemble.repeats(3.0, "x") == 3


def test_recent_column(built):
    cfg, report, dd, meta = built
    rows = {r["doc_id"]: r["recent"] for s in dd.values() for r in s if r["sample_type"] != "association"}
    assert rows["b.jsonl#3"] is True and rows["a.jsonl#1"] is False


def test_fingerprint_stable_and_reused(tmp_path, state_home):
    cfg = make_cfg(tmp_path)
    r1 = run_preprocess(cfg, documents=corpus(), progress=False)
    r2 = run_preprocess(cfg, documents=corpus(), progress=False)
    assert r1.fingerprint == r2.fingerprint and r2.reused and not r1.reused
    changed = corpus()
    changed[1].turns[1].text += " One more sentence about the lantern."
    r3 = run_preprocess(cfg, documents=changed, progress=False)
    assert r3.fingerprint != r1.fingerprint
    latest = json.loads((Path(r3.path).parent / "latest.json").read_text())
    assert latest["fingerprint"] == r3.fingerprint
    rows = r3.rows()
    assert any(r["group"] == "source" and r["name"] == "chats" for r in rows) and json.dumps(r3.to_json())


def test_parallel_path_gives_the_same_dataset(tmp_path, state_home, monkeypatch):
    docs = corpus()
    one = run_preprocess(make_cfg(tmp_path), documents=docs, progress=False)
    monkeypatch.setattr(process, "PARALLEL_AFTER_CHARS", 0)  # every batch to the worker pool
    two = run_preprocess(make_cfg(tmp_path, workers=2), documents=docs, progress=False)
    assert one.fingerprint == two.fingerprint


def test_nothing_ingested_is_nothing_to_do(tmp_path, state_home):
    cfg = make_cfg(tmp_path)
    with pytest.raises(NothingToDo, match="mothbrain ingest"):
        run_preprocess(cfg, progress=False)
    with pytest.raises(NothingToDo):
        run_preprocess(cfg, documents=[], progress=False)
    with pytest.raises(MothError, match="run `mothbrain preprocess` first"):
        load_latest_dataset(cfg)


@pytest.mark.parametrize("where", ["rows", "rename"])
def test_a_failed_save_leaves_the_previous_dataset(tmp_path, state_home, monkeypatch, where):
    """A full disk while the rows stream out, or at the final rename: the previous data set stays."""
    cfg = make_cfg(tmp_path)
    first = run_preprocess(cfg, documents=corpus(), progress=False)
    from datasets.arrow_writer import ArrowWriter

    import mothbrain.data.writer as dw

    def disk_full(*a, **k):
        raise OSError(28, "No space left on device")

    if where == "rows":
        monkeypatch.setattr(ArrowWriter, "write_table", disk_full)
    else:
        monkeypatch.setattr(dw, "replace_folder", disk_full)
    changed = corpus()[:-1]
    with pytest.raises(MothError, match="No space left"):
        run_preprocess(cfg, documents=changed, progress=False)
    root = Path(first.path).parent
    assert not list(root.glob(".tmp-*"))
    dd, meta = load_latest_dataset(cfg)
    assert meta["fingerprint"] == first.fingerprint and len(dd["train"]) > 0


def test_damaged_latest_is_a_clean_error(built):
    cfg, report, dd, meta = built
    (Path(report.path).parent / "latest.json").write_text("{not json")
    with pytest.raises(MothError, match="damaged"):
        load_latest_dataset(cfg)


def test_missing_voice_role_warns(tmp_path, state_home):
    cfg = make_cfg(tmp_path, voice_roles=["moth-the-ai"])
    report = run_preprocess(cfg, documents=corpus()[:3], progress=False)
    assert any("source 'chats' has no turns by a voice role" in w for w in report.warnings)


def test_demo_config_on_the_bundled_sample(state_home):
    from mothbrain.ingest.stage import run_ingest

    cfg = load_config(REPO_ROOT / "configs" / "demo-tiny.yaml", ["preprocess.workers=1"])
    run_ingest(cfg)
    report = run_preprocess(cfg, progress=False)
    dd, meta = load_latest_dataset(cfg)
    assert len(dd["train"]) > 100 and len(dd["heldout"]) > 10
    pairs = {frozenset(p[:2]) for p in meta["concept_pairs"]}
    for a, b in [("lantern", "tide"), ("compost", "memory"), ("figs", "patience"), ("deadline", "heron")]:
        assert any({a, b} <= {w.rstrip("s") for w in pair} | set(pair) for pair in pairs), (a, b)
    assert meta["redacted"]["email"] >= 2 and meta["redacted"]["phone"] >= 2
    text = all_strings(dd)
    assert "harbourtown.example" not in text and "7946 0958" not in text
    assert all(meta["priority_concepts"][c]["ok"] for c in ("figs", "lantern", "compost"))
    assert report.composition["token_unit"] in ("tokens", "~tokens")


# --------------------------------------------------------------------------- filters and dedup units


def test_code_blocks_over_the_limit_are_dropped():
    short = "```\na\nb\n```"
    long = "```py\n" + "\n".join(["x"] * 13) + "\n```"
    assert drop_long_code_blocks(f"keep\n\n{short}", 12) == (f"keep\n\n{short}", 0)
    assert drop_long_code_blocks(f"before\n\n{long}\n\nafter", 12) == ("before\n\nafter", 1)
    assert drop_long_code_blocks("open\n```\n" + "\n".join(["y"] * 20), 12) == ("open", 1)  # unclosed


def test_tables_and_urls():
    text = "Intro.\n\n| a | b |\n| --- | :-: |\n| 1 | 2 |\n| 3 | 4 |\n\nOutro (see https://x.org/a_(b)), www.y.org."
    out, n = drop_tables(text)
    assert n == 1 and "| 1 |" not in out and out.startswith("Intro.") and "Outro" in out
    out, n = replace_urls(out)
    assert n == 2 and out.endswith("Outro (see <url>), <url>.")
    assert apply_filters("a | b is not a table", FilterConfig())[0] == "a | b is not a table"


def test_deduper_exact_and_near():
    d = Deduper(0.85)
    text = " ".join(f"word{i}" for i in range(80))
    assert d.check(text) is None
    assert d.check(text.upper()) == "exact"
    assert d.check(text.replace("word40", "other")) == "near"
    assert d.check(" ".join(f"fresh{i}" for i in range(80))) is None


def test_dedup_keys_are_the_lower_case_words():
    """The exact key hashes the text's lower-case words joined by spaces; the MinHash is over their 3-grams.
    One non-ASCII character changes the exact key only by its own word."""
    from xxhash import xxh3_128_digest

    from mothbrain.data.dedup import normalise, signature, text_key

    text = "The Harbour_Lantern, 2 bridges & 40 gulls: " + " ".join(f"Word{i}" for i in range(20)) + "!\n\tEnd."
    words = normalise(text)
    assert words[:6] == ["the", "harbour_lantern", "2", "bridges", "40", "gulls"] and words[-1] == "end"
    assert normalise("Café ÉTÉ") == ["café", "été"]
    (key, sig), (ukey, usig) = text_key(text), text_key(text.replace("End", "\u00c9nd"))
    assert key == xxh3_128_digest(" ".join(words).encode()) and sig.digest() == signature(words).digest()
    assert usig.jaccard(sig) >= 0.85 and ukey != key
    assert text_key("") == text_key("!!") and text_key("")[1] is None


def test_deduper_window_bounds_the_index_not_exact_matches():
    """A passage recurring every 51 texts is kept once per window: each time with a window of 40 kept
    texts (its kept copy has left the index), every other time with 60, every third time with 120;
    exact repeats are found whatever the window."""
    texts = []
    for i in range(400):
        texts.append(" ".join(f"w{i}x{j}" for j in range(40)))  # unique texts
        if i % 50 == 0:
            texts.append(" ".join(f"fixed{j}" for j in range(40)) + f" variant{i}")  # near duplicates
    texts += texts[:5]  # exact repeats of the earliest texts
    decisions = {}
    for window in (0, 40, 60, 120, 10_000):
        d = Deduper(0.85, window)
        decisions[window] = [d.check(t) for t in texts]
        live = sum(s is not None for s in d._sigs)
        assert live == (window if window and window < d.indexed else d.indexed)
        assert d.counts["exact_duplicates"] == 5
    assert decisions[10_000] == decisions[0]
    assert [decisions[w].count("near") for w in (0, 120, 60, 40)] == [7, 5, 4, 0]
    assert decisions[40].count("near") == 0 and decisions[40].count(None) == len(texts) - 5


def test_batched_dedup_decides_as_one_by_one():
    """`check_batch` decides every text as `check` one at a time does, across batch boundaries."""
    from mothbrain.data.dedup import text_key

    texts = [" ".join(f"w{i % 97}x{j}" for j in range(12)) + (" tail" if i % 5 else "") for i in range(600)]
    texts += texts[::3]  # exact repeats, some in the same batch as their first copy
    one = Deduper(0.85, 50)
    expected = [one.check(t) is None for t in texts]
    batched = Deduper(0.85, 50)
    keys, sigs = zip(*map(text_key, texts))
    got = [
        bool(x)
        for lo in range(0, len(texts), 37)
        for x in batched.check_batch(list(keys[lo : lo + 37]), list(sigs[lo : lo + 37]))
    ]
    assert got == expected and batched.counts == one.counts and batched.counts["exact_duplicates"] > 100


INDEX_THEN_FREE = """
import sys
import mothbrain
from mothbrain.data.dedup import Deduper, text_key
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 1e6
before = rss()
d = Deduper(0.85)
for i in range(40_000):
    d.check_key(*text_key(" ".join(f"w{i}x{j}" for j in range(30))))
full = rss()
del d
print(full - before, rss() - before)
"""


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="reads the RSS from /proc")
def test_freed_dedup_index_goes_back_to_the_system():
    """rensa's allocator keeps freed pages unless told otherwise (mothbrain sets it when imported):
    the index, freed at the end of the document pass, must not stay resident under concept mining."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("MIMALLOC_")}
    out = subprocess.run(
        [sys.executable, "-c", INDEX_THEN_FREE], env=env, capture_output=True, text=True, check=True, cwd=REPO_ROOT
    )
    grown, left = map(float, out.stdout.split())
    assert grown > 20 and left < 0.25 * grown, (grown, left)


def test_split_to_chunks():
    text = "One short paragraph.\n\n" + "A sentence that goes on. " * 20
    chunks = split_to_chunks(text, 100)
    assert all(len(c) <= 100 for c in chunks) and chunks[0].startswith("One short paragraph.")
    assert " ".join(c.replace("\n\n", " ") for c in chunks).split() == text.split()


def test_split_to_chunks_is_linear_in_one_long_sentence():
    # One message with no sentence break: each cut used to recopy the rest (16 MB took ~25 s, 32 MB ~140 s).
    import time

    def seconds(n_mb: int) -> float:
        text = "word " * (n_mb * 200_000)
        t0 = time.perf_counter()
        chunks = split_to_chunks(text, 600)
        elapsed = time.perf_counter() - t0
        assert all(len(c) <= 600 for c in chunks) and sum(len(c.split()) for c in chunks) == n_mb * 200_000
        return elapsed

    small, large = min(seconds(2) for _ in range(2)), seconds(16)
    assert large < 24 * max(small, 0.01), (small, large)  # 8x the text: linear ~8x, quadratic ~64x


def test_damaged_documents_do_not_crash(tmp_path, state_home):
    cfg = make_cfg(tmp_path)
    odd = [
        Document(
            source="chats",
            kind="chat",
            doc_id="odd#1",
            turns=[Turn(role=None, text=None), Turn(role="assistant", text=None)],
        ),
        Document(source="wiki", kind="wiki", doc_id="empty.md", title=None, text=None, timestamp="yesterday"),
        Document(
            source="unknown-source",
            kind="chat",
            doc_id="u#1",
            turns=[Turn(role="assistant", text="A voice from a source the config no longer lists.")],
        ),
    ]
    report = run_preprocess(cfg, documents=corpus() + odd, progress=False)
    assert report.documents == len(corpus()) + 3


def test_unchanged_archive_is_not_reprocessed(tmp_path, state_home):
    """The nightly run on an unchanged archive reuses today's data set without reading anything;
    new material, a changed setting or --force rebuild it."""
    from mothbrain.ingest.stage import run_ingest

    chats = tmp_path / "chats"
    chats.mkdir()
    lines = [
        json.dumps(
            {
                "id": f"c{i}",
                "created_at": NOW - i * DAY,
                "messages": [
                    {"role": "user", "content": f"Question {i} about the harbour?"},
                    {
                        "role": "assistant",
                        "content": f"Answer {i}: the lantern and the tide keep their own hours, take {i}.",
                    },
                ],
            }
        )
        for i in range(12)
    ]
    (chats / "log.jsonl").write_text("\n".join(lines) + "\n")
    cfg = make_cfg(tmp_path)
    cfg.sources = cfg.sources[:1]
    run_ingest(cfg)
    first = run_preprocess(cfg, progress=False)
    assert not first.reused and "documents" in first.timings
    again = run_preprocess(cfg, progress=False)
    assert again.reused and again.fingerprint == first.fingerprint and "documents" not in again.timings
    assert again.samples == first.samples and again.composition == first.composition

    forced = run_preprocess(cfg, progress=False, force=True)
    assert "documents" in forced.timings and forced.fingerprint == first.fingerprint

    with (chats / "log.jsonl").open("a") as fh:  # new material
        fh.write(
            json.dumps(
                {
                    "id": "new",
                    "created_at": NOW,
                    "messages": [
                        {"role": "user", "content": "And the figs?"},
                        {"role": "assistant", "content": "The figs ripen when nobody is watching them, as usual."},
                    ],
                }
            )
            + "\n"
        )
    run_ingest(cfg)
    grown = run_preprocess(cfg, progress=False)
    assert not grown.reused and grown.fingerprint != first.fingerprint

    cfg.preprocess.context_turns = 1  # a changed setting
    assert "documents" in run_preprocess(cfg, progress=False).timings


@pytest.mark.parametrize("fraction", [1e-6, 1 - 1e-6])
def test_a_tiny_corpus_still_gets_both_splits(tmp_path, state_home, fraction):
    """When no document's hash (or every one) falls under heldout_fraction, one document moves."""
    cfg = make_cfg(tmp_path)
    cfg.preprocess.heldout_fraction = fraction
    report = run_preprocess(cfg, documents=corpus(), progress=False)
    assert report.documents >= 3 and 1 in (report.heldout_documents, report.documents - report.heldout_documents)
    dd, _ = load_latest_dataset(cfg)
    documents = {split: {d for d in dd[split]["doc_id"] if not d.startswith("pair:")} for split in dd}
    assert documents["train"] and documents["heldout"] and not documents["train"] & documents["heldout"]


def test_fingerprint_does_not_depend_on_chunking(tmp_path):
    import pyarrow as pa

    cfg = make_cfg(tmp_path)
    schema = features().arrow_schema
    cols = {
        "prompt": ["p1", "p22", "", "p4"],
        "completion": [" a", " bb", " c", ""],
        "source": ["s"] * 4,
        "sample_type": ["voice"] * 4,
        "doc_id": ["d1", "d2", "d3", "d4"],
        "concepts": [["figs"], [], ["a", "b"], []],
        "recent": [True, False, False, True],
    }
    whole = pa.Table.from_pydict(cols, schema=schema)
    chunked = pa.concat_tables([whole.slice(0, 1), whole.slice(1, 2), whole.slice(3)])
    empty = whole.slice(0, 0)
    assert chunked.column("prompt").num_chunks == 3
    assert fingerprint({"train": whole, "heldout": empty}, cfg) == fingerprint(
        {"train": chunked, "heldout": empty}, cfg
    )
    assert fingerprint({"train": whole, "heldout": empty}, cfg) != fingerprint({"train": empty, "heldout": whole}, cfg)


def test_fingerprint_covers_every_column(tmp_path):
    import pyarrow as pa

    cfg = make_cfg(tmp_path)
    base = {
        "prompt": ["p1", "p2"],
        "completion": [" c1", " c2"],
        "source": ["s", "s"],
        "sample_type": ["voice"] * 2,
        "doc_id": ["d1", "d2"],
        "concepts": [["figs"], []],
        "recent": [True, False],
    }
    schema = features().arrow_schema

    def fp(**change):
        cols = {k: list(v) for k, v in base.items()}
        for k, v in change.items():
            cols[k] = v
        tables = {
            "train": pa.Table.from_pydict(cols, schema=schema),
            "heldout": pa.Table.from_pydict({k: [] for k in base}, schema=schema),
        }
        return fingerprint(tables, cfg)

    same = fp()
    assert fp() == same
    for change in (
        {"recent": [True, True]},
        {"concepts": [[], ["figs"]]},
        {"concepts": [["figs", "x"], []]},
        {"prompt": ["p1", "p2 "]},
        {"completion": [" c1c2", ""]},
        {"doc_id": ["d2", "d1"]},
    ):
        assert fp(**change) != same, change


def test_demo_data_set_is_the_same_on_any_day(tmp_path, monkeypatch):
    """With ingest.now pinned (the demo), the bundled sample gives the same data set whatever the clock says;
    with the clock as "now" (the null case) what counts as recent, and so the data set, moves with the date."""
    from mothbrain.ingest.stage import run_ingest

    real_time = time.time

    def fingerprint_on(day: str, *overrides: str) -> str:
        home = tmp_path / f"{day}-{len(overrides)}"
        monkeypatch.setenv("MOTHBRAIN_HOME", str(home))
        shift = dt.datetime.fromisoformat(day + "T09:00:00+00:00").timestamp() - real_time()
        monkeypatch.setattr(time, "time", lambda: real_time() + shift)
        cfg = load_config(REPO_ROOT / "configs" / "demo-tiny.yaml", ["preprocess.workers=1", *overrides])
        run_ingest(cfg)
        return run_preprocess(cfg, progress=False).fingerprint

    pinned = {fingerprint_on(day) for day in ("2026-12-07", "2027-06-01")}
    assert len(pinned) == 1
    clock = {fingerprint_on(day, "ingest.now=") for day in ("2026-12-07", "2027-06-01")}
    assert len(clock) == 2  # the sample's undated files are recent on one day and not on the other


def test_ingest_now_must_be_a_time(tmp_path):
    with pytest.raises(ConfigError, match=r"ingest\.now: expected an ISO 8601 time"):
        load_config(REPO_ROOT / "configs" / "demo-tiny.yaml", ["ingest.now=next tuesday"])
    cfg = load_config(REPO_ROOT / "configs" / "demo-tiny.yaml", ["ingest.now=2025-05-15"])  # a date is midnight UTC
    from mothbrain.core.clock import reference_now

    assert reference_now(cfg) == dt.datetime(2025, 5, 15, tzinfo=dt.timezone.utc).timestamp()


def test_too_little_held_out_material_is_said_at_preprocess(tmp_path, state_home):
    """6 chats give a held-out side too small for the gate: preprocess says so, with the fix, before training."""
    cfg = make_cfg(tmp_path)
    report = run_preprocess(cfg, documents=corpus()[:6], progress=False)
    held = report.composition["by_type"].get("voice", {}).get("heldout", 0)
    assert held < cfg.promote.gate.min_voice_samples
    (warning,) = [w for w in report.warnings if "held-out voice samples" in w]
    assert f"only {held} held-out voice samples" in warning and "preprocess.heldout_fraction" in warning

"""The nightly path: shards unchanged since the last run come from the document cache, the last
run's dedup decisions are reused for the unchanged prefix, and the data set is the one a full
rebuild makes."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import pyarrow as pa
import pytest
import yaml

from mothbrain.config import load_config
from mothbrain.data import corpus, mining, process, stage
from mothbrain.data.cache import cache_dir
from mothbrain.data.dataset import load_latest_dataset
from mothbrain.data.dedup import Deduper, text_key
from mothbrain.data.stage import PreprocessReport, run_preprocess
from mothbrain.ingest.stage import run_ingest

NOW = time.time()
DAY = 86400.0
WORDS = (
    "lantern tide harbour heron weir kiln glaze bridge council figs bread flour salt oven ferry rope gull "
    "ledger candle orchard moth compost garden wall apprentice keeper shelf brick river lane"
).split()
PASSAGE = (
    "The kiln cools slowly through the night and the potters sleep beside it, dreaming of glazes that "
    "never crack and apologies that never need making, while the bricks tick and settle. In the morning "
    "the shelves are counted grain by grain, pot by pot, and the broken ones are set aside for the garden "
    "wall, because nobody hurries a kiln twice and the third time is a story for the new apprentice."
)


def sentence(rng: random.Random, n: int = 14) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + "."


def conversation(rng: random.Random, cid: str, day: float, text: str | None = None) -> str:
    answer = text if text is not None else " ".join(sentence(rng) for _ in range(3))
    return (
        json.dumps(
            {
                "id": cid,
                "created_at": NOW - day * DAY,
                "messages": [{"role": "user", "content": sentence(rng, 6)}, {"role": "assistant", "content": answer}],
            }
        )
        + "\n"
    )


def write_log(path: Path, seed: int, n: int, day: float, repeats: dict[int, str] | None = None) -> None:
    rng = random.Random(seed)
    with path.open("a") as fh:
        for i in range(n):
            fh.write(conversation(rng, f"{path.stem}-{seed}-{i}", day, (repeats or {}).get(i)))


@pytest.fixture
def archive(tmp_path):
    chats = tmp_path / "chats"
    chats.mkdir()
    # The same passage (exactly, and with one word changed) in several files: dedup decisions
    # cross shard boundaries, so reusing them must respect the stream order.
    near = PASSAGE.replace("slowly", "slow")
    write_log(chats / "day-01.jsonl", 1, 30, 20, {3: PASSAGE})
    write_log(chats / "day-02.jsonl", 2, 30, 15, {5: near, 6: PASSAGE})
    write_log(chats / "day-03.jsonl", 3, 30, 10, {7: PASSAGE})
    write_log(chats / "day-04.jsonl", 4, 30, 5)
    data = {
        "sources": [{"name": "chats", "kind": "chat_jsonl", "path": "chats"}],
        "model": {"base": str(tmp_path / "no-model-here")},
        "preprocess": {"workers": 1, "heldout_fraction": 0.2, "association_min_docs": 3, "association_pairs": 30},
    }
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(data))
    return tmp_path


def rebuilt_from_scratch(cfg) -> PreprocessReport:
    return run_preprocess(cfg, progress=False, full=True)


@pytest.mark.parametrize("workers", [1, 2])
def test_cached_run_is_the_full_rebuild(archive, monkeypatch, workers):
    """workers 2: the changed batches are processed on the pool."""
    monkeypatch.setattr(mining, "REMINE_SHARE", 0.0)  # mine every time, so the two runs are comparable whole
    monkeypatch.setattr(process, "PARALLEL_AFTER_CHARS", 0)
    cfg = load_config(archive / "cfg.yaml")
    cfg.preprocess.workers = workers
    run_ingest(cfg)
    cold = run_preprocess(cfg, progress=False)
    assert cold.documents_processed == cold.documents == 120
    assert cold.filtered.get("exact_duplicates", 0) >= 2 and cold.filtered.get("near_duplicates", 0) >= 1

    chats = archive / "chats"
    # A nightly change: new conversations appended to the newest file (one repeats the passage, a
    # near duplicate of a kept sample in the unchanged prefix), and a new file.
    write_log(chats / "day-04.jsonl", 40, 5, 1, {2: PASSAGE.replace("night", "nights")})
    write_log(chats / "day-05.jsonl", 5, 10, 0.5, {1: PASSAGE})
    run_ingest(cfg)
    checked = []
    check_key = Deduper.check_key
    monkeypatch.setattr(Deduper, "check_key", lambda self, *a, **k: checked.append(1) or check_key(self, *a, **k))
    nightly = run_preprocess(cfg, progress=False)
    monkeypatch.setattr(Deduper, "check_key", check_key)
    assert nightly.documents == 135 and nightly.documents_processed == 45  # day-04 (35) and day-05 (10)
    # Only the changed shards' samples were deduplicated again; the prefix's decisions were reused.
    assert 45 <= len(checked) <= 2 * 45 < nightly.samples["train"]
    assert nightly.filtered["exact_duplicates"] == cold.filtered["exact_duplicates"] + 1
    assert nightly.filtered["near_duplicates"] == cold.filtered["near_duplicates"] + 1
    full = rebuilt_from_scratch(cfg)
    assert full.documents_processed == full.documents
    assert nightly.fingerprint == full.fingerprint and nightly.samples == full.samples

    # An early file changes: the prefix of reusable decisions ends there; the result is still the rebuild's.
    (chats / "day-01.jsonl").write_text(
        "".join(line for i, line in enumerate((chats / "day-01.jsonl").read_text().splitlines(True)) if i != 3)
    )  # the first copy of the passage goes
    run_ingest(cfg)
    changed = run_preprocess(cfg, progress=False)
    assert changed.documents_processed == 29
    assert changed.fingerprint == rebuilt_from_scratch(cfg).fingerprint


@pytest.mark.parametrize("window,nightly_near", [(40, 1), (200, 2)])
def test_windowed_dedup_nightly_is_the_full_rebuild(archive, window, nightly_near):
    """With a dedup window the nightly run still makes the rebuild's decisions: the new near copy
    of the passage (~125 samples after its first copy) is kept with a window of 40, dropped with 200."""
    cfg = load_config(archive / "cfg.yaml")
    cfg.preprocess.dedup_window = window
    run_ingest(cfg)
    cold = run_preprocess(cfg, progress=False)
    assert cold.filtered["near_duplicates"] == 1 and cold.filtered["exact_duplicates"] == 2
    write_log(archive / "chats" / "day-04.jsonl", 40, 5, 1, {2: PASSAGE.replace("night", "nights")})
    run_ingest(cfg)
    nightly = run_preprocess(cfg, progress=False)
    assert nightly.documents_processed == 35 and nightly.filtered["near_duplicates"] == nightly_near
    assert nightly.fingerprint == rebuilt_from_scratch(cfg).fingerprint


def test_pairs_are_reused_until_the_corpus_drifts(archive):
    cfg = load_config(archive / "cfg.yaml")
    run_ingest(cfg)
    first = run_preprocess(cfg, progress=False)
    assert first.concept_mining["mined"] and first.concept_pairs > 0
    write_log(archive / "chats" / "day-05.jsonl", 5, 2, 0.5)  # 2 new of 122: under REMINE_SHARE
    run_ingest(cfg)
    small = run_preprocess(cfg, progress=False)
    assert not small.concept_mining["mined"] and small.concept_mining["documents_changed_since"] == 2
    _, meta = load_latest_dataset(cfg)
    assert [p[:2] for p in meta["concept_pairs"]] == [
        p[:2] for p in json.loads((cache_dir(cfg) / mining.MINING_STATE).read_text())["pairs"]
    ][: len(meta["concept_pairs"])]
    assert any("concept pairs as mined" in str(r.get("note", "")) for r in small.rows())
    write_log(archive / "chats" / "day-06.jsonl", 6, 10, 0.2)  # 2 + 10 of 132 since the mining: over 5%
    run_ingest(cfg)
    assert run_preprocess(cfg, progress=False).concept_mining["mined"]
    assert rebuilt_from_scratch(cfg).concept_mining["mined"]  # --full always mines


def test_reused_pairs_are_recent_when_one_recent_document_has_both():
    import numpy as np
    import pyarrow as pa

    from mothbrain.data.concepts import Pair

    seen = corpus.Corpus(
        terms=[pa.array(["lantern\ntide", "bridge\nrepair", None]), pa.array(["lanterns\nheron", "tide\nheron"])]
    )
    recent = np.array([False, True, True, True, False])
    pairs = [
        Pair(a, b, 0.5, 3, False, "cooccurrence")
        for a, b in (("lantern", "tide"), ("bridge", "repair"), ("heron", "lantern"), ("heron", "tide"))
    ]
    got = {(p.a, p.b): p.recent for p in mining.recent_again(pairs, seen, recent)}
    # document 0 is not recent; 3 has "lanterns" (a plural: one concept with "lantern"); 4 is not recent
    assert got == {
        ("lantern", "tide"): False,
        ("bridge", "repair"): True,
        ("heron", "lantern"): True,
        ("heron", "tide"): False,
    }


def test_removed_documents_count_as_drift_and_a_failed_run_hides_nothing(archive, monkeypatch):
    cfg = load_config(archive / "cfg.yaml")
    run_ingest(cfg)
    run_preprocess(cfg, progress=False)
    (archive / "chats" / "day-02.jsonl").unlink()  # 30 of 120 documents gone
    run_ingest(cfg)
    assert run_preprocess(cfg, progress=False).concept_mining["mined"]

    write_log(archive / "chats" / "day-07.jsonl", 7, 30, 0.1)  # 30 new of 120, and the run fails at the save
    run_ingest(cfg)
    save = stage._save
    monkeypatch.setattr(stage, "_save", lambda *a, **k: (_ for _ in ()).throw(OSError(28, "No space left on device")))
    with pytest.raises(OSError):
        run_preprocess(cfg, progress=False)
    monkeypatch.setattr(stage, "_save", save)
    again = run_preprocess(cfg, progress=False)
    assert again.documents_processed == 0  # the failed run cached the new batch...
    assert again.concept_mining["mined"]  # ...and the drift still counts it


def test_an_appended_log_reuses_its_old_batches(archive):
    cfg = load_config(archive / "cfg.yaml")
    big = archive / "chats" / "day-00.jsonl"
    write_log(big, 9, 600, 30)  # batches of 256, 256 and 88 documents
    run_ingest(cfg)
    cold = run_preprocess(cfg, progress=False)
    assert cold.documents_processed == 720
    write_log(big, 10, 5, 0.1)
    run_ingest(cfg)
    nightly = run_preprocess(cfg, progress=False)
    assert nightly.documents_processed == 88 + 5  # only the last, grown batch
    assert nightly.fingerprint == rebuilt_from_scratch(cfg).fingerprint


def test_a_cached_batch_that_will_not_load_drops_the_cache(archive, monkeypatch):
    cfg = load_config(archive / "cfg.yaml")
    run_ingest(cfg)
    first = run_preprocess(cfg, progress=False)
    real = process.from_record
    calls = []

    def flaky(row, meta):
        calls.append(1)
        if len(calls) == 1:
            raise KeyError("wiki")
        return real(row, meta)

    monkeypatch.setattr(process, "from_record", flaky)
    again = run_preprocess(cfg, progress=False, force=True)
    assert again.fingerprint == first.fingerprint and again.documents_processed == again.documents


def test_a_damaged_cache_file_is_processed_again(archive):
    cfg = load_config(archive / "cfg.yaml")
    run_ingest(cfg)
    first = run_preprocess(cfg, progress=False)
    files = sorted((cache_dir(cfg) / "shards").glob("*.arrow"))
    assert len(files) == 4
    files[0].write_bytes(b"ARROW1 not an Arrow file")
    files[1].write_bytes(files[1].read_bytes()[: len(files[1].read_bytes()) // 2])  # torn
    data = bytearray(files[2].read_bytes())
    with pa.memory_map(str(files[2])) as source:
        text = pa.ipc.open_file(source).get_batch(0).column("samples.completion")[0][0].as_py().encode()
    at = data.index(text)
    data[at : at + 4] = bytes(4)  # damage inside a batch's text: its checksum no longer matches
    files[2].write_bytes(bytes(data))
    again = run_preprocess(cfg, progress=False, force=True)
    assert again.fingerprint == first.fingerprint and 0 < again.documents_processed < again.documents
    (cache_dir(cfg) / corpus.DEDUP_STATE).write_bytes(b"garbage")
    assert run_preprocess(cfg, progress=False, force=True).fingerprint == first.fingerprint


def test_removed_files_leave_the_cache(archive):
    cfg = load_config(archive / "cfg.yaml")
    run_ingest(cfg)
    run_preprocess(cfg, progress=False)
    (archive / "chats" / "day-02.jsonl").unlink()
    shards = cache_dir(cfg) / "shards"
    (shards / "0123456789abcdef01234567.bin").write_bytes(b"an earlier format's file")
    (shards / ".0123456789abcdef01234567.arrow.999.tmp").write_bytes(b"a killed run's")
    run_ingest(cfg)
    report = run_preprocess(cfg, progress=False)
    assert report.documents == 90 and report.documents_processed == 0
    assert len(list(shards.iterdir())) == 3 and len(list(shards.glob("*.arrow"))) == 3


def test_what_a_changed_setting_rebuilds_is_what_its_field_says(archive):
    """The keys come from the schema (`affects`): a per-document setting processes everything again, an
    assembly setting re-assembles from the cache, `workers` rebuilds nothing."""
    cfg = load_config(archive / "cfg.yaml")
    run_ingest(cfg)
    first = run_preprocess(cfg, progress=False)
    cfg.preprocess.max_chars = 200  # affects="documents"
    shorter = run_preprocess(cfg, progress=False)
    assert shorter.documents_processed == 120 and shorter.fingerprint != first.fingerprint
    cfg.preprocess.heldout_pairs = 3  # affects="dataset"
    cfg.preprocess.dedup_threshold = 0.9
    assembled = run_preprocess(cfg, progress=False)
    assert not assembled.reused and assembled.documents_processed == 0
    assert assembled.fingerprint != shorter.fingerprint
    cfg.preprocess.workers = 2  # affects="nothing"
    same = run_preprocess(cfg, progress=False)
    assert same.reused and same.fingerprint == assembled.fingerprint


def test_remembering_an_earlier_runs_kept_samples_decides_as_one_pass():
    """The nightly path: the prefix's kept samples remembered (not checked again), then the tail checked,
    gives the decisions of one sequential pass, with a window too."""
    rng = random.Random(7)
    texts = [" ".join(rng.choice(WORDS) for _ in range(80)) for _ in range(300)]
    texts += [t + " oak" for t in texts[:40]]  # near duplicates of early texts
    texts += texts[10:20]  # exact ones
    rng.shuffle(texts)
    keys = [text_key(t) for t in texts]
    for window in (0, 120):
        whole = Deduper(0.85, window)
        expected = [whole.check_key(k, s) is None for k, s in keys]
        cut = 250
        head = Deduper(0.85, window)
        kept_head = [head.check_key(k, s) is None for k, s in keys[:cut]]
        tail = Deduper(0.85, window)
        kept = [(k, s) for (k, s), new in zip(keys[:cut], kept_head) if new]
        tail.remember([k for k, _ in kept], [s for _, s in kept if s is not None])
        kept_tail = [tail.check_key(k, s) is None for k, s in keys[cut:]]
        assert kept_head + kept_tail == expected
        assert whole.counts["exact_duplicates"] >= 5 and whole.counts["near_duplicates"] >= (40 if not window else 5)


def test_a_batch_comes_back_from_the_cache_file_as_it_went_in(archive):
    """The Arrow row a worker makes (`to_record`) gives back every column, type and signature."""
    import math
    from itertools import islice

    from mothbrain.data.cache import from_record, to_record
    from mothbrain.store.documents import shard_lines, stored_shards

    cfg = load_config(archive / "cfg.yaml")
    run_ingest(cfg)
    process._init_worker(cfg)
    batch = process.process_batch(list(islice(shard_lines(stored_shards(cfg)[0]), 40)))
    assert len(batch) >= 20 and all(batch.samples["sig"])
    batch.samples["sig"][0] = None  # a text too short for a MinHash
    row, meta = to_record(batch)
    back = from_record(row, json.loads(json.dumps(meta)))
    for part in ("docs", "samples"):
        before, after = getattr(batch, part), getattr(back, part)
        assert before.keys() == after.keys()
        for name, value in before.items():
            got = after[name]
            if name == "sig":
                assert [s and s.digest() for s in value] == [s and s.digest() for s in got]
            elif hasattr(value, "equals"):
                assert type(got) is type(value) and got.equals(value), name
            elif hasattr(value, "dtype"):
                assert got.dtype == value.dtype and (got == value).all(), name
            else:
                same = [
                    a == b or (isinstance(a, float) and math.isnan(a) and math.isnan(b)) for a, b in zip(value, got)
                ]
                assert len(value) == len(got) and all(same), name
    assert (back.wiki, back.redacted, back.filtered, back.voices) == (
        batch.wiki,
        batch.redacted,
        batch.filtered,
        batch.voices,
    )

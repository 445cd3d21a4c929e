"""The nightly path: shards unchanged since the last run come from the document cache, the last
run's dedup decisions are reused for the unchanged prefix, and the data set is the one a full
rebuild makes."""

from __future__ import annotations

import json
import pickle
import random
import time
from pathlib import Path

import pytest
import yaml

from mothbrain.config import load_config
from mothbrain.data import stage as pp
from mothbrain.data.cache import cache_dir
from mothbrain.data.dedup import Deduper, near_duplicates_of, text_key
from mothbrain.data.stage import load_latest_dataset, run_preprocess
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


def rebuilt_from_scratch(cfg) -> pp.PreprocessReport:
    return run_preprocess(cfg, progress=False, full=True)


@pytest.mark.parametrize("held_back,workers", [(50_000, 1), (0, 1), (50_000, 2)])
def test_cached_run_is_the_full_rebuild(archive, monkeypatch, held_back, workers):
    """held_back 0: the new batches after the reused prefix are not held back to be checked against
    it at once; the prefix goes into the dedup index and they stream (what a large change does).
    workers 2: the changed shards at the end are read ahead and handed to the pool first."""
    monkeypatch.setattr(pp, "REMINE_SHARE", 0.0)  # mine every time, so the two runs are comparable whole
    monkeypatch.setattr(pp, "DEFER_MAX_SAMPLES", held_back)
    monkeypatch.setattr(pp, "PARALLEL_AFTER_CHARS", 0)
    read_ahead = []
    real_read_ahead = pp._read_ahead

    def recording_read_ahead(*args):
        ahead = real_read_ahead(*args)
        read_ahead.append(sorted(ahead))  # (units read ahead: the run then takes them out)
        return ahead

    monkeypatch.setattr(pp, "_read_ahead", recording_read_ahead)
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
    assert read_ahead == ([[], [3, 4]] if workers > 1 else [])  # day-04 and day-05 (the cold run: none)
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


@pytest.mark.parametrize("held_back", [50_000, 0])
@pytest.mark.parametrize("window,nightly_near", [(40, 1), (200, 2)])
def test_windowed_dedup_nightly_is_the_full_rebuild(archive, monkeypatch, held_back, window, nightly_near):
    """With a dedup window the nightly run still makes the rebuild's decisions: the new near copy
    of the passage (~125 samples after its first copy) is kept with a window of 40, dropped with 200."""
    monkeypatch.setattr(pp, "DEFER_MAX_SAMPLES", held_back)
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
        p[:2] for p in json.loads((cache_dir(cfg) / pp.MINING_STATE).read_text())["pairs"]
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

    corpus = pp._Corpus(
        terms=[pa.array(["lantern\ntide", "bridge\nrepair", None]), pa.array(["lanterns\nheron", "tide\nheron"])]
    )
    recent = np.array([False, True, True, True, False])
    pairs = [
        Pair(a, b, 0.5, 3, False, "cooccurrence")
        for a, b in (("lantern", "tide"), ("bridge", "repair"), ("heron", "lantern"), ("heron", "tide"))
    ]
    got = {(p.a, p.b): p.recent for p in pp._recent_again(pairs, corpus, recent)}
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
    save = pp._save
    monkeypatch.setattr(pp, "_save", lambda *a, **k: (_ for _ in ()).throw(OSError(28, "No space left on device")))
    with pytest.raises(OSError):
        run_preprocess(cfg, progress=False)
    monkeypatch.setattr(pp, "_save", save)
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


def test_a_cache_that_will_not_unpickle_is_dropped(archive, monkeypatch):
    cfg = load_config(archive / "cfg.yaml")
    run_ingest(cfg)
    first = run_preprocess(cfg, progress=False)
    real = pp.unpack
    calls = []

    def flaky(packed):
        calls.append(1)
        if len(calls) == 1:
            raise pickle.UnpicklingError("invalid load key")
        return real(packed)

    monkeypatch.setattr(pp, "unpack", flaky)
    again = run_preprocess(cfg, progress=False, force=True)
    assert again.fingerprint == first.fingerprint and again.documents_processed == again.documents


def test_a_damaged_cache_file_is_processed_again(archive):
    cfg = load_config(archive / "cfg.yaml")
    run_ingest(cfg)
    first = run_preprocess(cfg, progress=False)
    files = sorted((cache_dir(cfg) / "shards").glob("*.bin"))
    assert len(files) == 4
    files[0].write_bytes(b"\x80\x05 not a pickle")
    files[1].write_bytes(files[1].read_bytes()[:100])  # torn
    data = bytearray(files[2].read_bytes())
    data[70:110] = bytes(40)  # damage inside a batch's pickle: its checksum no longer matches
    files[2].write_bytes(bytes(data))
    again = run_preprocess(cfg, progress=False, force=True)
    assert again.fingerprint == first.fingerprint and 0 < again.documents_processed < again.documents
    (cache_dir(cfg) / pp.DEDUP_STATE).write_bytes(b"garbage")
    assert run_preprocess(cfg, progress=False, force=True).fingerprint == first.fingerprint


def test_removed_files_leave_the_cache(archive):
    cfg = load_config(archive / "cfg.yaml")
    run_ingest(cfg)
    run_preprocess(cfg, progress=False)
    (archive / "chats" / "day-02.jsonl").unlink()
    run_ingest(cfg)
    report = run_preprocess(cfg, progress=False)
    assert report.documents == 90 and report.documents_processed == 0
    assert len(list((cache_dir(cfg) / "shards").glob("*.bin"))) == 3


def test_a_changed_setting_processes_everything_again(archive):
    cfg = load_config(archive / "cfg.yaml")
    run_ingest(cfg)
    run_preprocess(cfg, progress=False)
    cfg.preprocess.max_chars = 200
    assert run_preprocess(cfg, progress=False).documents_processed == 120


def test_near_duplicates_of_matches_sequential_dedup():
    """Deduplicating a tail against an earlier run's kept samples gives the sequential decisions."""
    rng = random.Random(7)
    texts = [" ".join(rng.choice(WORDS) for _ in range(80)) for _ in range(300)]
    texts += [t + " oak" for t in texts[:40]]  # near duplicates of early texts
    texts += texts[10:20]  # exact ones
    rng.shuffle(texts)
    keys = [text_key(t) for t in texts]
    whole = Deduper(0.85)
    expected = [whole.check_key(k, s) is None for k, s in keys]

    cut = 250
    head = Deduper(0.85)
    kept_head = [head.check_key(k, s) is None for k, s in keys[:cut]]
    earlier = [s for (_, s), kept in zip(keys[:cut], kept_head) if kept and s is not None]
    near = near_duplicates_of(earlier, [s for _, s in keys[cut:]], 0.85)
    tail = Deduper(0.85)
    tail.exact.update(k for (k, _), kept in zip(keys[:cut], kept_head) if kept)
    kept_tail = [tail.check_key(k, s, near=i in near) is None for i, (k, s) in enumerate(keys[cut:])]
    assert kept_head + kept_tail == expected
    assert whole.counts["near_duplicates"] + whole.counts["exact_duplicates"] >= 45 and near

"""The ledger survives kills and concurrent writers, and refuses files it does not understand."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from mothbrain.core.ledger import Ledger, LedgerError
from mothbrain.errors import MothError


def test_new_version_ids_and_fields(tmp_path):
    led = Ledger(tmp_path / "versions.json")
    a = led.new_version(dataset={"fingerprint": "abc"})
    b = led.new_version(parent=a["id"])
    assert (a["id"], b["id"]) == ("v0001", "v0002")
    led.update(a["id"], status="trained", train={"steps": 3})
    led.update(a["id"], train={"final_loss": 1.5})  # dict fields merge one level deep
    entry = led.get(a["id"])
    assert entry["train"] == {"steps": 3, "final_loss": 1.5}
    assert entry["dataset"]["fingerprint"] == "abc"
    assert led.get(b["id"])["parent"] == "v0001"


def test_failed_version_can_never_be_current(tmp_path):
    led = Ledger(tmp_path / "versions.json")
    v = led.new_version()
    led.fail(v["id"], "loss became NaN", "lower train.learning_rate")
    with pytest.raises(LedgerError, match="cannot be current"):
        led.set_current(v["id"])
    assert led.current() is None
    assert led.get(v["id"])["error"]["suggestion"] == "lower train.learning_rate"


def test_unknown_status_rejected(tmp_path):
    led = Ledger(tmp_path / "versions.json")
    v = led.new_version()
    with pytest.raises(LedgerError, match="unknown status"):
        led.update(v["id"], status="almost")


@pytest.mark.parametrize(
    "content,match",
    [
        ("{not json", "corrupt"),
        (json.dumps({"schema": 99, "versions": []}), "newer"),
        (json.dumps([1, 2, 3]), "not a MothBrain ledger"),
    ],
)
def test_corrupt_or_newer_ledger_is_never_overwritten(tmp_path, content, match):
    path = tmp_path / "versions.json"
    path.write_text(content)
    led = Ledger(path)
    with pytest.raises(LedgerError, match=match):
        led.new_version()
    assert path.read_text() == content


def _append_many(path: str, n: int, tag: str) -> None:
    led = Ledger(path)
    for i in range(n):
        led.new_version(note=f"{tag}-{i}")


def test_concurrent_writers_lose_nothing(tmp_path):
    path = str(tmp_path / "versions.json")
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_append_many, args=(path, 15, f"w{k}")) for k in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    versions = Ledger(path).versions()
    assert len(versions) == 60
    assert len({v["id"] for v in versions}) == 60
    assert {v["note"] for v in versions} == {f"w{k}-{i}" for k in range(4) for i in range(15)}


def test_kill_9_mid_write_never_truncates(tmp_path):
    """A writer killed at random instants leaves the old or the new ledger, always valid JSON."""
    path = tmp_path / "versions.json"
    Ledger(path).new_version(note="seed " + "x" * 20000)  # a large entry makes each write take longer
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(os.getcwd())!r})
        from mothbrain.core.ledger import Ledger
        led = Ledger({str(path)!r})
        while True:
            led.new_version(note="y" * 20000)
    """)
    for delay in (0.05, 0.12, 0.2, 0.31, 0.45):
        proc = subprocess.Popen([sys.executable, "-c", script])
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        data = json.loads(path.read_text())  # never truncated
        assert data["versions"][0]["note"].startswith("seed")
        ids = [v["id"] for v in data["versions"]]
        assert ids == [f"v{i:04d}" for i in range(1, len(ids) + 1)]
    # a lock left behind by a killed writer does not block the next one
    Ledger(path).new_version(note="after")
    assert Ledger(path).versions()[-1]["note"] == "after"


def test_write_failure_keeps_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "versions.json"
    led = Ledger(path)
    led.new_version(note="keep me")
    before = path.read_text()

    def full_disk(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(MothError, match="No space left"):
        led.new_version(note="lost")
    assert path.read_text() == before
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]

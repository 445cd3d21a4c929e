"""kill -9 of `run weekly` at the start and in the middle of every stage, one after another, on the real
stages (tiny model): after every kill the ledger is valid, the current link agrees with the ledger, no
version lies outside the ledger; the runs that follow finish the same version on the same data set."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from mothbrain.config import REPO_ROOT, load_config

DEMO = REPO_ROOT / "configs" / "demo-tiny.yaml"
SETTINGS = [
    "schedule.send_briefing=false",
    "schedule.weekly.wait_for_lock_s=0",
    "train.max_steps=6",
    "train.save_steps=2",
    "train.logging_steps=1",
    "dream.num_prompts=2",
    "dream.max_new_tokens=8",
    "eval.max_heldout_samples=16",
    "eval.association_pairs=4",
    "eval.surprise_prompts=2",
    "eval.probe_modes=[direct]",
    # a plumbing run, not a learner (the gate's statistics are tested in tests/evaluate)
    "promote.gate.min_improvement_vs_base_pct=0",
    "promote.gate.require_association=false",
    "promote.gate.min_voice_samples=1",
    "promote.gate.max_regression_pct=1000",
    "promote.gate.forbid_zero_concepts=false",
]

# Runs `run weekly` on the real stages and SIGKILLs itself at one instant: "<stage>:start" (the stage
# has been recorded as running, nothing of it done) or "<stage>:middle" (at a point inside it).
HARNESS = textwrap.dedent("""
    import json, os, signal, sys

    import transformers

    import mothbrain.core.current as current
    import mothbrain.data.stage as data_stage
    import mothbrain.dream.stage as dream_stage
    import mothbrain.evaluate.stage as eval_stage
    import mothbrain.ingest.file_job as ingest_file_job
    from mothbrain.config import load_config
    from mothbrain.ops import schedule

    kill_stage, _, phase = sys.argv[2].partition(":")
    cfg = load_config(sys.argv[1], json.loads(sys.argv[3]))
    now = {"stage": None, "calls": 0}

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    def inside(stage, real, before=False, after_calls=1):
        # call `real`; SIGKILL before or after its `after_calls`-th call within `stage`
        def hooked(*args, **kwargs):
            if now["stage"] != stage or kill_stage != stage or phase != "middle":
                return real(*args, **kwargs)
            now["calls"] += 1
            if before and now["calls"] >= after_calls:
                die()
            out = real(*args, **kwargs)
            if not before and now["calls"] >= after_calls:
                die()
            return out
        return hooked

    ingest_file_job._ingest_file = inside("ingest", ingest_file_job._ingest_file, after_calls=2)  # some files stored
    data_stage.write_atomically = inside("preprocess", data_stage.write_atomically, before=True)  # data set, no pointer
    real_ckpt = transformers.Trainer._save_checkpoint
    def checkpoint(self, *a, **k):
        out = real_ckpt(self, *a, **k)
        if now["stage"] == "train" == kill_stage and phase == "middle" and self.state.global_step >= 4:
            die()  # two checkpoints written, training not finished
        return out
    transformers.Trainer._save_checkpoint = checkpoint
    dream_stage.add_proposals = inside("dream", dream_stage.add_proposals)  # staged, not recorded
    eval_stage.load_latest_dataset = inside("eval", eval_stage.load_latest_dataset, before=True)  # eval under way
    current._point_current = inside("promote", current._point_current)  # link swapped, ledger not confirmed

    stages = schedule.default_stages()
    def wrap(name, fn):
        def call(cfg):
            now["stage"], now["calls"] = name, 0
            if name == kill_stage and phase == "start":
                die()
            return fn(cfg)
        return call
    record = schedule.run_chain(cfg, "weekly", stages={n: wrap(n, f) for n, f in stages.items()})
    print("RESULT", record.status, json.dumps([[s.name, s.status, s.error] for s in record.stages]))
""")

KILLS = [
    f"{stage}:{phase}"
    for stage in ("ingest", "preprocess", "train", "dream", "eval", "promote")
    for phase in ("start", "middle")
]


def _weekly(tmp_path: Path, kill: str) -> subprocess.CompletedProcess:
    script = tmp_path / "harness.py"
    script.write_text(HARNESS)
    return subprocess.run(
        [sys.executable, str(script), str(DEMO), kill, json.dumps(SETTINGS)],
        capture_output=True,
        text=True,
        timeout=600,
    )


def _check_consistent(cfg, home: Path, after: str) -> dict:
    """What any command sees after the kill: a valid ledger, the link agreeing with it, no orphan version."""
    from mothbrain.core.current import reconcile_current

    ledger_file = home / "versions.json"
    if not ledger_file.exists():
        assert not (home / "adapters" / "current").exists(), after
        return {"versions": [], "current": None}
    json.loads(ledger_file.read_text())  # valid JSON as it lies on disk, before anything repairs it
    reconcile_current(cfg)  # what every command that reads the pointer does first
    ledger = json.loads(ledger_file.read_text())
    link = home / "adapters" / "current"
    assert (Path(link.readlink()).name if link.is_symlink() else None) == ledger.get("current"), after
    ids = {v["id"] for v in ledger["versions"]}
    on_disk = {p.name for p in (home / "adapters").glob("v[0-9]*") if p.is_dir()}
    assert on_disk <= ids, (after, on_disk - ids)  # no version outside the ledger
    for v in ledger["versions"]:
        if v["status"] in ("trained", "evaluated", "promoted"):
            assert v["id"] in on_disk, (after, v["id"])  # no ledger version without its adapter
    return ledger


def test_kill_9_at_every_stage_start_and_middle_loses_nothing(tmp_path, state_home, tiny_model_into):
    tiny_model_into(state_home)
    cfg = load_config(DEMO, SETTINGS)
    fingerprints = set()
    for kill in KILLS:
        res = _weekly(tmp_path, kill)
        assert res.returncode == -signal.SIGKILL, (kill, res.returncode, res.stdout[-2000:], res.stderr[-3000:])
        ledger = _check_consistent(cfg, state_home, kill)
        assert len(ledger["versions"]) <= 1, (kill, [v["id"] for v in ledger["versions"]])  # never a repeat version
        latest = state_home / "data" / "datasets" / "latest.json"
        if latest.exists():
            fingerprints.add(json.loads(latest.read_text())["path"])

    res = _weekly(tmp_path, "none:none")
    assert res.returncode == 0 and "RESULT ok" in res.stdout, (res.stdout[-2000:], res.stderr[-3000:])
    ledger = _check_consistent(cfg, state_home, "the last run")
    (v,) = ledger["versions"]
    assert v["status"] == "promoted" and ledger["current"] == v["id"] and v["eval"] and v["dream"]
    assert v["train"]["steps"] == 6 and v["train"]["resumed_from"] == "checkpoint-4"
    assert len(fingerprints) == 1  # every rerun rebuilt (or kept) the same data set
    assert v["dataset"]["fingerprint"] in next(iter(fingerprints))

    from mothbrain.ops.runs import load_runs
    from mothbrain.proposals.queue import list_proposals

    assert len(list_proposals(cfg)) == v["dream"]["proposals"] == 2  # the killed dream's, not twice
    runs = load_runs(cfg)
    assert [r["status"] for r in runs] == ["killed"] * len(KILLS) + ["ok"]  # each found dead by the next
    assert not list(state_home.rglob(".*.tmp"))  # no temp file outlives the runs

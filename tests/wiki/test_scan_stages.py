"""`wiki scan` on a fresh state (no base model: openings extracted, nothing built) and cut off mid-scan
(each kind staged as it finishes: what the earlier kinds found is kept, and a rescan adds no duplicates)."""

from __future__ import annotations

import time
from collections import Counter

import pytest
from wikigen import generate_wiki

from mothbrain.config import REPO_ROOT, load_config
from mothbrain.core import paths
from mothbrain.proposals import queue
from mothbrain.wiki import scan, staleness

DEMO = REPO_ROOT / "configs" / "demo-tiny.yaml"


def _cfg(tmp_path, *more):
    return load_config(DEMO, [f"state_dir={tmp_path / 'state'}", f"wiki.path={tmp_path / 'wiki'}", *more])


def test_a_scan_on_a_fresh_state_extracts_openings_and_builds_no_model(tmp_path, state_home):
    truth = generate_wiki(tmp_path / "wiki", pages=40, seed=2, planted=0.1)
    cfg = _cfg(tmp_path, "wiki.openings=model")
    assert cfg.model.build_tiny and cfg.wiki.openings == "model"
    models = paths.models_dir(cfg, create=False)
    assert not models.exists()
    t0 = time.perf_counter()
    report = scan.run_scan(cfg)
    seconds = time.perf_counter() - t0
    assert seconds < 120, seconds  # building the tiny model alone takes minutes
    assert not models.exists() or not any(models.iterdir())
    (said,) = [w for w in report.warnings if "frame openings extracted" in w]
    assert "not built" in said and cfg.model.base in said
    frames = [p for p in queue.list_proposals(cfg, status=None) if p["kind"] == "frame"]
    assert frames and {p["target"] for p in frames} & truth.frames
    assert all(p["patch"]["detail"]["written_by"] == "extraction from the page" for p in frames)


def test_a_ready_base_is_not_reported_as_missing(tmp_path, demo_cfg):
    cfg = demo_cfg(f"wiki.path={tmp_path / 'wiki'}", "wiki.openings=model")
    from mothbrain.wiki.frames import base_unready

    assert base_unready(cfg) == ""


def test_a_scan_killed_in_its_last_kind_keeps_the_earlier_kinds_and_a_rescan_adds_no_duplicates(
    tmp_path, state_home, monkeypatch
):
    truth = generate_wiki(tmp_path / "wiki", pages=80, seed=1, hide=0.3, planted=0.05)
    cfg = _cfg(tmp_path, "wiki.openings=extract")
    said = []
    for s in truth.statements:  # "Last month we switched from X to Y and nobody misses it."
        old, new = s.split("from ")[1].split(" and")[0].split(" to ")
        said.append(staleness.Change(old=old, new=new, quote=s, when=time.time(), source="chats/recent.jsonl"))
    monkeypatch.setattr(scan, "recent_changes", lambda cfg: said)
    real = scan.staleness_proposals

    def killed(*args, **kwargs):
        raise KeyboardInterrupt("killed in the staleness check")

    monkeypatch.setattr(scan, "staleness_proposals", killed)
    with pytest.raises(KeyboardInterrupt):
        scan.run_scan(cfg)
    kept = queue.list_proposals(cfg, status=None)
    kinds = Counter(p["kind"] for p in kept)
    assert kinds["crosslink"] and kinds["split"] and kinds["frame"] and not kinds["staleness"]

    monkeypatch.setattr(scan, "staleness_proposals", real)
    report = scan.run_scan(cfg)
    assert report.staged["crosslink"] == report.staged["split"] == report.staged["frame"] == 0
    assert report.staged["staleness"] >= 1 and report.already == len(kept)
    after = queue.list_proposals(cfg, status=None)
    fingerprints = [p["fingerprint"] for p in after]
    assert len(fingerprints) == len(set(fingerprints)) == len(kept) + report.staged["staleness"]

"""The wiki-worker on a generated wiki with planted defects: scan finds them, review decides, merge applies."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from merged_link import merge_the_garden_link
from wikigen import FakeOpenAI, generate_wiki, stand_in_reviewer

from mothbrain.cli import main
from mothbrain.config import REPO_ROOT, load_config
from mothbrain.core import paths
from mothbrain.proposals import queue
from mothbrain.wiki import crosslinks, merge, review, scan, staleness, vectors
from mothbrain.wiki.frames import frame_proposals
from mothbrain.wiki.pages import masked_prose, parse_page, read_wiki
from mothbrain.wiki.patches import PatchConflict, apply_edits, edit

DEMO = REPO_ROOT / "configs" / "demo-tiny.yaml"


def _cfg(home: Path, wiki: Path, *more: str):
    return load_config(DEMO, [f"state_dir={home}", f"wiki.path={wiki}", "wiki.openings=extract", *more])


def _changes(truth, when: float | None = None):
    when = when or time.time()
    out = []
    for s in truth.statements:
        old, new = s.split("from ")[1].split(" and")[0].split(" to ")
        out.append(staleness.Change(old=old, new=new, quote=s, when=when, source="chats/recent.jsonl"))
    return out


@pytest.fixture(scope="module")
def scanned(tmp_path_factory):
    """One 200-page generated wiki (20% of links hidden, 5% of pages planted each way), scanned once."""
    root = tmp_path_factory.mktemp("gen")
    truth = generate_wiki(root / "wiki", pages=200, seed=3, hide=0.2, planted=0.05)
    cfg = _cfg(root / "state", root / "wiki", "wiki.max_frames=1000")
    wiki = read_wiki(root / "wiki")
    found, info = scan.scan(cfg, wiki, changes=_changes(truth))
    return truth, found, info


def _flagged(found, kind):
    return {p["target"] for p in found if p["kind"] == kind}


# --------------------------------------------------------------------------- reading pages


def test_pages_keep_exact_offsets_and_prose_hides_links_code_and_headings():
    text = (
        "---\ntitle: Garden\naliases: [Plot]\n---\n# Garden\n\nThe [[Compost|compost heap]] feeds the figs.\n\n"
        "```\nfigs = 1  # Figs in code\n```\n\n## Figs\n\nFigs want patience.\n"
    )
    page = parse_page("Garden.md", text)
    assert page.title == "Garden" and page.aliases == ["Plot"]
    (link,) = page.links
    assert text[link.start : link.end] == "[[Compost|compost heap]]" and link.visible == "compost heap"
    assert [s.heading for s in page.sections] == ["", "Figs"]
    masked = masked_prose(page)
    assert len(masked) == len(text)
    assert "Compost" not in masked and "figs = 1" not in masked and "## Figs" not in masked
    assert "feeds the figs" in masked and "Figs want patience" in masked


def test_edits_apply_only_to_the_text_they_were_made_against():
    text = "The compost feeds the figs."
    e = edit(4, 11, "compost", "[[Compost|compost]]")
    assert apply_edits(text, [e]) == "The [[Compost|compost]] feeds the figs."
    with pytest.raises(PatchConflict):
        apply_edits("The mulch feeds the figs.", [e])


# --------------------------------------------------------------------------- what a scan finds


def test_crosslink_backtest_finds_hidden_links_and_leaves_other_senses_alone(scanned):
    truth, found, info = scanned
    staged = {(p["target"], p["patch"]["files"][0]["edits"][0]["new"]) for p in found if p["kind"] == "crosslink"}
    pairs = {(p["target"], p["detail"]["to"]) for p in found if p["kind"] == "crosslink"}
    hit = pairs & truth.hidden
    precision, recall = len(hit) / max(1, len(pairs)), len(hit) / len(truth.hidden)
    assert precision >= 0.8 and recall >= 0.5, (precision, recall, len(pairs), len(truth.hidden))
    # Better than the null that links every unlinked mention of a title.
    candidates = {tuple(p) for p in info["crosslink"]["candidate_pairs"]}
    null_precision = len(candidates & truth.hidden) / len(candidates)
    assert precision > null_precision + 0.1, (precision, null_precision)
    # A common word used in another sense is not linked.
    assert not pairs & truth.decoys
    assert all(new.startswith("[[") and new.endswith("]]") for _, new in staged)
    assert info["crosslink"]["link_model"].endswith("plain mentions")  # learnt from the wiki's own links


def test_splits_frames_and_stale_statements_are_found_with_few_false_alarms(scanned):
    truth, found, _ = scanned
    pages = len(truth.pages)
    for kind, planted in (("split", truth.splits), ("frame", truth.frames), ("staleness", set(truth.stale))):
        flagged = _flagged(found, kind)
        recall = len(flagged & planted) / len(planted)
        false_alarm = len(flagged - planted) / (pages - len(planted))
        assert recall >= 0.6 and false_alarm <= 0.05, (kind, recall, false_alarm)
    # A page that already records the new tool is not called stale.
    assert not _flagged(found, "staleness") & truth.fresh


def test_every_proposal_carries_a_patch_against_its_page_hash_a_rationale_and_a_score(scanned):
    _, found, _ = scanned
    assert {p["kind"] for p in found} == {"crosslink", "split", "frame", "staleness"}
    for p in found:
        assert p["rationale"] and 0 <= p["score"] <= 1 and p["fingerprint"].startswith(p["kind"])
        files = p["patch"]["files"]
        assert files[0]["path"] == p["target"] and len(files[0]["sha256"]) == 64
        assert p["patch"]["diff"].startswith("--- a/")


def test_a_wiki_without_defects_gets_no_split_frame_or_staleness(tmp_path):
    truth = generate_wiki(tmp_path / "wiki", pages=60, seed=5, hide=0.0, planted=0.0)
    cfg = _cfg(tmp_path / "state", tmp_path / "wiki")
    found, _ = scan.scan(cfg, read_wiki(tmp_path / "wiki"), changes=[])
    planted = truth.splits | truth.frames | set(truth.stale)  # the generator plants at least one of each
    wrong = [p for p in found if p["kind"] != "crosslink" and p["target"] not in planted]
    assert len(wrong) <= 1, [(p["kind"], p["target"]) for p in wrong]
    assert not [p for p in found if p["kind"] == "crosslink"]  # nothing hidden, nothing to find


# --------------------------------------------------------------------------- the stages end to end


def _stage_all(cfg, truth):
    found, info = scan.scan(cfg, read_wiki(cfg.resolve_path(cfg.wiki.path)), changes=_changes(truth))
    for p in found:
        p["patch"]["detail"] = p.pop("detail")
    ids = queue.add_proposals(cfg, found)
    one: dict[str, int] = {}  # one proposal of each kind, on pages no other chosen one touches
    touched: set[str] = set()
    for p, i in zip(found, ids):
        paths = {f["path"] for f in p["patch"]["files"]}
        if p["kind"] not in one and not paths & touched:
            one[p["kind"]] = i
            touched |= paths
    return one, found


@pytest.fixture(scope="module")
def small_wiki_vectors(tmp_path_factory):
    """The small wiki's embedding cache (bytes), computed once for the module; each test copies it in."""
    root = tmp_path_factory.mktemp("small")
    generate_wiki(root / "wiki", pages=80, seed=1, hide=0.3, planted=0.05)
    cfg = _cfg(root / "state", root / "wiki")
    vectors.embed_wiki(cfg, read_wiki(root / "wiki"))
    return (paths.wiki_state_dir(cfg) / "embeddings.npz").read_bytes()


@pytest.fixture
def small_wiki(small_wiki_vectors):
    def make(tmp_path, git=False):
        truth, cfg = _make_small_wiki(tmp_path, git)
        (paths.wiki_state_dir(cfg) / "embeddings.npz").write_bytes(small_wiki_vectors)
        return truth, cfg

    return make


def _make_small_wiki(tmp_path, git=False):
    truth = generate_wiki(tmp_path / "wiki", pages=80, seed=1, hide=0.3, planted=0.05)
    if git:
        subprocess.run(["git", "init", "-q", str(tmp_path / "wiki")], check=True)
        _git(tmp_path / "wiki", "add", "-A")
        _git(tmp_path / "wiki", "commit", "-q", "-m", "the wiki")
    return truth, _cfg(tmp_path / "state", tmp_path / "wiki")


def _git(root: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t"}
    env["GIT_COMMITTER_EMAIL"] = "t@t"
    return subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True, text=True, env=env).stdout


def _snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".git" not in p.parts
    }


@pytest.mark.skipif(shutil.which("git") is None, reason="no git binary")
def test_each_kind_merges_as_one_git_commit_and_revert_restores_it_byte_for_byte(tmp_path, small_wiki):
    truth, cfg = small_wiki(tmp_path, git=True)
    root = tmp_path / "wiki"
    first, _ = _stage_all(cfg, truth)
    assert set(first) == {"crosslink", "split", "frame", "staleness"}
    before = _snapshot(root)
    for pid in first.values():
        queue.set_status(cfg, pid, "accepted")
    report = merge.run_merge(cfg)
    assert sorted(report.merged) == sorted(first.values()) and report.git
    log = _git(root, "log", "--format=%B%x00").split("\x00")
    for kind, pid in first.items():
        p = queue.get(cfg, pid)
        assert p["merge_state"] == "merged" and len(p["merge_commit"]) == 40
        assert f"MothBrain-Proposal: {pid}" in _git(root, "show", "-s", "--format=%B", p["merge_commit"])
        for f in p["patch"]["files"]:  # the page now reads as the patch said
            assert (root / f["path"]).exists()
    assert sum(1 for m in log if "MothBrain-Proposal:" in m) == len(first)  # one commit per merge
    assert not list((paths.wiki_state_dir(cfg) / "merges").iterdir())  # git keeps the old bytes: no copies pile up
    split = queue.get(cfg, first["split"])
    new_page = split["patch"]["detail"]["new_page"]
    assert (root / new_page).read_text().startswith("# ") and new_page not in before
    # Reverting every merge, newest first, gives back the wiki byte for byte.
    for pid in sorted(first.values(), reverse=True):
        merge.revert(cfg, pid)
        assert queue.get(cfg, pid)["merge_state"] == "reverted"
    assert _snapshot(root) == before


def test_without_git_revert_puts_back_the_kept_bytes_and_refuses_after_a_later_edit(tmp_path, small_wiki):
    truth, cfg = small_wiki(tmp_path)
    root = tmp_path / "wiki"
    ids, _ = _stage_all(cfg, truth)
    before = _snapshot(root)
    for kind in ("crosslink", "split"):
        queue.set_status(cfg, ids[kind], "accepted")
    assert sorted(merge.run_merge(cfg).merged) == sorted([ids["crosslink"], ids["split"]])
    merge.revert(cfg, ids["split"])
    page = queue.get(cfg, ids["crosslink"])["target"]
    (root / page).write_text((root / page).read_text() + "\nA later edit.\n")
    with pytest.raises(Exception, match="changed since proposal"):
        merge.revert(cfg, ids["crosslink"])
    assert (root / page).read_text().endswith("A later edit.\n")  # nothing was touched
    assert queue.get(cfg, ids["crosslink"])["merge_state"] == "merged"
    split_files = {f["path"] for f in queue.get(cfg, ids["split"])["patch"]["files"]}
    assert all(_snapshot(root)[f] == before[f] for f in split_files if f in before)


def test_a_page_edited_since_the_scan_is_marked_stale_never_forced_and_proposed_afresh(tmp_path, small_wiki):
    truth, cfg = small_wiki(tmp_path)
    root = tmp_path / "wiki"
    ids, found = _stage_all(cfg, truth)
    p = queue.get(cfg, ids["crosslink"])
    page = root / p["target"]
    edited = page.read_text(encoding="utf-8").replace("\n", "\n\nSomeone wrote here.\n", 1)
    page.write_text(edited, encoding="utf-8")
    queue.set_status(cfg, p["id"], "accepted")
    report = merge.run_merge(cfg)
    assert report.stale == [p["id"]] and page.read_text(encoding="utf-8") == edited
    assert queue.get(cfg, p["id"])["merge_state"] == "stale"
    # The stale one no longer blocks its fingerprint: the next scan proposes it against the page as it is.
    assert p["fingerprint"] not in queue.live_fingerprints(cfg)
    again, _ = scan.scan(cfg, read_wiki(root), changes=_changes(truth))
    fresh = [q for q in again if q["fingerprint"] == p["fingerprint"]]
    assert fresh and fresh[0]["patch"]["files"][0]["sha256"] != p["patch"]["files"][0]["sha256"]


@pytest.mark.parametrize(
    "bad", ["../outside.md", "/tmp/abs.md", "sub/../../outside.md", ".git/config.md", "escape/x.md", "notes.txt"]
)
def test_a_patch_that_escapes_the_wiki_is_refused_and_writes_nothing(tmp_path, bad, small_wiki):
    truth, cfg = small_wiki(tmp_path)
    root = tmp_path / "wiki"
    (root / "escape").symlink_to(tmp_path)  # a folder link out of the wiki
    before_outside = sorted(p.name for p in tmp_path.iterdir())
    (pid,) = queue.add_proposals(
        cfg,
        [
            {
                "kind": "frame",
                "target": bad,
                "text": "x",
                "patch": {"files": [{"path": bad, "sha256": None, "content": "pwned"}]},
            }
        ],
    )
    queue.set_status(cfg, pid, "accepted")
    report = merge.run_merge(cfg)
    assert report.refused == [pid], report.notes
    assert queue.get(cfg, pid)["merge_state"] == "refused"
    assert sorted(p.name for p in tmp_path.iterdir()) == before_outside
    assert not Path("/tmp/abs.md").exists() and not (tmp_path / "x.md").exists()


# --------------------------------------------------------------------------- review


@pytest.fixture
def reviewer_url():
    with stand_in_reviewer() as url:
        yield url


def _with_reviewer(cfg, url, **more):
    cfg.wiki.reviewer_url, cfg.wiki.reviewer_model, cfg.wiki.reviews_per_hour = url, "judge", 0
    cfg.wiki.reviewer_max_retries = more.get("retries", 2)
    cfg.wiki.reviewer_timeout_s = more.get("timeout", 5.0)
    return cfg


def test_an_openai_compatible_reviewer_decides_and_its_spend_is_recorded(tmp_path, reviewer_url, small_wiki):
    truth, cfg = small_wiki(tmp_path)
    ids, _ = _stage_all(cfg, truth)
    n = len(queue.awaiting_review(cfg, "any", 10_000))
    FakeOpenAI.script = [("429", None), ("json", {"decision": "reject", "reason": "other sense"})]
    report = review.run_review(_with_reviewer(cfg, reviewer_url))
    assert report.decisions == {"reject": 1, "accept": n - 1} and report.left_pending == 0
    assert report.requests == n + 1  # the 429 was retried (Retry-After honoured) and counted
    assert report.prompt_tokens == 100 * n and report.completion_tokens == 10 * n
    assert FakeOpenAI.seen[0]["response_format"]["type"] == "json_schema"  # structured output asked for
    assert "Rubric:" in FakeOpenAI.seen[0]["messages"][0]["content"]
    spend = queue.review_totals(cfg)["judge@" + reviewer_url.split("/")[2]]
    assert spend["requests"] == n + 1 and spend["prompt_tokens"] == 100 * n
    assert not queue.list_proposals(cfg, status="pending")
    merge.run_merge(cfg)
    from mothbrain.ops.briefing import build_briefing

    text = build_briefing(cfg).text
    assert "Wiki-worker, last 24 h" in text and f"{n + 1} request(s), {100 * n:,} prompt" in text
    assert "merged" in text and "stale" in text


def test_a_reviewer_that_times_out_or_answers_garbage_loses_nothing(tmp_path, reviewer_url, small_wiki):
    truth, cfg = small_wiki(tmp_path)
    _stage_all(cfg, truth)
    n = len(queue.list_proposals(cfg, status="pending"))
    FakeOpenAI.script = [("raw", "I think it's fine!"), ("raw", "{not json"), ("sleep", 3.0)]
    with pytest.raises(review.ReviewerUnavailable) as down:
        review.run_review(_with_reviewer(cfg, reviewer_url, retries=0, timeout=1.0))
    report = down.value.report
    assert report.decisions == {"error": 2, "down": 1} and "unreachable" in report.stopped
    assert len(queue.list_proposals(cfg, status="pending")) == n  # every one still waits
    # Once it is back, the next run decides them all.
    FakeOpenAI.script = []
    again = review.run_review(cfg)
    assert again.decisions == {"accept": n} and not queue.list_proposals(cfg, status="pending")


def test_a_reviewer_that_is_down_stops_the_run_and_decides_nothing(tmp_path, small_wiki):
    truth, cfg = small_wiki(tmp_path)
    _stage_all(cfg, truth)
    n = len(queue.list_proposals(cfg, status="pending"))
    with pytest.raises(review.ReviewerUnavailable, match="unreachable") as down:
        review.run_review(_with_reviewer(cfg, "http://127.0.0.1:9/v1", retries=0))
    report = down.value.report
    assert report.decisions == {"down": 1} and report.left_pending == n
    assert len(queue.list_proposals(cfg, status="pending")) == n


def test_a_cut_off_or_non_json_answer_is_an_error_for_that_proposal_never_a_traceback(
    tmp_path, reviewer_url, small_wiki
):
    truth, cfg = small_wiki(tmp_path)
    _stage_all(cfg, truth)
    n = len(queue.list_proposals(cfg, status="pending"))
    FakeOpenAI.script = [
        ("body", b'{"id": "chatcmpl-1", "object": "chat.completion", "choices": [{"mess'),  # the body cut off
        ("body", b"<html><body>502 Bad Gateway</body></html>"),  # a proxy's page, not JSON
        ("raw", '{"decision": "acc'),  # the answer cut off inside the JSON
    ]
    report = review.run_review(_with_reviewer(cfg, reviewer_url, retries=0))
    assert report.decisions == {"error": 3, "accept": n - 3} and not report.stopped
    assert len(queue.list_proposals(cfg, status="pending")) == 3  # each waits for the next run


def _wiki_chain_args(wiki) -> list[str]:
    """--set overrides for `mothbrain run wiki` on `wiki`: extracted openings, the three stages, no email."""
    sets = [
        f"wiki.path={wiki}",
        "wiki.openings=extract",
        "schedule.wiki.stages=[wiki_scan, wiki_review, wiki_merge]",
        "schedule.send_briefing=false",
    ]
    return [arg for s in sets for arg in ("--set", s)]


def test_a_reviewer_that_is_down_makes_the_wiki_chain_exit_non_zero(tmp_path, state_home):
    generate_wiki(tmp_path / "wiki", pages=40, seed=1, hide=0.3, planted=0.05)
    args = _wiki_chain_args(tmp_path / "wiki")
    args += ["--set", "wiki.reviewer_url=http://127.0.0.1:9/v1", "--set", "wiki.reviewer_model=judge"]
    args += ["--set", "wiki.reviewer_max_retries=0"]
    r = CliRunner().invoke(main, ["run", "wiki", "--json", *args])
    assert r.exit_code != 0, r.output
    record = json.loads(r.output[: r.output.rindex("}") + 1])
    assert [s["status"] for s in record["stages"]][:2] == ["ok", "failed"], record["stages"]
    assert "unreachable" in record["stages"][1]["error"] and not record["stages"][1].get("traceback")
    r = CliRunner().invoke(main, ["wiki", "review", *args])  # by hand: a clean message, no traceback
    assert r.exit_code != 0 and "unreachable" in r.output and "Traceback" not in r.output


def test_the_local_reviewer_accepts_only_high_scoring_crosslinks_and_leaves_the_rest(tmp_path, small_wiki):
    truth, cfg = small_wiki(tmp_path)
    _, found = _stage_all(cfg, truth)
    report = review.run_review(cfg)
    accepted = queue.list_proposals(cfg, status="accepted")
    assert accepted and all(p["kind"] == "crosslink" and p["score"] >= cfg.wiki.local_accept_score for p in accepted)
    assert report.decisions.get("defer", 0) == len(found) - len(accepted)
    # What it left for a person is not re-examined on every run.
    with pytest.raises(Exception, match="no wiki proposals waiting"):
        review.run_review(cfg)


# --------------------------------------------------------------------------- CLI and the chain


def test_the_wiki_chain_scans_reviews_and_merges_from_the_cli(tmp_path, state_home):
    generate_wiki(tmp_path / "wiki", pages=80, seed=1, hide=0.3, planted=0.05)
    args = _wiki_chain_args(tmp_path / "wiki")
    r = CliRunner().invoke(main, ["run", "wiki", "--json", *args])
    assert r.exit_code == 0, r.output
    record = json.loads(r.output[: r.output.rindex("}") + 1])
    assert [s["status"] for s in record["stages"]] == ["ok", "ok", "ok"], record["stages"]
    cfg = load_config(DEMO, [f"wiki.path={tmp_path / 'wiki'}"])
    merged = [p for p in queue.list_proposals(cfg, kind="crosslink") if p["merge_state"] == "merged"]
    assert merged
    r = CliRunner().invoke(main, ["proposals", "show", str(merged[0]["id"]), *args])
    assert r.exit_code == 0 and "--- patch" in r.output and "merge: merged" in r.output
    r = CliRunner().invoke(main, ["wiki", "revert", str(merged[0]["id"]), *args])
    assert r.exit_code == 0 and "reverted" in r.output, r.output
    r = CliRunner().invoke(main, ["wiki", "scan", *args])  # nothing new: everything is already in the queue
    assert r.exit_code == 0, r.output


def test_no_wiki_configured_is_a_skip_and_a_missing_folder_names_the_key(tmp_path, state_home):
    cfg = load_config(DEMO, ["sources=[]", "wiki.path="])
    with pytest.raises(Exception, match="no wiki to maintain"):
        scan.run_scan(cfg)
    cfg = load_config(DEMO, [f"wiki.path={tmp_path / 'nope'}"])
    with pytest.raises(Exception, match="wiki.path"):
        scan.run_scan(cfg)


def test_frame_openings_are_written_by_the_local_model(tmp_path, demo_cfg):
    truth = generate_wiki(tmp_path / "wiki", pages=40, seed=2, planted=0.1)
    cfg = demo_cfg(f"wiki.path={tmp_path / 'wiki'}", "wiki.openings=model", "neighbour.nice=0")
    cfg.neighbour.ionice_idle = False  # keep the test process's own priority
    wiki = read_wiki(tmp_path / "wiki")
    from mothbrain.models.embeddings import load_embedder

    embedder = load_embedder(cfg)
    frames = frame_proposals(cfg, wiki, vectors.embed_wiki(cfg, wiki, embedder), embedder)
    assert {p["target"] for p in frames} & truth.frames
    for p in frames:
        assert p["detail"]["written_by"].startswith("the local model"), p["detail"]
        new = p["patch"]["files"][0]["edits"][0]["new"]
        assert new.startswith(f"**{read_wiki(tmp_path / 'wiki').page(p['target']).title}**: ") and len(new) > 20


# --------------------------------------------------------------------------- real pages are messier


def test_crlf_bom_and_broken_front_matter_pages_are_read_and_patched_in_their_own_style(tmp_path):
    root = tmp_path / "wiki"
    root.mkdir()
    crlf = "\ufeff---\r\ntitle: Garden\r\ntags: compost\r\n---\r\n# Garden\r\n\r\nWe feed compost to the beds.\r\n"
    crlf += "We water the beds with Hosepipe daily.\r\n\r\n| item | compost |\r\n|---|---|\r\n\r\nThe end.\r\n"
    (root / "Garden.md").write_bytes(crlf.encode())
    (root / "Compost.md").write_text("---\ndate: 2024-02-30\nalias: yes\n---\n# Compost\nCompost is rot.\n")
    (root / "Fig.md").write_text("# Fig\nFigs are trees with [[Compost]] at their feet.\n\n## Care\nWater them.\n")
    wiki = read_wiki(root)
    garden, compost = wiki.page("Garden.md"), wiki.page("Compost.md")
    assert garden.title == "Garden" and garden.text[garden.body_start :].startswith("# Garden")
    assert compost.title == "Compost" and compost.aliases == []  # bad YAML: no crash, no aliases
    assert wiki.page("Fig.md").opening()[0] == wiki.page("Fig.md").text.index("Figs are trees")
    masked = masked_prose(garden)
    assert "tags: compost" not in masked and "| item | compost |" not in masked  # YAML and tables: never linked
    cfg = _cfg(tmp_path / "state", root, "wiki.crosslink_threshold=0")  # offsets, not scores, are tested here
    old = staleness.Change(
        old="Hosepipe", new="Drip", quote="we switched from Hosepipe to Drip", when=time.time(), source="c"
    )
    (stale,) = staleness.staleness_proposals(cfg, wiki, [old])
    (link,) = [
        p
        for p in crosslinks.crosslink_proposals(cfg, wiki, vectors.embed_wiki(cfg, wiki))[0]
        if p["target"] == "Garden.md"
    ]
    e = link["patch"]["files"][0]["edits"][0]
    assert crlf[e["start"] : e["end"]] == "compost" and e["start"] > crlf.index("# Garden")
    patched = apply_edits(garden.text, stale["patch"]["files"][0]["edits"])
    assert "daily.\r\n\r\n> [!warning] Possibly outdated" in patched and "\n\n" not in patched.replace("\r\n", "")


def test_five_crosslinks_on_one_page_all_merge_one_after_another(tmp_path):
    root = tmp_path / "wiki"
    root.mkdir()
    names = ["Alder", "Birch", "Cedar", "Damson", "Elm"]
    for n in names:
        (root / f"{n}.md").write_text(f"# {n}\n\n{n} is a tree of the grove.\n")
    (root / "Grove.md").write_text("# Grove\n\n" + " ".join(f"The {n.lower()} grows here." for n in names) + "\n")
    cfg = _cfg(tmp_path / "state", root, "wiki.crosslink_threshold=0")
    found, _ = scan.scan(cfg, read_wiki(root), changes=[])
    links = [p for p in found if p["kind"] == "crosslink" and p["target"] == "Grove.md"]
    assert len(links) == 5
    ids = queue.add_proposals(cfg, links)
    for pid in ids[:2]:
        queue.set_status(cfg, pid, "accepted")
    assert merge.run_merge(cfg).merged == ids[:2]
    for pid in ids[2:]:  # accepted on a later day: still moved onto the page as the first merges left it
        queue.set_status(cfg, pid, "accepted")
    assert merge.run_merge(cfg).merged == ids[2:]
    text = (root / "Grove.md").read_text()
    assert all(f"[[{n}|{n.lower()}]] grows here" in text for n in names), text


@pytest.mark.skipif(shutil.which("git") is None, reason="no git binary")
def test_a_refused_git_commit_leaves_the_wiki_and_its_index_as_they_were(tmp_path, small_wiki):
    truth, cfg = small_wiki(tmp_path, git=True)
    root = tmp_path / "wiki"
    hook = root / ".git" / "hooks" / "pre-commit"
    hook.write_text("#!/bin/sh\necho 'no commits today' >&2\nexit 1\n")
    hook.chmod(0o755)
    ids, _ = _stage_all(cfg, truth)
    before = _snapshot(root)
    queue.set_status(cfg, ids["split"], "accepted")
    report = merge.run_merge(cfg)
    assert report.waiting == [ids["split"]] and "no commits today" in report.notes[ids["split"]]
    assert _snapshot(root) == before and _git(root, "status", "--porcelain") == ""
    assert queue.get(cfg, ids["split"])["status"] == "accepted"  # tried again next run


def test_a_proposal_the_reviewer_refuses_is_skipped_after_three_tries_and_blocks_nothing(
    tmp_path, reviewer_url, small_wiki
):
    truth, cfg = small_wiki(tmp_path)
    _stage_all(cfg, truth)
    n = len(queue.list_proposals(cfg, status="pending"))
    first = queue.list_proposals(cfg, status="pending")[0]["id"]
    _with_reviewer(cfg, reviewer_url, retries=0)
    for _ in range(3):  # the oldest is refused (HTTP 400, e.g. too long): the rest are still decided
        FakeOpenAI.script = [("400", None), ("400", None)]
        review.run_review(cfg)
    assert [p["id"] for p in queue.list_proposals(cfg, status="pending")] == [first]
    assert len(queue.list_proposals(cfg, status="accepted")) == n - 1
    with pytest.raises(Exception, match="no wiki proposals waiting"):  # left to a person now
        review.run_review(cfg)


# --------------------------------------------------------------------------- crosslinks the way the wiki links


def _write(root: Path, pages: dict[str, str]) -> None:
    for rel, text in pages.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text, encoding="utf-8")


SKY = "The planet circles the sun; its orbit, the solar system, the night sky and the telescope."
LAB = "The metal is toxic; a chemical element, liquid in the thermometer, weighed in the laboratory."


def test_a_phrase_the_wiki_links_to_several_pages_goes_to_the_one_that_fits(tmp_path):
    root = tmp_path / "wiki"
    pages = {
        "Mercury (planet).md": f"# Mercury (planet)\n\n{SKY}\n",
        "Mercury (element).md": f"# Mercury (element)\n\n{LAB}\n",
        "Elements.md": f"# Elements\n\n{LAB}\n",
    }
    for i in range(3):  # the wiki's own links teach that "Mercury" means either page
        pages[f"Sky {i}.md"] = f"# Sky {i}\n\n[[Mercury (planet)|Mercury]] rises. {SKY}\n"
    pages["Lab 0.md"] = f"# Lab 0\n\n[[Mercury (element)|mercury]] spills. {LAB}\n"
    pages["Dusk.md"] = f"# Dusk\n\nMercury is low at dusk. {SKY}\n"
    pages["Thermometers.md"] = f"# Thermometers\n\nOld ones hold mercury. {LAB} [[Elements]]\n"
    _write(root, pages)
    cfg = _cfg(tmp_path / "state", root, "wiki.crosslink_threshold=0")
    wiki = read_wiki(root)
    found, _ = crosslinks.crosslink_proposals(cfg, wiki, vectors.embed_wiki(cfg, wiki))
    to = {(p["target"], p["detail"]["anchor"]): p for p in found}
    assert to[("Dusk.md", "Mercury")]["detail"]["to"] == "Mercury (planet).md"  # most often linked, and alike
    lab = to[("Thermometers.md", "mercury")]
    assert lab["detail"]["to"] == "Mercury (element).md"  # the rarer sense wins where the page is about it
    assert lab["patch"]["files"][0]["edits"][0]["new"] == "[[Mercury (element)|mercury]]"
    assert "of 2 it could mean" in lab["rationale"]


def test_links_are_written_as_the_wiki_writes_them_and_never_cross_languages(tmp_path):
    root = tmp_path / "wiki"
    _write(
        root,
        {
            "en/notes/Venus.md": "# Venus\n\nThe second planet from the sun, bright at dusk.\n",
            "fr/notes/Venus.md": "# Venus\n\nLa deuxième planète du système solaire, brillante le soir.\n",
            "en/Comet.md": "# Comet\n\nA comet has a tail of ice and dust lit by the sun.\n",
            "en/Sky.md": "# Sky\n\nAt dusk Venus shines, and a comet may pass the sun.\n",
            "fr/Ciel.md": "# Ciel\n\nLe soir, Venus brille; une comet passe parfois.\n",
        },
    )
    cfg = _cfg(tmp_path / "state", root, "wiki.crosslink_threshold=0")
    wiki = read_wiki(root)
    found, _ = crosslinks.crosslink_proposals(cfg, wiki, vectors.embed_wiki(cfg, wiki))
    made = {(p["target"], p["detail"]["to"]): p["patch"]["files"][0]["edits"][0]["new"] for p in found}
    # A file name shared by two files is written with the shortest path that tells them apart; a unique
    # one by its name alone (Obsidian's default); each resolves back to its page.
    assert made[("en/Sky.md", "en/notes/Venus.md")] == "[[en/notes/Venus|Venus]]"
    assert made[("en/Sky.md", "en/Comet.md")] == "[[Comet|comet]]"
    assert made[("fr/Ciel.md", "fr/notes/Venus.md")] == "[[fr/notes/Venus|Venus]]"
    assert wiki.resolve("en/notes/Venus").rel == "en/notes/Venus.md"
    assert wiki.resolve("fr/notes/Venus").rel == "fr/notes/Venus.md"
    # fr/ never links into en/ (nor the other way), though "comet" is named there.
    assert not [pair for pair in made if pair[0].split("/")[0] != pair[1].split("/")[0]], made


def test_language_comes_from_front_matter_or_folders_and_a_lone_code_folder_is_just_a_folder(tmp_path):
    from mothbrain.wiki.crosslinks import page_languages, same_language

    root = tmp_path / "wiki"
    _write(root, {"it/Plan.md": "# Plan\n", "de/Haus.md": "# Haus\n", "zh-CN/Note.md": "# Note\n"})
    _write(root, {"Misc.md": "---\nlang: fr-CA\n---\n# Misc\n"})
    wiki = read_wiki(root)
    assert dict(zip((p.rel for p in wiki.pages), page_languages(wiki))) == {
        "Misc.md": "fr-ca",
        "de/Haus.md": "de",
        "it/Plan.md": "it",
        "zh-CN/Note.md": "zh-cn",
    }
    lone = tmp_path / "lone"
    _write(lone, {"it/Plan.md": "# Plan\n", "Home.md": "# Home\n"})  # an "it" folder alone: IT, not Italian
    assert page_languages(read_wiki(lone)) == ["", ""]
    assert same_language("en", "en-gb") and not same_language("zh-cn", "zh-tw") and same_language("", "fr")


def test_links_mothbrain_merged_teach_nothing_to_the_next_scan(tmp_path):
    from mothbrain.wiki import crosslinks

    root = tmp_path / "wiki"
    _write(
        root,
        {
            "Compost.md": "# Compost\n\nRotting leaves feed the soil.\n",
            "Garden.md": "# Garden\n\nThe beds get a load of compost heap each spring.\n",
            "Orchard.md": "# Orchard\n\nThe trees get compost heap too.\n",
        },
    )
    cfg = _cfg(tmp_path / "state", root, "wiki.crosslink_threshold=0")
    merge_the_garden_link(cfg, root)
    # The queue says who made that link: it is no positive and teaches no anchor.
    ours = crosslinks.merged_by_us(cfg)
    assert ours == {("Garden.md", "Compost.md")}
    wiki = read_wiki(root)
    anchors = crosslinks.anchor_dictionary(wiki, ours)
    assert "compost" not in anchors.linked
    mentions, _ = crosslinks.find_mentions(wiki, vectors.embed_wiki(cfg, wiki), ours)
    (link,) = [m for m in mentions if m.linked]
    assert link.ours and wiki.pages[link.source].rel == "Garden.md"
    # Counted as the wiki's own, the same link would have taught "compost" → Compost.
    assert "compost" in crosslinks.anchor_dictionary(wiki, set()).linked


@pytest.mark.skipif(shutil.which("git") is None, reason="no git binary")
def test_revert_touches_only_its_own_pages_when_others_are_staged(tmp_path, small_wiki):
    truth, cfg = small_wiki(tmp_path, git=True)
    root = tmp_path / "wiki"
    ids, _ = _stage_all(cfg, truth)
    before = _snapshot(root)
    queue.set_status(cfg, ids["crosslink"], "accepted")
    assert merge.run_merge(cfg).merged == [ids["crosslink"]]
    page = queue.get(cfg, ids["crosslink"])["target"]
    other = next(rel for rel in before if rel != page and rel.endswith(".md"))
    (root / other).write_text(before[other].decode() + "\nA person's edit, staged.\n")
    (root / "New idea.md").write_text("# New idea\n\nStaged, not committed.\n")
    _git(root, "add", other, "New idea.md")
    merge.revert(cfg, ids["crosslink"])
    assert (root / page).read_bytes() == before[page]  # the merge undone byte for byte
    assert _git(root, "show", "--name-only", "--format=", "HEAD").splitlines() == [page]  # its page only
    assert sorted(_git(root, "diff", "--cached", "--name-only").splitlines()) == sorted([other, "New idea.md"])
    assert (root / other).read_text().endswith("A person's edit, staged.\n")
    assert queue.get(cfg, ids["crosslink"])["merge_state"] == "reverted"

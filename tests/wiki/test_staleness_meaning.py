"""Staleness by meaning (wiki.staleness_rule: meaning): varied phrasings found, lived text left alone."""

from __future__ import annotations

from pathlib import Path

import pytest
import staleness_sets
from wikigen import FakeOpenAI, stand_in_reviewer

from mothbrain.config import REPO_ROOT, load_config
from mothbrain.proposals import queue
from mothbrain.wiki import review, staleness
from mothbrain.wiki.pages import read_wiki
from mothbrain.wiki.stale_meaning import claim

DEMO = REPO_ROOT / "configs" / "demo-tiny.yaml"
SAID = 1735689600.0  # 2025-01-01: after the pages below were last changed


def _cfg(home: Path, wiki: Path, rule: str = "meaning", *more: str):
    return load_config(DEMO, [f"state_dir={home}", f"wiki.path={wiki}", f"wiki.staleness_rule={rule}", *more])


def _page(root: Path, name: str, body: str, updated: str = "2024-01-01") -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{name}.md").write_text(f"---\nupdated: {updated}\n---\n# {name}\n\n{body}\n", encoding="utf-8")


def _flags(tmp_path, wiki: Path, said: list[str], rule: str = "meaning", when: float = SAID):
    cfg = _cfg(tmp_path / "state", wiki, rule)
    changes = [c for s in said for c in staleness.changes_in(s, when, "chats/recent.jsonl", rule)]
    return staleness.staleness_proposals(cfg, read_wiki(wiki), changes)


ISSUE = {  # the issue's phrasings, each against a page that still says the old way
    "Binding": ("We glue every spine with hide glue.", "Not any more: we switched to wheat paste for every spine."),
    "Threads": (
        "The sewing frame uses cotton threads.",
        "The cotton threads on the frame were replaced with polyester.",
    ),
    "Bisque": ("The bisque firing goes to cone 06.", "Since the new elements went in, the bisque now goes to cone 04."),
}


@pytest.mark.parametrize("rule,found", [("phrasings", 0), ("meaning", 3)])
def test_the_issues_phrasings_are_found_by_meaning_and_not_by_the_four_phrasings(tmp_path, rule, found):
    for name, (page, _) in ISSUE.items():
        _page(tmp_path / "wiki", name, f"A page about it.\n\n{page}")
    got = _flags(tmp_path, tmp_path / "wiki", [s for _, s in ISSUE.values()], rule)
    assert sorted(p["target"] for p in got) == sorted(f"{n}.md" for n in ISSUE)[: found or 0]
    for p in got:  # the note quotes the evidence under the stale sentence, and says why
        assert p["detail"]["rule"] == "meaning" and p["detail"]["evidence"] in ISSUE[p["source_title"]][1]
        assert "alike" in p["rationale"] and "Possibly outdated" in p["patch"]["diff"]


def test_weak_cues_of_lived_text_state_no_change_and_strong_ones_name_old_and_new():
    for lived in (
        "I count patience in figs these days: one summer is one good bowl.",
        "The tide took half the sand and left the lantern upright; I have stopped asking why.",
        "I lost half the morning watching the heron instead of working on my deadline.",
        "On Monday I went for a walk instead of the meeting.",
        "Deadline moved to Tuesday; the heron out on the mudflats, standing.",
        "Fast is a speed, not a personality.",
        "It is another generator that can be used to publish your notes.",
        "If you want a table instead of the content of one note, see the queries page.",
    ):
        assert claim(lived) is None, lived
    c = claim("Logs go to Loki rather than Papertrail since March.")
    assert c.old == "Papertrail" and "Loki" in c.new
    c = claim("We moved the backups from rsync to restic last week.")
    assert (c.old, c.new) == ("rsync", "restic")
    assert claim("We stopped posting invoices; they all go by email now.").old == "posting invoices"


def test_the_held_out_half_of_the_written_cases_meets_the_issues_bar(tmp_path):
    cases = staleness_sets.written_cases("held")
    flagged = {}
    for c in cases:
        _page(tmp_path / c["id"], "Notes", c["page"])
        flagged[c["id"]] = bool(_flags(tmp_path, tmp_path / c["id"], [c["statement"]]))
    stale = [c["id"] for c in cases if c["stale"]]
    near = [c["id"] for c in cases if not c["stale"]]
    assert len(stale) >= 12 and len(near) >= 12
    assert sum(flagged[i] for i in stale) / len(stale) >= 0.8
    assert sum(flagged[i] for i in near) / len(near) <= 0.02, [i for i in near if flagged[i]]


def test_the_sample_wiki_against_the_sample_corpus_gets_no_staleness(tmp_path):
    lived = staleness_sets.demo_set(tmp_path / "state")  # nothing stale is planted there
    cfg = _cfg(tmp_path / "state", lived.wiki)
    changes = [c for text, when, src in lived.texts for c in staleness.changes_in(text, when, src, "meaning")]
    assert len(changes) >= 1 and len(lived.texts) > 100  # the corpus was read, and a cue was heard
    assert staleness.staleness_proposals(cfg, read_wiki(lived.wiki), changes) == []


def test_a_page_changed_after_the_statement_or_named_the_new_way_is_not_stale_and_a_page_gets_two_at_most(tmp_path):
    _page(tmp_path / "late", "Binding", ISSUE["Binding"][0], updated="2025-06-01")
    assert not _flags(tmp_path, tmp_path / "late", [ISSUE["Binding"][1]])
    _page(tmp_path / "knows", "Binding", ISSUE["Binding"][0] + " Wheat paste is on trial.")
    assert not _flags(tmp_path, tmp_path / "knows", [ISSUE["Binding"][1]])
    body = "The kiln is fired with wood. Backups run with rsync. The ferry leaves at nine. Logs go to Papertrail."
    _page(tmp_path / "busy", "Everything", body)
    said = [
        "The kiln runs on gas now rather than wood.",
        "We moved the backups from rsync to restic.",
        "Since the timetable change the ferry leaves at eight, not nine.",
        "Logs go to Loki rather than Papertrail since March.",
    ]
    assert len(_flags(tmp_path, tmp_path / "busy", said)) == 2


def test_a_reviewer_judges_a_staleness_candidate_and_a_cut_off_answer_leaves_it_pending(tmp_path):
    _page(tmp_path / "wiki", "Binding", ISSUE["Binding"][0])
    (found,) = _flags(tmp_path, tmp_path / "wiki", [ISSUE["Binding"][1]])
    with stand_in_reviewer() as url:
        cfg = _cfg(
            tmp_path / "state",
            tmp_path / "wiki",
            "meaning",
            f"wiki.reviewer_url={url}",
            "wiki.reviewer_model=stand-in",
            "wiki.reviewer_max_retries=0",
        )
        found.update(provenance={}, adapter_version="", style="staleness", source=found["target"])
        found["patch"]["detail"] = found.pop("detail")
        queue.add_proposals(cfg, [found])
        FakeOpenAI.script = [("raw", '{"decision": "acc')]  # cut off inside the JSON
        first = review.run_review(cfg)
        assert first.decisions == {"error": 1} and len(queue.list_proposals(cfg, status="pending")) == 1
        FakeOpenAI.script = [("json", {"decision": "reject", "reason": "the glue is for covers, not spines"})]
        second = review.run_review(cfg)
        assert second.decisions == {"reject": 1} and not queue.list_proposals(cfg, status="pending")
        asked = FakeOpenAI.seen[-1]["messages"]
        assert "contradict" in asked[0]["content"] and "hide glue" in asked[1]["content"]
        assert "wheat paste" in asked[1]["content"]

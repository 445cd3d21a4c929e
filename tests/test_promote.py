"""Promotion: the gate passes a trained adapter and rejects a damaged one; the link swaps atomically and
never points at an incomplete directory; rollback restores the previous version and the link."""

from __future__ import annotations

import json
import os
import shutil

import pytest
from click.testing import CliRunner
from fakes import PASSING_EVAL, ci
from planted_corpus import DEMO

from mothbrain.config import load_config
from mothbrain.errors import MothError

# The gate reads voice perplexity and the probes; the other metrics run too, on a token budget.
QUICK = [
    "eval.max_heldout_samples=12",
    "eval.surprise_prompts=1",
    "eval.association_pairs=3",
    "eval.probe_modes=[association]",
    "dream.max_new_tokens=8",
    # These tests are about the pointer and the ledger; the gate's statistics have tests of their own.
    "promote.gate.min_voice_samples=1",
    "promote.gate.require_association=false",
]


def _link(state_home):
    link = state_home / "adapters" / "current"
    return os.readlink(link) if link.is_symlink() else None


def _add_copy(cfg, src: str, noise: float = 0.0) -> str:
    """A new trained version whose adapter is `src`'s, its LoRA weights plus Gaussian noise of std `noise`."""
    import torch
    from safetensors.torch import load_file, save_file

    from mothbrain.core.ledger import open_ledger
    from mothbrain.core.paths import adapter_dir

    ledger = open_ledger(cfg)
    v = ledger.new_version(status="trained", parent=src)["id"]
    shutil.copytree(adapter_dir(cfg, src), adapter_dir(cfg, v))
    if noise:
        f = adapter_dir(cfg, v) / "adapter_model.safetensors"
        g = torch.Generator().manual_seed(0)
        weights = {k: t + noise * torch.randn(t.shape, generator=g) for k, t in load_file(str(f)).items()}
        save_file(weights, str(f), metadata={"format": "pt"})
    return v


def test_gate_passes_trained_rejects_damaged_and_rollback_restores(planted_cfg, state_home):
    from mothbrain.cli import main
    from mothbrain.core.ledger import open_ledger
    from mothbrain.evaluate.stage import run_eval
    from mothbrain.promote import run_promote, run_rollback

    cfg = planted_cfg(*QUICK)
    ledger = open_ledger(cfg)

    # A version without eval results is refused, naming the command that fixes it.
    with pytest.raises(MothError, match="mothbrain eval --version v0001"):
        run_promote(cfg, "v0001")

    run_eval(cfg, "v0001")
    report = run_promote(cfg)
    assert report.decision == "promoted" and all(c["ok"] for c in report.checks)
    assert ledger.current() == "v0001" and _link(state_home) == "v0001"
    assert ledger.get("v0001")["status"] == "promoted"

    # A damaged adapter (LoRA weights drowned in noise) is far worse than the current one: rejected, non-zero
    # exit, link unmoved. (The session's tiny base barely knows the planted text, so noise need not lose to it.)
    bad = _add_copy(cfg, "v0001", noise=0.5)
    run_eval(cfg, bad)
    ev = ledger.get(bad)["eval"]
    assert ev["voice_ppl"] > 5 * ledger.get("v0001")["eval"]["voice_ppl"] and ev["current_version"] == "v0001"
    result = CliRunner().invoke(
        main, ["promote", "--version", bad, "--config", str(DEMO), *[a for s in QUICK for a in ("--set", s)]]
    )
    assert result.exit_code != 0 and "not promoted" in result.output and "Traceback" not in result.output
    entry = ledger.get(bad)
    assert entry["status"] == "rejected" and entry["promotion"]["decision"] == "rejected"
    assert "voice vs current" in [c["check"] for c in entry["promotion"]["checks"] if c["status"] == "fail"]
    assert ledger.current() == "v0001" and _link(state_home) == "v0001"
    assert any(e["event"] == "rejected" and e["version"] == bad for e in ledger.read()["events"])

    # An equally good adapter passes against current (no regression) and becomes current.
    good = _add_copy(cfg, "v0001")
    run_eval(cfg, good)
    assert run_promote(cfg, good).decision == "promoted"
    assert ledger.current() == good and _link(state_home) == good
    assert (state_home / "adapters" / "current").resolve() == (state_home / "adapters" / good).resolve()

    # Rollback: back to v0001, link and ledger together; then nothing earlier to return to.
    assert run_rollback(cfg).version == "v0001"
    assert ledger.current() == "v0001" and _link(state_home) == "v0001"
    assert ledger.get(good)["status"] == "rejected"
    assert ledger.read()["events"][-1]["event"] == "rollback"
    with pytest.raises(MothError, match="nothing to roll back"):
        run_rollback(cfg)


def _fake_evaluated(cfg, **ev) -> str:
    from mothbrain.core.ledger import open_ledger

    figures = {**PASSING_EVAL, "evaluated_at": "now", "current_version": None, **ev}
    return open_ledger(cfg).new_version(status="evaluated", eval=figures)["id"]


def test_link_never_points_at_an_incomplete_adapter(state_home):
    from mothbrain.core.ledger import open_ledger
    from mothbrain.core.paths import adapter_dir
    from mothbrain.promote import run_promote

    cfg = load_config(DEMO)
    v = _fake_evaluated(cfg)
    d = adapter_dir(cfg, v)
    d.mkdir(parents=True)
    (d / "adapter_config.json").write_text("{}")  # weights missing: a half-written directory
    with pytest.raises(MothError, match="incomplete"):
        run_promote(cfg, v)
    assert not (state_home / "adapters" / "current").exists()
    assert open_ledger(cfg).current() is None

    # Once complete, the swap happens through a renamed symlink and leaves no temp link behind.
    (d / "adapter_model.safetensors").write_bytes(b"\0")
    run_promote(cfg, v)
    assert os.readlink(state_home / "adapters" / "current") == v
    assert not [p for p in (state_home / "adapters").iterdir() if p.name.startswith(".current")]


def test_a_real_directory_named_current_is_never_overwritten(state_home):
    from mothbrain.core.paths import adapter_dir
    from mothbrain.promote import run_promote

    cfg = load_config(DEMO)
    v = _fake_evaluated(cfg)
    d = adapter_dir(cfg, v)
    d.mkdir(parents=True)
    (d / "adapter_config.json").write_text("{}")
    (d / "adapter_model.safetensors").write_bytes(b"\0")
    real = state_home / "adapters" / "current"
    real.mkdir()
    (real / "keep.txt").write_text("mine")
    with pytest.raises(MothError, match="real directory"):
        run_promote(cfg, v)
    assert (real / "keep.txt").read_text() == "mine"


def test_gate_rules():
    from mothbrain.config import GateConfig
    from mothbrain.core.gate import gate_checks

    gate = GateConfig()
    ok = PASSING_EVAL
    checks = gate_checks(ok, gate, has_current=True)
    assert all(c["ok"] for c in checks), [c for c in checks if not c["ok"]]
    assert [c["check"] for c in checks] == [
        "voice vs base",
        "held-out associations vs base",
        "data sanity",
        "regression set",
        "voice vs current",
        "held-out associations vs current",
        "priority concepts kept",
    ]
    assert all(c["value"] and c["threshold"] and c["reason"] for c in checks)

    def failed(ev: dict, has_current: bool = True) -> list[str]:
        return [c["check"] for c in gate_checks(ev, gate, has_current=has_current) if not c["ok"]]

    # A null adapter: perplexity a hair better, but inside the noise.
    assert failed(dict(ok, voice_ppl=9.98, voice_gain_vs_base=ci(0.002, 0.01)), False) == ["voice vs base"]
    assert failed(dict(ok, voice_ppl=9.95), False) == ["voice vs base"]  # only 0.5% better than base
    assert failed(dict(ok, voice_samples=5), False) == ["voice vs base"]  # too few samples to know
    # Associations not lifted above base (or clearly below current).
    assert failed(dict(ok, association_heldout_vs_base=ci(0.05, 0.2, 60)), False) == ["held-out associations vs base"]
    assert failed(dict(ok, association_heldout_vs_current=ci(-0.5, 0.2, 60))) == ["held-out associations vs current"]
    # Garbage data: the base finds it far harder than the accepted data; the regression set gets worse.
    assert failed(dict(ok, voice_ppl_base=400.0, voice_ppl=300.0), False) == ["data sanity"]
    worse = dict(ok["regression"], worse_pct=35.0)
    assert failed(dict(ok, regression=worse)) == ["regression set"]
    assert failed(dict(ok, voice_ppl=9.4, voice_ppl_current=9.0)) == ["voice vs current"]  # 4.4% worse

    forgot = dict(
        ok,
        probes={
            "figs": {
                "direct": {"n": 4, "adapter": 0.0, "current": 0.25},
                "association": {"n": 4, "adapter": 0.0, "current": 0.0},
            },
            "kiln": {"direct": {"n": 4, "adapter": 0.0, "current": 0.0}},
            "heron": {"direct": {"n": 1, "adapter": 0.0, "current": 1.0}},  # one probe is no evidence
        },
    )
    checks = gate_checks(forgot, gate, has_current=True)
    assert not checks[-1]["ok"] and "figs" in checks[-1]["reason"]
    assert "kiln" not in checks[-1]["reason"] and "heron" not in checks[-1]["reason"]

    # A first version whose base does not know the general text: an empty regression set is not run, and
    # says why; it blocks nothing, and is no pass.
    empty = dict(ok["regression"], samples=0, accepted_samples=0, worse_pct=None, general_reference_ppl=1132.8)
    checks = gate_checks(dict(ok, regression=empty), gate, has_current=False)
    reg = [c for c in checks if c["check"] == "regression set"][0]
    assert reg["status"] == "not run" and reg["ok"] and "1132.8" in reg["value"]
    assert "not run" in reg["reason"] and "nothing" in reg["reason"]
    assert {c["status"] for c in checks if c is not reg} == {"pass"}

    no_voice = {"voice_ppl": None, "voice_ppl_base": None}
    assert not gate_checks(no_voice, gate, has_current=False)[0]["ok"]


def test_rollback_history():
    from mothbrain.promote import rollback_target

    ev = lambda e, v: {"event": e, "version": v}  # noqa: E731
    assert rollback_target([]) == (None, None)
    assert rollback_target([ev("promoted", "v1")]) == ("v1", None)
    assert rollback_target([ev("promoted", "v1"), ev("rejected", "v2"), ev("promoted", "v3")]) == ("v3", "v1")
    assert rollback_target([ev("promoted", "v1"), ev("promoted", "v2"), ev("rollback", "v1")]) == ("v1", None)
    assert rollback_target(
        [ev("promoted", "v1"), ev("promoted", "v2"), ev("promoted", "v3"), ev("rollback", "v2")]
    ) == ("v2", "v1")


def test_promote_refuses_a_stale_comparison(state_home):
    from mothbrain.core.ledger import open_ledger
    from mothbrain.promote import run_promote

    cfg = load_config(DEMO)
    led = open_ledger(cfg)
    v1 = led.new_version(status="evaluated")["id"]
    led.set_current(v1)
    v2 = _fake_evaluated(cfg)  # evaluated against base only, but v1 is current now
    with pytest.raises(MothError, match=f"run `mothbrain eval --version {v2}` again"):
        run_promote(cfg, v2)
    assert json.loads((state_home / "versions.json").read_text())["current"] == v1


def _fake_adapter(cfg, v: str) -> None:
    from mothbrain.core.paths import adapter_dir

    d = adapter_dir(cfg, v)
    d.mkdir(parents=True)
    (d / "adapter_config.json").write_text("{}")
    (d / "adapter_model.safetensors").write_bytes(b"\0")


def _killed_at(monkeypatch, owner, attr: str, when: str, action) -> None:
    """Run `action` in a forked child that dies (os._exit: no cleanup runs) just `when` `owner.attr` runs."""
    real = getattr(owner, attr)

    def dying(*a, **k):
        if when == "before":
            os._exit(9)
        real(*a, **k)
        os._exit(9)

    pid = os.fork()
    if pid == 0:
        try:
            monkeypatch.setattr(owner, attr, dying)
            action()
        finally:
            os._exit(0)  # the kill never came: the parent sees exit 0 and fails
    _, code = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(code) == 9, f"the child was not killed {when} {attr}"


# Every instant of a move: intent recorded; temp link made; link swapped; move confirmed.
KILL_POINTS = [
    ("ledger", "begin_current"),
    ("os", "symlink"),
    ("current", "_point_current"),
    ("ledger", "finish_current"),
]


def _two_versions_before(cfg, move: str) -> tuple[str, str]:
    """v1 promoted and v2 evaluated after it; for a rollback v2 is promoted too (so the move goes back to v1)."""
    import mothbrain.promote as promote

    v1 = _fake_evaluated(cfg)
    _fake_adapter(cfg, v1)
    promote.run_promote(cfg, v1)
    v2 = _fake_evaluated(cfg, current_version=v1, voice_ppl_current=10.0)
    _fake_adapter(cfg, v2)
    if move == "rollback":
        promote.run_promote(cfg, v2)
    return v1, v2


@pytest.mark.parametrize("where,attr", KILL_POINTS)
@pytest.mark.parametrize("move", ["promote", "rollback"])
def test_a_kill_at_any_instant_leaves_link_and_ledger_agreeing(state_home, monkeypatch, move, where, attr):
    import mothbrain.core.current as current
    import mothbrain.promote as promote
    from mothbrain.core.ledger import Ledger, open_ledger
    from mothbrain.ops.doctor import _adapter_pointer
    from mothbrain.ops.status import status_report

    cfg = load_config(DEMO)
    led = open_ledger(cfg)
    v1, v2 = _two_versions_before(cfg, move)
    before, after = led.current(), (v2 if move == "promote" else v1)

    owner = {"ledger": Ledger, "os": os, "current": current}[where]
    action = (lambda: promote.run_promote(cfg, v2)) if move == "promote" else (lambda: promote.run_rollback(cfg))
    _killed_at(monkeypatch, owner, attr, "after", action)

    # doctor names a disagreement it finds (and changes nothing)
    check = _adapter_pointer(cfg)
    assert check.status == "ok" or "mothbrain status" in check.fix
    # the next reader settles the pair: the ledger is the truth, and its current is the old or the new one
    status_report(cfg)
    data = led.read()
    assert not data.get("pending_current")
    assert data["current"] in (before, after)
    assert _link(state_home) == data["current"]
    assert current.current_adapter_path(cfg).name == data["current"]
    assert _adapter_pointer(cfg).status == "ok"
    assert not [p for p in (state_home / "adapters").iterdir() if p.name.endswith(".tmp")]


def test_a_failed_ledger_write_after_the_swap_is_confirmed_by_the_next_command(state_home, monkeypatch):
    import mothbrain.promote as promote
    from mothbrain.core.current import current_adapter_path
    from mothbrain.core.ledger import Ledger, open_ledger

    cfg = load_config(DEMO)
    v1 = _fake_evaluated(cfg)
    _fake_adapter(cfg, v1)

    def full_disk(self, confirm=True):
        raise MothError("could not write versions.json: No space left on device")

    with monkeypatch.context() as m:
        m.setattr(Ledger, "finish_current", full_disk)
        with pytest.raises(MothError, match="No space"):
            promote.run_promote(cfg, v1)
    assert current_adapter_path(cfg).name == v1
    assert open_ledger(cfg).current() == v1 and _link(state_home) == v1


def test_promote_says_so_when_the_newest_evaluated_version_is_already_current(state_home):
    from mothbrain.cli import main
    from mothbrain.core.ledger import open_ledger

    cfg = load_config(DEMO)
    led = open_ledger(cfg)
    older = _fake_evaluated(cfg)  # evaluated, never promoted, older than current: never picked
    v = _fake_evaluated(cfg)
    led.set_current(v)
    result = CliRunner().invoke(main, ["promote", "--config", str(DEMO)])
    assert result.exit_code == 3, result.output
    assert f"nothing to do: {v} is already current and no newer version is evaluated" in result.output
    assert led.current() == v and led.get(older)["status"] == "evaluated"

    trained = led.new_version(status="trained")["id"]
    result = CliRunner().invoke(main, ["promote", "--config", str(DEMO)])
    assert result.exit_code == 3 and f"run `mothbrain eval --version {trained}` first" in result.output


FIRST = {  # a first version's figures: no accepted data, a base that reads plain English at perplexity 12
    **PASSING_EVAL,
    "voice_ppl_current": None,
    "association_heldout_vs_current": None,
    "accepted_voice_ppl_base": None,
    "general_ppl_base": 12.0,
    "base_knows_general": True,
    "base_from_corpus": False,
    "probes": {"figs": {"direct": {"n": 4, "adapter": 0.5, "base": 0.25}}},
}


def test_a_first_version_s_data_is_judged_against_the_base_on_plain_english():
    from mothbrain.config import GateConfig
    from mothbrain.core.gate import gate_checks

    gate = GateConfig()

    def sanity(**ev) -> dict:
        checks = gate_checks({**FIRST, **ev}, gate, has_current=False)
        return [c for c in checks if c["check"] == "data sanity"][0]

    # Clean chat text reads to a pretrained base within a few times plain English; word-shuffled text or
    # random tokens cost it ten times and more (the first two are below 5x, the others far above).
    for clean in (10.0, 30.0):
        c = sanity(voice_ppl_base=clean, voice_ppl=clean * 0.9)
        assert c["status"] == "pass" and c["ok"] and f"{clean / 12:.2f}x" in c["value"], c
    for garbage in (180.0, 5000.0):
        c = sanity(voice_ppl_base=garbage, voice_ppl=garbage * 0.5)
        assert c["status"] == "fail" and not c["ok"] and "harder for the base than plain English" in c["reason"], c
    # Where the ratio cannot mean anything the check is not run, with the reason, and is no pass.
    tiny = sanity(voice_ppl_base=1524.0, base_from_corpus=True, base_knows_general=False, general_ppl_base=1132.8)
    assert tiny["status"] == "not run" and "built from this corpus" in tiny["reason"]
    no_english = sanity(voice_ppl_base=30.0, base_knows_general=False, general_ppl_base=1132.8)
    assert no_english["status"] == "not run" and "no yardstick" in no_english["reason"]
    recorded_before = sanity(general_ppl_base=None, base_knows_general=None, base_from_corpus=None)
    assert recorded_before["status"] == "not run"
    assert sanity(voice_ppl_base=None, voice_ppl=None)["status"] == "not run"
    # With accepted data the comparison is with it, as before.
    assert sanity(accepted_voice_ppl_base=11.0, base_from_corpus=True)["status"] == "pass"


def test_a_first_version_of_word_salad_is_refused_by_its_word_order_even_when_its_words_are_rare():
    """SmolLM2 read the learning bench's word-shuffled persona (invented words) at only 2.5x plain English, inside
    the ratio's 5x; the same text costs it 0.03 nats a token more once shuffled again, where language costs 2.5-2.9
    (bench/word_order.py). The word-order yardstick refuses it; clean text with rare words passes both."""
    from mothbrain.config import GateConfig
    from mothbrain.core.gate import gate_checks

    def sanity(**ev) -> dict:
        checks = gate_checks({**FIRST, **ev}, GateConfig(), has_current=False)
        return [c for c in checks if c["check"] == "data sanity"][0]

    persona = sanity(voice_ppl_base=4.0, voice_word_order_nats_base=2.52)
    assert persona["status"] == "pass" and "word order worth +2.52" in persona["reason"], persona
    salad = sanity(voice_ppl_base=30.0, voice_word_order_nats_base=0.03)  # 2.5x: the ratio alone passes it
    assert salad["status"] == "fail" and "word salad" in salad["reason"] and "+0.030" in salad["value"], salad
    # A base that barely predicts English still has the word-order yardstick; a base built from the corpus not.
    no_english = sanity(voice_ppl_base=30.0, base_knows_general=False, voice_word_order_nats_base=0.03)
    assert no_english["status"] == "fail", no_english
    tiny = sanity(base_from_corpus=True, voice_word_order_nats_base=0.03)
    assert tiny["status"] == "not run", tiny


def test_a_check_that_did_not_run_is_not_shown_or_counted_as_a_pass(state_home):
    from mothbrain.core.ledger import open_ledger
    from mothbrain.evaluate.stage import EvalReport, show_eval
    from mothbrain.ops.briefing import build_briefing
    from mothbrain.promote import run_promote

    cfg = load_config(DEMO)
    empty = {
        "reference": "base",
        "samples": 0,
        "accepted_samples": 0,
        "worse_pct": None,
        "general_reference_ppl": 1132.8,
    }
    v = _fake_evaluated(cfg, **{**FIRST, "regression": empty, "base_from_corpus": True})
    _fake_adapter(cfg, v)

    shown = show_eval(cfg, v)
    gate_rows = [r["metric"] for r in shown.rows() if r["metric"].startswith("gate: ")]
    assert "gate: regression set — NOT RUN" in gate_rows and "gate: data sanity — NOT RUN" in gate_rows
    assert "gate: voice vs base — PASS" in gate_rows and not any("regression set — PASS" in r for r in gate_rows)
    assert isinstance(shown, EvalReport)

    report = run_promote(cfg, v)  # the checks that ran pass: promoted, and the title says what was not run
    assert report.decision == "promoted"
    assert report.title.endswith("decided without data sanity, regression set (not run)"), report.title
    statuses = {r["check"]: r["status"] for r in report.rows()}
    assert statuses["regression set"] == statuses["data sanity"] == "not run"
    assert all("ok" not in r for r in report.rows())  # the table shows status, never a bare ok
    text = build_briefing(cfg).text
    assert "not run · regression set" in text and "not run · data sanity" in text
    assert "pass · regression set" not in text and "pass · voice vs base" in text
    assert open_ledger(cfg).current() == v


def test_the_gate_decides_from_intervals_and_says_when_the_material_cannot_decide():
    """No count tuned to a corpus: an interval above 0 passes, one below the smallest effect worth having
    fails (the material says no), one that reaches both is undecided ("not enough held-out material")."""
    from mothbrain.config import GateConfig
    from mothbrain.core.gate import gate_checks

    gate = GateConfig()

    def voice(gain, n=120) -> dict:
        return gate_checks(dict(PASSING_EVAL, voice_gain_vs_base=gain, voice_samples=n), gate, False)[0]

    def association(lift) -> dict:
        return gate_checks(dict(PASSING_EVAL, association_heldout_vs_base=lift), gate, False)[1]

    assert voice(ci(0.1, 0.05))["status"] == "pass"
    assert voice(ci(0.0, 0.0))["status"] == "fail"  # a null adapter: exactly the base, decided
    assert voice(ci(-0.3, 0.05))["status"] == "fail"  # garbage or diverged: clearly worse
    assert voice(ci(0.001, 0.004))["status"] == "fail"  # tight around 0: not even a 1% gain
    wide = voice(ci(0.05, 0.2, 12))
    assert wide["status"] == "undecided" and not wide["ok"] and "not enough held-out material" in wide["reason"]
    few = voice(ci(0.5, 0.1, 6), n=6)  # whatever its interval says, 6 samples are too few for one
    assert few["status"] == "undecided" and "6 held-out voice samples" in few["reason"]

    assert association(ci(0.7, 0.3, 60))["status"] == "pass"
    assert association(ci(0.0, 0.05, 60))["status"] == "fail"  # the lift is below 0.1 nats: no association
    assert association(ci(0.382, 0.55, 60))["status"] == "undecided"  # the demo's: reaches 0 and 0.1 nats
    assert association({})["status"] == "undecided"  # no held-out pairs probed: nothing to decide on


def test_not_enough_held_out_material_is_its_own_decision(state_home):
    """A version whose only blocking check is undecided is "not promoted: not enough held-out material",
    exit 4 from `promote`, in the ledger and the briefing; one with a failed check is rejected."""
    from mothbrain.cli import main
    from mothbrain.core.ledger import open_ledger
    from mothbrain.core.paths import adapter_dir
    from mothbrain.ops.briefing import build_briefing

    cfg = load_config(DEMO)
    ledger = open_ledger(cfg)
    ev = dict(PASSING_EVAL, evaluated_at="2025-05-15T00:00:00+00:00", current_version=None, voice_samples=4)
    ev.pop("accepted_voice_ppl_base")
    v = ledger.new_version(status="evaluated", eval=ev)["id"]
    adapter_dir(cfg, v).mkdir(parents=True)
    (adapter_dir(cfg, v) / "adapter_config.json").write_text("{}")
    (adapter_dir(cfg, v) / "adapter_model.safetensors").write_bytes(b"")
    result = CliRunner().invoke(main, ["promote"])
    assert result.exit_code == 4, result.output
    assert f"{v} not promoted (not enough held-out material: 4 held-out voice samples" in result.output
    entry = ledger.get(v)
    assert entry["promotion"]["decision"] == "undecided" and entry["promotion"]["deciding"] == "voice vs base"
    assert ledger.current() is None
    text = build_briefing(cfg).text
    assert f"{v}: undecided" in text and "UNDECIDED · voice vs base" in text


@pytest.mark.parametrize("move", ["promote", "rollback"])
def test_a_kill_right_after_the_intended_move_is_recorded_is_completed_by_the_next_command(
    state_home, monkeypatch, move
):
    """The gate passed and the move was recorded, then a kill before the link moved: the next command completes
    the move (the version that passed the gate becomes current), it does not abandon it."""
    import mothbrain.promote as promote
    from mothbrain.core.ledger import Ledger, open_ledger
    from mothbrain.ops.status import status_report

    cfg = load_config(DEMO)
    led = open_ledger(cfg)
    v1, v2 = _two_versions_before(cfg, move)
    intended = v2 if move == "promote" else v1
    action = (lambda: promote.run_promote(cfg, v2)) if move == "promote" else (lambda: promote.run_rollback(cfg))
    _killed_at(monkeypatch, Ledger, "begin_current", "after", action)
    assert led.read().get("pending_current", {}).get("version") == intended  # recorded, the link not yet moved

    status_report(cfg)
    data = led.read()
    assert not data.get("pending_current")
    assert data["current"] == intended and _link(state_home) == intended

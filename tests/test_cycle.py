"""The whole cycle, end to end and real, on the demo config: one CLI command, tiny model, CPU QLoRA."""

from __future__ import annotations

import json

import torch
from click.testing import CliRunner

from mothbrain.cli import main
from mothbrain.config import REPO_ROOT

DEMO = str(REPO_ROOT / "configs" / "demo-tiny.yaml")


def test_weekly_chain_runs_the_whole_cycle(demo_cfg, state_home):
    cfg = demo_cfg()
    result = CliRunner().invoke(
        main,
        [
            "run",
            "weekly",
            "--config",
            DEMO,
            "--set",
            "train.max_steps=60",
            "--set",
            "dream.num_prompts=4",
            "--set",
            "eval.surprise_prompts=4",
            "--set",
            "promote.gate.min_improvement_vs_base_pct=0",
            # 60 steps make a plumbing test, not a learner: the gate's statistics are tested in tests/evaluate
            "--set",
            "promote.gate.require_association=false",
            "--set",
            "promote.gate.min_voice_samples=1",
        ],
    )
    assert result.exit_code == 0, result.output

    # The ledger has one complete entry.
    ledger = json.loads((state_home / "versions.json").read_text())
    (v,) = ledger["versions"]
    assert v["status"] == "promoted" and ledger["current"] == v["id"]
    assert v["dataset"]["fingerprint"] and v["dataset"]["composition"]
    for key in ("lora", "train"):
        assert key in json.dumps(v["hyperparameters"])
    assert v["timings"] and v["eval"]
    assert v["train"]["final_loss"] < v["train"]["first_loss"]  # training loss went down

    # The adapter loads with plain peft and changes the model's outputs.
    from peft import PeftModel

    from mothbrain.models.loading import load_base_model, load_tokenizer

    adapter = state_home / "adapters" / v["id"]
    tok = load_tokenizer(cfg)
    ids = tok("Moth, what does the lantern remind you of?", return_tensors="pt")
    base = load_base_model(cfg)
    with torch.no_grad():
        base_logits = base(**ids).logits.clone()
    model = PeftModel.from_pretrained(base, str(adapter))
    with torch.no_grad():
        tuned_logits = model(**ids).logits
    assert not torch.allclose(base_logits, tuned_logits, atol=1e-4)
    assert (state_home / "adapters" / "current").resolve() == adapter.resolve()

    # Proposals were staged, not applied.
    from mothbrain.proposals.queue import list_proposals

    staged = list_proposals(cfg)
    assert staged and all(p["adapter_version"] == v["id"] for p in staged)

    # The run left a record.
    records = list((state_home / "runs").glob("*.json"))
    assert records

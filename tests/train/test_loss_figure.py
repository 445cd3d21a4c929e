"""One loss figure for people, "train loss", defined once (mean of the last 10% of the logged losses, after
the same mean over the first 10%) and named the same in the train report, the run table, status and the
briefing."""

from __future__ import annotations

from mothbrain.config import REPO_ROOT, load_config
from mothbrain.core.ledger import open_ledger
from mothbrain.ops.runs import HEADLINES
from mothbrain.train.stage import loss_summary


def test_train_loss_is_the_mean_of_the_last_tenth_of_the_logged_losses():
    logged = [[step, float(step)] for step in range(100)]
    assert loss_summary(logged) == (4.5, 94.5)  # steps 0-9 and 90-99
    assert loss_summary(logged[:20]) == (1.0, 18.0)  # at least 3 logged values: one is noisy
    assert loss_summary(logged[:2]) == (0.0, 1.0) and loss_summary([]) == (None, None)


def test_status_the_run_table_and_the_briefing_show_the_same_train_loss(state_home):
    from mothbrain.ops.briefing import build_briefing
    from mothbrain.ops.status import status_report

    cfg = load_config(REPO_ROOT / "configs" / "demo-tiny.yaml")
    open_ledger(cfg).new_version(status="trained", train={"steps": 40, "first_loss": 3.2, "final_loss": 2.4})
    assert "train loss" in HEADLINES["train"]
    (row,) = status_report(cfg).versions
    assert row["train loss"] == "3.200 → 2.400"
    assert "train loss 3.200 → 2.400 over 40 steps" in build_briefing(cfg).text

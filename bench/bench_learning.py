"""Does the adapter learn, do the figures tell a good adapter from bad ones, and does the gate refuse junk?

    .venv/bin/python bench/bench_learning.py                 # the full run (CPU, ~10 minutes on 2 cores)
    .venv/bin/python bench/bench_learning.py --pairs 20 --steps 300 --json out.json

One generated persona corpus with planted, novel concept pairs (bench/persona.py) and a tiny base built
on the training side of it with its content words scrambled in every text (it knows the words, not the pairs). Four
adapters, in one state dir, each evaluated by `mothbrain eval` and judged by the real gate:

  good      trained on the corpus                               → promoted (becomes current)
  null      a LoRA that was never trained (identical to base)   → rejected: no significant voice gain
  diverged  trained with the learning rate x10                  → rejected
  garbage   the same corpus with every text's words shuffled,   → rejected: data sanity / regression
            ingested, preprocessed and trained end to end

Printed per adapter: held-out voice perplexity vs base, held-out association lift and top-1 (chance
stated), surprise minus the base-vs-base null with its interval, and the gate's decision and reasons.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from persona import persona_chats, planted_pairs, write_chats  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def write_config(home: Path, *, steps: int, lr: float, pretrain_steps: int, surprise_prompts: int) -> Path:
    cfg = yaml.safe_load((REPO / "configs" / "demo-tiny.yaml").read_text())
    cfg["state_dir"] = str(home)
    cfg["sources"] = [{"name": "chats", "kind": "chat_jsonl", "path": str(home / "corpus"), "weight": 1.0}]
    cfg["model"]["tiny_pretrain_steps"] = pretrain_steps
    # The hardest start: a base that never saw any word keep company across texts, so the planted pairs are
    # novel in every sense (the demo's base, permuted, knows that words keep company, only not whose).
    cfg["model"]["tiny_words"] = "scrambled"
    cfg["preprocess"].update(priority_concepts=[], association_pairs=60, heldout_pairs=30)
    cfg["train"].update(max_steps=steps, learning_rate=lr, save_steps=max(steps, 1))
    cfg["eval"] = {"max_heldout_samples": 256, "association_pairs": 60, "surprise_prompts": surprise_prompts}
    cfg.pop("promote", None)  # the gate as shipped: no threshold fitted to this corpus
    path = home / "bench.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def _null_adapter(cfg) -> str:
    """A LoRA exactly as initialised (B = 0): the base itself, wearing an adapter's clothes."""
    from peft import LoraConfig, get_peft_model

    from mothbrain.core import paths
    from mothbrain.core.ledger import open_ledger
    from mothbrain.models.loading import load_base_model

    ledger = open_ledger(cfg)
    version = ledger.new_version(status="training")["id"]
    peft = get_peft_model(
        load_base_model(cfg),
        LoraConfig(
            r=cfg.lora.r, lora_alpha=cfg.lora.alpha, target_modules=list(cfg.lora.target_modules), task_type="CAUSAL_LM"
        ),
    )
    peft.save_pretrained(str(paths.adapter_dir(cfg, version)))
    ledger.update(version, status="trained", train={"steps": 0, "note": "null: never trained"})
    return version


def _judge(cfg, version: str) -> dict:
    """eval + promote, as the weekly chain runs them; returns the figures and the gate's decision."""
    from mothbrain.core.ledger import open_ledger
    from mothbrain.errors import MothError
    from mothbrain.evaluate.stage import run_eval
    from mothbrain.promote import run_promote

    t0 = time.perf_counter()
    ev = run_eval(cfg, version).figures
    try:
        report = run_promote(cfg, version)
        decision, checks = report.decision, report.checks
    except MothError:
        entry = open_ledger(cfg).get(version)
        decision, checks = entry["promotion"].get("decision", "rejected"), entry["promotion"].get("checks", [])
    held = ev.get("association_heldout") or {}
    return {
        "version": version,
        "voice_ppl": ev.get("voice_ppl"),
        "voice_ppl_base": ev.get("voice_ppl_base"),
        "voice_gain_vs_base": ev.get("voice_gain_vs_base"),
        "voice_samples": ev.get("voice_samples"),
        "heldout_lift": held.get("lift"),
        "heldout_lift_base": (ev.get("association_heldout_base") or {}).get("lift"),
        "heldout_top1": held.get("top1"),
        "heldout_top1_base": (ev.get("association_heldout_base") or {}).get("top1"),
        "chance": held.get("chance"),
        "heldout_probes": held.get("probes"),
        "lift_vs_base": ev.get("association_heldout_vs_base"),
        "cue_removed_lift": (ev.get("association_heldout_cue_removed") or {}).get("lift"),
        "surprise_vs_null": ev.get("surprise_vs_null"),
        "regression": ev.get("regression"),
        "decision": decision,
        "failed_checks": [c["check"] + ": " + c["reason"] for c in checks if not c["ok"]],
        "eval_s": round(time.perf_counter() - t0, 1),
    }


def run(
    home: Path,
    *,
    pairs: int = 40,
    docs_per_pair: int = 10,
    steps: int = 600,
    lr: float = 3e-3,
    pretrain_steps: int = 300,
    surprise_prompts: int = 64,
    bad_steps: int | None = None,
) -> dict:
    """The four adapters of the module docstring, in one state dir under `home`; returns their figures."""
    os.environ["MOTHBRAIN_HOME"] = str(home)
    from mothbrain.config import load_config
    from mothbrain.data.stage import run_preprocess
    from mothbrain.ingest.stage import run_ingest
    from mothbrain.models.location import ensure_base_model
    from mothbrain.train.stage import run_train

    planted = planted_pairs(pairs)
    corpus = home / "corpus" / "chats.jsonl"
    write_chats(persona_chats(planted, docs_per_pair), corpus)
    cfg_path = write_config(
        home,
        steps=steps,
        lr=lr,
        pretrain_steps=pretrain_steps,
        surprise_prompts=surprise_prompts,
    )
    cfg = load_config(cfg_path)
    out: dict = {
        "settings": {
            "pairs": pairs,
            "docs_per_pair": docs_per_pair,
            "steps": steps,
            "lr": lr,
            "pretrain_steps": pretrain_steps,
        },
        "adapters": {},
    }
    t0 = time.perf_counter()
    run_ingest(cfg)
    ensure_base_model(cfg)
    run_preprocess(cfg, progress=False)
    out["setup_s"] = round(time.perf_counter() - t0, 1)

    def trained(name: str, c) -> None:
        t = time.perf_counter()
        version = run_train(c, force=True).version
        out["adapters"][name] = {**_judge(c, version), "train_s": round(time.perf_counter() - t, 1)}

    trained("good", cfg)
    out["adapters"]["null"] = _judge(cfg, _null_adapter(cfg))
    bad = [f"train.max_steps={bad_steps or steps}"]  # a bad adapter shows itself in fewer steps
    trained("diverged", load_config(cfg_path, [f"train.learning_rate={lr * 10}", *bad]))
    write_chats(persona_chats(planted, docs_per_pair, shuffle_words=True), corpus)  # garbage, end to end
    run_ingest(cfg)
    run_preprocess(cfg, progress=False)
    trained("garbage", load_config(cfg_path, bad))
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out


def _fmt_ci(x: dict | None) -> str:
    return f"{x['mean']:+.3f} [{x['lo']:+.3f}, {x['hi']:+.3f}]" if x and x.get("mean") is not None else "n/a"


def print_table(res: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"learning bench: {res['settings']}")
    for col in (
        "adapter",
        "voice ppl (base)",
        "nats/tok saved",
        "held-out lift (base)",
        "top-1 (base, chance)",
        "cue removed",
        "surprise - null",
        "gate",
    ):
        t.add_column(col)
    for name, a in res["adapters"].items():
        t.add_row(
            name,
            f"{a['voice_ppl']} ({a['voice_ppl_base']})",
            _fmt_ci(a["voice_gain_vs_base"]),
            f"{a['heldout_lift']} ({a['heldout_lift_base']})",
            f"{a['heldout_top1']} ({a['heldout_top1_base']}, {a['chance']})",
            str(a["cue_removed_lift"]),
            _fmt_ci(a["surprise_vs_null"]),
            a["decision"] + ("".join(f"\n- {r}" for r in a["failed_checks"])),
        )
    Console(width=200).print(t)
    print(f"setup {res['setup_s']} s, all {res['seconds']} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=40)
    ap.add_argument("--docs-per-pair", type=int, default=10)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--pretrain-steps", type=int, default=300)
    ap.add_argument("--surprise-prompts", type=int, default=64)
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="mothbrain-learning-") as tmp:
        res = run(
            Path(tmp),
            pairs=args.pairs,
            docs_per_pair=args.docs_per_pair,
            steps=args.steps,
            lr=args.lr,
            pretrain_steps=args.pretrain_steps,
            surprise_prompts=args.surprise_prompts,
        )
    print_table(res)
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()

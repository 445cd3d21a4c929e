"""Evaluation: does the adapter carry the voice, the associations and the priority concepts?

`run_eval(cfg, version=None)` loads the base once with the adapter (and the current promoted adapter,
when there is one) as named PEFT adapters; the base itself is `with model.disable_adapter()`. Every
figure is measured for adapter, base and current side by side, written to the ledger entry
(`eval`, status → evaluated) and returned as a table.

  Voice        held-out perplexity on the voice's own words: completion tokens only, of held-out voice
               samples with every sentence that near-duplicates a training sentence removed (`heldout`:
               time stamps, case, punctuation and numbers aside, or MinHash-similar); the nats/token
               saved against base (and current) with a paired bootstrap interval.
  Regression   perplexity on the last accepted version's held-out set plus general text, against
               current (or base when none is promoted); and the base's perplexity on the general text,
               the gate's yardstick for a first version's data.
  Association  the partner's lift from its cue over other concepts of the data set in the cue's
               place (`association`): held-out pairs (no templated training rows) apart from
               in-sample ones, ranked against eval.distractors distractors of the same length
               class, with the lift over base bootstrapped.
  Probes       every preprocess.priority_concepts entry in every eval.probe_modes mode —
               direct (a question), association ("<cue> reminds me of"), completion (a corpus
               sentence cut just before the concept) — scored as the share of probes where the
               concept beats the distractors. A family at 0 stands out in the table.
  Surprise     sampled continuations of dream-style prompts against reference continuations
               (REFERENCE_SAMPLES per prompt) from an OpenAI-compatible endpoint (eval.reference_url)
               or the local base. A continuation is a surprise when it is far from every reference
               (cosine distance >= eval.surprise_distance), relevant to its prompt (similarity >=
               eval.relevance_min) and fluent (the base reads it about as well as its own samples).
               The base's own sample, drawn with the adapter's seed, is the null: the figure is the
               adapter's rate minus the null's, with a bootstrap interval. Reported, not gated.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mothbrain.config import Config
from mothbrain.core import paths
from mothbrain.core.clock import now_iso
from mothbrain.core.current import adapter_is_complete, reconcile_current
from mothbrain.core.gate import check_status, gate_checks
from mothbrain.core.ledger import open_ledger
from mothbrain.core.progress import StageProgress
from mothbrain.data.dataset import load_latest_dataset
from mothbrain.data.format import user_name, voice_name
from mothbrain.errors import MothError, NothingToDo
from mothbrain.evaluate import association, heldout
from mothbrain.evaluate.perplexity import (
    knows_text,
    perplexity,
    regression_figures,
    score_nll,
    word_order_nats,
    words_shuffled,
)
from mothbrain.evaluate.probes import MODES, association_probes, knowledge_probes
from mothbrain.evaluate.scoring import rank_candidates, score_continuations
from mothbrain.evaluate.sides import figure_key, use
from mothbrain.evaluate.stats import bootstrap_ratio
from mothbrain.evaluate.surprise import surprise, surprise_prompts, surprise_steps
from mothbrain.models.loading import load_model_with_adapters, load_tokenizer, pick_adapter


@dataclass
class EvalReport:
    version: str
    figures: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    checks: list[dict[str, Any]] = field(default_factory=list)  # the gate's, when shown with them

    @property
    def title(self) -> str:
        cur = self.figures.get("current_version")
        return f"eval {self.version} (vs base" + (f" and current {cur})" if cur else ")")

    def rows(self) -> list[dict[str, Any]]:

        f = self.figures
        has_cur = bool(f.get("current_version"))

        def row(name: str, key: str) -> dict[str, Any]:
            r = {"metric": name, "adapter": f.get(key), "base": f.get(f"{key}_base")}
            if has_cur:
                r["current"] = f.get(f"{key}_current")
            return r

        def sub(name: str, key: str, field: str) -> dict[str, Any]:
            r = {
                "metric": name,
                "adapter": (f.get(key) or {}).get(field),
                "base": (f.get(f"{key}_base") or {}).get(field),
            }
            if has_cur:
                r["current"] = (f.get(f"{key}_current") or {}).get(field)
            return r

        def ci(x: dict | None) -> str | None:
            return f"{x['mean']:+.3f} [{x['lo']:+.3f}, {x['hi']:+.3f}]" if x and x.get("mean") is not None else None

        held, ins = f.get("association_heldout") or {}, f.get("association_insample") or {}
        filler = f.get("association_heldout_filler") or {}
        reg = f.get("regression") or {}
        overlap = f.get("heldout_overlap") or {}
        rows = [
            row(f"voice perplexity (held-out, n={f.get('voice_samples')}, lower is better)", "voice_ppl"),
            {"metric": "voice: nats/token saved vs base (95% CI)", "adapter": ci(f.get("voice_gain_vs_base"))},
            sub(
                f"held-out associations: partner lift, nats (n={held.get('probes')} probes of {held.get('pairs')} "
                "pairs that passed the strength test)",
                "association_heldout",
                "lift",
            ),
            sub(f"held-out associations: top-1 (chance {held.get('chance')})", "association_heldout", "top1"),
            {
                "metric": "held-out associations: lift vs base (95% CI)",
                "adapter": ci(f.get("association_heldout_vs_base")),
            },
            {
                "metric": "held-out associations with the cue removed: lift",
                "adapter": (f.get("association_heldout_cue_removed") or {}).get("lift"),
            },
        ]
        if filler.get("probes"):  # held-out pairs that failed the strength test: apart, never in the headline
            rows += [
                sub(
                    f"held-out filler (stock phrases, not counted): partner lift, nats (n={filler['probes']} "
                    f"probes of {filler.get('pairs')} pairs)",
                    "association_heldout_filler",
                    "lift",
                ),
                sub(f"held-out filler: top-1 (chance {filler.get('chance')})", "association_heldout_filler", "top1"),
                {
                    "metric": "held-out filler: lift vs base (95% CI)",
                    "adapter": ci(f.get("association_heldout_filler_vs_base")),
                },
            ]
        rows += [
            sub(f"in-sample associations: partner lift, nats (n={ins.get('probes')})", "association_insample", "lift"),
            sub(f"in-sample associations: top-1 (chance {ins.get('chance')})", "association_insample", "top1"),
            {
                "metric": f"regression set perplexity (n={reg.get('samples')}, vs {reg.get('reference')})",
                "adapter": reg.get("adapter_ppl"),
                reg.get("reference", "base"): reg.get("reference_ppl"),
            },
            {
                "metric": f"held-out sentences near-duplicating training (removed, of {overlap.get('sentences')})",
                "adapter": overlap.get("share"),
            },
            {"metric": "base perplexity on general text (data sanity's yardstick)", "base": f.get("general_ppl_base")},
        ]
        for concept, modes in f.get("probes", {}).items():
            for mode, s in modes.items():
                r = {"metric": f"probe {concept} · {mode} (n={s['n']})", "adapter": s["adapter"], "base": s["base"]}
                if has_cur:
                    r["current"] = s.get("current")
                rows.append(r)
        s = f.get("surprise", {})
        r = {
            "metric": f"surprise rate (distance >= {s.get('distance_min')}, relevance >= {s.get('relevance_min')}, "
            f"fluent; vs {s.get('reference')})",
            "adapter": f.get("surprise_rate"),
            "base": f.get("surprise_rate_base"),
        }
        if has_cur:
            r["current"] = f.get("surprise_rate_current")
        rows.append(r)
        rows.append({"metric": "surprise minus base-vs-base null (95% CI)", "adapter": ci(f.get("surprise_vs_null"))})
        for c in self.checks:
            rows.append({"metric": f"gate: {c['check']} — {check_status(c).upper()}", "adapter": c["reason"]})
        if f.get("judge_yes_rate") is not None:
            rows.append({"metric": "judge: surprises that make sense", "adapter": f["judge_yes_rate"]})
        return rows

    def to_json(self) -> dict[str, Any]:
        out = {"title": self.title, "version": self.version, **self.figures, "warnings": self.warnings}
        return {**out, "gate": self.checks} if self.checks else out


# --------------------------------------------------------------------------- entry point


def run_eval(cfg: Config, version: str | None = None) -> EvalReport:
    """Every figure for the version (default: the newest waiting for eval), recorded in the ledger; `status`
    shows `running: eval step N/M`, a step being one text scored or generated by one side."""
    with StageProgress(cfg, "eval") as tracker:
        return _run_eval(cfg, version, tracker)


def _run_eval(cfg: Config, version: str | None, tracker: StageProgress) -> EvalReport:

    t0 = time.perf_counter()
    for m in cfg.eval.probe_modes:
        if m not in MODES:
            raise MothError(f"eval.probe_modes: unknown mode {m!r} (known: {', '.join(MODES)})")

    reconcile_current(cfg)  # compare with the current adapter the ledger names, link agreeing
    ledger = open_ledger(cfg)
    version, adapter = _pick_version(cfg, ledger, version)
    try:
        dataset, meta = load_latest_dataset(cfg)
    except NothingToDo:
        raise
    except MothError as exc:
        raise MothError(f"cannot evaluate {version}: {exc}") from None
    current = ledger.current()
    current_dir = paths.adapter_dir(cfg, current) if current and current != version else None
    report = EvalReport(version=version)
    if current_dir is not None and not adapter_is_complete(current_dir):
        report.warnings.append(f"the current adapter {current} at {current_dir} is incomplete; compared with base only")
        current_dir = None
    who = ["adapter", "base"] + (["current"] if current_dir else [])

    tokenizer = load_tokenizer(cfg)
    model = load_model_with_adapters(cfg, {"adapter": adapter, **({"current": current_dir} if current_dir else {})})
    max_len = cfg.train.max_seq_len
    f: dict[str, Any] = {
        "current_version": current if current_dir else None,
        "dataset_fingerprint": meta.get("fingerprint"),
    }

    tick = t0  # the first lap is loading the data set and the models
    timings: dict[str, float] = {}

    def lap(name: str) -> None:
        nonlocal tick
        now = time.perf_counter()
        timings[name], tick = round(now - tick, 2), now

    lap("load")
    # ---- what will be scored, counted first so that status can show the steps out of all of them
    voice_rows = [(r["prompt"], r["completion"]) for r in dataset["heldout"] if r["sample_type"] == "voice"]
    voice, f["heldout_overlap"] = heldout.without_training_sentences(
        voice_rows,
        dataset["train"]["completion"] if "train" in dataset else [],
        near_threshold=cfg.preprocess.dedup_threshold,
    )
    voice = voice[: cfg.eval.max_heldout_samples]
    if not voice:
        report.warnings.append(
            "no held-out voice samples: voice perplexity not measured (more material, or a larger "
            "preprocess.heldout_fraction)"
        )
    reference = "current" if current_dir else "base"
    accepted_set = heldout.load_regression(current_dir)
    general = heldout.general_text(cfg.resolve_path(cfg.eval.general_text) if cfg.eval.general_text else None)
    probes = association_probes(meta, cfg, tokenizer)
    templates = association.voice_templates(user_name(), voice_name(cfg))
    counted = [p for p in probes if p.heldout and p.real]  # the held-out figure counts pairs that passed the
    kprobes = knowledge_probes(cfg, meta, dataset)  # strength test (filler apart); the ablation probes those
    prompts = surprise_prompts(cfg, report.warnings)
    tracker.update(
        0,
        total=(len(who) + 1) * len(voice)
        + 2 * len(accepted_set + general)
        + (len(general) if reference != "base" else 0)
        + len(who) * association.scored_count(probes, templates)
        + association.scored_count(counted, templates, ablate=True)
        + len(who) * sum(1 + len(p["distractors"]) for p in kprobes)
        + surprise_steps(len(prompts), len(who)),
    )
    step = tracker.advance

    # ---- voice: held-out text with every sentence that near-duplicates a training sentence removed
    nll = score_nll(model, tokenizer, who, voice, max_len, step)
    for w in who:
        f[figure_key("voice_ppl", w)] = perplexity(nll[w])
    f["voice_samples"], f["voice_tokens"] = len(voice), int(nll["adapter"][1].sum())
    f["voice_gain_vs_base"] = bootstrap_ratio(nll["base"][0] - nll["adapter"][0], nll["adapter"][1])
    # data sanity's second yardstick: does the base need the text's word order? (word salad: no)
    shuffled = score_nll(model, tokenizer, ["base"], words_shuffled(voice), max_len, step)["base"]
    f["voice_word_order_nats_base"] = word_order_nats(nll["base"], shuffled)
    if current_dir:
        f["voice_gain_vs_current"] = bootstrap_ratio(nll["current"][0] - nll["adapter"][0], nll["adapter"][1])
    heldout.save_regression(adapter, voice)  # judged on this; the next version must not regress on it
    accepted = (ledger.get(current).get("eval") or {}) if current_dir else {}
    f["accepted_voice_ppl_base"] = accepted.get("voice_ppl_base")  # the data the current version was judged on

    # ---- regression: the accepted version's held-out set and general text, vs current (or base)
    reg = score_nll(model, tokenizer, ["adapter", reference], accepted_set + general, max_len, step)
    f["regression"] = regression_figures(reg, reference, len(accepted_set), len(general), len(tokenizer))
    # ---- data sanity's yardstick while no accepted data exists: the base on plain English
    f["general_ppl_base"] = (
        f["regression"]["general_reference_ppl"]
        if reference == "base"
        else perplexity(score_nll(model, tokenizer, ["base"], general, max_len, step)["base"])
    )
    f["base_knows_general"] = knows_text(f["general_ppl_base"], len(tokenizer))
    f["base_from_corpus"] = cfg.model.build_tiny  # a tiny base is pre-trained on this corpus's training side
    lap("voice")

    # ---- association: the partner's lift from its cue, held-out pairs apart from in-sample ones
    if not probes:
        report.warnings.append("no concept pairs in the data set: association not measured")
    lifts = {}
    for w in who:
        with use(model, w):
            lifts[w] = association.candidate_lifts(probes, _scorer(model, tokenizer, max_len, step), templates)
    f.update(association.figures(lifts, probes))
    f["association_heldout_probes"] = association.heldout_rows(lifts, probes)  # which pairs moved, per probe
    if not counted and any(p.heldout for p in probes):
        report.warnings.append(
            "no held-out concept pair passed the strength test (all are the words of stock phrases): "
            "the held-out association figure is not measured"
        )
    with use(model, "adapter"):
        ablated = association.candidate_lifts(counted, _scorer(model, tokenizer, max_len, step), templates, ablate=True)
    f["association_heldout_cue_removed"] = association.summarize(ablated, counted)
    f["association_templates"] = templates
    lap("association")
    # ---- knowledge probes across modes
    table: dict[str, dict[str, dict[str, Any]]] = {}
    for w in who:
        with use(model, w):
            res = rank_candidates(
                model, tokenizer, [(p["prompt"], p["target"], p["distractors"]) for p in kprobes], max_len, step
            )
        for p, r in zip(kprobes, res):
            cell = table.setdefault(p["concept"], {}).setdefault(p["mode"], {"n": 0, "hits": {}})
            cell["hits"].setdefault(w, []).append(r["hit"])
    probes_out: dict[str, dict[str, dict[str, Any]]] = {}
    for c in [pc.name.lower() for pc in cfg.preprocess.priority_concepts]:
        probes_out[c] = {}
        for m in cfg.eval.probe_modes:
            cell = table.get(c, {}).get(m)
            hits = cell["hits"] if cell else {}
            probes_out[c][m] = {"n": len(hits.get("adapter", [])), **{w: _mean(hits.get(w, [])) for w in who}}
            if not cell:
                report.warnings.append(
                    f"priority concept {c!r}: no {m} probe could be built (no partner concept or sentence mentions it)"
                )
    f["probes"] = probes_out

    lap("probes")
    # ---- surprise
    f.update(surprise(cfg, model, tokenizer, who, prompts, report.warnings, step))
    lap("surprise")
    f["timings_s"] = timings

    del model
    f["seconds"] = round(time.perf_counter() - t0, 1)
    f["evaluated_at"] = now_iso()
    entry = ledger.get(version)
    status = "evaluated" if entry["status"] in ("trained", "rejected", "evaluated") else entry["status"]
    ledger.update(version, status=status, eval=f)
    report.figures = f
    return report


def show_eval(cfg: Config, version: str | None = None) -> EvalReport:
    """A version's recorded eval figures (default: the newest evaluated) with the gate's checks on them."""

    ledger = open_ledger(cfg)
    entry = ledger.get(version) if version else ledger.latest(("evaluated", "promoted", "rejected"))
    if entry is None or not (entry.get("eval") or {}).get("evaluated_at"):
        raise NothingToDo(
            f"{version} has no eval results yet; run `mothbrain eval --version {version}` first"
            if version
            else "no version has eval results yet; run `mothbrain eval` first"
        )
    report = EvalReport(version=entry["id"], figures=entry["eval"])
    current = report.figures.get("current_version")
    report.checks = gate_checks(report.figures, cfg.promote.gate, has_current=bool(current))
    return report


def _pick_version(cfg: Config, ledger, version: str | None) -> tuple[str, Path]:
    """Default: the newest version still waiting for eval. With none, NothingToDo: measuring the newest
    finished version again would overwrite the figures its promotion was (or will be) decided on;
    `--version` does it on purpose. Only an evaluated, undecided version whose figures compare it with
    another adapter than today's current is measured again (promote would refuse those figures)."""

    default = ledger.latest(("trained",))
    if version is None and default is None:
        default = ledger.latest(("evaluated", "promoted", "rejected"))
        ev = (default or {}).get("eval") or {}
        stale = (
            default is not None and default["status"] == "evaluated" and ev.get("current_version") != ledger.current()
        )
        if ev.get("evaluated_at") and not stale:
            raise NothingToDo(
                f"{default['id']} ({default['status']}) is already evaluated and no newer version waits for eval; "
                f"`mothbrain eval --version {default['id']}` measures it again"
            )
    return pick_adapter(cfg, ledger, version, default, "evaluate")


def _mean(xs: list[float]) -> float | None:
    return round(sum(xs) / len(xs), 4) if xs else None


def _scorer(model, tokenizer, max_len: int, progress=None):
    return lambda items: [s for s, _ in score_continuations(model, tokenizer, items, max_len, progress=progress)]

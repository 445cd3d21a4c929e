"""An adapter's association figures on another data set's probes, with both baselines: stand-in concepts in
the cue's place (the eval's) and the neutral words "it"/"this" (the eval's before #28).

    .venv/bin/python bench/assoc_diag.py STATE/bench.yaml ADAPTER_DIR [--stand-ins-only]

For a control such as the bench's scrambled adapter, whose own data set's pairs are not the planted ones:
its figures on the good adapter's probes. Where the state dir holds the bench's `planted.json`, the figures are
also re-cut on the planted pairs and on the pairs mined from the persona's habits, apart.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from bench_learning import add_set_option, planted_split


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("config")
    ap.add_argument("adapter")
    ap.add_argument("--stand-ins-only", action="store_true", help="skip the neutral-word baseline")
    add_set_option(ap, "the bench run's --set settings (a CI-sized run's: its in-sample pairs shape the stand-in pool)")
    a = ap.parse_args(argv)

    from mothbrain.config import load_config
    from mothbrain.data.dataset import load_latest_dataset
    from mothbrain.data.format import user_name, voice_name
    from mothbrain.evaluate import association
    from mothbrain.evaluate.probes import association_probes
    from mothbrain.evaluate.sides import use
    from mothbrain.evaluate.stage import _scorer
    from mothbrain.models.loading import load_model_with_adapters, load_tokenizer

    cfg = load_config(a.config, a.overrides)
    planted_file = Path(a.config).resolve().parent / "planted.json"  # written by bench_learning.py
    planted = json.loads(planted_file.read_text()) if planted_file.exists() else None
    _, meta = load_latest_dataset(cfg)
    tok = load_tokenizer(cfg)
    probes = [p for p in association_probes(meta, cfg, tok) if p.heldout and p.real]  # what the gate decides on
    templates = association.voice_templates(user_name(), voice_name(cfg))
    model = load_model_with_adapters(cfg, {"adapter": a.adapter})
    score = _scorer(model, tok, cfg.train.max_seq_len)
    out = {}
    neutral = [dataclasses.replace(p, stand_ins={}, ablation=association.ABLATION_CUE) for p in probes]
    for name, ps in (("stand-ins", probes), ("neutral", neutral))[: 1 if a.stand_ins_only else 2]:
        lifts = {}
        for who in ("adapter", "base"):
            with use(model, who):
                lifts[who] = association.candidate_lifts(ps, score, templates)
        f = association.figures(lifts, ps)
        with use(model, "adapter"):
            ablated = association.candidate_lifts(ps, score, templates, ablate=True)
        out[name] = {
            k: f[k]
            for k in (
                "association_heldout",
                "association_heldout_base",
                "association_heldout_vs_base",
            )
        } | {"cue_removed": association.summarize(ablated, ps)}
        if planted is not None:  # the bench's planted pairs apart from the pairs mined from its persona's habits
            out[name] |= planted_split({"association_heldout_probes": association.heldout_rows(lifts, ps)}, planted)
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

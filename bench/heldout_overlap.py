"""How much of eval's held-out voice text a model has already seen in training: before and after eval's filter.

Run it on a preprocessed data set (the demo's, with its state kept out of the repo):

    export MOTHBRAIN_HOME=/tmp/mb-eval-home
    mothbrain ingest --config configs/demo-tiny.yaml && mothbrain preprocess --config configs/demo-tiny.yaml
    python bench/heldout_overlap.py --config configs/demo-tiny.yaml

Prints JSON. For the held-out voice sentences eval would score, under two filters:

  verbatim     the old rule: drop a sentence equal to a training sentence (case and spacing aside);
  near         eval's rule now (mothbrain.evaluate.heldout): equal once normalised, or MinHash-similar;

it gives the share of the sentences left that still equal a training sentence once normalised, and, as a
check that does not share eval's normaliser, the share with a training sentence at difflib ratio >= 0.8
(raw text, lower case). `--max-share` exits 1 when the near filter leaves more than that share.
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys

from mothbrain.config import load_config
from mothbrain.data.dataset import load_latest_dataset
from mothbrain.evaluate import heldout

SIMILAR = 0.8  # difflib ratio counted as "the same sentence" by the independent check


def _verbatim_filter(samples: list[tuple[str, str]], train: list[str]) -> list[tuple[str, str]]:
    """The rule eval had before: a held-out sentence goes only when it equals a training one."""

    def key(s: str) -> str:
        return " ".join(s.lower().split())

    seen = {key(s) for c in train for s in heldout.sentences(c)}
    kept = []
    for prompt, completion in samples:
        novel = [s for s in heldout.sentences(completion) if key(s) not in seen]
        if novel:
            kept.append((prompt, " " + " ".join(novel)))
    return kept


def measure(samples: list[tuple[str, str]], train: list[str]) -> dict:
    normalised = {heldout.normalise_sentence(s) for c in train for s in heldout.sentences(c)}
    raw = sorted({s.lower() for c in train for s in heldout.sentences(c)})
    left = [s for _, c in samples for s in heldout.sentences(c)]
    same = sum(heldout.normalise_sentence(s) in normalised for s in left)
    similar = sum(bool(difflib.get_close_matches(s.lower(), raw, n=1, cutoff=SIMILAR)) for s in left)
    return {
        "samples": len(samples),
        "sentences": len(left),
        "same_when_normalised": same,
        "share_same_when_normalised": round(same / len(left), 4) if left else None,
        "similar_raw": similar,
        "share_similar_raw": round(similar / len(left), 4) if left else None,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/demo-tiny.yaml")
    ap.add_argument("--max-share", type=float, default=None, help="exit 1 above this share after the filter")
    args = ap.parse_args()
    cfg = load_config(args.config)
    dataset, meta = load_latest_dataset(cfg)
    train = list(dataset["train"]["completion"]) if "train" in dataset else []
    voice = [(r["prompt"], r["completion"]) for r in dataset["heldout"] if r["sample_type"] == "voice"]
    near, overlap = heldout.without_training_sentences(voice, train, cfg.preprocess.dedup_threshold)
    out = {
        "dataset": meta.get("fingerprint"),
        "heldout_voice_samples": len(voice),
        "verbatim_filter": measure(_verbatim_filter(voice, train), train),
        "near_filter": measure(near, train),
        "heldout_overlap": overlap,
    }
    print(json.dumps(out, indent=2))
    share = out["near_filter"]["share_same_when_normalised"] or 0.0
    return 1 if args.max_share is not None and share > args.max_share else 0


if __name__ == "__main__":
    sys.exit(main())

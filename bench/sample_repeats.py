"""How often the sample corpus says the same sentence twice, and how much held-out voice text is training text.

    .venv/bin/python bench/sample_repeats.py                      # corpus repeats in data/sample
    .venv/bin/python bench/sample_repeats.py --corpus DIR         # ... in another generated copy
    .venv/bin/python bench/sample_repeats.py --dataset configs/demo-tiny.yaml   # + held-out vs training

Sentences are normalised the same way throughout: lower case, a leading short time or date phrase dropped
("At 5:32, ", "On the 2nd, "), then digits and punctuation dropped and spaces collapsed.

  corpus:  the share of the corpus's sentences whose normalised form occurs more than once (every
           occurrence counts, the first included), over all sentences and over those of 4+ words; the text
           read is every user and assistant message of the chats (not the fixed system prompts), the wiki and
           writing bodies (no front matter, headings, link lists or "See [[page]]." pointers) and the
           transcript turns (no stamps or speaker names).
  dataset: the share of the held-out voice samples' sentences that equal a sentence of a training sample.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

_LEAD = re.compile(r"^\s*(?:at \d{1,2}[:.]\d{2}|on the \d{1,2}(?:st|nd|rd|th)|on \w+day)\s*,\s*", re.I)
_SENT = re.compile(r"(?<=[.!?…])[\"')\]]*\s+|\n+")


SIX = [
    ("lantern", "tide"),
    ("compost", "memory"),
    ("council", "bridge repair"),
    ("fig", "patience"),
    ("heron", "deadline"),
    ("kiln", "apology"),
]


def normalise(sentence: str) -> str:
    s = _LEAD.sub("", sentence.lower())
    s = re.sub(r"[\d\W_]+", " ", s)
    return " ".join(s.split())


def sentences(text: str) -> list[str]:
    return [k for k in (normalise(s) for s in _SENT.split(text)) if k]


def corpus_texts(root: Path) -> list[str]:
    out = []
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.name == "README.md":
            continue
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".jsonl":
            for raw in text.splitlines():
                obj = json.loads(raw)
                for m in obj.get("messages") or obj.get("conversations") or []:
                    if (m.get("role") or m.get("from")) != "system":  # a fixed instruction, not lived text
                        out.append(str(m.get("content") or m.get("value") or ""))
            continue
        if text.startswith("---\n"):
            text = text.split("\n---\n", 1)[1]
        if path.parent.name == "transcripts":
            text = "\n".join(re.sub(r"^(\[[\d:]+\]\s*)?[^:\[]{1,40}:\s", "", ln) for ln in text.splitlines())
        # Headings, link lists ("- [[page]]") and link pointers ("See [[page]].") are not sentences.
        text = re.sub(r"(?m)^#+ .*$|^- \[\[.*$|\bSee (?:\[\[[^\]]*\]\](?:, )?)+\.", " ", text)
        out.append(re.sub(r"(?m)\[\[|\]\]|^- ", " ", text))
    return out


def repeat_share(sents: list[str], min_words: int = 1) -> tuple[float, int]:
    sents = [s for s in sents if len(s.split()) >= min_words]
    counts = Counter(sents)
    repeated = sum(c for c in counts.values() if c > 1)
    return repeated / max(1, len(sents)), len(sents)


def corpus_report(root: Path) -> dict:
    sents = [s for t in corpus_texts(root) for s in sentences(t)]
    every, n = repeat_share(sents)
    long, n_long = repeat_share(sents, 4)
    counts = Counter(sents)
    return {
        "sentences": n,
        "distinct": len(counts),
        "repeated_share": round(every, 4),
        "sentences_4plus_words": n_long,
        "repeated_share_4plus_words": round(long, 4),
        "most_repeated": counts.most_common(8),
    }


def dataset_report(config: Path) -> dict:
    sys.path.insert(0, str(REPO))
    from mothbrain.config import load_config
    from mothbrain.data.dataset import load_latest_dataset

    dd, meta = load_latest_dataset(load_config(config))
    train = {s for row in dd["train"] for s in sentences(row["completion"])}
    held = [s for row in dd["heldout"] if row["sample_type"] == "voice" for s in sentences(row["completion"])]
    long = [s for s in held if len(s.split()) >= 4]
    seen = [s for s in held if s in train]
    from mothbrain.data.mining import mining_state_path

    cfg = load_config(config)
    details = meta["concept_pair_details"]
    mined = json.loads(mining_state_path(cfg).read_text(encoding="utf-8"))["pairs"]  # [a, b, score, docs], best first

    def found(a: str, b: str) -> str:
        def hit(x: str, y: str) -> bool:
            return bool({x, y} & {a, a + "s"}) and bool({x, y} & {b, b + "s"})

        rank = next(
            (
                f"mined #{i + 1} of {len(mined)} ({p[3]} docs, score {p[2]})"
                for i, p in enumerate(mined)
                if hit(p[0], p[1])
            ),
            "not mined",
        )
        chosen = next((f"chosen as {d['origin']}" for d in details if hit(d["a"], d["b"])), "not chosen")
        return f"{rank}; {chosen}"

    return {
        "documents": meta["documents"],
        "heldout_documents": meta["heldout_documents"],
        "samples": meta["samples"],
        "by_type": {t: sum(r["sample_type"] == t for r in dd[s]) for s in ("train", "heldout") for t in ("voice",)},
        "concept_pairs": {
            "chosen": len(details),
            "cooccurrence": sum(d["origin"] == "cooccurrence" for d in details),
            "link": sum(d["origin"] == "link" for d in details),
            "mined": len(mined),
        },
        "six_pairs": {f"{a}/{b}": found(a, b) for a, b in SIX},
        "priority_concepts": {k: (v["train"], v["heldout"]) for k, v in meta["priority_concepts"].items()},
        "warnings": meta["warnings"],
        "heldout_voice_samples": sum(row["sample_type"] == "voice" for row in dd["heldout"]),
        "heldout_voice_sentences": len(held),
        "in_training_share": round(len(seen) / max(1, len(held)), 4),
        "in_training_share_4plus_words": round(sum(s in train for s in long) / max(1, len(long)), 4),
        "in_training": Counter(seen).most_common(10),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", type=Path, default=REPO / "data" / "sample")
    ap.add_argument("--dataset", type=Path, help="a config whose latest preprocessed data set to check")
    args = ap.parse_args()
    report = {"corpus": corpus_report(args.corpus)}
    if args.dataset:
        report["dataset"] = dataset_report(args.dataset)
    print(json.dumps(report, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()

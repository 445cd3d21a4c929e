"""What eval scores voice on: held-out text the adapter cannot have seen, and a fixed regression set.

Held-out documents never reach training, but a stock phrase can occur on both sides of the split. So
every held-out voice completion loses the sentences that also occur in a training completion; a
sample with nothing left is dropped, and the share removed is reported (`heldout_overlap`).

The regression set is the last accepted version's held-out voice samples (kept in its adapter
directory as `regression.jsonl` when it is evaluated) plus general text that has nothing to do with
the corpus (`eval.general_text`, by default a page of plain English shipped with MothBrain): a new
adapter must not get much worse on either.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path

import xxhash

GENERAL_TEXT = Path(__file__).with_name("general.txt")
REGRESSION_FILE = "regression.jsonl"  # in an adapter's directory: the held-out voice samples it was judged on
_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+|\n+")


def sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END.split(text) if s.strip()]


def _key(sentence: str) -> int:
    return xxhash.xxh64_intdigest(" ".join(sentence.lower().split()).encode("utf-8"))


def training_sentence_keys(completions: Iterable[str]) -> set[int]:
    return {_key(s) for c in completions for s in sentences(c)}


def without_training_sentences(
    samples: list[tuple[str, str]], train_keys: set[int]
) -> tuple[list[tuple[str, str]], dict[str, float | int]]:
    """(prompt, completion) pairs with every sentence that also occurs in training removed."""
    kept, total, shared = [], 0, 0
    for prompt, completion in samples:
        parts = sentences(completion)
        novel = [s for s in parts if _key(s) not in train_keys]
        total += len(parts)
        shared += len(parts) - len(novel)
        if novel:
            kept.append((prompt, " " + " ".join(novel)))
    overlap = {
        "sentences": total,
        "shared_with_train": shared,
        "share": round(shared / total, 4) if total else 0.0,
        "samples_before": len(samples),
        "samples_after": len(kept),
    }
    return kept, overlap


def general_text(path: str | Path | None = None) -> list[tuple[str, str]]:
    """General text as (empty prompt, sentence) pairs."""
    text = Path(path or GENERAL_TEXT).read_text(encoding="utf-8")
    return [("", " " + s) for s in sentences(text)]


def save_regression(adapter_dir: Path, samples: list[tuple[str, str]]) -> None:
    from mothbrain.core.atomic import write_atomically

    lines = "".join(json.dumps({"prompt": p, "completion": c}, ensure_ascii=False) + "\n" for p, c in samples)
    write_atomically(adapter_dir / REGRESSION_FILE, lines.encode("utf-8"))


def load_regression(adapter_dir: Path | None) -> list[tuple[str, str]]:
    """The held-out voice samples the accepted version was judged on ([] when there are none)."""
    if adapter_dir is None:
        return []
    try:
        rows = [json.loads(line) for line in (adapter_dir / REGRESSION_FILE).read_text("utf-8").splitlines()]
        return [(r["prompt"], r["completion"]) for r in rows]
    except (OSError, ValueError, KeyError, TypeError):
        return []

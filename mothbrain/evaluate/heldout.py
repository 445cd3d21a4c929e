"""What eval scores voice on: held-out text the adapter cannot have seen, and a fixed regression set.

Held-out documents never reach training, but a stock phrase can occur on both sides of the split, often
behind a different time stamp ("At 5:32, I keep a lantern." / "On the 2nd, I keep a lantern!"). So every
held-out voice completion loses each sentence that near-duplicates a sentence of a training completion:

  * equal once both are normalised (`normalise_sentence`: case, punctuation, digits, and leading or
    trailing time/date phrases such as "At 23:30,", "On the 24th,", "Last Monday," or "Two days ago,");
  * or, for sentences of at least `dedup.MIN_WORDS_NEAR` words, MinHash-similar (word 3-gram shingles of
    the normalised words, estimated Jaccard >= preprocess.dedup_threshold: the data set's own definition
    of a near-duplicate).

A sample with nothing left is dropped, and what was removed is reported (`heldout_overlap`). This runs at
eval, not preprocess: the assembler writes held-out rows as batches stream in, before it has seen the
training text that comes later, and doing it here also covers data sets made before this rule.

The regression set is the last accepted version's held-out voice samples (kept in its adapter
directory as `regression.jsonl` when it is evaluated) plus general text that has nothing to do with
the corpus (`eval.general_text`, by default a page of plain English shipped with MothBrain): a new
adapter must not get much worse on either.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable
from pathlib import Path

import xxhash

from mothbrain.core.atomic import write_atomically
from mothbrain.data.dedup import MIN_WORDS_NEAR, NUM_BANDS, NUM_PERM, signature

GENERAL_TEXT = Path(__file__).with_name("general.txt")
REGRESSION_FILE = "regression.jsonl"  # in an adapter's directory: the held-out voice samples it was judged on
_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+|\n+")

# A time/date phrase is a short clause (before the first comma, or after the last) made only of the words
# below and numbers, with at least one word that names a time. "Last week," and "At 5:32," go; "Good
# question," and "If I see figs," stay, since their words are not time words.
_TIME_WORDS = frozenset(
    """
    monday tuesday wednesday thursday friday saturday sunday mon tue tues wed thu thur thurs fri sat sun
    january february march april may june july august september october november december
    jan feb mar apr jun jul aug sep sept oct nov dec
    yesterday today tonight tomorrow morning mornings afternoon afternoons evening evenings night nights
    noon midday midnight dawn dusk sunrise sunset daybreak overnight weekend weekends fortnight
    second seconds minute minutes hour hours day days week weeks month months year years decade decades
    spring summer autumn fall winter now recently lately once earlier later ago o'clock am pm a.m p.m
    one two three four five six seven eight nine ten eleven twelve fifteen twenty thirty forty fifty
    first third fourth fifth sixth seventh eighth ninth tenth eleventh twelfth half quarter
    """.split()
)
_FILLER_WORDS = frozenset(
    """
    at on in by around about after before since until till during from to of the a an this that these those
    last next past early late every each some few couple several just right exactly sometime and or
    """.split()
)
_NUMBER = re.compile(r"\d+(?:[:./-]\d+)*(?:st|nd|rd|th|am|pm|h|s)?")  # 5:32, 23.30, 2025-03-02, 24th, 5pm
_MAX_STAMP_WORDS = 6  # a longer clause is content, whatever its words
_DIGITS = re.compile(r"\d+")
_WORD = re.compile(r"\w+")


def sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END.split(text) if s.strip()]


def _is_stamp(clause: str) -> bool:
    words = [w.strip(".;:!?()[]\"'") for w in clause.split()]
    words = [w for w in words if w]
    if not words or len(words) > _MAX_STAMP_WORDS:
        return False
    timely = [w in _TIME_WORDS or bool(_NUMBER.fullmatch(w)) for w in words]
    return any(timely) and all(t or w in _FILLER_WORDS for w, t in zip(words, timely))


def normalise_sentence(sentence: str) -> str:
    """The sentence as eval compares it with training: its words, lower case, with leading and trailing
    time/date phrases dropped and every number written 0."""
    s = unicodedata.normalize("NFKC", sentence).lower().replace("\u2019", "'").strip()
    while "," in s and _is_stamp(s.split(",", 1)[0]):  # "On Monday, at 5:32, I ..."
        s = s.split(",", 1)[1].strip()
    while "," in s and _is_stamp(s.rsplit(",", 1)[1]):  # "... a lantern, at 5:32."
        s = s.rsplit(",", 1)[0].strip()
    return " ".join(_WORD.findall(_DIGITS.sub("0", s)))


def _key(normalised: str) -> int:
    return xxhash.xxh64_intdigest(normalised.encode("utf-8"))


def without_training_sentences(
    samples: list[tuple[str, str]], train_completions: Iterable[str], near_threshold: float = 1.0
) -> tuple[list[tuple[str, str]], dict[str, float | int]]:
    """(prompt, completion) pairs with every sentence that near-duplicates a training sentence removed.

    The held-out side is the small one, so its sentences are indexed (a key set, and a MinHash LSH index
    when `near_threshold` < 1) and the training sentences stream past once, each distinct one looked up."""

    parts = [sentences(c) for _, c in samples]
    flat = [normalise_sentence(s) for ps in parts for s in ps]
    by_key: dict[int, list[int]] = {}
    for i, n in enumerate(flat):
        by_key.setdefault(_key(n), []).append(i)
    lsh, sigs = None, {}
    if near_threshold < 1.0:
        from rensa import RMinHashLSH

        sigs = {i: signature(n.split()) for i, n in enumerate(flat) if len(n.split()) >= MIN_WORDS_NEAR}
        if sigs:
            lsh = RMinHashLSH(threshold=near_threshold, num_perm=NUM_PERM, num_bands=NUM_BANDS)
            for i, sig in sigs.items():
                lsh.insert(i, sig)
    same, near = set(), set()
    seen: set[int] = set()  # distinct training sentences already looked up (weighted copies repeat them)
    for completion in train_completions:
        for s in sentences(completion):
            n = normalise_sentence(s)
            k = _key(n)
            if k in seen:
                continue
            seen.add(k)
            same.update(by_key.get(k, ()))
            if lsh is not None and len(n.split()) >= MIN_WORDS_NEAR:
                sig = signature(n.split())
                near.update(i for i in lsh.query(sig) if sig.jaccard(sigs[i]) >= near_threshold)
    removed = same | near
    kept, i = [], 0
    for (prompt, _), ps in zip(samples, parts):
        novel = [s for j, s in enumerate(ps, start=i) if j not in removed]
        i += len(ps)
        if novel:
            kept.append((prompt, " " + " ".join(novel)))
    total = len(flat)
    overlap = {
        "sentences": total,
        "shared_with_train": len(removed),
        "share": round(len(removed) / total, 4) if total else 0.0,
        "same_when_normalised": len(same),
        "near_duplicates": len(near - same),  # MinHash-similar, not equal when normalised
        "near_threshold": near_threshold,
        "samples_before": len(samples),
        "samples_after": len(kept),
    }
    return kept, overlap


def general_text(path: str | Path | None = None) -> list[tuple[str, str]]:
    """General text as (empty prompt, sentence) pairs."""
    text = Path(path or GENERAL_TEXT).read_text(encoding="utf-8")
    return [("", " " + s) for s in sentences(text)]


def save_regression(adapter_dir: Path, samples: list[tuple[str, str]]) -> None:

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

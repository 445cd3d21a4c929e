"""Exact and near-duplicate removal: rensa MinHash signatures in a MinHash LSH index.

A chat log repeats itself (the same boilerplate answer, a pasted paragraph, an export read
twice); training on the repeats would teach the adapter those few passages by heart. Texts are
normalised (lower case, words only) and hashed for exact duplicates; the rest get a MinHash over
word 3-gram shingles and are looked up in an LSH index, and a candidate counts when the
signatures' estimated Jaccard similarity reaches `threshold`. The first text seen wins, so callers
feed texts in a stable order.

Why rensa (Rust) rather than datasketch: the same algorithm, but datasketch's per-text numpy
calls and pure-Python LSH made deduplication a large share of the preprocess stage; rensa does
the signature and the index in compiled code (the README's measured section has the figures).
"""

from __future__ import annotations

import os
import re

import numpy as np

# rensa (here) and pyarrow (later in preprocess) allocate through mimalloc, which by default hands
# freed pages back to the system only on a later allocation in the same heap. The dedup index is
# freed once, at the end of preprocess's document pass, with nothing allocated after it, so without
# this the process would keep it to the end and concept mining would stack on top of it. mimalloc
# reads the setting when each library first loads it: before rensa's import below. An operator's
# own value wins.
os.environ.setdefault("MIMALLOC_PURGE_DELAY", "0")

from rensa import RMinHash, RMinHashLSH  # noqa: E402 - after the allocator setting above
from xxhash import xxh3_128_digest  # noqa: E402

NUM_PERM = 64  # signature length: 64 keeps the Jaccard estimate within ~0.06 at a third of 128's cost
NUM_BANDS = 8  # 8 bands of 8 rows: ~92% of pairs at Jaccard 0.85 become candidates, ~3% at 0.5
SEED = 1
SHINGLE_WORDS = 3  # word n-grams: long enough that shared vocabulary alone is not a duplicate
MIN_WORDS_NEAR = 8  # shorter texts are compared exactly only: a few words cannot be "nearly" the same

_key_hash = xxh3_128_digest  # exact-duplicate keys: a fast 128-bit hash of the normalised text

_WORDS = re.compile(r"\w+")


def normalise(text: str) -> list[str]:
    """The words of `text`, lower case."""
    return _WORDS.findall(text.lower())


def exact_key(words: list[str]) -> bytes:
    return _key_hash(" ".join(words).encode("utf-8"))


def shingles(words: list[str], k: int = SHINGLE_WORDS) -> list[str]:
    if len(words) <= k:
        return [" ".join(words)]
    return list(map(" ".join, zip(*(words[i:] for i in range(k)))))


def signature(words: list[str]) -> RMinHash:
    """MinHash of the word 3-gram shingles of `words` (64 permutations)."""
    m = RMinHash(num_perm=NUM_PERM, seed=SEED)
    m.update(shingles(words))
    return m


def signature_from_bytes(state: bytes) -> RMinHash:
    """A signature back from its `__getstate__()` bytes (how the document cache stores it)."""
    m = RMinHash(num_perm=NUM_PERM, seed=SEED)
    m.__setstate__(state)
    return m


def text_key(text: str) -> tuple[bytes, RMinHash | None]:
    """(exact key, MinHash or None): what `Deduper.check_key` needs, computable anywhere.

    Pure and picklable, so worker processes compute it and the main process only does the lookups.
    """
    words = normalise(text)
    return exact_key(words), (signature(words) if len(words) >= MIN_WORDS_NEAR else None)


class Deduper:
    """Feed texts in order; each is new (and remembered), an exact or a near duplicate.

    `window` > 0 bounds the near-duplicate index: a text is compared with the last `window` kept
    texts that have a signature (~1.2 KB of memory each: the signature and its LSH entries; ~1.5 KB
    once it is full and the oldest are being removed, as rensa's tables keep room for them), so on
    an archive beyond that the index stops growing. Exact duplicates are found across all texts
    (a 16-byte key each, ~90 bytes in the set). A passage that keeps recurring is then kept at most once per
    `window`.
    """

    def __init__(self, threshold: float, window: int = 0):
        self.threshold = threshold
        self.window = window
        self.lsh = RMinHashLSH(threshold=threshold, num_perm=NUM_PERM, num_bands=NUM_BANDS) if threshold < 1.0 else None
        self.exact: set[bytes] = set()  # exact keys of every kept text (16 bytes each, ~90 in the set)
        self.counts = {"exact_duplicates": 0, "near_duplicates": 0}
        self._sigs: list[RMinHash | None] = []  # by LSH key - _first; None once out of the window
        self._first = 0  # LSH key of _sigs[0]
        self._dropped = 0  # leading entries of _sigs out of the window (compacted now and then)

    @property
    def indexed(self) -> int:
        """Signatures indexed so far (the LSH key of the next one)."""
        return self._first + len(self._sigs)

    def check(self, text: str) -> str | None:
        """None when `text` is new, else "exact" or "near"."""
        return self.check_key(*text_key(text))

    def check_batch(self, keys: list[bytes], sigs: list[RMinHash | None]) -> np.ndarray:
        """`check_key` for each of a batch's texts in order: whether each is new."""
        return np.fromiter((self.check_key(k, s) is None for k, s in zip(keys, sigs)), dtype=bool, count=len(keys))

    def check_key(self, key: bytes, sig: RMinHash | None) -> str | None:
        if key in self.exact:
            self.counts["exact_duplicates"] += 1
            return "exact"
        if self.lsh is not None and sig is not None:
            # LSH returns candidates; confirm with the signatures' estimated Jaccard similarity.
            if any(sig.jaccard(self._sigs[c - self._first]) >= self.threshold for c in self.lsh.query(sig)):
                self.counts["near_duplicates"] += 1
                return "near"
            self.lsh.insert(self.indexed, sig)
            self._sigs.append(sig)
            if self.window and len(self._sigs) - self._dropped > self.window:
                self._forget(1)
        self.exact.add(key)
        return None

    def remember(self, keys: list[bytes], sigs: list[RMinHash]) -> None:
        """Take texts already decided as new (an earlier run's kept samples), as if checked in order."""
        self.exact.update(keys)
        if self.lsh is not None and sigs:
            sigs = sigs[-self.window :] if self.window else sigs
            self.lsh.insert_many(sigs, self.indexed)
            self._sigs.extend(sigs)
            if self.window:
                self._forget(len(self._sigs) - self._dropped - self.window)

    def _forget(self, n: int) -> None:
        """The `n` oldest indexed signatures leave the window (and the index)."""
        for _ in range(max(0, n)):
            self.lsh.remove(self._first + self._dropped)
            self._sigs[self._dropped] = None
            self._dropped += 1
        if self._dropped >= 4096 and self._dropped * 2 >= len(self._sigs):  # now and then: O(1) per text
            del self._sigs[: self._dropped]
            self._first += self._dropped
            self._dropped = 0

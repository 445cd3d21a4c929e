"""Exact and near-duplicate removal: datasketch MinHash signatures in a MinHashLSH index.

A chat log repeats itself (the same boilerplate answer, a pasted paragraph, an export read
twice); training on the repeats would teach the adapter those few passages by heart. Texts are
normalised (lower case, words only) and hashed for exact duplicates; the rest get a MinHash over
word 3-gram shingles and are looked up in an LSH index at `threshold` Jaccard similarity. The
first text seen wins, so callers feed texts in a stable order.
"""

from __future__ import annotations

import hashlib
import re

import numpy as np
from datasketch import MinHash, MinHashLSH

try:  # xxhash comes with `datasets`; 3x faster than datasketch's default sha1 and just as stable.
    from xxhash import xxh32_intdigest as _hash32
except ImportError:  # pragma: no cover
    from datasketch.hashfunc import sha1_hash32 as _hash32

NUM_PERM = 64  # signature length: 64 keeps the Jaccard estimate within ~0.06 at a third of 128's cost
SHINGLE_WORDS = 3  # word n-grams: long enough that shared vocabulary alone is not a duplicate

_WORDS = re.compile(r"\w+")
# Permutations are drawn once: MinHash() would otherwise redraw them (slowly) for every text.
_TEMPLATE = MinHash(num_perm=NUM_PERM, seed=1, hashfunc=_hash32)


def normalise(text: str) -> list[str]:
    return _WORDS.findall(text.lower())


def exact_key(words: list[str]) -> str:
    return hashlib.blake2b(" ".join(words).encode("utf-8"), digest_size=16).hexdigest()


def shingles(words: list[str], k: int = SHINGLE_WORDS) -> list[bytes]:
    if len(words) <= k:
        return [" ".join(words).encode("utf-8")]
    return [" ".join(g).encode("utf-8") for g in zip(*(words[i:] for i in range(k)))]


def _new_minhash(hashvalues: np.ndarray | None = None) -> MinHash:
    return MinHash(num_perm=NUM_PERM, seed=1, hashfunc=_hash32, hashvalues=hashvalues,
                   permutations=_TEMPLATE.permutations, scheme=_TEMPLATE.scheme)


_SCRATCH = _new_minhash()  # reused (cleared) for every signature: constructing one costs as much as filling it


def signature(words: list[str]) -> np.ndarray:
    """MinHash values of the word 3-gram shingles of `words` (datasketch MinHash, 64 permutations)."""
    _SCRATCH.clear()
    _SCRATCH.update_batch(shingles(words))
    return _SCRATCH.hashvalues.copy()


MIN_WORDS_NEAR = 8  # shorter texts are compared exactly only: a few words cannot be "nearly" the same


def text_key(text: str) -> tuple[str, np.ndarray | None]:
    """(exact key, MinHash values or None): what `Deduper.check_key` needs, computable anywhere.

    Pure, so worker processes compute it and the main process only does the index lookups.
    """
    words = normalise(text)
    return exact_key(words), (signature(words) if len(words) >= MIN_WORDS_NEAR else None)


class Deduper:
    """Feed texts in order; each is new (and remembered), an exact or a near duplicate."""

    def __init__(self, threshold: float):
        self.threshold = threshold
        self.lsh = MinHashLSH(threshold=threshold, num_perm=NUM_PERM) if threshold < 1.0 else None
        self.exact: set[str] = set()
        self.counts = {"exact_duplicates": 0, "near_duplicates": 0}
        self._sigs: list[MinHash] = []

    def check(self, text: str) -> str | None:
        """None when `text` is new, else "exact" or "near"."""
        return self.check_key(*text_key(text))

    def check_key(self, key: str, hashvalues: np.ndarray | None) -> str | None:
        if key in self.exact:
            self.counts["exact_duplicates"] += 1
            return "exact"
        if self.lsh is not None and hashvalues is not None:
            sig = _new_minhash(hashvalues)
            # LSH returns candidates; confirm with the signatures' estimated Jaccard similarity.
            if any(sig.jaccard(self._sigs[c]) >= self.threshold for c in self.lsh.query(sig)):
                self.counts["near_duplicates"] += 1
                return "near"
            self.lsh.insert(len(self._sigs), sig)
            self._sigs.append(sig)
        self.exact.add(key)
        return None

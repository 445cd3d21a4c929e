"""Every element of a damaged chat export is stored or reported, under its own index (#29).

For both export shapes, one element is damaged at every class of position (`exportfuzz.CLASSES`); then a
fuzz of >= 10,000 elements with random damage at random positions. The fuzz seed changes each run (the
date, or MOTHBRAIN_FUZZ_SEED) and is printed, so a failure can be replayed.
"""

from __future__ import annotations

import datetime
import os
import random

import pytest
from exportfuzz import CLASSES, KINDS, account, fuzz, write_export

N = 12  # elements per export in the class-by-class test


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("cls", CLASSES)
@pytest.mark.parametrize("seed", range(6))
def test_one_damaged_element_costs_only_itself(tmp_path, kind, cls, seed):
    rng = random.Random(f"{kind}-{cls}-{seed}")
    at = N - 1 if cls == "truncated" else rng.randrange(N)
    written = write_export(rng, tmp_path, kind, N, {at: cls})
    acc = account(kind, written)
    assert acc.vanished == [], acc.problems.items
    assert acc.misindexed == [], acc.problems.items
    assert written.damaged <= acc.reported
    lost = acc.reported - acc.stored
    allowed = written.damaged | {i + 1 for i in written.merges}
    assert lost <= allowed, acc.problems.items
    if cls not in ("quote_removed", "quote_added", "closer_removed", "closer_added", "nested_array"):
        assert lost == written.damaged, acc.problems.items  # no merging damage: exactly the damaged one


def _fuzz_seed() -> int:
    return int(os.environ.get("MOTHBRAIN_FUZZ_SEED") or datetime.date.today().strftime("%Y%m%d"))


def test_ten_thousand_fuzzed_elements_none_vanish(tmp_path):
    seed = _fuzz_seed()
    print(f"fuzz seed {seed} (MOTHBRAIN_FUZZ_SEED={seed} replays it)")
    res = fuzz(seed, 10_000, tmp_path)
    lost, wrong = len(res.vanished), len(res.misindexed)
    print(f"{res.elements} elements in {res.exports} exports: {lost} vanished, {wrong} mis-indexed")
    assert res.elements >= 10_000
    assert res.vanished == [] and res.misindexed == [], (seed, res.vanished[:5], res.misindexed[:5])

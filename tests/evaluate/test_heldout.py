"""Held-out means unseen: eval drops every held-out sentence that near-duplicates training text, whatever
time stamp, case, punctuation or numbers it wears, and keeps the sentences that are really new."""

from __future__ import annotations

import pytest

from mothbrain.evaluate import heldout

# Each group says the same thing behind different stamps, case, punctuation and numbers.
SAME = [
    [
        "At 5:32, I keep a lantern.",
        "On the 2nd, I keep a lantern!",
        "At 23:30, i keep a LANTERN",
        "On Monday, at 5pm, I keep a lantern.",
        "Yesterday, I keep a lantern.",
        "Last week, I keep a lantern.",
        "Two days ago, I keep a lantern.",
        "Earlier this morning, I keep a lantern.",
        "In March 2024, I keep a lantern.",
        "On 2025-03-02, I keep a lantern.",
        "I keep a lantern, at 5:32.",
        "At half past five, I keep a lantern.",
    ],
    ["I planted 3 figs in the garden.", "On the 24th, I planted 12 figs in the garden..."],
]
# Pairs that must stay apart: the leading clause is content, not a stamp, or the words differ.
DIFFERENT = [
    ("Good question, bad timing.", "Bad timing."),
    ("If I see figs, I see patience.", "I see patience."),
    ("At the weir, the heron waits.", "The heron waits."),
    ("I keep a lantern.", "I keep a kettle."),
    ("Move like a heron toward a deadline: slowly, then all at once.", "Move like a heron toward a deadline."),
]


def _holds(normalise) -> bool:
    """Whether `normalise` merges every SAME group and keeps every DIFFERENT pair apart."""
    merged = all(len({normalise(s) for s in group}) == 1 for group in SAME)
    apart = all(normalise(a) != normalise(b) for a, b in DIFFERENT)
    return merged and apart


def test_normalisation_drops_stamps_case_punctuation_and_numbers_but_not_content():
    assert heldout.normalise_sentence("At 5:32, I keep a lantern.") == "i keep a lantern"
    assert _holds(heldout.normalise_sentence)
    # The property test catches a normaliser that does nothing, one that only lower-cases and one that
    # merges everything.
    assert not _holds(lambda s: s)
    assert not _holds(lambda s: " ".join(s.lower().split()))
    assert not _holds(lambda s: "")


def test_stamped_duplicates_are_removed_and_new_sentences_kept():
    train = ["At 5:32, I keep a lantern. Good question, bad timing.", "On the 3rd, compost needs air."]
    samples = [
        ("p1", " On the 2nd, I keep a lantern! The heron waits at the weir."),
        ("p2", " At 23:30, compost needs AIR."),
        ("p3", " Good question, bad timing. I broke a bowl at the kiln."),
    ]
    kept, overlap = heldout.without_training_sentences(samples, train)
    assert kept == [("p1", " The heron waits at the weir."), ("p3", " I broke a bowl at the kiln.")]
    assert overlap["sentences"] == 5 and overlap["shared_with_train"] == overlap["same_when_normalised"] == 3
    assert overlap["share"] == 0.6 and overlap["samples_before"] == 3 and overlap["samples_after"] == 2
    assert overlap["near_duplicates"] == 0


LONG = (
    "I told the council the bridge repair could wait a week, and I was wrong, and the river said so "
    "before anyone on the council had finished reading the {end}."
)


@pytest.mark.parametrize("threshold, removed", [(0.85, True), (1.0, False)])
def test_long_sentences_that_differ_in_a_word_are_near_duplicates(threshold, removed):
    train = [LONG.format(end="minutes"), "A short line."]
    samples = [("p", " " + LONG.format(end="agenda")), ("q", " An entirely new thought about herons.")]
    kept, overlap = heldout.without_training_sentences(samples, train, near_threshold=threshold)
    assert overlap["same_when_normalised"] == 0
    assert overlap["near_duplicates"] == int(removed) and overlap["near_threshold"] == threshold
    assert [p for p, _ in kept] == (["q"] if removed else ["p", "q"])
    # Short sentences are never "nearly" the same: one changed word is a different sentence.
    kept, _ = heldout.without_training_sentences([("s", " A short lane.")], train, near_threshold=threshold)
    assert kept == [("s", " A short lane.")]


def test_general_text_ships():
    assert len(heldout.general_text()) >= 20  # the shipped general text for the regression set

"""Association, measured as what the cue adds: does naming a concept make its partner likelier than naming
another concept does?

For a pair (cue, partner) and a prompt template T, the partner's *lift* is

    log p(partner | T(cue)) − mean over other concepts c of log p(partner | T(c))     summed over its tokens,

averaged over templates. The other concepts ("stand-ins", OTHER_CUES of them per candidate, drawn once per
concept) are probed concepts of the same data set that are neither the candidate, nor one of its partners,
nor the probe's cue, so a model that merely expects the corpus's words after any of its concepts (what a
night's training teaches first), or a rare word after any rare word (what a real base does with invented
words), scores ~0; only a model that ties the partner to this cue lifts it. Until #28 the baseline was a
neutral word ("it", "this") in the cue's place: on a real base that is not English ("Tell me about the
it."), and SmolLM2 "lifted" invented partners it cannot know by +0.87 nats over it; it is still the
baseline where a data set has too few concepts for stand-ins. The partner is also ranked by lift
against distractor concepts of the same length class (tokens): top-1 is the share of probes where the
partner's lift beats every distractor's, with chance 1 / (distractors + 1). "The cue removed" puts one
more of the partner's stand-ins, not one of its baseline, in the cue's place: a lift that stays is not
the cue's.

Templates: a user asks about the cue and the voice begins to answer, in the training format
("User: …\nMoth: The {a} makes me think of the"); none of these wordings appears in training. An
adapter is a voice, and what it associates shows when it speaks (measured bare, "{a} reminds me of",
the tiny demo model shows nothing even for pairs it has learnt). Pairs are split into held-out (no
templated training rows: whatever the adapter knows of them it absorbed from the lived text) and
in-sample. The held-out figure that counts is on the held-out pairs that passed preprocess's strength
test (mothbrain.data.strength: a wiki link, or mined, above chance and not the words of one stock
phrase), with their count; held-out filler (the words of a repeated sentence frame, "answer" and
"hums") is reported apart, so the headline does not depend on how many of them got in.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mothbrain.data.format import render_prompt
from mothbrain.evaluate.stats import bootstrap_mean

# (what the user asks, how the voice begins): never used for training rows
EVAL_TEMPLATES = (
    ("Tell me about the {a}.", "The {a} makes me think of the"),
    ("Any thoughts on the {a}?", "Whenever the {a} comes up, I think of the"),
    ("What does the {a} bring to mind?", "The {a} brings to mind the"),
)
OTHER_CUES = 4  # stand-in concepts a candidate is scored after, the baseline its lift is measured from
NEUTRAL_CUES = ("it", "this")  # the baseline when a data set has no stand-in for a candidate
ABLATION_CUE = "that"  # "the cue removed" when a probe has no spare concept

# (prompt, continuation) pairs → sum of log-probs of each continuation's tokens
Scorer = Callable[[list[tuple[str, str]]], list[float]]


@dataclass
class Probe:
    cue: str
    partner: str
    distractors: list[str]
    heldout: bool  # no templated training rows for this pair
    real: bool = True  # passed preprocess's strength test (False: the words of a stock phrase)
    # per candidate, the other concepts put in the cue's place: its baseline (none: NEUTRAL_CUES)
    stand_ins: dict[str, list[str]] = field(default_factory=dict)
    ablation: str = ABLATION_CUE  # one more stand-in of the partner's, in the cue's place: "the cue removed"

    @property
    def candidates(self) -> list[str]:
        return [self.partner, *self.distractors]


def voice_templates(user: str, voice: str) -> list[str]:
    """EVAL_TEMPLATES written in the training format for these speakers."""

    return [render_prompt([(user, ask)], voice) + " " + start for ask, start in EVAL_TEMPLATES]


def stable_rng(*parts: str) -> random.Random:
    seed = hashlib.blake2b("|".join(parts).encode(), digest_size=8).digest()
    return random.Random(int.from_bytes(seed, "little"))


def build_probes(
    pairs: Iterable[tuple[str, str]],
    heldout: set[tuple[str, str]],
    token_length: Callable[[str], int],
    distractors: int,
    filler: set[tuple[str, str]] = frozenset(),
) -> list[Probe]:
    """Both directions of every pair; distractors are other probed concepts of the partner's length class
    (the nearest token lengths first), never the cue, the partner or either's own partners. Each concept has
    its stand-ins, drawn once (so that a candidate's baseline is scored once for every probe it is in): other
    concepts that are not its partners, less the probe's cue. Pairs in `filler` failed the strength test:
    their probes are marked not real."""
    pairs = [(a, b) for a, b in pairs if a != b]
    partners: dict[str, set[str]] = {}
    for a, b in pairs:
        partners.setdefault(a, set()).add(b)
        partners.setdefault(b, set()).add(a)
    pool = sorted(partners)
    length = {c: token_length(c) for c in pool}
    stand_ins = {c: _stand_ins(c, pool, partners) for c in pool}
    probes = []
    for a, b in pairs:
        held = (a, b) in heldout or (b, a) in heldout
        real = (a, b) not in filler and (b, a) not in filler
        for cue, partner in ((a, b), (b, a)):
            exclude = {cue, partner} | partners[cue] | partners[partner]
            others = [c for c in pool if c not in exclude and not _overlaps(c, exclude)]
            rng = stable_rng(cue, partner)
            rng.shuffle(others)  # ties in length are broken at random, the same way every run
            others.sort(key=lambda c: abs(length[c] - length[partner]))
            if others:
                chosen = others[:distractors]
                baseline = {c: [s for s in stand_ins[c] if s != cue][:OTHER_CUES] for c in (partner, *chosen)}
                spare = [s for s in stand_ins[partner] if s != cue][OTHER_CUES:] or [ABLATION_CUE]
                probes.append(Probe(cue, partner, chosen, held, real, baseline, spare[0]))
    return probes


def _stand_ins(concept: str, pool: list[str], partners: dict[str, set[str]]) -> list[str]:
    """OTHER_CUES + 2 concepts that are neither `concept` nor one of its partners (after its own partner, a
    candidate would look lifted by the baseline's fault): the baseline, one spare for a probe whose cue is
    among them, and one for the ablation (drawn like the baseline, so that it scores ~0 unless the baseline
    is off)."""
    taken = {concept} | partners[concept]
    free = [c for c in pool if c not in taken and not _overlaps(c, taken)]
    stable_rng("stand-ins", concept).shuffle(free)
    return free[: OTHER_CUES + 2]


def _overlaps(word: str, exclude: set[str]) -> bool:
    """ "bridge" is no fair distractor for "bridge repair": one contains the other."""
    return any(word in e or e in word for e in exclude)


def candidate_lifts(probes: list[Probe], score: Scorer, templates: list[str], ablate: bool = False) -> np.ndarray:
    """[probe, candidate] lift of each candidate (partner first) over its stand-ins, averaged over templates.

    `ablate` puts each probe's `ablation` concept in the cue's place: the cue removed."""
    wanted, index = _slots(probes, templates, ablate)
    scores = np.asarray(score(list(wanted)), dtype=np.float64)
    out = np.full((len(probes), 1 + max((len(p.distractors) for p in probes), default=0)), np.nan)
    for i, per_t in enumerate(index):
        lifts = [[scores[c] - np.mean(scores[base]) for c, base in zip(cs, baseline)] for cs, baseline in per_t]
        row = np.mean(lifts, axis=0)
        out[i, : len(row)] = row
    return out


def scored_count(probes: list[Probe], templates: list[str], ablate: bool = False) -> int:
    """How many continuations `candidate_lifts` scores (each distinct prompt and candidate once)."""
    return len(_slots(probes, templates, ablate)[0])


def _slots(probes: list[Probe], templates: list[str], ablate: bool):
    """The distinct (prompt, candidate) pairs to score, and per probe, per template: (cue slots, baseline slots)."""
    wanted: dict[tuple[str, str], int] = {}

    def slot(prompt: str, cont: str) -> int:
        return wanted.setdefault((prompt, " " + cont), len(wanted))

    index = []  # per probe, per template: (cue slot of each candidate, its baseline slots)
    for p in probes:
        cue = p.ablation if ablate else p.cue
        per_t = []
        for t in templates:
            cue_slots = [slot(_fill(t, cue), c) for c in p.candidates]
            baseline = [[slot(_fill(t, n), c) for n in (p.stand_ins.get(c) or NEUTRAL_CUES)] for c in p.candidates]
            per_t.append((cue_slots, baseline))
        index.append(per_t)
    return wanted, index


def _fill(template: str, cue: str) -> str:
    return template.format(a=cue)  # the cue as written (training rows use it lower-cased, as mined)


def ranked_first(lifts: np.ndarray) -> np.ndarray:
    """Per probe: does the partner's lift (column 0) beat every distractor's (absent ones are NaN)?"""
    rivals = np.nan_to_num(lifts[:, 1:], nan=-np.inf)
    return (lifts[:, :1] > rivals).all(axis=1) if rivals.shape[1] else np.ones(len(lifts), bool)


def summarize(lifts: np.ndarray, probes: list[Probe]) -> dict[str, float | int | None]:
    """Mean partner lift (nats), top-1 (partner's lift above every distractor's) and the chance level,
    over `probes` (and how many probes, of how many pairs)."""
    if not probes:
        return {"lift": None, "top1": None, "chance": None, "probes": 0, "pairs": 0}
    partner = lifts[:, 0]
    top1 = ranked_first(lifts)
    n_cands = (~np.isnan(lifts)).sum(axis=1)
    return {
        "lift": round(float(partner.mean()), 4),
        "top1": round(float(top1.mean()), 4),
        "chance": round(float(np.mean(1.0 / n_cands)), 4),
        "probes": len(probes),
        "pairs": len({frozenset((p.cue, p.partner)) for p in probes}),
    }


def figures(lifts: dict[str, np.ndarray], probes: list[Probe]) -> dict[str, Any]:
    """The association figures from each model's lifts over `probes` (keys "adapter", "base" and maybe
    "current"; a model's figures carry its name as a suffix, the adapter's none):

      association_heldout          the held-out pairs that count (real), with their count in `pairs`
      association_heldout_filler   the held-out pairs that failed the strength test, apart (0 probes: none)
      association_insample         the in-sample pairs
      association_heldout_vs_base  the adapter's partner lift over base on the real held-out probes,
                                   with a bootstrap interval: what the gate decides on (and _vs_current)
      association_heldout_filler_vs_base   the same on the filler, when there is any
    """
    groups = {
        "association_heldout": [p.heldout and p.real for p in probes],
        "association_heldout_filler": [p.heldout and not p.real for p in probes],
        "association_insample": [not p.heldout for p in probes],
    }
    out: dict[str, Any] = {}
    for name, mask in groups.items():
        mask = np.array(mask, dtype=bool)
        for who, lift in lifts.items():
            key = name if who == "adapter" else f"{name}_{who}"
            out[key] = summarize(lift[mask], [p for p, m in zip(probes, mask) if m])
    for name, mask in (
        ("association_heldout", groups["association_heldout"]),
        ("association_heldout_filler", groups["association_heldout_filler"]),
    ):
        mask = np.array(mask, dtype=bool)
        if name.endswith("filler") and not mask.any():
            continue
        partner = {who: partner_lifts(lift[mask]) for who, lift in lifts.items()}
        for who in partner:
            if who != "adapter":
                out[f"{name}_vs_{who}"] = bootstrap_mean(partner["adapter"] - partner[who])
    return out


def heldout_rows(lifts: dict[str, np.ndarray], probes: list[Probe]) -> list[dict[str, Any]]:
    """One row per held-out probe that counts (real pairs): its cue and partner, and per model the partner's
    lift and whether it ranked first. Kept with the figures so a reader can see which pairs moved, and a
    figure can be re-cut on a subset (`recut`: the learning bench's planted pairs apart from mined ones)."""
    mask = np.array([p.heldout and p.real for p in probes], dtype=bool)
    kept = [p for p, m in zip(probes, mask) if m]
    out = [{"cue": p.cue, "partner": p.partner} for p in kept]
    for who, lift in lifts.items():
        sub = lift[mask]
        for row, value, top in zip(out, sub[:, 0], ranked_first(sub)):
            row[who] = round(float(value), 4)
            row[f"{who}_top1"] = bool(top)
    return out


def recut(rows: list[dict[str, Any]], reference: str = "base") -> dict[str, Any]:
    """The held-out figures of `heldout_rows` over these rows only: each model's mean partner lift and top-1,
    and the adapter's lift over `reference` with its bootstrap interval."""
    if not rows:
        return {"probes": 0, "pairs": 0}
    whos = [k for k in rows[0] if k not in ("cue", "partner") and not k.endswith("_top1")]
    out: dict[str, Any] = {"probes": len(rows), "pairs": len({frozenset((r["cue"], r["partner"])) for r in rows})}
    for who in whos:
        out[f"lift_{who}"] = round(float(np.mean([r[who] for r in rows])), 4)
        out[f"top1_{who}"] = round(float(np.mean([r[f"{who}_top1"] for r in rows])), 4)
    out[f"vs_{reference}"] = bootstrap_mean(np.array([r["adapter"] - r[reference] for r in rows]))
    return out


def partner_lifts(lifts: np.ndarray) -> np.ndarray:
    return lifts[:, 0] if len(lifts) else np.zeros(0)

"""Building the eval's probes from the data set: association probes for concept pairs (held-out and
in-sample), and knowledge probes for every priority concept in every probe mode, each with distractors."""

from __future__ import annotations

import hashlib
import random
import re
from typing import Any

from mothbrain.config import Config
from mothbrain.data.format import user_name, voice_name
from mothbrain.evaluate import association

MODES = ("direct", "association", "completion")


PROBES_PER_MODE = 4  # cues or sentences per concept and mode


def _stable_rng(*parts: str) -> random.Random:
    return random.Random(int.from_bytes(hashlib.blake2b("|".join(parts).encode(), digest_size=8).digest(), "little"))


def _partners(pairs: list[list[Any]]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for a, b, *_ in pairs:
        out.setdefault(a, set()).add(b)
        out.setdefault(b, set()).add(a)
    return out


def _distractors(vocab: list[str], exclude: set[str], k: int, *seed: str) -> list[str]:
    pool = sorted(v for v in vocab if v not in exclude and not any(v in e or e in v for e in exclude))
    return _stable_rng(*seed).sample(pool, min(k, len(pool)))


def _template(cfg: Config) -> str:
    t = [t for t in cfg.preprocess.association_templates if "{a}" in t]
    return t[0] if t else "{a} reminds me of"


def _probed_pairs(meta: dict[str, Any], cfg: Config) -> list[list[Any]]:
    return [p for p in meta.get("concept_pairs", []) if len(p) >= 2][: cfg.eval.association_pairs]


def association_probes(meta: dict[str, Any], cfg: Config, tokenizer) -> list[association.Probe]:
    """Both directions of every held-out pair and of the first eval.association_pairs in-sample pairs;
    held-out pairs that preprocess marked "filler" (mothbrain.data.strength) are probed, marked not real.
    A data set from before the strength test has no marks: its pairs all count, as they did."""
    held = {tuple(p[:2]) for p in meta.get("heldout_pairs", [])}
    filler = {tuple(p[:2]) for p in meta.get("heldout_pairs", []) if len(p) > 2 and p[2] == "filler"}
    pairs = [tuple(p[:2]) for p in meta.get("concept_pairs", []) if len(p) >= 2]
    chosen = [p for p in pairs if p in held] + [p for p in pairs if p not in held][: cfg.eval.association_pairs]

    def token_length(concept: str) -> int:
        return len(tokenizer(" " + concept, add_special_tokens=False)["input_ids"])

    return association.build_probes(chosen, held, token_length, cfg.eval.distractors, filler)


def _concept_sentences(dataset, names: list[str], limit: int) -> list[tuple[str, str]]:
    """(text before the concept, the concept as written) from voice/text completions, held-out first."""
    pat = re.compile(r"\b(" + "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True)) + r")\b", re.I)
    found: list[tuple[str, str]] = []
    for split in ("heldout", "train"):
        if split not in dataset:
            continue
        seen = set()
        for row in dataset[split]:
            if row["sample_type"] == "association":
                continue
            for sent in re.split(r"(?<=[.!?])\s+", row["completion"]):
                m = pat.search(sent)
                if not m or len(sent[: m.start()].split()) < 3 or sent in seen:
                    continue
                seen.add(sent)
                found.append((sent[: m.start()].rstrip(), m.group(1)))
                if len(found) >= limit:
                    return found
    return found


def knowledge_probes(cfg: Config, meta: dict[str, Any], dataset) -> list[dict[str, Any]]:
    """Probes for every priority concept in every configured mode (see the module docstring)."""
    partners = _partners(meta.get("concept_pairs", []))
    concepts = [pc.name.lower() for pc in cfg.preprocess.priority_concepts]
    vocab = sorted({x for a, b, *_ in _probed_pairs(meta, cfg) for x in (a, b)} | set(concepts))
    user, voice = user_name(), voice_name(cfg)
    tpl = _template(cfg)
    k = cfg.eval.distractors
    out = []
    for pc in cfg.preprocess.priority_concepts:
        c = pc.name.lower()
        names = [c] + [a.lower() for a in pc.aliases]
        related = {n for x in names for n in partners.get(x, set())}
        cues = sorted(related)[:PROBES_PER_MODE]
        exclude = set(names) | related
        for mode in cfg.eval.probe_modes:
            items: list[tuple[str, str, set[str]]] = []  # (prompt, target, also exclude)
            if mode == "direct":
                items.append((f"{user}: What has been on your mind lately?\n{voice}: Mostly", c, set()))
                items += [
                    (f"{user}: What does {cue} make you think of?\n{voice}: It makes me think of", c, {cue})
                    for cue in cues[: PROBES_PER_MODE - 1]
                ]
            elif mode == "association":
                items += [(tpl.format(a=cue), c, {cue} | partners.get(cue, set())) for cue in cues]
            elif mode == "completion":
                items += [
                    (before, written, set()) for before, written in _concept_sentences(dataset, names, PROBES_PER_MODE)
                ]
            for prompt, target, extra in items:
                ds = _distractors(vocab, exclude | extra, k, c, mode, prompt)
                if ds:
                    out.append({"concept": c, "mode": mode, "prompt": prompt, "target": target, "distractors": ds})
    return out

"""Fakes that several test modules use."""

from __future__ import annotations

import time

from openai_standin import ChatStandIn


def ci(mean: float, half: float, n: int = 120) -> dict:
    return {"mean": mean, "lo": mean - half, "hi": mean + half, "n": n}


# Eval figures that pass every gate check, with a current adapter or without: for tests about what
# happens after the gate (the pointer, the ledger, serving), whose statistics have tests of their own.
PASSING_EVAL = {
    "voice_ppl": 9.0,
    "voice_ppl_base": 10.0,
    "voice_ppl_current": 9.1,
    "voice_samples": 120,
    "voice_gain_vs_base": ci(0.1, 0.05),
    "association_heldout": {"lift": 0.8, "top1": 0.4, "chance": 0.0667, "probes": 60},
    "association_heldout_vs_base": ci(0.7, 0.3, 60),
    "association_heldout_vs_current": ci(0.05, 0.2, 60),
    "accepted_voice_ppl_base": 11.0,
    "regression": {
        "reference": "current",
        "samples": 150,
        "accepted_samples": 120,
        "adapter_ppl": 20.1,
        "reference_ppl": 20.0,
        "worse_pct": 0.5,
    },
    "probes": {
        "figs": {
            "direct": {"n": 4, "adapter": 0.5, "current": 0.5},
            "association": {"n": 4, "adapter": 0.0, "current": 1.0},
        }
    },
}


class FakeSystem2(ChatStandIn):
    """An OpenAI-style chat endpoint on loopback: drafts for questions, "SYNTH: …" for synthesis prompts."""

    def __init__(self, delay: float = 0.0):
        self.delay = delay
        self.drafts: list[str] = []
        self.synthesis_prompts: list[str] = []
        super().__init__(self._answer)

    def _answer(self, body: dict) -> str:
        prompt = body["messages"][-1]["content"]
        time.sleep(self.delay)
        if "lizard brain" in prompt:
            self.synthesis_prompts.append(prompt)
            return "SYNTH: I kept the figs and dropped the kiln."
        self.drafts.append(prompt)
        return "DRAFT: patience, mostly."

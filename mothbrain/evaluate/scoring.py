"""Scoring continuations: log p(completion | prompt), completion tokens only, for every figure eval takes.

Most of eval's scoring asks many continuations of the same prompt (the association probes: every
candidate after every cue and neutral prompt; the knowledge probes: a target and its distractors), so
a prompt shared by several continuations is run once and its key/value cache reused for all of them
(`_score_shared`); the rest go in length-sorted batches (`_score_batched`). Both give the same numbers
(a test checks it); on a real base the shared path does a fraction of the work.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

Progress = Callable[[int], None] | None  # told how many more continuations are scored (eval's status steps)

TOKEN_BUDGET = 4096  # tokens per scoring batch (bounds the [batch, len, vocab] logits)
SHARE_FROM = 4  # continuations of one prompt from which its cache is reused


def _tokenize(tokenizer, pairs: list[tuple[str, str]], max_len: int) -> list[tuple[list[int], list[int]]]:
    """Prompt and completion tokenised apart and joined, as in training; a prompt too long for `max_len`
    loses its beginning, and an empty one starts from EOS (the first token has no prediction)."""
    seqs = []
    for prompt, completion in pairs:
        p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        c = tokenizer(completion, add_special_tokens=False)["input_ids"][: max_len - 1]
        p = p[-(max_len - len(c)) :] if len(p) + len(c) > max_len else p
        seqs.append((p or [tokenizer.eos_token_id], c))
    return seqs


def score_continuations(
    model, tokenizer, pairs: list[tuple[str, str]], max_len: int, share: bool = True, progress: Progress = None
) -> list[tuple[float, int]]:
    """(sum of log-probs, token count) of each completion given its prompt: completion tokens only.
    `progress(n)` hears of every batch as it is scored, the empty completions (nothing to score) at once."""
    if not pairs:
        return []
    tell = progress or (lambda _n: None)
    seqs = _tokenize(tokenizer, pairs, max_len)
    out: list[tuple[float, int]] = [(0.0, 0)] * len(seqs)
    groups: dict[tuple[int, ...], list[int]] = {}
    for k, (p, c) in enumerate(seqs):
        if c:  # an empty completion scores (0, 0)
            groups.setdefault(tuple(p), []).append(k)
    tell(len(seqs) - sum(len(m) for m in groups.values()))
    rest = []
    for prompt, members in groups.items():
        if share and len(members) >= SHARE_FROM:
            for k, scored in zip(members, _score_shared(model, list(prompt), [seqs[k][1] for k in members])):
                out[k] = scored
            tell(len(members))
        else:
            rest += members
    for k, scored in zip(rest, _score_batched(model, tokenizer, [seqs[k] for k in rest], tell)):
        out[k] = scored
    return out


def _score_batched(
    model, tokenizer, seqs: list[tuple[list[int], list[int]]], tell: Callable[[int], None]
) -> list[tuple[float, int]]:
    """Whole sequences in length-sorted batches of at most TOKEN_BUDGET tokens."""
    import torch

    device = next(model.parameters()).device
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i][0]) + len(seqs[i][1]))
    out: list[tuple[float, int]] = [(0.0, 0)] * len(seqs)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    i = 0
    while i < len(order):
        longest = len(seqs[order[i]][0]) + len(seqs[order[i]][1])
        j = i + 1
        while j < len(order) and (j - i + 1) * (len(seqs[order[j]][0]) + len(seqs[order[j]][1])) <= TOKEN_BUDGET:
            longest = len(seqs[order[j]][0]) + len(seqs[order[j]][1])
            j += 1
        idx = order[i:j]
        ids = torch.full((len(idx), longest), pad, dtype=torch.long)
        mask = torch.zeros((len(idx), longest), dtype=torch.long)
        for r, k in enumerate(idx):
            row = seqs[k][0] + seqs[k][1]
            ids[r, : len(row)] = torch.tensor(row)
            mask[r, : len(row)] = 1
        with torch.inference_mode():
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float()
        for r, k in enumerate(idx):
            p, c = seqs[k]
            lp = torch.log_softmax(logits[r, len(p) - 1 : len(p) + len(c) - 1], dim=-1)
            out[k] = (float(lp.gather(1, torch.tensor(c, device=lp.device).unsqueeze(1)).sum()), len(c))
        tell(len(idx))
        i = j
    return out


def _score_shared(model, prompt: list[int], conts: list[list[int]]) -> list[tuple[float, int]]:
    """Continuations of one prompt: the prompt runs once, its cache is copied out to each batch of
    continuations (right-padded; a padded position is never read)."""
    import torch

    device = next(model.parameters()).device
    with torch.inference_mode():
        first = model(input_ids=torch.tensor([prompt], device=device), use_cache=True)
    cache: Any = getattr(first, "cache", None) or first.past_key_values
    cache_arg = _cache_argument(model)
    first_lp = torch.log_softmax(first.logits[0, -1].float(), dim=-1)  # predicts each continuation's first token
    order = sorted(range(len(conts)), key=lambda i: len(conts[i]))
    out: list[tuple[float, int]] = [(0.0, 0)] * len(conts)
    i = 0
    while i < len(order):
        longest = len(conts[order[i]])
        j = i + 1
        while j < len(order) and (j - i + 1) * (len(prompt) + len(conts[order[j]])) <= TOKEN_BUDGET:
            longest = len(conts[order[j]])
            j += 1
        idx = order[i:j]
        scores = [float(first_lp[conts[k][0]]) for k in idx]
        if longest > 1:  # tokens after the first are predicted from the continuation's own positions
            ids = torch.zeros((len(idx), longest - 1), dtype=torch.long)
            mask = torch.zeros((len(idx), len(prompt) + longest - 1), dtype=torch.long)
            mask[:, : len(prompt)] = 1
            for r, k in enumerate(idx):
                body = conts[k][:-1]  # the last token is only predicted, never fed
                ids[r, : len(body)] = torch.tensor(body, dtype=torch.long)
                mask[r, len(prompt) : len(prompt) + len(body)] = 1
            batch_cache = copy.deepcopy(cache)
            batch_cache.batch_repeat_interleave(len(idx))
            positions = torch.arange(len(prompt), len(prompt) + longest - 1).expand(len(idx), -1)
            with torch.inference_mode():
                logits = model(
                    input_ids=ids.to(device),
                    attention_mask=mask.to(device),
                    position_ids=positions.to(device),
                    **{cache_arg: batch_cache},
                    use_cache=True,
                ).logits.float()
            lp = torch.log_softmax(logits, dim=-1)
            for r, k in enumerate(idx):
                rest = conts[k][1:]
                if rest:
                    scores[r] += float(
                        lp[r, : len(rest)].gather(1, torch.tensor(rest, device=lp.device)[:, None]).sum()
                    )
        for r, k in enumerate(idx):
            out[k] = (scores[r], len(conts[k]))
        i = j
    return out


def _cache_argument(model) -> str:
    """The forward argument that takes a cache: `cache` in newer transformers, `past_key_values` before."""
    import inspect

    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "cache" if "cache" in inspect.signature(inner.forward).parameters else "past_key_values"


def rank_candidates(
    model, tokenizer, items: list[tuple[str, str, list[str]]], max_len: int, progress: Progress = None
) -> list[dict[str, Any]]:
    """For (prompt, target, distractors): hit = target's mean log-prob/token beats every distractor's;
    margin = target score − mean distractor score. Each candidate is one continuation scored (`progress`)."""
    flat = []
    for prompt, target, distractors in items:
        flat += [(prompt, " " + target)] + [(prompt, " " + d) for d in distractors]
    scored = score_continuations(model, tokenizer, flat, max_len, progress=progress)
    scores = [s / n if n else float("-inf") for s, n in scored]
    out, k = [], 0
    for _, _, distractors in items:
        t, ds = scores[k], scores[k + 1 : k + 1 + len(distractors)]
        k += 1 + len(distractors)
        out.append({"hit": float(all(t > d for d in ds)), "margin": t - sum(ds) / len(ds) if ds else 0.0})
    return out

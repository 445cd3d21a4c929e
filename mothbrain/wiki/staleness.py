"""Staleness proposals: "X changed to Y" statements in recent ingested material, and the pages that still
state X (changed before it was said, never naming Y), each given a dated note quoting the evidence.

Two rules (wiki.staleness_rule). `phrasings`: four phrasings name the old thing ("switched/moved from X to
Y", "replaced X with Y", "no longer use X", "X is deprecated") and any page naming X is checked. `meaning`:
those, and any sentence with a strong change cue, matched to the page sentence nearest in meaning
(mothbrain.wiki.stale_meaning says which cues and when a sentence is superseded)."""

from __future__ import annotations

import datetime as _dt
import re
import time
from dataclasses import dataclass
from typing import Any

from mothbrain.config import Config
from mothbrain.models.embeddings import cosine, load_embedder
from mothbrain.store.documents import iter_documents
from mothbrain.wiki import stale_meaning as sm
from mothbrain.wiki.pages import SENTENCE, Page, Wiki, masked_prose
from mothbrain.wiki.patches import edit, file_edit, make_patch

BLANK_LINE = re.compile(r"\r?\n[ \t]*\r?\n")


# A name: one word, or up to three when the later ones are capitalised ("Google Cloud Run"); case-sensitive
# inside the otherwise case-blind patterns, so "Ansible last week" is "Ansible".
TERM = r"(?:the |our |a |an )?([A-Za-z][\w.+#-]*(?: (?-i:[A-Z])[\w.+#-]*){0,2})"
CHANGES = [
    re.compile(rf"\b(?:switched|moved|migrated|changed|went) (?:over )?from {TERM} to {TERM}", re.I),
    re.compile(rf"\breplaced {TERM} with {TERM}", re.I),
    re.compile(rf"\b(?:no longer|stopped|don't|do not|never) (?:use|using|run|running|rely on) {TERM}", re.I),
    re.compile(rf"\b{TERM} (?:is|was|has been) (?:deprecated|retired|gone|dead|obsolete|abandoned)", re.I),
]
STOPWORDS = set(
    "it this that them those these there here we i you they he she one all any some "
    "under over in on at into onto out of off from with without by for to up down as".split()
)  # "never run under the MCP server" names nothing


@dataclass
class Change:
    old: str
    new: str
    quote: str
    when: float
    source: str  # document id
    cue: str = ""  # the meaning rule's change cue; "" for the four phrasings (a name, checked by name)


def recent_changes(cfg: Config) -> list[Change]:
    """ "X changed to Y" statements in the ingested non-wiki material of the last wiki.staleness_days."""

    out = []
    for doc in iter_documents(cfg, since_days=cfg.wiki.staleness_days):
        if doc.kind == "wiki":
            continue
        when = doc.timestamp or doc.meta.get("file_mtime") or time.time()
        out += changes_in(doc.plain_text(), float(when), doc.doc_id, cfg.wiki.staleness_rule)
    return out


def changes_in(text: str, when: float, source: str, rule: str = "phrasings") -> list[Change]:
    """The changes one text states: the four phrasings, and with rule `meaning` any strong change cue."""
    out = []
    for sentence in SENTENCE.findall(text):
        quote = " ".join(sentence.split())
        for pattern in CHANGES:
            m = pattern.search(sentence)
            if not m:
                continue
            old = m.group(1).strip()
            new = m.group(2).strip() if m.lastindex and m.lastindex >= 2 else ""
            if old.lower() in STOPWORDS or len(old) < 3:
                continue
            out.append(Change(old=old, new=new, quote=quote, when=when, source=source))
            break
        else:
            c = sm.claim(quote) if rule == "meaning" else None
            if c is not None:
                out.append(Change(old=c.old, new=c.new, quote=quote, when=when, source=source, cue=c.cue))
    return out


def staleness_proposals(
    cfg: Config, wiki: Wiki, changes: list[Change] | None = None, embedder=None
) -> list[dict[str, Any]]:
    """Pages that still state what recent material says has changed: by name for the four phrasings, and
    with wiki.staleness_rule `meaning` by the page sentence nearest in meaning for the rest."""
    changes = recent_changes(cfg) if changes is None else changes
    out = _by_name(wiki, [c for c in changes if not c.cue])
    if cfg.wiki.staleness_rule == "meaning":
        out += _by_meaning(cfg, wiki, [c for c in changes if c.cue], embedder)
    return out


def _by_name(wiki: Wiki, changes: list[Change]) -> list[dict[str, Any]]:
    """One pass over each page for all the changed names at once (one regex), so the time grows with
    pages + changes, not their product."""
    by_name: dict[str, list[Change]] = {}
    for ch in sorted(changes, key=lambda c: -c.when):  # the newest evidence first
        by_name.setdefault(ch.old.lower(), []).append(ch)
    if not by_name:
        return []
    names = re.compile(r"\b(" + "|".join(re.escape(n) for n in sorted(by_name, key=len, reverse=True)) + r")\b", re.I)
    out = []
    for page in wiki.pages:
        masked = masked_prose(page)
        page_time = page.updated or page.mtime
        flagged: set[str] = set()
        for m in names.finditer(masked):
            said = m.group(1)
            for ch in by_name[said.lower()] if said.lower() not in flagged else []:
                if ch.when <= page_time:
                    continue  # the page was changed after this was said
                if ch.old[:1].isupper() and said != ch.old:
                    continue  # "from Fabric to Ansible" names a tool: "fabric" on a page is another word
                if ch.new and re.search(rf"\b{re.escape(ch.new)}\b", page.text, re.I):
                    continue  # the page already knows the new way
                start = max(masked.rfind(c, 0, m.start()) for c in ".!?\n") + 1
                ends = [e for e in (masked.find(c, m.end()) for c in ".!?\n") if e >= 0]
                end = min(ends) + 1 if ends else len(masked)
                blank = BLANK_LINE.search(page.text, m.end())
                para_end = blank.start() if blank else -1
                flagged.add(said.lower())
                out.append(
                    _staleness(page, page.text[start:end].strip(), ch, len(page.text) if para_end < 0 else para_end)
                )
                break
    return out


def _by_meaning(cfg: Config, wiki: Wiki, changes: list[Change], embedder=None) -> list[dict[str, Any]]:
    """Each change against the page sentences nearest it in meaning; stale_meaning.contradicts judges."""
    if not changes:
        return []
    sentences = []  # (page index, start, end, text): offsets into the page's text
    for i, page in enumerate(wiki.pages):
        masked = masked_prose(page)
        for m in SENTENCE.finditer(masked):
            text = " ".join(m.group(0).split())
            if len(sm.content(text)) >= 2:
                sentences.append((i, m.start(), m.end(), text))
    if not sentences:
        return []
    embedder = embedder or load_embedder(cfg)
    sims = cosine(embedder.encode([c.quote for c in changes]), embedder.encode([s[3] for s in sentences]))
    floor = min(sm.SIM_MIN, sm.SIM_IMPLICIT)
    found = []  # (similarity, page index, sentence, change, why)
    for ch, row in zip(changes, sims):
        hits: list[tuple] = []
        for si in row.argsort(descending=True).tolist():
            sim = float(row[si])
            if sim < floor or len(hits) >= sm.MAX_PAGES:
                break
            i, start, end, text = sentences[si]
            page = wiki.pages[i]
            if any(h[1] == i for h in hits) or ch.when <= (page.updated or page.mtime):
                continue
            claim = sm.Claim(old=ch.old, new=ch.new, cue=ch.cue)
            why = sm.contradicts(text, page.text, ch.quote, claim, sim)
            if why:
                hits.append((sim, i, (start, end), ch, why))
        found += hits
    out, per_page = [], {}
    for sim, i, (start, end), ch, why in sorted(found, key=lambda h: -h[0]):
        if per_page.get(i, 0) >= sm.MAX_PER_PAGE:
            continue
        per_page[i] = per_page.get(i, 0) + 1
        page = wiki.pages[i]
        blank = BLANK_LINE.search(page.text, end)
        p = _staleness(page, page.text[start:end].strip(), ch, blank.start() if blank else len(page.text))
        p["score"] = round(min(1.0, sim), 3)
        p["rationale"] = p["rationale"].rstrip(".") + f"; {why} (cue: {ch.cue!r})."
        p["detail"].update(rule="meaning", cue=ch.cue, similarity=round(sim, 3))
        out.append(p)
    return out


def _staleness(page: Page, statement: str, ch: Change, at: int) -> dict[str, Any]:
    day = _dt.datetime.fromtimestamp(ch.when, _dt.timezone.utc).date().isoformat()
    nl = page.newline
    note = f'{nl}{nl}> [!warning] Possibly outdated: on {day}, {ch.source} said: "{ch.quote}"'
    files = [file_edit(page.rel, page.sha256, [edit(at, at, "", note)])]
    return {
        "kind": "staleness",
        "target": page.rel,
        "source_title": page.title,
        "text": f'{page.title} may be outdated about {ch.old or ch.new}: "{statement[:120]}"',
        "score": 0.9 if ch.new else 0.7,
        "rationale": (
            f'the page says "{statement[:200]}", but on {day} {ch.source} said "{ch.quote[:200]}"'
            + (f" and the page never mentions {ch.new}" if ch.new else "")
            + "; the page was last changed before that."
        ),
        "patch": make_patch(files, {page.rel: page.text}),
        "fingerprint": f"staleness:{page.rel}:{(ch.old or ch.new).lower()}:{ch.source}",
        "detail": {
            "old": ch.old,
            "new": ch.new,
            "evidence": ch.quote,
            "evidence_date": day,
            "evidence_source": ch.source,
        },
    }

"""Staleness proposals: "X changed to Y" statements in recent ingested material, and the pages that still
state X (changed before it was said, never naming Y), each given a dated note quoting the evidence."""

from __future__ import annotations

import datetime as _dt
import re
import time
from dataclasses import dataclass
from typing import Any

from mothbrain.config import Config
from mothbrain.store.documents import iter_documents
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
STOPWORDS = set("it this that them those these there here we i you they he she one all any some".split())


@dataclass
class Change:
    old: str
    new: str
    quote: str
    when: float
    source: str  # document id


def recent_changes(cfg: Config) -> list[Change]:
    """ "X changed to Y" statements in the ingested non-wiki material of the last wiki.staleness_days."""

    out = []
    for doc in iter_documents(cfg, since_days=cfg.wiki.staleness_days):
        if doc.kind == "wiki":
            continue
        when = doc.timestamp or doc.meta.get("file_mtime") or time.time()
        for sentence in SENTENCE.findall(doc.plain_text()):
            for pattern in CHANGES:
                m = pattern.search(sentence)
                if not m:
                    continue
                old = m.group(1).strip()
                new = m.group(2).strip() if m.lastindex and m.lastindex >= 2 else ""
                if old.lower() in STOPWORDS or len(old) < 3:
                    continue
                out.append(
                    Change(old=old, new=new, quote=" ".join(sentence.split()), when=float(when), source=doc.doc_id)
                )
                break
    return out


def staleness_proposals(cfg: Config, wiki: Wiki, changes: list[Change] | None = None) -> list[dict[str, Any]]:
    """Pages that still state what recent material says has changed; one pass over each page for all the
    changed names at once (one regex), so the time grows with pages + changes, not their product."""
    changes = recent_changes(cfg) if changes is None else changes
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


def _staleness(page: Page, statement: str, ch: Change, at: int) -> dict[str, Any]:
    day = _dt.datetime.fromtimestamp(ch.when, _dt.timezone.utc).date().isoformat()
    nl = page.newline
    note = f'{nl}{nl}> [!warning] Possibly outdated: on {day}, {ch.source} said: "{ch.quote}"'
    files = [file_edit(page.rel, page.sha256, [edit(at, at, "", note)])]
    return {
        "kind": "staleness",
        "target": page.rel,
        "source_title": page.title,
        "text": f'{page.title} may be outdated about {ch.old}: "{statement[:120]}"',
        "score": 0.9 if ch.new else 0.7,
        "rationale": (
            f'the page says "{statement[:200]}", but on {day} {ch.source} said "{ch.quote[:200]}"'
            + (f" and the page never mentions {ch.new}" if ch.new else "")
            + "; the page was last changed before that."
        ),
        "patch": make_patch(files, {page.rel: page.text}),
        "fingerprint": f"staleness:{page.rel}:{ch.old.lower()}:{ch.source}",
        "detail": {
            "old": ch.old,
            "new": ch.new,
            "evidence": ch.quote,
            "evidence_date": day,
            "evidence_source": ch.source,
        },
    }

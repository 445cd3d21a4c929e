"""Staleness proposals: a recent statement that says something changed ("not any more: we switched to wheat
paste for every spine"), and a page sentence, written before it, about the same thing that still says the
old way ("we glue every spine with PVA"); the page gets a dated note quoting the evidence.

Judged by meaning, not by a few phrasings. For each recent sentence with a change cue (now, these days,
instead, switched, replaced, no longer, stopped, moved to, from now on, ...), the page sentences that share
a content word with it are embedded and compared; a pair is stale when
  * they talk about the same thing: cosine >= wiki.staleness_min_similarity, and the statement repeats a
    share of the page sentence's content words;
  * the statement says a change, not a denial or an addition: its cue stands in a clause without
    "still / also / too / as before / not yet / never / didn't ..." (a change denied or something added);
  * they differ: the page says words the statement does not and the statement says new ones (X → Y), or
    the statement says the shared thing stopped ("we don't keep spare keys there any more");
  * the page does not already know: none of the statement's new words is in the page sentence's paragraph.
The reviewer (wiki review, its staleness rubric) then judges the contradiction itself, when one is set.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import re
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from mothbrain.config import Config
from mothbrain.models.embeddings import load_embedder
from mothbrain.store.documents import iter_documents
from mothbrain.wiki.pages import PARAGRAPH, SENTENCE, Page, Wiki, masked_prose
from mothbrain.wiki.patches import edit, file_edit, make_patch

# A change said: the cue words of "it is different now".
CUE = re.compile(
    r"\b(?:now|nowadays|these days|from now on|from (?:this|next) (?:week|month|term|year|season|spring|summer|"
    r"autumn|winter)|instead|switch(?:ed|ing)?|swapp?(?:ed|ing)?|replac(?:ed|ing)|moved|moving|migrated|"
    r"changed|went|gone|no longer|not any ?more|any ?more|no more|stopped|quit|gave up|given up|dropped|"
    r"ditched|got rid of|retired|deprecated|abandoned|ended|closed|shut down)\b",
    re.I,
)
# ... of which these say the thing itself stopped, not that it became something else.
CEASED = re.compile(
    r"\b(?:no longer|not any ?more|any ?more|no more|stopped|quit|gave up|given up|dropped|ditched|got rid of|"
    r"retired|deprecated|abandoned|ended|closed|shut down|(?:is|are|was|were|has been|have been|'s) gone)\b",
    re.I,
)
# A clause that denies the change or only adds to what was (the page still holds).
HOLDS = re.compile(
    r"\b(?:still|yet|also|too|as well|as before|as always|as ever|same as|never|not|no|didn't|don't|doesn't|"
    r"haven't|hasn't|won't|isn't|aren't|wasn't|weren't|talked about|thinking (?:about|of)|considering|"
    r"plan(?:ning)? to|might|may|maybe|would|could|should)\b|n't\b",
    re.I,
)
CLAUSE = re.compile(r"[;:,()]|\s[-–—]\s|\s(?:but|and|while|whereas|although|though|so)\s", re.I)
TOKEN = re.compile(r"[A-Za-z0-9][\w'’-]*")
STOPWORDS = set(
    """a an the and or but if of to in on at by for with from into onto over under after before about as than
    then so that this these those there here it its it's is are was were be been being am do does did done
    doing have has had having i we you he she they me us him her them my our your his their one ones all any
    some each every other such no not nor only own same very just also too still yet again ever never always
    can could will would shall should may might must now these days instead no longer anymore any more
    nowadays switched switch switching swapped replaced replace moved move moving migrated changed change
    went gone go goes going get gets got getting make makes made use uses used using keep keeps kept put
    take takes took taken give gave given say says said come came become became stopped stop quit
    dropped ditched retired deprecated abandoned ended closed shut up down out off last ago month months
    year years week weeks recently lately today yesterday since until while when where which who whom what
    why how because though although whereas through well back lot lots thing things way ways bit both either neither
    something nothing everything someone nobody everybody anyone whatever""".split()
)
MIN_SHARE = 0.25  # of the page sentence's content words the statement repeats (same thing, X → Y)
MIN_SHARE_CEASED = 0.5  # ... when it says the thing stopped: it must be about that very thing


@dataclass
class Statement:
    """A recent sentence with a change cue, from ingested material."""

    text: str
    when: float
    source: str  # document id


@dataclass
class Verdict:
    similarity: float
    shared: list[str]
    old: list[str]  # what only the page says
    new: list[str]  # what only the statement says
    why: str  # "changed" | "ceased"


def _stem(word: str) -> str:
    """A light stemmer, the same on both sides: spines/spine, glazes/glaze, tuned/tune, shipped/shipping."""
    w = word.lower().replace("’", "'").removesuffix("'s").strip("'-")
    if w.endswith("ies") and len(w) > 4:
        w = w[:-3] + "y"
    elif re.search(r"(?:s|x|z|ch|sh)es$", w):
        w = w[:-2]
    elif w.endswith("s") and not w.endswith(("ss", "us", "is")) and len(w) > 3:
        w = w[:-1]
    elif w.endswith("ing") and len(w) > 5:
        w = w[:-3]
    elif w.endswith("ed") and len(w) > 4:
        w = w[:-2]
    if len(w) > 3 and w[-1] == w[-2] and w[-1] not in "aeiouls":
        w = w[:-1]  # submitted → submit, shipping → ship
    return w[:-1] if w.endswith("e") and len(w) > 3 else w


def _same(a: str, b: str) -> bool:
    """One word, the stemmer aside: insured/insurance, night/nightly (a shared start of 4+ letters)."""
    return a == b or (min(len(a), len(b)) >= 4 and (a.startswith(b) or b.startswith(a)))


def _key(word: str) -> str:
    """What _same() needs two words to share: an index key that finds every word it calls the same."""
    return word[:4]


def _within(word: str, words: list[str]) -> bool:
    return any(_same(word, w) for w in words)


def content_words(text: str) -> list[str]:
    """Lower-cased, lightly stemmed words that carry what a sentence says (no glue, no cue words)."""
    out: list[str] = []
    for tok in TOKEN.findall(text):
        if tok.lower() in STOPWORDS:
            continue
        w = _stem(tok)
        if w and w not in STOPWORDS and w not in out:
            out.append(w)
    return out


def change_clauses(statement: str) -> list[str]:
    """The clauses of `statement` that say a change: a cue, and nothing that denies it or only adds."""
    return [c for c in CLAUSE.split(statement) if CUE.search(c) and (CEASED.search(c) or not HOLDS.search(c))]


def says_a_change(sentence: str) -> bool:
    s = sentence.strip()
    return bool(s) and not s.endswith("?") and bool(change_clauses(s))


def judge(page_sentence: str, statement: str, similarity: float, paragraph: str, min_similarity: float):
    """The local rule: a Verdict when `statement` makes `page_sentence` stale, else None (see the module doc)."""
    if similarity < min_similarity:
        return None
    clauses = change_clauses(statement)
    if not clauses:
        return None
    page_words, said = content_words(page_sentence), content_words(statement)
    shared = [w for w in page_words if _within(w, said)]
    if not shared:
        return None
    old = [w for w in page_words if not _within(w, said)]
    new = [w for w in said if not _within(w, page_words)]
    around = content_words(paragraph)
    if any(_within(w, around) for w in new):
        return None  # the page already says the new way
    share = len(shared) / len(page_words)
    ceased = any(CEASED.search(c) for c in clauses)
    if ceased and share >= MIN_SHARE_CEASED:
        return Verdict(similarity, shared, old, new, "ceased")
    if old and new and share >= MIN_SHARE:
        return Verdict(similarity, shared, old, new, "changed")
    return None


def recent_statements(cfg: Config) -> list[Statement]:
    """Sentences that say a change, in the ingested non-wiki material of the last wiki.staleness_days."""
    out = []
    for doc in iter_documents(cfg, since_days=cfg.wiki.staleness_days):
        if doc.kind == "wiki":
            continue
        when = float(doc.timestamp or doc.meta.get("file_mtime") or time.time())
        for sentence in SENTENCE.findall(doc.plain_text()):
            if says_a_change(sentence):
                out.append(Statement(text=" ".join(sentence.split()), when=when, source=doc.doc_id))
    return out


@dataclass
class _PageSentence:
    page: Page
    text: str
    paragraph: str  # the rest of its paragraph
    para_end: int  # where the note goes


def _page_sentences(wiki: Wiki) -> list[_PageSentence]:
    out = []
    for page in wiki.pages:
        masked = masked_prose(page)
        for para in PARAGRAPH.finditer(masked):
            sentences = [s.strip() for s in SENTENCE.findall(para.group(0)) if len(s.split()) >= 3]
            for s in sentences:
                rest = " ".join(x for x in sentences if x is not s)
                out.append(_PageSentence(page, " ".join(s.split()), rest, para.end()))
    return out


def stale_pairs(wiki: Wiki, statements: list[Statement], embedder, min_similarity: float):
    """(page sentence, statement, verdict) for every stale pair; only page sentences that share a content
    word with some statement are embedded, so the work grows with pages + statements, not their product."""
    statements = [s for s in statements if says_a_change(s.text)]
    if not statements:
        return []
    by_key: dict[str, list[int]] = {}
    for j, s in enumerate(statements):
        for k in {_key(w) for w in content_words(s.text)}:
            by_key.setdefault(k, []).append(j)
    candidates: list[tuple[_PageSentence, list[int]]] = []
    for ps in _page_sentences(wiki):
        page_time = ps.page.updated or ps.page.mtime
        keys = {_key(w) for w in content_words(ps.text)}
        hits: dict[int, int] = {}
        for k in keys:
            for j in by_key.get(k, []):
                hits[j] = hits.get(j, 0) + 1
        # judge() needs a share of the page sentence's words repeated: only such pairs are embedded
        js = sorted(j for j, n in hits.items() if n >= MIN_SHARE * len(keys) and statements[j].when > page_time)
        if js:
            candidates.append((ps, js))
    if not candidates:
        return []
    s_vec = embedder.encode([s.text for s in statements]).numpy()
    p_vec = embedder.encode([ps.text for ps, _ in candidates]).numpy()
    out = []
    for i, (ps, js) in enumerate(candidates):
        # The closest statement decides: it is the one about what this sentence is about (one about
        # something else that merely shares a word must not outvote it, nor the one the page already knows).
        sims = s_vec[js] @ p_vec[i]
        j = int(np.argmax(sims))
        v = judge(ps.text, statements[js[j]].text, float(sims[j]), ps.paragraph, min_similarity)
        if v is not None:
            out.append((ps, statements[js[j]], v))
    return out


def staleness_proposals(
    cfg: Config, wiki: Wiki, statements: list[Statement] | None = None, embedder=None
) -> list[dict[str, Any]]:
    """One proposal per stale page sentence, its note under the sentence's paragraph."""
    statements = recent_statements(cfg) if statements is None else statements
    if not statements:
        return []
    embedder = embedder or load_embedder(cfg)
    out = []
    for ps, st, v in stale_pairs(wiki, statements, embedder, cfg.wiki.staleness_min_similarity):
        out.append(_staleness(ps, st, v))
    return out


def _staleness(ps: _PageSentence, st: Statement, v: Verdict) -> dict[str, Any]:
    page = ps.page
    day = _dt.datetime.fromtimestamp(st.when, _dt.timezone.utc).date().isoformat()
    nl = page.newline
    note = f'{nl}{nl}> [!warning] Possibly outdated: on {day}, {st.source} said: "{st.text}"'
    at = ps.para_end
    files = [file_edit(page.rel, page.sha256, [edit(at, at, "", note)])]
    about = " ".join(v.shared[:3])
    said = (
        f"says {' '.join(v.new[:4])} where the page says {' '.join(v.old[:4])}"
        if v.why == "changed"
        else "says it stopped"
    )
    key = hashlib.blake2b(" ".join(content_words(ps.text)).encode(), digest_size=6).hexdigest()
    return {
        "kind": "staleness",
        "target": page.rel,
        "source_title": page.title,
        "text": f'{page.title} may be outdated about {about}: "{ps.text[:120]}"',
        "score": round(min(1.0, max(0.0, v.similarity)), 4),
        "rationale": (
            f'the page says "{ps.text[:200]}", but on {day} {st.source} said "{st.text[:200]}": it talks about '
            f"the same thing ({', '.join(v.shared[:4])}; similarity {v.similarity:.2f}) and {said}; "
            "the page was last changed before that."
        ),
        "patch": make_patch(files, {page.rel: page.text}),
        "fingerprint": f"staleness:{page.rel}:{key}:{st.source}",
        "detail": {
            "statement": ps.text,
            "evidence": st.text,
            "evidence_date": day,
            "evidence_source": st.source,
            "shared": v.shared,
            "old": v.old,
            "new": v.new,
            "judged": v.why,
            "similarity": round(v.similarity, 4),
        },
    }

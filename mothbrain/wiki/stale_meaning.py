"""Staleness by meaning (wiki.staleness_rule: meaning): a recent sentence that says one thing was replaced
by another, or has ended, and the page sentence nearest to it in meaning that still says the old thing.

Lived text is full of weak cues ("these days", "I have stopped asking why", "watching the heron instead of
working") and of shared topic words, so the rule asks for much more than a cue and a similar sentence:

1. a strong change cue that marks a replacement or an end (`claim`): "switched/moved/upgraded from X to
   Y", "switched to Y", "replaced X with Y", "X were replaced with Y", "swapped X for Y", "Y instead of /
   rather than X", "X is gone/retired/dropped (in favour of Y)", "no longer X", "not/don't X any more",
   "no more X", "used to X", "gave up on X", "took over ... from X", "Y now, not X". "Stopped"/"quit" count
   only with a new way said in the same sentence ("now", "instead", ...); "instead of" followed by an
   -ing word, or after a past-tense episode ("I went ... instead of"), is one day's choice, not a change;
2. the page sentence nearest in meaning (MiniLM, mothbrain.models.embeddings), at least SIM_MIN alike;
3. the statement's old thing named in that sentence (OLD_SHARE of its content words), and its new thing
   named nowhere on the page; a statement naming no old thing ("we switched to wheat paste for every
   spine") must share a content word with the sentence and be SIM_IMPLICIT alike;
4. said after the page's last change; at most MAX_PER_PAGE proposals on a page and MAX_PAGES pages per
   statement, the most alike first.

With a reviewer configured (wiki.reviewer_url) these are candidates: `wiki review` judges each by the
staleness rubric before anything is merged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

WORD = re.compile(r"[A-Za-z0-9][\w.+#'-]*")
STOP = set(
    """a an the and or but if of to in on at by for with from into onto off over under as is are was were be
    been being am do does did done doing have has had having it its it's this that these those there here
    we i you he she they them us our my your his her their me him one all any some no not nor so too very
    just than then now today still again also only even ever never more most much many less few every
    each other another such same what which who whom whose why how when where while will would can could
    shall should may might must about up down out back away instead rather longer last next since ago
    before after during until because though although yet day days week weeks month months year years
    thing things way through via across within without per get gets got go goes went gone
    use used uses using switch switched move moved
    replace replaced swap swapped change changed anymore any more stop stopped quit new old lately""".split()
)
SIM_MIN = 0.4
SIM_IMPLICIT = 0.5
SIM_SLOT = 0.6
OLD_SHARE = 0.6
MAX_PER_PAGE = 2
MAX_PAGES = 3

_P = r"([^,;:.!?()]+)"  # a phrase: the rest of the clause, trimmed by `_phrase`
BEFORE = r"(?:^|[,;:]\s*)([^,;:.!?()]+?)"  # the clause's words before the cue
CLAIMS = [  # (pattern, group of the old thing or 0, group of the new thing or 0)
    (
        rf"\b(?:switched|moved|migrated|changed|went|upgraded|converted|ported)(?: over)?(?: \w+){{0,3}}? "
        rf"(?:from|off) {_P} (?:to|into|for) {_P}",
        1,
        2,
    ),
    (rf"\breplaced {_P} (?:with|by) {_P}", 1, 2),
    (rf"\bswapped (?:out )?{_P} (?:for|with) {_P}", 1, 2),
    (
        rf"{BEFORE} (?:was|were|has been|have been|got|is being|are being) (?:replaced|swapped out|superseded)"
        rf" (?:with|by|for) {_P}",
        1,
        2,
    ),
    (
        rf"{BEFORE} (?:is|are|was|were|has been|have been|got) (?:gone|retired|dropped|deprecated|"
        rf"abandoned|obsolete)(?: in favou?r of {_P})?",
        1,
        2,
    ),
    (rf"\bused to {_P}(?:,? but now {_P})?", 1, 2),  # not after "be" (PASSIVE): "can be used to publish"
    (rf"\b(?:switched|changed|converted|migrated|went over)(?: over)? to {_P}", 0, 1),
    (rf"\bmoved (?:\w+ ){{0,3}}off {_P}", 1, 0),
    (rf"\bno longer {_P}", 1, 0),
    (rf"(?:\bnot|n't) {_P} any ?more\b", 1, 0),
    (rf"\bno more {_P}", 1, 0),
    (rf"\bgave up(?: on)? {_P}", 1, 0),
    (rf"\btook over (?:\w+ ){{0,4}}from {_P}", 1, 0),
    (rf"\bnow,? not {_P}", 1, 0),
    (rf", not {_P}[.!]?$", 1, 0),  # "..., not nine." only with a change said too (CHANGED)
    (rf"{BEFORE} (?:instead of|rather than|in place of) {_P}", 2, 1),
    (rf"\b(?:stopped|quit) {_P}", 1, 0),  # only with a new way said too (NEW_WAY)
]
CLAIMS = [(re.compile(p, re.I), o, n) for p, o, n in CLAIMS]
CHANGED = re.compile(r"\b(?:now|since|changed?|any ?more|these days|nowadays|from now on|new)\b", re.I)
HYPOTHETICAL = re.compile(r"^\W*(?:if|when|whenever|unless|to|should|would|could)\b|\b(?:if|unless) you\b", re.I)
PASSIVE = re.compile(r"\b(?:be|is|are|was|were|been|being|get|gets|got)\W*$", re.I)
NOW = re.compile(r"\bnow\b(?! that)", re.I)
NUMBER = re.compile(
    r"\b(?:\d[\d.:]*|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|twenty|thirty|forty|fifty|"
    r"sixty|hundred|thousand|half|quarter|monday|tuesday|wednesday|thursday|friday|saturday|sunday)\b",
    re.I,
)
NEW_WAY = re.compile(r"\b(?:now|instead|switched|replaced|nowadays|from now on)\b", re.I)
TRIM = re.compile(
    r"\s\b(?:for|last|since|over|in|on|at|now|and|but|this|because|after|before|when|so|then|to|with|"
    r"by|into|than|instead|rather|these|nowadays|too|again|already|yesterday|today)\b.*$",
    re.I,
)
EPISODE = re.compile(
    r"\b(?:went|spent|lost|took|had|did|made|sat|ate|left|came|saw|slept|wrote|walked|watched|skipped|chose|"
    r"decided|tried|stayed|read)\b",
    re.I,
)


SLOT = "now + a new figure"


@dataclass
class Claim:
    old: str  # "" when the statement names no old thing
    new: str  # "" when it names no new thing
    cue: str


def _phrase(text: str | None, keep_start: bool = False) -> str:
    if not text:
        return ""
    text = " ".join(text.split())
    if keep_start:  # a clause before a cue: its last few words are the thing
        return " ".join(text.split()[-6:])
    lead = re.match(r"(?i)(?:on|at|in|to|for|with)\s+", text)  # "no longer on Monday": keep "Monday"
    body = text[lead.end() :] if lead else text
    return TRIM.sub("", " " + body).strip() if TRIM.search(" " + body) else body


def claim(sentence: str) -> Claim | None:
    """The change a sentence states, or None when it has no strong change cue."""
    if "|" in sentence or HYPOTHETICAL.search(sentence):
        return None  # a table row, or "if you want X instead of Y": nothing said to have changed
    for pattern, o, n in CLAIMS:
        m = pattern.search(sentence)
        if not m:
            continue
        if pattern.pattern.startswith(r"\b(?:stopped|quit)") and not NEW_WAY.search(sentence):
            continue  # "I have stopped asking why": an end with no new way is a mood, not a change
        if pattern.pattern.startswith(r"\bused to") and PASSIVE.search(sentence[: m.start()]):
            continue  # "it can be used to publish": a purpose, not the past
        if pattern.pattern.startswith(", not") and not CHANGED.search(sentence[: m.start()]):
            continue  # "fast is a speed, not a personality": a contrast, not a change
        before_cue = pattern.pattern.startswith(BEFORE)
        old = _phrase(m.group(o), keep_start=before_cue and o == 1) if o else ""
        new = _phrase(m.group(n), keep_start=before_cue and n == 1) if n else ""
        if "instead of" in m.group(0).lower() or "rather than" in m.group(0).lower() or "in place of" in m.group(0):
            first = (old.split() or [""])[0].lower()
            if first.endswith("ing") or EPISODE.search(sentence[: m.start(2)]):
                continue  # "watching the heron instead of working": one day's choice
        if not content(old) and not content(new):
            continue
        return Claim(old=old, new=new, cue=m.group(0).strip()[:80])
    if NOW.search(sentence) and NUMBER.search(sentence):  # "the bisque now goes to cone 04": a new figure
        return Claim(old="", new="", cue=SLOT)
    return None


def stem(word: str) -> str:
    """A crude stem that makes "closes", "closed", "close" one word, and "shipped" and "ships" another."""
    w = word.lower().strip(".'-").removesuffix("'s")
    if w[-1:].isdigit() or not w.isalpha():
        return w
    for suffix, min_len in (("ies", 5), ("ing", 6), ("ed", 5), ("ly", 6), ("s", 4)):
        if w.endswith(suffix) and len(w) >= min_len and not w.endswith("ss"):
            w = w[: -len(suffix)] + ("y" if suffix == "ies" else "")
            break
    if len(w) > 3 and w[-1] == w[-2] and w[-1] not in "aeioulsz":
        w = w[:-1]  # shipp(ed) -> ship
    return w[:-1] if len(w) > 3 and w.endswith("e") else w  # close, clos(ed), clos(es): one stem


def content(text: str) -> set[str]:
    """Content-word stems of a text (stopwords and change words left out)."""
    out = set()
    for w in WORD.findall(text or ""):
        if w.lower() in STOP:
            continue
        s = stem(w)
        if s and s not in STOP and (len(s) > 1 or s.isdigit()):
            out.add(s)
    return out


def contradicts(page_sentence: str, page_text: str, statement: str, c: Claim, sim: float) -> str:
    """Why the statement supersedes the page sentence (the local rule), or "" when it does not."""
    words = content(page_sentence)
    if c.cue == SLOT:  # the same sentence but for a figure: "cone 06" on the page, "cone 04" said now
        ours, theirs = _figures(page_sentence), _figures(statement)
        shared = content(statement) & words - ours - theirs
        if sim < SIM_SLOT or not (ours - theirs and theirs - ours) or len(shared) < 2:
            return ""
        figures = ", ".join(sorted(theirs - ours))
        return f"the same sentence ({', '.join(sorted(shared))}) with {figures} now, {sim:.2f} alike"
    new = content(c.new)
    if c.new and (len(new & words) * 2 > len(new) or re.search(rf"\b{re.escape(c.new)}\b", page_text, re.I)):
        return ""  # the page already names the new way
    if c.old:
        old = content(c.old)
        share = len(old & words) / max(1, len(old))
        if sim < SIM_MIN or share < OLD_SHARE:
            return ""
        return f"it names {c.old!r} ({share:.0%} of its words), {sim:.2f} alike"
    subject = content(statement) - content(c.new)
    shared = subject & words
    if sim < SIM_IMPLICIT or not shared:
        return ""
    return f"the same subject ({', '.join(sorted(shared))}), {sim:.2f} alike, never naming {c.new!r}"


def _figures(text: str) -> set[str]:
    return {m.group(0).lower() for m in NUMBER.finditer(text)}

"""The wiki as the wiki-worker sees it: pages with exact character offsets, so a proposal can be a patch.

`read_wiki(root)` reads every `.md`/`.markdown` file under `root` (hidden folders such as `.git` and
`.obsidian` skipped, files that resolve outside the wiki refused) and returns a `Wiki`: the pages, a
name index (`[[target]]` resolves by file stem, title or a front-matter alias, case-insensitively)
and the files it could not read. Offsets are in characters of the page's text as read (UTF-8), so
`text[start:end]` is exactly what a patch replaces.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from mothbrain.sources.wiki import WIKILINK, resolve_links

SUFFIXES = (".md", ".markdown")
FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.M | re.S)
INLINE_CODE = re.compile(r"`[^`\n]+`")
MD_LINK = re.compile(r"!?\[[^\]\n]*\]\([^)\n]*\)|<https?://[^>\s]+>|https?://\S+")
HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t#]*\r?$", re.M)
PARAGRAPH = re.compile(r"[^\r\n]+(?:\r?\n(?![ \t]*\r?\n)[^\r\n]+)*")  # lines up to a blank line
TABLE_ROW = re.compile(r"^[ \t]*\|.*$", re.M)  # a link's `|` would split a table cell
WORD = re.compile(r"\w[\w'’-]*\w|\w", re.U)
SENTENCE = re.compile(r"[^.!?\n]+[.!?]?")


@dataclass
class Link:
    target: str  # as written, heading and alias dropped
    start: int
    end: int
    visible: str  # the words a reader sees


@dataclass
class Section:
    heading: str  # "" for the text before the first ## heading
    level: int
    start: int  # offset of the heading line (or of the body)
    end: int

    def body(self, text: str) -> str:
        chunk = text[self.start : self.end]
        return chunk.split("\n", 1)[1] if self.heading and "\n" in chunk else ("" if self.heading else chunk)


@dataclass
class Page:
    rel: str  # path inside the wiki, with forward slashes
    text: str
    sha256: str  # of the file's bytes: what every patch is made against
    title: str
    aliases: list[str]
    body_start: int  # first character after the front matter
    links: list[Link]
    sections: list[Section]
    mtime: float
    updated: float | None = None  # front matter updated/date, when it says
    meta: dict = field(default_factory=dict)  # the front matter as read (lang, tags, ...)

    @property
    def stem(self) -> str:
        return Path(self.rel).stem

    def names(self) -> list[str]:
        seen, out = set(), []
        for n in [self.title, *self.aliases, self.stem]:
            k = norm(n)
            if k and k not in seen:
                seen.add(k)
                out.append(n)
        return out

    def opening(self) -> tuple[int, int]:
        """(start, end) of the first paragraph of prose after the title (0-length at the end of the text
        when there is none). Heading lines at the top of a paragraph are not part of it."""
        i = self.body_start
        text = self.text
        for m in PARAGRAPH.finditer(text, i):
            start = m.start()
            while start < m.end() and (HEADING.match(text, start) or text.startswith("---", start)):
                nl = text.find("\n", start, m.end())
                start = m.end() if nl < 0 else nl + 1
            if text[start : m.end()].strip():
                return start, m.end()
        return len(text), len(text)

    @property
    def newline(self) -> str:
        return "\r\n" if "\r\n" in self.text else "\n"

    def prose(self) -> str:
        """The visible words: front matter, code and link syntax gone (what embeddings read)."""
        body, _ = _visible(self.text[self.body_start :])
        return body


@dataclass
class Wiki:
    root: Path
    pages: list[Page]
    problems: list[str] = field(default_factory=list)
    _by_name: dict[str, Page] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        for p in self.pages:  # stems first, so a title never shadows another page's file name
            self._by_name.setdefault(norm(p.stem), p)
            self._by_name.setdefault(norm(p.rel.rsplit(".", 1)[0]), p)
        for p in self.pages:  # then trailing paths ([[b/Fig]] for a/b/Fig.md), as Obsidian writes them
            parts = p.rel.rsplit(".", 1)[0].split("/")
            for k in range(2, len(parts)):
                self._by_name.setdefault(norm("/".join(parts[-k:])), p)
        for p in self.pages:
            for n in p.names():
                self._by_name.setdefault(norm(n), p)

    def resolve(self, target: str) -> Page | None:
        """The page `[[target]]` names: by path, stem, title or alias ([[plants/Fig]] by its last part too)."""
        return self._by_name.get(norm(target)) or self._by_name.get(norm(str(target).rsplit("/", 1)[-1]))

    def page(self, rel: str) -> Page | None:
        return next((p for p in self.pages if p.rel == rel), None)


def norm(name: str) -> str:
    return " ".join(WORD.findall(str(name).lower()))


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_wiki(root: Path) -> Wiki:
    root = Path(root)
    real_root = root.resolve()
    pages, problems = [], []
    for path in sorted(root.rglob("*")):
        rel_parts = path.relative_to(root).parts
        if any(part.startswith(".") for part in rel_parts) or path.suffix.lower() not in SUFFIXES:
            continue
        rel = "/".join(rel_parts)
        try:
            if not path.resolve().is_relative_to(real_root):
                problems.append(f"{rel}: links outside the wiki; skipped")
                continue
            if not path.is_file():
                continue
            data = path.read_bytes()
            mtime = path.stat().st_mtime
        except OSError as exc:
            problems.append(f"{rel}: unreadable ({exc.strerror or exc}); skipped")
            continue
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            problems.append(f"{rel}: not UTF-8 (byte {exc.start}); skipped — re-save it as UTF-8")
            continue
        pages.append(parse_page(rel, text, sha256(data), mtime))
    return Wiki(root=root, pages=pages, problems=problems)


def parse_page(rel: str, text: str, digest: str = "", mtime: float = 0.0) -> Page:
    meta, body_start = _front_matter(text)
    links = [
        Link(target=(m[2] or "").strip(), start=m.start(), end=m.end(), visible=(m[4] or m[2] or "").strip())
        for m in WIKILINK.finditer(text, body_start)
        if not m[1] and (m[2] or "").strip()
    ]
    title = meta.get("title") if isinstance(meta.get("title"), str) and meta["title"].strip() else ""
    headings = [(m.start(), len(m[1]), m[2].strip()) for m in HEADING.finditer(_masked_code(text), body_start)]
    if not title:
        h1 = next((h for h in headings if h[1] == 1), None)
        title = WIKILINK.sub(lambda m: m[4] or m[2] or "", h1[2]) if h1 else Path(rel).stem
    aliases = meta.get("aliases") or meta.get("alias") or []
    aliases = aliases if isinstance(aliases, list) else [aliases]
    aliases = [str(a) for a in aliases if isinstance(a, (str, int)) and not isinstance(a, bool)]
    # Sections: the text before the first ## heading, then one per heading of level 2 (deeper ones stay inside).
    cuts = [(s, lvl, h) for s, lvl, h in headings if lvl == 2]
    sections = []
    starts = [body_start] + [c[0] for c in cuts]
    for k, s in enumerate(starts):
        end = starts[k + 1] if k + 1 < len(starts) else len(text)
        heading, level = ("", 1) if k == 0 else (cuts[k - 1][2], 2)
        sections.append(Section(heading=heading, level=level, start=s, end=end))
    return Page(
        rel=rel,
        text=text,
        sha256=digest or sha256(text.encode("utf-8")),
        title=str(title).strip(),
        aliases=[a.strip() for a in aliases if a.strip()],
        body_start=body_start,
        links=links,
        sections=sections,
        mtime=mtime,
        updated=_meta_time(meta),
        meta=meta,
    )


FRONT_MATTER = re.compile(r"\ufeff?---[ \t]*\r?\n(.*?\r?\n)?(?:---|\.\.\.)[ \t]*(?:\r?\n|$)", re.S)


def _front_matter(text: str) -> tuple[dict, int]:
    """(front matter, offset of the body); a BOM and CRLF line ends are fine, bad YAML is no front matter
    worth reading but still not body (a patch must never edit it)."""
    m = FRONT_MATTER.match(text)
    if not m:
        return {}, 1 if text.startswith("\ufeff") else 0
    try:
        meta = yaml.safe_load(m[1] or "") or {}
    except Exception:  # YAMLError, and ValueError for an impossible date such as 2024-02-30
        meta = {}
    return (meta if isinstance(meta, dict) else {}), m.end()


def _meta_time(meta: dict) -> float | None:
    import datetime as _dt

    for key in ("updated", "modified", "date"):
        v = meta.get(key)
        if isinstance(v, _dt.datetime):
            return (v if v.tzinfo else v.replace(tzinfo=_dt.timezone.utc)).timestamp()
        if isinstance(v, _dt.date):
            return _dt.datetime(v.year, v.month, v.day, tzinfo=_dt.timezone.utc).timestamp()
    return None


def _blank(m: re.Match) -> str:
    return re.sub(r"[^\n]", " ", m.group(0))


def _masked_code(text: str) -> str:
    """The text with fenced code blanked out (offsets kept), so a `# comment` in code is no heading."""
    return FENCE.sub(_blank, text)


def masked_prose(page: Page) -> str:
    """The page's text with everything that is not plain prose blanked, offsets kept: front matter,
    code, headings, wikilinks and markdown links. An unlinked mention is looked for only here."""
    text = " " * page.body_start + page.text[page.body_start :]
    for pattern in (FENCE, INLINE_CODE, WIKILINK, MD_LINK, HEADING, TABLE_ROW):
        text = pattern.sub(_blank, text)
    return text


def _visible(body: str) -> tuple[str, list[str]]:

    body = FENCE.sub(" ", body)
    body = MD_LINK.sub(lambda m: re.sub(r"^!?\[([^\]]*)\].*$", r"\1", m.group(0)), body)
    return resolve_links(body)


def visible_prose(text: str) -> str:

    return " ".join(_visible(text)[0].split())


# A line that is not running prose: a quote or callout (> [!note]), table row, heading, list item, HTML,
# math, a footnote definition or an embed.
NOT_PROSE_LINE = re.compile(r"^[ \t]*(?:[>|#<]|[-*+][ \t]|\d+[.)][ \t]|\$\$|:::|\[\^|!\[)")
INLINE_BLOCK = re.compile(r"\[!\w*|(?:^|[:\s])>\s")  # a callout or quote marker run into a line of text
EMPHASIS = re.compile(r"(\*\*|__|\*|_|~~|==)(?=\S)(.+?)(?<=\S)\1")
SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'“(]?[A-Z0-9])")  # "e.g. this" and "v1.2" stay whole
MARKUP_CHARS = r"[\[\]<>|*_`#{}\\^$]"  # characters of markdown syntax, never of plain prose
MARKUP = re.compile(MARKUP_CHARS + r"|\]\(|^\W|:\s*$")


def prose_paragraphs(text: str) -> list[str]:
    """The paragraphs of plain running prose in `text`, as a reader sees them: a paragraph with any
    line of code, heading, list, table, quote or callout, HTML or math is left out whole; link syntax
    is resolved and emphasis and code markers are dropped."""
    out = []
    for m in PARAGRAPH.finditer(FENCE.sub(_blank, text)):
        if INLINE_BLOCK.search(m.group(0)) or any(NOT_PROSE_LINE.match(line) for line in m.group(0).splitlines()):
            continue
        p = visible_prose(m.group(0)).replace("`", "")
        for _ in range(2):  # **bold _italic_**
            p = EMPHASIS.sub(r"\2", p)
        if p:
            out.append(p)
    return out


def sentences(paragraph: str) -> list[str]:
    return [s.strip() for s in SENTENCE_END.split(paragraph) if s.strip()]


_CALLOUT = re.compile(r"\[![^\]]*\][+-]?")  # > [!note] and its fold mark
_LINE_MARK = re.compile(r"(?m)^\s*(?:[>#]+|[-*+]|\d+[.)])\s+")  # quote, heading, list markers at a line start


def as_plain_prose(text: str) -> str:
    """`text` (a model's answer) as plain running prose: links reduced to their words and emphasis dropped (as
    prose_paragraphs does), callout, quote, heading and list markers and every other markup character dropped,
    unbalanced brackets and quotes removed; "" when fewer than four words are left (the caller then extracts
    an opening from the page instead)."""
    t = visible_prose(_CALLOUT.sub(" ", _LINE_MARK.sub(" ", text))).replace("`", "")
    for _ in range(2):  # **bold _italic_**
        t = EMPHASIS.sub(r"\2", t)
    t = re.sub(MARKUP_CHARS, " ", t)
    for pair in ("()", '""', "“”"):
        if t.count(pair[0]) != t.count(pair[1]) or (pair[0] == pair[1] and t.count(pair[0]) % 2):
            t = t.replace(pair[0], " ").replace(pair[1], " ")
    t = re.sub(r"\s+([:;,.!?])", r"\1", " ".join(t.split())).lstrip(":;,.-– ").rstrip(":;, ")
    return t if is_plain(t) else ""


def is_plain(sentence: str) -> bool:
    """Whether `sentence` reads as plain prose on its own: no markup left over, brackets and quotes balanced."""
    s = sentence.strip()
    return (
        len(s.split()) >= 4  # "Verdict: Good." says nothing on its own
        and not MARKUP.search(s)
        and s.count("(") == s.count(")")
        and s.count('"') % 2 == 0
        and s.count("“") == s.count("”")
    )

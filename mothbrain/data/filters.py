"""De-emphasise factual recall: what the adapter should not spend its capacity memorising.

The adapter is for voice and association, not facts, so long code blocks, markdown tables and
tool output are dropped and URLs become "<url>". Every function is pure: text in, (text, count)
out; `apply_filters` runs them all and returns counts by filter name for the composition table.
"""

from __future__ import annotations

import re

from mothbrain.config import FilterConfig

URL = "<url>"
CODE_DROPPED = "code_blocks"
TABLES_DROPPED = "tables"
URLS_REPLACED = "urls"
TOOL_TURNS = "tool_turns"

# Roles whose turns are machine output (function results, tool calls), never voice or context.
TOOL_ROLES = frozenset({"tool", "function", "tool_result", "tool_call", "function_call", "ipython", "observation"})

# A fence line opens or closes a code block: ``` or ~~~ (3+), optional info string.
_FENCE = re.compile(r"^[ \t]{0,3}(`{3,}|~{3,})[^\n`]*$", re.MULTILINE)

# A markdown table's delimiter row: | --- | :---: | or --- | ---
_TABLE_DELIM = re.compile(
    r"^[ \t]*\|?[ \t]*:?-+:?[ \t]*(?:\|[ \t]*:?-+:?[ \t]*)+\|?[ \t]*$"
    r"|^[ \t]*\|[ \t]*:?-+:?[ \t]*\|[ \t]*$"
)

# Bare URLs (and www. hosts). Trailing punctuation that ends a sentence stays outside the URL.
_URLS = re.compile(r"\b(?:(?:https?|ftp)://|www\.)[^\s<>\"'`]+", re.IGNORECASE)
_URL_TRAIL = ".,;:!?)]}'\""


def is_tool_turn(role: str) -> bool:
    return role.strip().lower() in TOOL_ROLES


def drop_long_code_blocks(text: str, max_lines: int) -> tuple[str, int]:
    """Remove fenced code blocks with more than `max_lines` lines inside the fences.

    An unclosed fence runs to the end of the text (as markdown renders it). Short blocks stay:
    a three-line snippet in a reply is part of how the voice explains things.
    """
    if "```" not in text and "~~~" not in text:
        return text, 0
    out: list[str] = []
    dropped = 0
    pos = 0
    fences = list(_FENCE.finditer(text))
    i = 0
    while i < len(fences):
        opening = fences[i]
        marker = opening.group(1)
        # The closing fence uses the same character and at least as many of them, with no info string.
        j = i + 1
        while j < len(fences):
            f = fences[j]
            if f.group(1)[0] == marker[0] and len(f.group(1)) >= len(marker) and f.group(0).strip() == f.group(1):
                break
            j += 1
        closing = fences[j] if j < len(fences) else None
        body_end = closing.start() if closing else len(text)
        block_end = closing.end() if closing else len(text)
        n_lines = text.count("\n", opening.end() + 1, body_end) if body_end > opening.end() else 0
        if closing is None and body_end > opening.end() + 1 and text[body_end - 1] != "\n":
            n_lines += 1  # the unclosed block's last line has no newline after it
        if n_lines > max_lines:
            out.append(text[pos : opening.start()])
            pos = block_end
            dropped += 1
        i = j + 1
    out.append(text[pos:])
    return _tidy("".join(out)) if dropped else text, dropped


def drop_tables(text: str) -> tuple[str, int]:
    """Remove markdown tables: a header row, its |---| delimiter row and the rows that follow."""
    if "|" not in text or "-" not in text:
        return text, 0
    lines = text.split("\n")
    keep: list[str] = []
    dropped = 0
    i = 0
    while i < len(lines):
        if i + 1 < len(lines) and "|" in lines[i] and _TABLE_DELIM.match(lines[i + 1]):
            j = i + 2
            while j < len(lines) and "|" in lines[j] and lines[j].strip():
                j += 1
            dropped += 1
            i = j
            continue
        keep.append(lines[i])
        i += 1
    return (_tidy("\n".join(keep)), dropped) if dropped else (text, 0)


def _has_www(text: str) -> bool:
    """ "www." in any letter case; lower-cases (a copy of) the text only when a "w" pair is there."""
    return any(p in text for p in ("ww", "WW", "wW", "Ww")) and "www." in text.lower()


def replace_urls(text: str) -> tuple[str, int]:
    """Bare URLs become "<url>": addresses are facts to look up, not voice."""
    if "://" not in text and not _has_www(text):
        return text, 0
    count = 0

    def sub(m: re.Match) -> str:
        nonlocal count
        url = m.group(0)
        stripped = url.rstrip(_URL_TRAIL)
        # Keep a closing bracket that belongs to the URL, e.g. wiki/Foo_(bar).
        while stripped != url and url[len(stripped)] == ")" and stripped.count("(") > stripped.count(")"):
            stripped = url[: len(stripped) + 1]
        count += 1
        return URL + url[len(stripped) :]

    return _URLS.sub(sub, text), count


_BLANKS = re.compile(r"\n[ \t]*\n(?:[ \t]*\n)+")


def _tidy(text: str) -> str:
    """Collapse the blank lines a removed block leaves behind."""
    return _BLANKS.sub("\n\n", text).strip()


def apply_filters(text: str, cfg: FilterConfig) -> tuple[str, dict[str, int]]:
    """All text filters in order; returns the filtered text and counts by filter name."""
    counts: dict[str, int] = {}  # a plain dict: this runs once per chat turn
    if "`" not in text and "~" not in text and "|" not in text and "://" not in text and not _has_www(text):
        return text, counts  # nothing any filter acts on (most turns): one test instead of three calls
    text, n = drop_long_code_blocks(text, cfg.max_code_block_lines)
    if n:
        counts[CODE_DROPPED] = n
    if cfg.drop_tables:
        text, n = drop_tables(text)
        if n:
            counts[TABLES_DROPPED] = n
    if cfg.drop_urls:
        text, n = replace_urls(text)
        if n:
            counts[URLS_REPLACED] = n
    return text, counts

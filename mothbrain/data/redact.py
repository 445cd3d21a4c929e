"""Secrets and personal data out of the text, before anything is written to a training set.

`redact(text, cfg.preprocess.redaction) -> (text, counts_by_type)` replaces API keys, tokens,
private keys, passwords, e-mail addresses and phone numbers with typed placeholders
("<secret:openai_key>", "<email>", "<phone>") so the text stays readable.

Why our own regexes and not `detect-secrets`: we evaluated detect-secrets 1.5 (Yelp). Its
line-by-line scanner ran at 0.13 MB/s here (we need >= 5 MB/s for the whole preprocess), it has
no detector for Anthropic keys, Google `AIza` keys, `github_pat_` tokens, OpenAI project keys
without the `T3BlbkFJ` marker, e-mails or phone numbers, and it flags only the BEGIN line of a
private key, leaving the key body in the text. So the patterns below are compiled once and run
with cheap substring prefilters; where detect-secrets has a pattern for a type, ours follows its
shape (AWS key-id prefixes, GitHub `gh[pousr]_`, Slack `xox?-` and webhooks, Stripe `[rs]k_live_`,
JWT `eyJ…`, keyword assignments, URL basic-auth), widened to current token formats.

Design: every pattern names a literal "trigger" that any match must contain; a pattern runs only
when its trigger occurs in the text (a C-speed substring test), so ordinary prose costs a few
`in` checks plus the phone and keyword scans. Matches from all patterns are merged in priority
order (the specific secret types first, e-mail and phone last), overlapping spans are dropped,
and the text is rebuilt once. tests/test_redact.py measures recall on >= 200 planted secrets and
the false-positive rate on prose (also `python tests/fixtures/secrets/planted.py`).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from mothbrain.config import RedactionConfig

EMAIL = "<email>"
PHONE = "<phone>"


def placeholder(kind: str) -> str:
    return EMAIL if kind == "email" else PHONE if kind == "phone" else f"<secret:{kind}>"


# Placeholders this module writes; concept mining and tests recognise them by this pattern.
PLACEHOLDER_RE = re.compile(r"<(?:email|phone|secret:[a-z_]+)>")


# --------------------------------------------------------------------------- value checks


def _entropy(s: str) -> float:
    """Shannon entropy in bits per character."""
    n = len(s)
    return -sum(c / n * math.log2(c / n) for c in Counter(s).values()) if n else 0.0


def _classes(s: str) -> int:
    return (
        any(c.islower() for c in s)
        + any(c.isupper() for c in s)
        + any(c.isdigit() for c in s)
        + any(not c.isalnum() for c in s)
    )


def _has_digit(s: str) -> bool:
    return any(c.isdigit() for c in s)


# Values after `password =` that are code or config plumbing, not a secret.
_NOT_SECRET_WORDS = {
    "none",
    "null",
    "nil",
    "true",
    "false",
    "undefined",
    "required",
    "optional",
    "string",
    "str",
    "bytes",
    "text",
    "password",
    "secret",
    "token",
    "changeme",
    "redacted",
    "hidden",
    "example",
    "xxxxxx",
    "xxxxxxxx",
    "******",
    "********",
    "<redacted>",
    "env",
    "getpass",
}
_TEMPLATE = re.compile(r"\$[{(]?[A-Za-z_]|%[({]|%[A-Za-z_]+%")  # $VAR ${VAR} $(cmd) %(name)s %VAR%
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")  # name, a.b.c, no digits in head


def _keyword_value_is_secret(m: re.Match) -> bool:
    """A generic `password=`/`api_key:` value: a real-looking secret, not code or prose."""
    value = m.group("value")
    keyword = m.group("kw").lower()
    low = value.lower().strip("'\"`")
    if low in _NOT_SECRET_WORDS or value[0] in "{<([/~" or set(low) <= {"x", "*", "."} or _TEMPLATE.match(value):
        return False  # a variable, template, path or mask
    if PLACEHOLDER_RE.search(value):
        return False
    if _IDENTIFIER.fullmatch(value.rstrip(".:")) and not _random_letters(value):
        return False  # `password = form.password`, `token: str`, `if password == confirm:`
    if keyword.startswith(("pass", "pwd")):
        # Passwords are short and human-made: any non-identifier value of 4+ characters counts.
        return len(value) >= 4
    # Keys and tokens: long and random-looking (letters with digits, or long and high-entropy).
    if len(value) < 12 or _classes(value) < 2:
        return False
    return _entropy(value) >= 3.0 if _has_digit(value) else len(value) >= 20 and _entropy(value) >= 3.5


def _random_letters(value: str) -> bool:
    """Mixed-case letters like `dgDnZafWbkU`: code names are lower/snake/camel (few capitals) or ALL_CAPS."""
    letters = [c for c in value if c.isalpha()]
    if len(value) < 8 or "." in value or "_" in value or not letters:
        return False
    upper = sum(c.isupper() for c in letters) / len(letters)
    return 0.3 <= upper <= 0.7 and _entropy(value) >= 3.0


def _aws_secret_ok(m: re.Match) -> bool:
    v = m.group("value")
    # 40 base64 chars with both cases: a git SHA (lower-case hex) is not mistaken for one.
    return any(c.isupper() for c in v) and any(c.islower() for c in v) and _entropy(v) >= 4.0


def _digits_between(lo: int, hi: int) -> Callable[[re.Match], bool]:
    def ok(m: re.Match) -> bool:
        return lo <= sum(c.isdigit() for c in m.group(0)) <= hi

    return ok


# --------------------------------------------------------------------------- patterns


@dataclass(frozen=True)
class Pattern:
    kind: str  # placeholder type
    regex: re.Pattern
    # The pattern runs only where one of these literals occurs (in the lower-cased text when
    # `lower`): over the whole text when `window` is None (the regex starts with the literal, so
    # re's own literal search is fast), else only within (before, after) characters of each
    # occurrence — for patterns without a literal prefix, whose full scans cost 10x more.
    triggers: tuple[str, ...]
    window: tuple[int, int] | None = None
    lower: bool = False
    group: str | int = 0  # the part of the match that is replaced
    check: Callable[[re.Match], bool] | None = None  # extra validation of a match
    # (literals, reach): a match needs one of these within `reach` characters after its trigger
    # (an assignment's operator, a URL password's "@"); a trigger without one opens no window.
    then: tuple[tuple[str, ...], int] | None = None


_E = r"(?![A-Za-z0-9_\-])"  # a token boundary on the right: not inside a longer token


def _tok(prefix: str, rest: str) -> re.Pattern:
    """A token that starts with a literal `prefix`, not preceded by a token character.

    The boundary check comes after the literal (a lookbehind over it) so that re can still
    search for the literal prefix at C speed.
    """
    n = len(prefix)
    return re.compile(re.escape(prefix) + rf"(?<![A-Za-z0-9_\-].{{{n}}})" + rest, re.DOTALL)


# The keyword of a generic assignment, then quotes/brackets, then = : := => and the value.
_KEYWORDS = (
    r"passwd|password|passphrase|(?<![A-Za-z])pass|pwd|secret|api[_\-]?key|apikey|access[_\-]?key|"
    r"auth[_\-]?token|access[_\-]?token|refresh[_\-]?token|token|credentials?|private[_\-]?key"
)
_VALUE = r"[^\s\"'`,;<>(){}\[\]]{4,512}"

PATTERNS: tuple[Pattern, ...] = (
    # Whole PEM/OpenSSH/PGP private-key blocks; a block cut off before its END line runs to the
    # next blank line or the end of the text.
    Pattern(
        "private_key",
        re.compile(
            r"-----BEGIN[A-Z0-9 ]{0,40} PRIVATE KEY(?: BLOCK)?-----"
            r"[\s\S]*?(?:-----END[A-Z0-9 ]{0,40} PRIVATE KEY(?: BLOCK)?-----|(?=\n[ \t]*\n)|\Z)"
        ),
        ("-----BEGIN",),
    ),
    Pattern("anthropic_key", _tok("sk-ant-", r"[A-Za-z0-9_\-]{20,}"), ("sk-ant-",)),
    Pattern(
        "openai_key",
        _tok("sk-", r"(?:proj-|svcacct-|admin-|None-)?[A-Za-z0-9_\-]{20,}" + _E),
        ("sk-",),
        check=lambda m: _has_digit(m.group(0)),
    ),
    Pattern(
        "aws_access_key",
        re.compile(r"(?:AKIA|ASIA|ABIA|ACCA|A3T[A-Z0-9])(?<![A-Z0-9]....)[A-Z0-9]{16}(?![A-Z0-9])"),
        ("AKIA", "ASIA", "ABIA", "ACCA", "A3T"),
    ),
    # The 40-character secret that travels with an access key id: after an AWS-ish keyword ...
    # (... or anywhere near an access key id: see `_aws_nearby`).
    Pattern(
        "aws_secret_key",
        re.compile(
            r"(?:aws|secret)[A-Za-z_\-]{0,30}[\"'\]]{0,2}\s{0,4}(?:=>|:=|[:=,])\s{0,4}[\"']?"
            r"(?P<value>[A-Za-z0-9/+]{40})(?![A-Za-z0-9/+])",
            re.IGNORECASE,
        ),
        ("aws", "secret"),
        window=(0, 100),
        lower=True,
        group="value",
        check=_aws_secret_ok,
    ),
    Pattern(
        "github_token",
        _tok("g", r"(?:h[pousr]_[A-Za-z0-9]{30,}|ithub_pat_[A-Za-z0-9_]{22,})"),
        ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"),
    ),
    Pattern(
        "gitlab_token",
        _tok("gl", r"(?:pat|dt|ft|rt|soat|ptt|cbt)-[A-Za-z0-9_\-]{20,}"),
        ("glpat-", "gldt-", "glft-", "glrt-", "glsoat-", "glptt-", "glcbt-"),
    ),
    Pattern(
        "slack_webhook",
        re.compile(r"https?://hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9_/\-]+"),
        ("://hooks.slack.com",),
    ),
    Pattern("slack_token", _tok("xox", r"[abposre]-[A-Za-z0-9\-]{10,}"), tuple(f"xox{c}-" for c in "abposre")),
    Pattern("google_api_key", re.compile(r"AIza[0-9A-Za-z_\-]{35}" + _E), ("AIza",)),
    Pattern(
        "stripe_key",
        re.compile(r"(?:sk|rk)_(?:live|test)_(?<![A-Za-z0-9_\-].{8})[0-9A-Za-z]{16,}"),
        ("k_live_", "k_test_"),
    ),
    Pattern("huggingface_token", _tok("hf_", r"[A-Za-z0-9]{30,}" + _E), ("hf_",)),
    Pattern("npm_token", _tok("npm_", r"[A-Za-z0-9]{36}" + _E), ("npm_",)),
    Pattern("pypi_token", _tok("pypi-AgE", r"[A-Za-z0-9_\-]{50,}"), ("pypi-AgE",)),
    Pattern("jwt", re.compile(r"eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.(?:[A-Za-z0-9_\-]{8,})?"), ("eyJ",)),
    Pattern(
        "bearer_token",
        re.compile(r"bearer\s+(?P<value>[A-Za-z0-9._~+/\-]{20,8192}=*)", re.IGNORECASE),
        ("bearer",),
        window=(0, 8220),
        lower=True,
        group="value",
        check=lambda m: _has_digit(m.group("value")),
    ),
    # scheme://user:password@host — only the password goes.
    Pattern(
        "url_password",
        re.compile(
            r"(?<![A-Za-z0-9+.\-])[A-Za-z][A-Za-z0-9+.\-]{1,20}://[^\s/:@<>\"']{1,100}:(?P<value>[^\s/@<>\"']{1,256})@"
        ),
        ("://",),
        window=(22, 360),
        group="value",
        then=(("@",), 358),
    ),
    Pattern(
        "password",
        re.compile(
            r"(?<!<)(?P<kw>" + _KEYWORDS + r")(?:[A-Za-z_\-]{0,20}?)[\"'`\]]{0,2}[ \t]{0,4}(?:=>|:=|==|[:=])[ \t]{0,4}"
            r"[\"'`]?(?P<value>" + _VALUE + ")",
            re.IGNORECASE,
        ),
        ("pass", "pwd", "secret", "key", "token", "credential"),
        window=(8, 580),
        lower=True,
        group="value",
        check=_keyword_value_is_secret,
        then=((":", "="), 33),
    ),  # the keyword's end, 20 letters, 2 quotes, 4 spaces
    # Command-line flags: --password hunter22, --api-key=...
    Pattern(
        "password",
        re.compile(
            r"--(?<![\w\-]--)(?P<kw>password|passwd|token|api[_\-]?key|secret|auth[_\-]token|access[_\-]token)[ =]"
            r"[\"']?(?P<value>" + _VALUE + ")",
            re.IGNORECASE,
        ),
        ("--",),
        group="value",
        check=_keyword_value_is_secret,
    ),
    # HTTP basic auth header: Authorization: Basic dXNlcjpwYXNz
    Pattern(
        "basic_auth",
        re.compile(
            r"authorization[\"']?\s{0,4}[:=]\s{0,4}[\"']?basic\s+(?P<value>[A-Za-z0-9+/]{8,1024}=*)", re.IGNORECASE
        ),
        ("authorization",),
        window=(0, 1060),
        lower=True,
        group="value",
    ),
    Pattern(
        "email",
        re.compile(
            # Unicode-aware (\w): josé.garcía@correo.example.es goes whole, not from the first ASCII run.
            r"(?<![\w.%+\-])[^\W_][\w.%+\-]{0,63}@[^\W_](?:[\w\-]{0,62}[^\W_])?"
            r"(?:\.[^\W_](?:[\w\-]{0,62}[^\W_])?)*\.(?P<tld>[^\W\d_]{2,24})(?![\w\-])"
        ),
        ("@",),
        window=(66, 300),
        check=lambda m: m.group("tld").lower() not in _FILE_EXTENSIONS and not m.group(0).startswith("git@"),
    ),
    # Phones run only inside runs of digits and separators long enough to be one (`_PHONE_RUN`).
    # International: +CC then digit groups, 8-15 digits in all (E.164).
    Pattern(
        "phone",
        re.compile(r"(?<![\w+.])\+[1-9]\d{0,2}(?:[ .\-]?\(\d{1,4}\))?(?:[ .\-/]?\d+(?!\d)){1,6}(?![\w]|[.\-]\d)"),
        (),
        check=_digits_between(8, 15),
    ),
    # North American: (555) 123-4567, 555-123-4567, 555.123.4567, 1-555-123-4567.
    Pattern(
        "phone",
        re.compile(
            r"(?<![\w.+/:\-])(?:1[ .\-])?(?:\(\d{3}\)[ ]?\d{3}[ .\-]|\d{3}([ .\-])\d{3}\1)\d{4}(?![\w\-]|[.:/]\d)"
        ),
        (),
    ),
    # Trunk-prefix national (UK, DE, FR, NL, ...): 020 7946 0958, 07700 900123, 030/1234567, 01 23 45 67 89.
    # One separator kind throughout, so "01-05-2024 10:30" (a date and a time) is not one number.
    Pattern(
        "phone",
        re.compile(
            r"(?<![\w.+/:\-])(?:\(0[1-9]\d{0,4}\)[ ]?\d{3,8}(?:[ \-]\d{2,8})?"
            r"|0[1-9]\d{0,4}([ /\-])\d{2,8}(?:\1\d{2,8}){0,3}"
            r"|0[1-9](?:\.\d{2}){4})(?![\w\-]|[.:/]\d)"
        ),
        (),
        check=_digits_between(9, 13),
    ),
)

# A run of digits and phone separators at least 8 characters long: where a phone can be (a
# leading "+" or "(" falls inside the 2 characters each window adds on the left). Starting on a
# plain \d lets re skip ahead fast.
_PHONE_RUN = re.compile(r"\d[\d ().\-/]{6,}\d")

# user@img@2x.png-style false positives: a "domain" ending in a file extension is not an e-mail.
_FILE_EXTENSIONS = {
    "png",
    "jpg",
    "jpeg",
    "gif",
    "svg",
    "webp",
    "ico",
    "js",
    "ts",
    "css",
    "py",
    "md",
    "json",
    "txt",
    "html",
    "pdf",
    "zip",
    "gz",
    "lock",
    "yaml",
    "yml",
    "toml",
}

_AWS_ID = next(p for p in PATTERNS if p.kind == "aws_access_key")
_EMAIL_INDEX = next(i for i, p in enumerate(PATTERNS) if p.kind == "email")
_AWS_NEARBY = re.compile(r"(?<![A-Za-z0-9/+=])(?P<value>[A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])")
_AWS_WINDOW = 300  # characters around an access key id searched for its secret


def _aws_nearby(text: str, id_spans: Iterable[tuple[int, int]]) -> Iterable[tuple[int, int]]:
    for start, end in id_spans:
        lo, hi = max(0, start - _AWS_WINDOW), min(len(text), end + _AWS_WINDOW)
        # Never past a NUL: in `redact_many`'s joined texts it separates one text from the next.
        lo = max(lo, text.rfind("\x00", 0, start) + 1)
        stop = text.find("\x00", end, hi)
        hi = hi if stop == -1 else stop
        for m in _AWS_NEARBY.finditer(text, lo, hi):
            if _aws_secret_ok(m):
                yield m.span("value")


# --------------------------------------------------------------------------- the pass


def _merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    spans.sort()
    out: list[tuple[int, int]] = []
    for s, e in spans:
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


def _windows(hay: str, p: Pattern) -> list[tuple[int, int]]:
    (before, after), (then, reach) = p.window, p.then or ((), 0)
    n, spans = len(hay), []
    for t in p.triggers:
        i = hay.find(t)
        while i != -1:
            end = i + len(t)
            if not then or any(hay.find(c, end, end + reach) != -1 for c in then):
                spans.append((max(0, i - before), min(n, end + after)))
            i = hay.find(t, i + 1)
    return _merge(spans)


_MARGIN = 4  # characters past a window end, so right-hand lookaheads see the real next characters


def _trigger_table(lower: bool) -> list[tuple[str, tuple[int, ...]]]:
    table: dict[str, list[int]] = {}
    for i, p in enumerate(PATTERNS):
        if p.lower == lower:
            for t in p.triggers:
                table.setdefault(t, []).append(i)
    return [(t, tuple(ix)) for t, ix in table.items()]


# Each distinct trigger is looked for once per text; it switches on the patterns that need it.
_CASED_TRIGGERS = _trigger_table(lower=False)
_LOWER_TRIGGERS = _trigger_table(lower=True)
# Most token prefixes contain "_", "-" or "://", which ordinary prose often lacks: one test for
# the gate saves the tests for every trigger behind it (a trigger is behind a gate it contains).
_GATES = ("_", "-", "://")
_GATED = [
    (gate, [(t, ix) for t, ix in _CASED_TRIGGERS if gate in t and not any(g in t for g in _GATES[:k])])
    for k, gate in enumerate(_GATES)
]
_UNGATED = [(t, ix) for t, ix in _CASED_TRIGGERS if not any(g in t for g in _GATES)]
_PHONES = tuple(i for i, p in enumerate(PATTERNS) if p.kind == "phone")


def find_spans(text: str, cfg: RedactionConfig | None = None) -> list[tuple[int, int, str]]:
    """Non-overlapping (start, end, kind) spans to redact, in text order."""
    emails = cfg.emails if cfg else True
    allow = [a for a in (cfg.allow if cfg else []) if a]
    n = len(text)
    lower = text.lower()
    # str.lower() can change the length of non-ASCII text; then positions in it are not positions
    # in `text`, and the lower-case patterns scan the whole text instead of windows.
    aligned = len(lower) == n
    active: set[int] = set()
    for t, ix in _UNGATED:
        if t in text:
            active.update(ix)
    for gate, triggers in _GATED:
        if gate in text:
            for t, ix in triggers:
                if t in text:
                    active.update(ix)
    for t, ix in _LOWER_TRIGGERS:
        if t in lower:
            active.update(ix)
    # Every phone pattern needs 8+ digits: ten C-speed counts decide before any phone scan runs.
    if (cfg is None or cfg.phones) and sum(map(text.count, "0123456789")) >= 8:
        active.update(_PHONES)
    if not emails:
        active.discard(_EMAIL_INDEX)
    taken: list[tuple[int, int, str]] = []

    def free(s: int, e: int) -> bool:
        return all(e <= ts or s >= te for ts, te, _ in taken)

    phone_windows: list[tuple[int, int]] | None = None
    for i in sorted(active):  # PATTERNS order is priority order
        p = PATTERNS[i]
        if p.kind == "phone":
            if phone_windows is None:
                runs = _PHONE_RUN.finditer(text)
                phone_windows = _merge([(max(0, m.start() - 2), m.end()) for m in runs])
            windows = phone_windows
        elif p.window is None or (p.lower and not aligned):
            windows = [(0, n)]
        else:
            windows = _windows(lower if p.lower else text, p)
        for ws, we in windows:
            for m in p.regex.finditer(text, ws, min(n, we + _MARGIN)):
                if p.check is not None and not p.check(m):
                    continue
                s, e = m.span(p.group)
                if s == e or not free(s, e):
                    continue
                if allow and any(text[s:e] in a or a in m.group(0) for a in allow):
                    continue
                taken.append((s, e, p.kind))
        if p is _AWS_ID:
            ids = [(s, e) for s, e, k in taken if k == "aws_access_key"]
            for s, e in _aws_nearby(text, ids):
                if free(s, e):
                    taken.append((s, e, "aws_secret_key"))
    taken.sort()
    return taken


def redact(text: str, cfg: RedactionConfig | None = None) -> tuple[str, dict[str, int]]:
    """`text` with secrets and personal data replaced by typed placeholders, and counts by type.

    With `cfg.enabled` false the text comes back unchanged. Secrets are always redacted when
    enabled; e-mail addresses and phone numbers follow `cfg.emails` / `cfg.phones`; strings in
    `cfg.allow` are never touched.
    """
    if not text or (cfg is not None and not cfg.enabled):
        return text, {}
    spans = find_spans(text, cfg)
    if not spans:
        return text, {}
    out: list[str] = []
    counts: Counter[str] = Counter()
    pos = 0
    for s, e, kind in spans:
        out.append(text[pos:s])
        out.append(placeholder(kind))
        counts[kind] += 1
        pos = e
    out.append(text[pos:])
    return "".join(out), dict(counts)


# Joins the texts of `redact_many`. No pattern can match across it: \x00 is in no pattern's
# character classes (and is not whitespace to \s), and the blank lines end an unterminated key block.
_JOIN = "\n\n\x00\n\n"


_GROUP = 1 << 22  # chars of texts `redact_many` joins for one pass: a huge document is never copied whole


def redact_many(texts: list[str], cfg: RedactionConfig | None = None) -> tuple[list[str], dict[str, int]]:
    """`redact` for each of `texts` (one document's turns, title, names), in one pass over their
    concatenation (about `_GROUP` chars at a time), so the fixed cost of a pass (trigger tests, the phone
    scan) is paid once, not per short chat turn; texts with nothing to redact come back as they are, not
    copied. Falls back to one pass per text when a text contains the separator's NUL."""
    if len(texts) < 2 or (cfg is not None and not cfg.enabled) or any("\x00" in t for t in texts):
        return _redact_each(texts, cfg)
    out: list[str] = []
    counts: Counter[str] = Counter()
    i = 0
    while i < len(texts):
        j, size = i + 1, len(texts[i])
        while j < len(texts) and size + len(texts[j]) <= _GROUP:
            size, j = size + len(texts[j]), j + 1
        joined = _JOIN.join(texts[i:j])
        done, found = redact(joined, cfg)
        parts = texts[i:j] if done is joined else done.split(_JOIN)
        if len(parts) != j - i:
            return _redact_each(texts, cfg)
        out += parts
        counts.update(found)
        i = j
    return out, dict(counts)


def _redact_each(texts: list[str], cfg: RedactionConfig | None) -> tuple[list[str], dict[str, int]]:
    out, counts = [], Counter()
    for t in texts:
        text, c = redact(t, cfg)
        out.append(text)
        counts.update(c)
    return out, dict(counts)


INGEST_COUNTS = "ingest_redacted"  # meta key of the counts redacted at ingest (see `redact_doc`)

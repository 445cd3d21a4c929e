"""Times as the records write them (ISO 8601 in UTC, to the second), and the "now" that recency is
measured from."""

from __future__ import annotations

import datetime as _dt
import time
from typing import Any

DAY = 86400.0  # seconds


def now_iso() -> str:
    """Now, as every record writes it ("2026-05-14T21:40:03+00:00")."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def parse_time(value: str | None) -> _dt.datetime | None:
    """An ISO time from a record as an aware datetime (None when absent or unreadable)."""
    if not value:
        return None
    try:
        t = _dt.datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return None
    return t if t.tzinfo else t.replace(tzinfo=_dt.timezone.utc)


def parse_pinned_time(value: Any) -> float | None:
    """`ingest.now` as seconds since the epoch: None when empty (the clock), else an ISO 8601 time
    ("2025-05-20", "2025-05-20T00:00:00Z"; no zone means UTC). Raises ValueError when unreadable."""
    if value in (None, ""):
        return None
    if isinstance(value, _dt.date) and not isinstance(value, _dt.datetime):  # YAML reads 2025-05-20 as a date
        value = _dt.datetime(value.year, value.month, value.day)
    if isinstance(value, str):
        text = value.strip()
        value = _dt.datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
    if not isinstance(value, _dt.datetime):
        raise ValueError(f"not a time: {value!r}")
    return (value if value.tzinfo else value.replace(tzinfo=_dt.timezone.utc)).timestamp()


def reference_now(cfg) -> float:
    """The "now" that "recent" is measured from (preprocess's recent flags, dream's recent material, the
    wiki's staleness window): `ingest.now` when it pins one, so the same material gives the same data set
    on any day (the demo), else the clock."""
    pinned = parse_pinned_time(cfg.ingest.now)
    return time.time() if pinned is None else pinned

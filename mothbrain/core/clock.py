"""Times as the records write them (ISO 8601 in UTC, to the second), and the "now" that recency is
measured from."""

from __future__ import annotations

import datetime as _dt
import time

from mothbrain.config import parse_pinned_time

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


def reference_now(cfg) -> float:
    """The "now" that "recent" is measured from (preprocess's recent flags, dream's recent material, the
    wiki's staleness window): `ingest.now` when it pins one, so the same material gives the same data set
    on any day (the demo), else the clock."""
    pinned = parse_pinned_time(cfg.ingest.now)
    return time.time() if pinned is None else pinned

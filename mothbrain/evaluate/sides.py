"""The sides every eval figure is measured for — adapter, base, current — on one loaded model.

`use(model, who)` makes the model act as one side (the base is the model with its adapters disabled);
`figure_key(name, who)` names a figure for a side (the adapter's is the bare name).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

WHO = ("adapter", "base", "current")


def figure_key(name: str, who: str) -> str:
    return name if who == "adapter" else f"{name}_{who}"


@contextlib.contextmanager
def use(model, who: str) -> Iterator[None]:
    """Make `model` act as the adapter, the current adapter, or the base (adapters disabled)."""
    if who == "base":
        with model.disable_adapter():
            yield
    else:
        model.set_adapter(who)
        yield

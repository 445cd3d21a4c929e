"""The training text format, in one place: conversations as "Speaker: text" lines, then the voice's prefix.

    User: What do figs remind you of?
    Moth: Lanterns, mostly.
    User: Why?
    Moth:

Preprocess renders every voice sample this way (the context turns, then the voice's prefix; the
completion is " " + the voice's words), dream continues threads in it, and serve, ask and evaluate
prompt the adapter with it. A base model follows no chat template: a prefix it never saw in training
is a prompt it was not trained on, so every stage takes the names from here.

Names: a turn's speaker is its speaker name when it has one (transcripts: "Moth"), else its role
with a capital first letter ("assistant" → "Assistant"). The voice is whoever `voice_roles` names
(the source's, else `preprocess.voice_roles`); where there is no turn to take the name from (serve,
ask, evaluate), the voice's name is the first of those roles, written as a speaker.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from mothbrain.config import Config, SourceConfig

NOBODY = "Someone"  # a turn with neither speaker nor role
USER_ROLE = "user"
DEFAULT_VOICE_ROLE = "assistant"


class _TurnLike(Protocol):
    role: str
    speaker: str


def speaker_name(role: str, speaker: str = "") -> str:
    """How a turn's speaker is written: its name, else its role with a capital first letter."""
    if speaker.strip():
        return speaker.strip()
    role = role.strip() or NOBODY
    return role[:1].upper() + role[1:]


def turn_speaker(turn: _TurnLike) -> str:
    """The written speaker of a source turn (`mothbrain.sources.records.Turn`)."""
    return speaker_name(turn.role, turn.speaker)


def voice_roles(cfg: Config, source: SourceConfig | None = None) -> set[str]:
    """Whose turns are the voice: the source's voice_roles, else preprocess.voice_roles (lower case)."""
    roles = source.voice_roles if source and source.voice_roles else cfg.preprocess.voice_roles
    return {r.strip().lower() for r in roles if r.strip()}


def is_voice(turn: _TurnLike, roles: set[str]) -> bool:
    """A turn is the voice's when its role or its speaker name is one of `roles` (lower case)."""
    return turn.role.strip().lower() in roles or turn.speaker.strip().lower() in roles


def voice_name(cfg: Config, source: SourceConfig | None = None) -> str:
    """The voice's speaker name where no turn shows it: the first configured voice role, as a speaker."""
    roles = source.voice_roles if source and source.voice_roles else cfg.preprocess.voice_roles
    first = next((r.strip() for r in roles if r.strip()), DEFAULT_VOICE_ROLE)
    return speaker_name(first)


def user_name() -> str:
    """The speaker name of a chat's user turns ("User"), as preprocess writes a `user` role."""
    return speaker_name(USER_ROLE)


def turn_line(name: str, text: str) -> str:
    """One turn: "Name: text" and a newline."""
    return f"{name}: {text}\n"


def voice_prefix(name: str) -> str:
    """What a prompt ends with so that the voice speaks next: "Name:" (the completion starts with a space)."""
    return f"{name}:"


def render_turns(turns: Iterable[tuple[str, str]]) -> str:
    """(speaker name, text) pairs → "Name: text" lines."""
    return "".join(turn_line(name, text) for name, text in turns)


def render_prompt(turns: Iterable[tuple[str, str]], voice: str) -> str:
    """The turns, then the voice's prefix: the prompt a voice sample is trained on."""
    return render_turns(turns) + voice_prefix(voice)


def stop_strings(names: Iterable[str]) -> list[str]:
    """Where a generation stops: any of these speakers starting a new line."""
    return sorted({"\n" + voice_prefix(n) for n in names})

"""Secrets (SMTP password, the reviewer's API key): from an environment variable, else a file only its
owner can read. One reader, so every secret is refused the same way when it is exposed."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from mothbrain.errors import MothError


def check_secret_file(p: Path, key: str) -> None:
    """Refuse a secret file others can read (or that is missing), naming the fix."""
    try:
        st = p.stat()
    except FileNotFoundError:
        raise MothError(f"{key}: {p} does not exist; create it with mode 0600 (umask 077 first)") from None
    except OSError as exc:
        raise MothError(f"{key}: cannot read {p} ({exc.strerror or exc}); create it with mode 0600") from None
    if st.st_mode & 0o077:
        raise MothError(
            f"{key}: {p} has mode {stat.S_IMODE(st.st_mode):04o}, readable by others; run "
            f"`chmod 600 {p}` (the secret was not used)"
        )


def read_secret(cfg, env: str, file: str, file_key: str) -> str:
    """$env when set, else the contents of `file` (a config path, mode 0600), else ''."""
    value = os.environ.get(env, "").strip() if env else ""
    if value or not file:
        return value
    p = cfg.resolve_path(file)
    check_secret_file(p, file_key)
    try:
        return p.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise MothError(f"{file_key}: cannot read {p} ({exc}); it should hold the secret as one line of text") from None

"""Sending the briefing: whether SMTP is configured, the SMTP password (environment or a mode-0600 file) and
the delivery through briefing.smtp_*."""

from __future__ import annotations

import os
import smtplib
import ssl
from email.message import EmailMessage

from mothbrain.config import Config
from mothbrain.core.secrets import check_secret_file
from mothbrain.errors import MothError

SMTP_TIMEOUT_S = 30


def smtp_configured(cfg: Config) -> bool:
    return bool(cfg.briefing.smtp_host and cfg.briefing.to)


def smtp_password(cfg: Config) -> str | None:
    """The SMTP password from the environment or a mode-0600 file; None when no login is configured."""
    b = cfg.briefing
    if not b.smtp_user:
        return None
    if b.smtp_password_env and os.environ.get(b.smtp_password_env):
        return os.environ[b.smtp_password_env]
    if b.smtp_password_file:
        p = cfg.resolve_path(b.smtp_password_file)
        check_secret_file(p, "briefing.smtp_password_file")
        return p.read_text(encoding="utf-8").strip()
    raise MothError(
        f"briefing.smtp_user is set but there is no password: export ${b.smtp_password_env} or set "
        "briefing.smtp_password_file to a file of mode 0600"
    )


def send_message(cfg: Config, msg: EmailMessage) -> None:
    b = cfg.briefing
    password = smtp_password(cfg)
    context = ssl.create_default_context()
    try:
        if b.smtp_security == "ssl":
            server = smtplib.SMTP_SSL(b.smtp_host, b.smtp_port, timeout=SMTP_TIMEOUT_S, context=context)
        else:
            server = smtplib.SMTP(b.smtp_host, b.smtp_port, timeout=SMTP_TIMEOUT_S)
        with server:
            if b.smtp_security == "starttls":
                server.starttls(context=context)
            if b.smtp_user:
                server.login(b.smtp_user, password or "")
            server.send_message(msg)
    except (smtplib.SMTPException, OSError) as exc:
        raise MothError(
            f"could not send the briefing via {b.smtp_host}:{b.smtp_port} ({b.smtp_security}): "
            f"{type(exc).__name__}: {exc}; check briefing.smtp_* (try `mothbrain doctor --smtp`)"
        ) from None

"""What the System-1 server (`mothbrain serve`) and its clients (`ask`, the wiki-worker) agree on: the model id,
the response headers and the bearer token."""

from __future__ import annotations

from mothbrain.config import Config
from mothbrain.core.secrets import read_secret
from mothbrain.errors import MothError

MODEL_ID = "mothbrain"


ADAPTER_HEADER = "X-MothBrain-Adapter"


GEN_MS_HEADER = "X-MothBrain-Generation-Ms"  # time in the model, without queueing and HTTP


MIN_TOKEN_CHARS = 16


TOKEN_HINT = 'python -c "import secrets; print(secrets.token_urlsafe(32))"'


def load_token(cfg: Config) -> str:
    """The bearer token every /v1 request must carry; refuses a missing, short or exposed one."""

    s = cfg.serve
    try:
        token = read_secret(cfg, s.token_env, s.token_file, "serve.token_file")
    except MothError as exc:
        raise MothError(f"{exc}; make a token with: {TOKEN_HINT}") from None
    if not token:
        where = f"${s.token_env}" + (f" or serve.token_file ({s.token_file})" if s.token_file else "")
        raise MothError(f"no API token: set {where} before `mothbrain serve` (make one with: {TOKEN_HINT})")
    if len(token) < MIN_TOKEN_CHARS:
        raise MothError(f"the API token is {len(token)} characters; use at least {MIN_TOKEN_CHARS} ({TOKEN_HINT})")
    return token

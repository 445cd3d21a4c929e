"""The one way MothBrain talks to an OpenAI-compatible endpoint: the `openai` SDK with `base_url`.

Used by ask (System 1 served, System 2), eval (the reference model and the judge) and the wiki
reviewer. Failures come back as the two built-in errors callers already handle: TimeoutError for
no answer in time, ConnectionError for anything else (unreachable, an HTTP error, a reply that is
not a chat completion), each with a one-line reason naming the endpoint.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

CHAT_PATH = "/chat/completions"


def base_url(url: str) -> str:
    """What the SDK wants: the API root. Users often paste the whole chat-completions URL."""
    url = url.strip().rstrip("/")
    return url[: -len(CHAT_PATH)] if url.endswith(CHAT_PATH) else url


def make_client(
    url: str,
    api_key: str = "",
    *,
    timeout: float,
    max_retries: int = 0,
    on_request: Callable[[Any], None] | None = None,
):
    """An `openai.OpenAI` for `url`; `on_request` sees every HTTP request (retries included)."""
    import httpx
    import openai

    http_client = httpx.Client(event_hooks={"request": [on_request]}) if on_request else None
    return openai.OpenAI(
        base_url=base_url(url),
        api_key=api_key or "not-needed",  # local servers take none; the SDK insists on a value
        timeout=timeout,
        max_retries=max_retries,
        http_client=http_client,
    )


def chat(
    url: str,
    model: str,
    messages: list[dict[str, str]],
    *,
    api_key: str = "",
    timeout: float,
    max_tokens: int | None = None,
    temperature: float | None = None,
    max_retries: int = 0,
) -> tuple[str, dict[str, str]]:
    """One chat completion: its text and the response headers (lower-case names)."""
    import openai

    endpoint = base_url(url) + CHAT_PATH
    extra: dict[str, Any] = {}
    if max_tokens is not None:
        extra["max_tokens"] = max_tokens
    if temperature is not None:
        extra["temperature"] = temperature
    client = make_client(url, api_key, timeout=timeout, max_retries=max_retries)
    try:
        raw = client.chat.completions.with_raw_response.create(model=model, messages=messages, **extra)
        completion = raw.parse()
        text = completion.choices[0].message.content or ""
    except openai.APITimeoutError:
        raise TimeoutError(f"no answer from {endpoint} within {timeout:g}s") from None
    except openai.APIConnectionError as exc:
        cause = exc.__cause__ or exc
        raise ConnectionError(f"{endpoint} unreachable ({type(cause).__name__}: {str(cause)[:120]})") from None
    except openai.APIStatusError as exc:
        raise ConnectionError(f"{endpoint} answered HTTP {exc.status_code}: {_message(exc)}") from None
    except (openai.APIResponseValidationError, ValueError, AttributeError, IndexError, TypeError) as exc:
        raise ConnectionError(f"{endpoint} did not answer in the OpenAI chat format ({str(exc)[:120]})") from None
    finally:
        client.close()
    return text, {k.lower(): v for k, v in raw.headers.items()}


def _message(exc) -> str:
    body = exc.body
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])[:200]
    return (exc.response.text or exc.message or "")[:200]

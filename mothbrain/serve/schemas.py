"""The OpenAI-shaped request bodies the routes accept and the errors they answer with (ApiError, error bodies)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class GenerationRequest(BaseModel):
    model_config = ConfigDict(extra="ignore", protected_namespaces=())  # clients send more than we use
    model: str
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(1.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    stop: str | list[str] | None = None
    stream: bool = False
    n: int = 1


class ChatRequest(GenerationRequest):
    messages: list[dict[str, Any]] = Field(min_length=1)


class CompletionRequest(GenerationRequest):
    prompt: str | list[str]


class ApiError(Exception):
    """A request the client must fix (or may retry), answered in OpenAI's error shape."""

    def __init__(
        self,
        status: int,
        message: str,
        type_: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.param = status, message, type_, code, param
        self.headers = headers or {}


def error_body(message: str, type_: str, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def json_error(
    status: int,
    message: str,
    type_: str,
    code: str | None = None,
    param: str | None = None,
    headers: dict[str, str] | None = None,
):
    from fastapi.responses import JSONResponse

    return JSONResponse(error_body(message, type_, code, param), status_code=status, headers=headers)

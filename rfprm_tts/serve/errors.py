"""The proxy's errors as OpenAI answers them: an error object with a message the client can
act on, its type, the field at fault and a code."""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse


class APIError(Exception):
    """An error answered as an OpenAI-style error object."""

    def __init__(
        self,
        status: int,
        message: str,
        kind: str,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        param: str | None = None,
    ):
        super().__init__(message)
        self.status, self.message, self.kind, self.code = status, message, kind, code
        self.headers, self.param = headers or {}, param

    def payload(self) -> dict[str, Any]:
        return {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}

    def response(self) -> JSONResponse:
        return JSONResponse({"error": self.payload()}, status_code=self.status, headers=self.headers)


def invalid(message: str, code: str, param: str | None = None) -> APIError:
    """A 400 for the request's content."""
    return APIError(400, message, "invalid_request_error", code, param=param)

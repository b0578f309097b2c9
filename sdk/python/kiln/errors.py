"""The SDK's exceptions: one KilnError tree, each carrying the server's stable code and message."""
from __future__ import annotations

from typing import Any, Optional


class KilnError(Exception):
    """Base of every error the SDK raises.

    Attributes:
        code: the server's stable error code (``not_found``, ``quota_exceeded``, ...), or an SDK
            code (``connection_failed``, ``exec_timeout``, ``sandbox_gone``, ``bad_response``).
        message: the server's message (what went wrong, in words).
        status: the HTTP status, when the error came from an HTTP answer.
    """

    def __init__(self, code: str, message: str, status: Optional[int] = None):
        super().__init__(f"{code}: {message}" if status is None else f"{code} ({status}): {message}")
        self.code = code
        self.message = message
        self.status = status


class Unauthorized(KilnError):
    """The token is missing, unknown or revoked (401)."""


class Forbidden(KilnError):
    """403 forbidden: the token lacks the scope the call needs (docs/tenants.md)."""


class NotFound(KilnError):
    """No such sandbox, snapshot or template for this token (404: not_found, template_not_found)."""


class InvalidArgument(KilnError):
    """The request was malformed or a value was out of range (400, 413, 422)."""


class Conflict(KilnError):
    """Not possible in the current state (409: conflict)."""


class QuotaExceeded(KilnError):
    """Over the sandbox count or the committed-memory limit (429)."""


class ExecTimeout(KilnError):
    """The command ran past its timeout_seconds and was killed. ``result`` has what it printed."""

    def __init__(self, code: str, message: str, result: Any = None):
        super().__init__(code, message)
        self.result = result


class SandboxGone(KilnError):
    """The sandbox is not running any more (deleted, expired, lost): 409 sandbox_not_running, or a
    stream whose sandbox died."""


class ServerError(KilnError):
    """kilnd or the VM failed (500 internal, 503 unavailable), or an answer the SDK cannot read."""


class ConnectionFailed(KilnError):
    """kilnd could not be reached, or the connection broke (after the retries of an idempotent call)."""


_BY_CODE = {
    "unauthorized": Unauthorized,
    "forbidden": Forbidden,
    "not_found": NotFound,
    "template_not_found": NotFound,
    "invalid_argument": InvalidArgument,
    "conflict": Conflict,
    "quota_exceeded": QuotaExceeded,
    "sandbox_not_running": SandboxGone,
    "internal": ServerError,
    "unavailable": ServerError,
}

_BY_STATUS = {401: Unauthorized, 403: Forbidden, 404: NotFound, 400: InvalidArgument, 413: InvalidArgument,
              422: InvalidArgument, 409: Conflict, 429: QuotaExceeded}


def error_for(status: int, code: Optional[str], message: str) -> KilnError:
    """The typed exception for an error answer: by code first, by HTTP status when the code is unknown."""
    cls = _BY_CODE.get(code or "") or _BY_STATUS.get(status) or ServerError
    return cls(code or f"http_{status}", message, status)

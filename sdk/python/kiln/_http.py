"""The SDK's HTTP transport over http.client: bearer auth, JSON, typed errors, and retries of
idempotent calls (GET, PUT, DELETE) on connection errors; POST and PATCH are never retried."""
from __future__ import annotations

import http.client
import json
import socket
import time
from typing import Any, Mapping, Optional, Union
from urllib.parse import quote, urlencode, urlsplit

from .errors import ConnectionFailed, KilnError, ServerError, error_for

IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})

# What counts as "the connection failed" (retryable for idempotent calls): refused, reset, closed
# before an answer. A read timeout is not in the list: the server may still be working on it.
_CONNECTION_ERRORS = (ConnectionRefusedError, ConnectionResetError, ConnectionAbortedError, BrokenPipeError,
                      http.client.RemoteDisconnected, http.client.BadStatusLine)

Body = Union[bytes, bytearray, memoryview, None]


class Transport:
    """One kilnd endpoint and token. Thread-safe: every call opens its own connection."""

    def __init__(self, url: str, token: Optional[str], timeout: float = 300.0, retries: int = 3,
                 backoff: float = 0.2):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"KILN_URL must be http(s)://host[:port], got {url!r}")
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.prefix = parts.path.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff

    def connect(self, timeout: Optional[float]) -> http.client.HTTPConnection:
        cls = http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
        return cls(self.host, self.port, timeout=timeout if timeout is not None else self.timeout)

    def headers(self, extra: Optional[Mapping[str, str]] = None) -> dict[str, str]:
        h = {"User-Agent": "kiln-python/1.0", "Accept": "application/json"}
        if self.token:
            h["Authorization"] = f"Bearer {self.token}"
        h.update(extra or {})
        return h

    @staticmethod
    def path_with_query(path: str, params: Optional[Mapping[str, Any]] = None) -> str:
        items = {k: ("true" if v is True else "false" if v is False else v)
                 for k, v in (params or {}).items() if v is not None}
        return path + ("?" + urlencode(items, quote_via=quote) if items else "")

    def request(self, method: str, path: str, *, params: Optional[Mapping[str, Any]] = None,
                json_body: Any = None, body: Body = None, content_type: Optional[str] = None,
                timeout: Optional[float] = None, accept: Optional[str] = None) -> tuple[int, dict[str, str], bytes]:
        """Sends one request and returns (status, headers, body) for a 2xx answer; raises the typed
        KilnError for an error answer and ConnectionFailed when kilnd cannot be reached."""
        method = method.upper()
        extra: dict[str, str] = {}
        if json_body is not None:
            body = json.dumps(json_body).encode()
            extra["Content-Type"] = "application/json"
        elif content_type:
            extra["Content-Type"] = content_type
        if accept:
            extra["Accept"] = accept
        target = self.prefix + self.path_with_query(path, params)
        attempts = 1 + (self.retries if method in IDEMPOTENT else 0)
        last: Optional[BaseException] = None
        for attempt in range(attempts):
            if attempt:
                time.sleep(self.backoff * (2 ** (attempt - 1)))
            conn = self.connect(timeout)
            try:
                conn.request(method, target, body=body, headers=self.headers(extra))
                resp = conn.getresponse()
                data = resp.read()
                status, headers = resp.status, {k.lower(): v for k, v in resp.getheaders()}
            except _CONNECTION_ERRORS as e:
                last = e
                continue
            except socket.timeout as e:
                raise ConnectionFailed("timeout", f"{method} {path}: no answer within the timeout") from e
            except OSError as e:
                # Other socket errors (unreachable, DNS) are connection failures too.
                last = e
                continue
            finally:
                conn.close()
            if 200 <= status < 300:
                return status, headers, data
            raise decode_error(status, data)
        raise ConnectionFailed("connection_failed", f"{method} {path}: {last!r} after {attempts} attempt(s)")

    def json(self, method: str, path: str, **kw: Any) -> Any:
        """request() whose answer is JSON; returns the parsed document (None for an empty body)."""
        _, _, data = self.request(method, path, **kw)
        if not data:
            return None
        try:
            return json.loads(data)
        except ValueError as e:
            raise ServerError("bad_response", f"{method} {path}: the answer is not JSON: {data[:200]!r}") from e

    def open_stream(self, method: str, path: str, json_body: Any, accept: str,
                    timeout: Optional[float]) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse, Any]:
        """Starts a streamed request (never retried); raises the typed error for an error answer.
        Returns the connection, the response and the socket (shutting it down unblocks a reader)."""
        conn = self.connect(timeout)
        try:
            conn.request(method, self.prefix + path, body=json.dumps(json_body).encode(),
                         headers=self.headers({"Content-Type": "application/json", "Accept": accept}))
            sock = conn.sock
            resp = conn.getresponse()
        except OSError as e:
            conn.close()
            raise ConnectionFailed("connection_failed", f"{method} {path}: {e!r}") from e
        if not 200 <= resp.status < 300:
            data = resp.read()
            conn.close()
            raise decode_error(resp.status, data)
        return conn, resp, sock


def decode_error(status: int, data: bytes) -> KilnError:
    """The typed exception for an error answer ({"error": {"code", "message"}} per the API)."""
    code, message = None, data[:500].decode("utf-8", errors="replace") or f"HTTP {status}"
    try:
        err = json.loads(data)["error"]
        code, message = err.get("code"), err.get("message", message)
    except (ValueError, KeyError, TypeError, AttributeError):
        pass
    return error_for(status, code, message)

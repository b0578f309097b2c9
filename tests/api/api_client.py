"""A raw HTTP client for the API tests (http.client, so tests can send anything) that passes every
response it receives through the OpenAPI recorder."""
from __future__ import annotations

import http.client
import json
import socket
from dataclasses import dataclass
from typing import Any, Iterator, Optional, Union
from urllib.parse import quote, urlencode

from openapi_check import SpecRecorder, parse_sse


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes
    errors: list[str]

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def error_code(self) -> Optional[str]:
        try:
            return self.json()["error"]["code"]
        except (ValueError, KeyError, TypeError):
            return None

    def ndjson(self) -> list[dict]:
        return [json.loads(line) for line in self.body.split(b"\n") if line.strip()]

    def sse(self) -> list[tuple[str, dict]]:
        return [(event, json.loads(data)) for event, data in parse_sse(self.body)]

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.content_type} {self.body[:300]!r}>"


def query(path: str, /, **params: Any) -> str:
    """path?k=v&... with values percent-encoded (None values dropped)."""
    items = {k: v for k, v in params.items() if v is not None}
    return path + ("?" + urlencode(items, quote_via=quote) if items else "")


class ApiClient:
    """One token's view of kilnd. Every response is checked against the spec by `recorder`."""

    def __init__(self, port: int, token: Optional[str], recorder: SpecRecorder, timeout: float = 300.0):
        self.port = port
        self.token = token
        self.recorder = recorder
        self.timeout = timeout

    def with_token(self, token: Optional[str]) -> "ApiClient":
        return ApiClient(self.port, token, self.recorder, self.timeout)

    def request(self, method: str, path: str, body: Union[bytes, str, None] = None, *,
                json_body: Any = None, headers: Optional[dict[str, str]] = None,
                timeout: Optional[float] = None) -> Response:
        hdrs = {}
        if self.token is not None:
            hdrs["Authorization"] = f"Bearer {self.token}"
        if json_body is not None:
            body = json.dumps(json_body).encode()
            hdrs["Content-Type"] = "application/json"
        elif isinstance(body, str):
            body = body.encode()
        hdrs.update(headers or {})
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout or self.timeout)
        try:
            conn.request(method, path, body=body, headers=hdrs)
            resp = conn.getresponse()
            data = resp.read()
        finally:
            conn.close()
        resp_headers = {k.lower(): v for k, v in resp.getheaders()}
        record = self.recorder.check(method, path, resp.status, resp_headers.get("content-type"), data)
        return Response(resp.status, resp_headers, data, record.errors)

    # Shorthands.
    def get(self, path: str, **kw: Any) -> Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, json_body: Any = None, **kw: Any) -> Response:
        return self.request("POST", path, json_body=json_body, **kw)

    def delete(self, path: str, **kw: Any) -> Response:
        return self.request("DELETE", path, **kw)

    def create_sandbox(self, expect: int = 201, **fields: Any) -> dict:
        fields.setdefault("template", "tiny")
        fields.setdefault("ttl_seconds", 600)
        r = self.post("/v1/sandboxes", fields)
        assert r.status == expect, r
        return r.json()

    def exec(self, sandbox_id: str, cmd: str, **fields: Any) -> dict:
        fields["cmd"] = cmd
        r = self.post(f"/v1/sandboxes/{sandbox_id}/exec", fields)
        assert r.status == 200, r
        return r.json()

    def stream_lines(self, method: str, path: str, json_body: Any, accept: str,
                     timeout: float = 120.0) -> Iterator[bytes]:
        """Yields a streamed body line by line as it arrives (for timing checks); the whole body is
        then checked against the spec like any other response."""
        hdrs = {"Content-Type": "application/json", "Accept": accept}
        if self.token is not None:
            hdrs["Authorization"] = f"Bearer {self.token}"
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        collected = bytearray()
        status, ctype = 0, None
        try:
            conn.request(method, path, body=json.dumps(json_body).encode(), headers=hdrs)
            resp = conn.getresponse()
            status, ctype = resp.status, resp.getheader("content-type")
            while True:
                try:
                    line = resp.readline()
                except (socket.timeout, http.client.IncompleteRead):
                    break
                if not line:
                    break
                collected += line
                yield line
        finally:
            conn.close()
            self.recorder.check(method, path, status, ctype, bytes(collected))


def wait_sandbox_state(client: ApiClient, sandbox_id: str, states: set[str], timeout: float) -> dict:
    """Polls GET /v1/sandboxes/{id} until its state is in `states`; returns the last record."""
    import time
    deadline = time.monotonic() + timeout
    while True:
        r = client.get(f"/v1/sandboxes/{sandbox_id}")
        assert r.status == 200, r
        doc = r.json()
        if doc["state"] in states or time.monotonic() >= deadline:
            return doc
        time.sleep(0.2)


def send_raw(client: ApiClient, method: str, path: str, head_extra: str, body_chunks: Iterator[bytes],
             timeout: float = 60.0) -> Optional[Response]:
    """Sends a request by hand (for bodies larger than kilnd accepts and for lying headers): the
    body may be refused half-way, so send errors are swallowed and the answer, if any, is read.
    Returns None when kilnd closed the connection without answering."""
    sock = socket.create_connection(("127.0.0.1", client.port), timeout=timeout)
    try:
        head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        if client.token is not None:
            head += f"Authorization: Bearer {client.token}\r\n"
        sock.sendall((head + head_extra + "\r\n").encode())
        try:
            for chunk in body_chunks:
                sock.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        resp = http.client.HTTPResponse(sock, method=method)
        try:
            resp.begin()
            data = resp.read()
        except (http.client.RemoteDisconnected, ConnectionResetError, http.client.IncompleteRead):
            return None
        headers = {k.lower(): v for k, v in resp.getheaders()}
        record = client.recorder.check(method, path, resp.status, headers.get("content-type"), data)
        return Response(resp.status, headers, data, record.errors)
    finally:
        sock.close()

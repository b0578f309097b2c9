"""What the Python benches share: a kilnd of their own (tests/api/kilnd_fixture.py's Kilnd, with a
token and the accelerator it reports), a plain client of its REST API, and the percentile they print."""
from __future__ import annotations

import http.client
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "api"))

from kilnd_fixture import Kilnd  # noqa: E402


class Api:
    def __init__(self, port: int, token: str):
        self.port, self.token = port, token

    def call(self, method: str, path: str, body=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)
        headers = {"Authorization": f"Bearer {self.token}"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        conn.request(method, path, body=data, headers=headers)
        resp = conn.getresponse()
        raw = resp.read()
        conn.close()
        if resp.status >= 300:
            raise RuntimeError(f"{method} {path}: {resp.status} {raw[:300]!r}")
        if "ndjson" in (resp.getheader("content-type") or ""):
            return raw
        return json.loads(raw) if raw else None  # a DELETE's 204 has no body


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def start_kilnd(name: str, extra_env: dict[str, str] | None = None, quota: str = "") -> tuple[Kilnd, Api, str]:
    """A started kilnd (own data dir, free port, config from `extra_env`), a client with an admin
    token named "bench" (with `quota`, `kilnd token create --quota`, if given) and the accelerator
    from /healthz. The caller calls kilnd.cleanup(); if the start fails, this does."""
    kilnd = Kilnd(extra_env=extra_env, name=name)
    try:
        token = kilnd.create_token("bench", quota=quota)
        kilnd.start()
        api = Api(kilnd.port, token)
        return kilnd, api, api.call("GET", "/healthz")["accel"]
    except BaseException:
        kilnd.cleanup()
        raise

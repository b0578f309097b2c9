"""What the Python benches share: a kilnd of their own (tests/api/kilnd_fixture.py's Kilnd, with a
token and the accelerator it reports), a plain client of its REST API, and the percentile they print."""
from __future__ import annotations

import http.client
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "api"))

from kilnd_fixture import Kilnd, wait_until  # noqa: E402


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


class KilndLog:
    """Reads kilnd's JSON log as it grows: which QEMU each created sandbox runs in (the "sandbox
    created" line's qemu_pid; with a spare, the QEMU's command line names the spare, not the sandbox)."""

    def __init__(self, kilnd: Kilnd):
        self.kilnd, self.offset, self.qemu_of = kilnd, 0, {}

    def read(self) -> None:
        with open(self.kilnd.log_path, "rb") as f:
            f.seek(self.offset)
            chunk = f.read()
        complete = chunk.rfind(b"\n") + 1
        self.offset += complete
        for line in chunk[:complete].splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if entry.get("msg") == "sandbox created":
                self.qemu_of[entry["sandbox"]] = entry["qemu_pid"]

    def qemu_pid(self, sandbox_id: str) -> int:
        pid = wait_until(lambda: self.read() or self.qemu_of.get(sandbox_id), 5, interval=0.02)
        if not pid:
            raise RuntimeError(f"kilnd's log has no 'sandbox created' line for {sandbox_id}")
        return pid

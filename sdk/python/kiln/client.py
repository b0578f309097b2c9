"""Kiln: the SDK's entry point, with the sandboxes, templates, snapshots, pipelines and hosts collections."""
from __future__ import annotations

import os
from typing import Any, Mapping, Optional
from urllib.parse import quote

from ._http import Transport
from .models import Host, Snapshot, Template
from .pipelines import Pipelines
from .sandbox import Sandbox

DEFAULT_URL = "http://127.0.0.1:7070"


class Kiln:
    """A client of one kilnd.

    ``url`` defaults to $KILN_URL (else http://127.0.0.1:7070) and ``token`` to $KILN_TOKEN.
    ``timeout`` is the socket timeout of plain calls in seconds; ``retries`` is how often an
    idempotent call (GET, PUT, DELETE) is retried when the connection fails (POST and PATCH never).
    """

    def __init__(self, url: Optional[str] = None, token: Optional[str] = None, *, timeout: float = 300.0,
                 retries: int = 3):
        self.url = url or os.environ.get("KILN_URL") or DEFAULT_URL
        self._t = Transport(self.url, token if token is not None else os.environ.get("KILN_TOKEN"), timeout, retries)
        self.sandboxes = Sandboxes(self._t)
        self.templates = Templates(self._t)
        self.snapshots = Snapshots(self._t)
        self.pipelines = Pipelines(self._t)
        self.hosts = Hosts(self._t)

    def health(self) -> dict:
        """GET /healthz: {status, version, accel}."""
        return self._t.json("GET", "/healthz")

    def whoami(self) -> dict:
        """GET /v1/token: {id, name, scopes, quota, usage} of this client's token. A quota of
        None is unlimited; a call outside ``scopes`` raises Forbidden, one past a quota
        QuotaExceeded naming it."""
        return self._t.json("GET", "/v1/token")

    def metrics(self) -> str:
        """GET /metrics: Prometheus text."""
        return self._t.request("GET", "/metrics", accept="text/plain")[2].decode()


class Sandboxes:
    """``k.sandboxes``: create, list and get sandboxes."""

    def __init__(self, transport: Transport):
        self._t = transport

    def create(self, template: str = "tiny", *, ttl_seconds: Optional[int] = None,
               metadata: Optional[Mapping[str, str]] = None, env: Optional[Mapping[str, str]] = None,
               vcpus: Optional[int] = None, memory_mib: Optional[int] = None,
               network: Optional[Mapping[str, Any]] = None, auto_pause: bool = False) -> Sandbox:
        """Creates a sandbox from a template (``tiny``) or a snapshot id; returns once exec works.

        ``network`` is the egress policy, e.g. ``{"mode": "open"}`` or ``{"mode": "allowlist",
        "allow": ["192.0.2.7:443"]}``; absent: kilnd's default (``none`` unless configured).
        ``auto_pause``: at the end of the TTL the sandbox is paused instead of destroyed
        (``resume()`` brings it back). Raises QuotaExceeded over kilnd's limits, NotFound for an
        unknown template.
        """
        body: dict[str, Any] = {"template": template}
        for key, value in (("ttl_seconds", ttl_seconds), ("vcpus", vcpus), ("memory_mib", memory_mib)):
            if value is not None:
                body[key] = value
        if metadata:
            body["metadata"] = dict(metadata)
        if env:
            body["env"] = dict(env)
        if network is not None:
            body["network"] = dict(network)
        if auto_pause:
            body["auto_pause"] = True
        return Sandbox(self._t, self._t.json("POST", "/v1/sandboxes", json_body=body))

    def get(self, sandbox_id: str) -> Sandbox:
        """One sandbox in any state (deleted and expired ones are kept for a while)."""
        return Sandbox(self._t, self._t.json("GET", f"/v1/sandboxes/{sandbox_id}"))

    def pause(self, sandbox_id: str) -> Sandbox:
        """Pauses a running sandbox (``Sandbox.pause``)."""
        return Sandbox(self._t, {"id": sandbox_id}).pause()

    def resume(self, sandbox_id: str, ttl_seconds: Optional[int] = None) -> Sandbox:
        """Resumes a paused sandbox by id (``Sandbox.resume``); returns it once exec works."""
        return Sandbox(self._t, {"id": sandbox_id}).resume(ttl_seconds)

    def list(self, metadata: Optional[Mapping[str, str]] = None, state: Optional[str] = None) -> list[Sandbox]:
        """Your sandboxes, newest first: those not ended by default (paused ones included); ``state`` is one state or ``all``;
        every ``metadata`` pair must match."""
        params: dict[str, Any] = {"state": state}
        for key, value in (metadata or {}).items():
            params[f"metadata.{key}"] = value
        doc = self._t.json("GET", "/v1/sandboxes", params=params)
        return [Sandbox(self._t, d) for d in doc["sandboxes"]]


class Templates:
    """``k.templates``: built-in templates and your snapshots."""

    def __init__(self, transport: Transport):
        self._t = transport

    def list(self) -> list[Template]:
        return [Template.from_json(d) for d in self._t.json("GET", "/v1/templates")["templates"]]

    def get(self, template_id: str) -> Template:
        return Template.from_json(self._t.json("GET", f"/v1/templates/{template_id}"))

    def delete(self, template_id: str) -> None:
        """A built-in template drops its baked snapshot (baked again on next use); a snapshot is deleted."""
        self._t.request("DELETE", f"/v1/templates/{template_id}")


class Snapshots:
    """``k.snapshots``: your snapshots."""

    def __init__(self, transport: Transport):
        self._t = transport

    def list(self) -> list[Snapshot]:
        return [Snapshot.from_json(d, self._t) for d in self._t.json("GET", "/v1/snapshots")["snapshots"]]

    def get(self, snapshot_id: str) -> Snapshot:
        return Snapshot.from_json(self._t.json("GET", f"/v1/snapshots/{snapshot_id}"), self._t)

    def delete(self, snapshot_id: str) -> None:
        self._t.request("DELETE", f"/v1/snapshots/{snapshot_id}")


class Hosts:
    """``k.hosts``: the fleet's hosts (an admin token; docs/fleet.md)."""

    def __init__(self, transport: Transport):
        self._t = transport

    def list(self) -> list[Host]:
        return [Host.from_json(d) for d in self._t.json("GET", "/v1/hosts")["hosts"]]

    def drain(self, name: str) -> Host:
        """No new sandboxes go to ``name``; the ones running there finish."""
        return Host.from_json(self._t.json("POST", f"/v1/hosts/{quote(name, safe='')}/drain", json_body={}))

    def undrain(self, name: str) -> Host:
        return Host.from_json(self._t.json("POST", f"/v1/hosts/{quote(name, safe='')}/undrain", json_body={}))

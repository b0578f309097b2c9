"""Plain records the API returns: exec results and events, file info, snapshots, templates."""
from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any, Optional


def _stream_bytes(doc: dict, name: str) -> bytes:
    """A stream of a buffered exec answer as bytes: text, or base64 when ``<name>_encoding`` says so."""
    value = doc.get(name, "") or ""
    if doc.get(f"{name}_encoding") == "base64":
        return base64.b64decode(value)
    return value.encode("utf-8", "replace")


@dataclass(frozen=True)
class ExecResult:
    """What a finished command printed and how it ended.

    ``exit_code`` is None when a signal killed the command (``signal`` says which).
    ``stdout`` and ``stderr`` are text (bytes that are not UTF-8 become U+FFFD); ``stdout_bytes``
    and ``stderr_bytes`` are the exact bytes (kilnd sends binary output as base64). kilnd keeps
    at most its ``max_exec_output`` (default 4 MiB) of each stream: ``stdout_truncated`` says the
    rest was dropped and ``stdout_dropped_bytes`` how much (likewise for stderr).
    """

    stdout: str
    stderr: str
    exit_code: Optional[int]
    duration_ms: float = 0.0
    signal: Optional[int] = None
    timed_out: bool = False
    truncated: bool = False
    stdout_bytes: bytes = b""
    stderr_bytes: bytes = b""
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    stdout_dropped_bytes: int = 0
    stderr_dropped_bytes: int = 0

    @classmethod
    def from_json(cls, doc: dict) -> "ExecResult":
        out, err = _stream_bytes(doc, "stdout"), _stream_bytes(doc, "stderr")
        return cls(stdout=out.decode("utf-8", "replace"), stderr=err.decode("utf-8", "replace"),
                   exit_code=doc.get("exit_code"), duration_ms=float(doc.get("duration_ms", 0)),
                   signal=doc.get("signal"), timed_out=bool(doc.get("timed_out", False)),
                   truncated=bool(doc.get("truncated", False)), stdout_bytes=out, stderr_bytes=err,
                   stdout_truncated=bool(doc.get("stdout_truncated", False)),
                   stderr_truncated=bool(doc.get("stderr_truncated", False)),
                   stdout_dropped_bytes=int(doc.get("stdout_dropped_bytes", 0)),
                   stderr_dropped_bytes=int(doc.get("stderr_dropped_bytes", 0)))

    @property
    def ok(self) -> bool:
        """True when the command exited with 0."""
        return self.exit_code == 0


@dataclass(frozen=True)
class ExecEvent:
    """One event of a streamed exec: ``kind`` is ``start``, ``stdout``, ``stderr`` or ``exit``.

    ``data`` is the text that came (stdout/stderr); ``exit_code``, ``signal``, ``timed_out`` and
    ``duration_ms`` are set on ``exit``; ``pid`` on ``start``.
    """

    kind: str
    data: str = ""
    exit_code: Optional[int] = None
    signal: Optional[int] = None
    timed_out: bool = False
    duration_ms: Optional[float] = None
    pid: Optional[int] = None

    @classmethod
    def from_json(cls, doc: dict) -> "ExecEvent":
        return cls(kind=doc.get("type", ""), data=doc.get("data", "") or "", exit_code=doc.get("exit_code"),
                   signal=doc.get("signal"), timed_out=bool(doc.get("timed_out", False)),
                   duration_ms=doc.get("duration_ms"), pid=doc.get("pid"))


@dataclass(frozen=True)
class FileInfo:
    """A path in the guest: ``type`` is file, dir, symlink or other; ``mode`` is octal text (0644)."""

    path: str
    name: str
    type: str
    size: int
    mode: str
    mtime: str
    target: Optional[str] = None
    owner: Optional[str] = None  # user name in the guest (or the uid as text)
    group: Optional[str] = None

    @classmethod
    def from_json(cls, doc: dict) -> "FileInfo":
        return cls(path=doc["path"], name=doc["name"], type=doc["type"], size=int(doc["size"]), mode=doc["mode"],
                   mtime=doc["mtime"], target=doc.get("target"), owner=doc.get("owner"), group=doc.get("group"))


@dataclass(frozen=True)
class Template:
    """Something a sandbox can be created from: a built-in template or one of your snapshots."""

    id: str
    kind: str
    ready: bool
    vcpus: int
    memory_mib: int
    name: Optional[str] = None
    image: Optional[str] = None
    created_at: Optional[str] = None

    @classmethod
    def from_json(cls, doc: dict) -> "Template":
        return cls(id=doc["id"], kind=doc["kind"], ready=bool(doc["ready"]), vcpus=int(doc["vcpus"]),
                   memory_mib=int(doc["memory_mib"]), name=doc.get("name"), image=doc.get("image"),
                   created_at=doc.get("created_at"))


@dataclass
class Snapshot:
    """A snapshot of a sandbox. ``id`` works as a template: ``k.sandboxes.create(template=snap.id)``."""

    id: str
    sandbox_id: str
    created_at: str
    size_bytes: int
    vcpus: int
    memory_mib: int
    name: Optional[str] = None
    template: Optional[str] = None
    _client: Any = field(default=None, repr=False, compare=False)

    @classmethod
    def from_json(cls, doc: dict, client: Any = None) -> "Snapshot":
        return cls(id=doc["id"], sandbox_id=doc["sandbox_id"], created_at=doc["created_at"],
                   size_bytes=int(doc["size_bytes"]), vcpus=int(doc["vcpus"]), memory_mib=int(doc["memory_mib"]),
                   name=doc.get("name"), template=doc.get("template"), _client=client)

    def delete(self) -> None:
        """Deletes the snapshot. Sandboxes restored from it keep running."""
        self._client.request("DELETE", f"/v1/snapshots/{self.id}")


@dataclass(frozen=True)
class Host:
    """One kilnd of the fleet as ``k.hosts.list()`` shows it (docs/fleet.md).

    ``state`` is alive, draining (no new sandboxes; running ones finish) or dead (no heartbeat
    within kilnd's host_timeout_seconds, or stopped). ``is_self`` marks the kilnd that answered.
    """

    name: str
    url: str
    state: str
    draining: bool
    is_self: bool
    version: str
    accel: str
    max_sandboxes: int
    vcpus: int
    max_memory_mib: int
    live_sandboxes: int
    memory_mib_in_use: int
    heartbeat_age_ms: int
    heartbeat_at: Optional[str] = None
    started_at: Optional[str] = None

    @classmethod
    def from_json(cls, doc: dict) -> "Host":
        cap = doc.get("capacity") or {}
        return cls(name=doc["name"], url=doc.get("url", ""), state=doc["state"], draining=bool(doc.get("draining")),
                   is_self=bool(doc.get("self")), version=doc.get("version", ""), accel=doc.get("accel", ""),
                   max_sandboxes=int(cap.get("max_sandboxes", 0)), vcpus=int(cap.get("vcpus", 0)),
                   max_memory_mib=int(cap.get("max_memory_mib", 0)), live_sandboxes=int(doc.get("live_sandboxes", 0)),
                   memory_mib_in_use=int(doc.get("memory_mib_in_use", 0)),
                   heartbeat_age_ms=int(doc.get("heartbeat_age_ms", 0)), heartbeat_at=doc.get("heartbeat_at"),
                   started_at=doc.get("started_at"))

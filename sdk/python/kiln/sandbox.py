"""Sandbox: a handle on one sandbox (exec, streamed exec, files, snapshot, fork, TTL, delete)."""
from __future__ import annotations

import io
import json
import os
import queue
import socket
import tarfile
import threading
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Optional, Sequence, Union

from .errors import ConnectionFailed, ExecTimeout, KilnError, NotFound, SandboxGone, ServerError, error_for  # noqa: F401
from .models import ExecEvent, ExecResult, FileInfo, Snapshot

if TYPE_CHECKING:
    from ._http import Transport

Command = Union[str, Sequence[str]]
OutputCallback = Callable[[str], None]

# How long a stream may stay silent before the SDK asks kilnd whether the sandbox still runs.
STREAM_LIVENESS_SECONDS = 5.0


def _exec_body(cmd: Command, env: Optional[Mapping[str, str]], cwd: Optional[str],
               timeout_seconds: Optional[float], stdin: Optional[str]) -> dict:
    body: dict[str, Any] = {"cmd": cmd} if isinstance(cmd, str) else {"argv": list(cmd)}
    if env:
        body["env"] = dict(env)
    if cwd is not None:
        body["cwd"] = cwd
    if timeout_seconds is not None:
        body["timeout_seconds"] = timeout_seconds
    if stdin is not None:
        body["stdin"] = stdin
    return body


class Sandbox:
    """One sandbox: a microVM of its own. Made by ``Kiln().sandboxes.create()`` or ``.get()``.

    Use it as a context manager to delete it on exit::

        with k.sandboxes.create(template="tiny") as sb:
            print(sb.exec("uname -a").stdout)

    Attributes mirror the API's Sandbox record (``id``, ``state``, ``template``, ``metadata``,
    ``created_at``, ``expires_at``, ``vcpus``, ``memory_mib``, ...) as of the last answer;
    ``refresh()`` fetches them again.
    """

    def __init__(self, transport: "Transport", doc: dict):
        self._t = transport
        self._doc: dict = {}
        self._update(doc)
        self.filesystem = Filesystem(self)

    def _update(self, doc: dict) -> None:
        self._doc = dict(doc)
        self.id: str = doc["id"]
        self.state: str = doc.get("state", "")
        self.template: str = doc.get("template", "")
        self.metadata: dict[str, str] = dict(doc.get("metadata") or {})
        self.created_at: Optional[str] = doc.get("created_at")
        self.expires_at: Optional[str] = doc.get("expires_at")
        self.ended_at: Optional[str] = doc.get("ended_at")
        self.vcpus: Optional[int] = doc.get("vcpus")
        self.memory_mib: Optional[int] = doc.get("memory_mib")
        self.parent_id: Optional[str] = doc.get("parent_id")
        self.host: str = doc.get("host", "")
        self.error: Optional[str] = doc.get("error")
        self.network: dict[str, Any] = dict(doc.get("network") or {"mode": "none"})
        # Pause and resume (docs/pause.md): the last three are set only while paused.
        self.auto_pause: bool = bool(doc.get("auto_pause", False))
        self.paused_at: Optional[str] = doc.get("paused_at")
        self.ttl_left_seconds: Optional[float] = doc.get("ttl_left_seconds")
        self.paused_bytes: Optional[int] = doc.get("paused_bytes")

    def __repr__(self) -> str:
        return f"<Sandbox {self.id} {self.state} template={self.template}>"

    def __enter__(self) -> "Sandbox":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.delete()

    @property
    def _path(self) -> str:
        return f"/v1/sandboxes/{self.id}"

    def to_dict(self) -> dict:
        """The API's record of this sandbox, as last seen."""
        return dict(self._doc)

    def refresh(self) -> "Sandbox":
        """Fetches the sandbox's record again (state, expires_at, ...)."""
        self._update(self._t.json("GET", self._path))
        return self

    def set_ttl(self, ttl_seconds: int) -> "Sandbox":
        """Sets the TTL counted from now (extend or shorten)."""
        self._update(self._t.json("PATCH", self._path, json_body={"ttl_seconds": ttl_seconds}))
        return self

    def delete(self) -> None:
        """Destroys the sandbox's VM and files. Deleting a finished sandbox is a no-op."""
        self._t.request("DELETE", self._path)
        self.state = "deleted"

    def pause(self) -> "Sandbox":
        """Pauses the running sandbox: its memory and disk are saved, its VM stops (no memory, no
        slot), its TTL stands still. Pausing a paused sandbox is a no-op. Raises SandboxGone
        (sandbox_not_running) for one that has ended."""
        self._update(self._t.json("POST", f"{self._path}/pause"))
        return self

    def resume(self, ttl_seconds: Optional[int] = None) -> "Sandbox":
        """Resumes the paused sandbox with the same id, files and processes; returns once exec
        works. Its TTL is what it had left when paused, or ``ttl_seconds``. Resuming a running
        sandbox is a no-op. Raises QuotaExceeded over kilnd's limits, as a create does, and
        SandboxGone for one that has ended."""
        body = {"ttl_seconds": ttl_seconds} if ttl_seconds is not None else {}
        self._update(self._t.json("POST", f"{self._path}/resume", json_body=body))
        return self

    def snapshot(self, name: Optional[str] = None) -> Snapshot:
        """Snapshots the running sandbox (it runs on). ``snap.id`` works as a template."""
        body = {"name": name} if name else {}
        return Snapshot.from_json(self._t.json("POST", f"{self._path}/snapshot", json_body=body), self._t)

    def fork(self, ttl_seconds: Optional[int] = None, metadata: Optional[Mapping[str, str]] = None) -> "Sandbox":
        """A new sandbox that starts as a copy of this one (memory and disk); this one pauses briefly."""
        body: dict[str, Any] = {}
        if ttl_seconds is not None:
            body["ttl_seconds"] = ttl_seconds
        if metadata is not None:
            body["metadata"] = dict(metadata)
        return Sandbox(self._t, self._t.json("POST", f"{self._path}/fork", json_body=body))

    # exec

    def exec(self, cmd: Command, *, env: Optional[Mapping[str, str]] = None, cwd: Optional[str] = None,
             timeout_seconds: Optional[float] = None, stdin: Optional[str] = None,
             on_stdout: Optional[OutputCallback] = None, on_stderr: Optional[OutputCallback] = None,
             raise_on_timeout: bool = True) -> ExecResult:
        """Runs a command and returns its ExecResult once it ends (whatever its exit code).

        ``cmd`` is a shell command line (run by /bin/sh -c) or an argv list. With ``on_stdout`` /
        ``on_stderr`` the output is streamed to the callbacks as it comes and also collected in the
        result. A command past ``timeout_seconds`` is killed and ExecTimeout is raised (with the
        result in ``.result``) unless ``raise_on_timeout`` is False.
        """
        if on_stdout or on_stderr:
            out, err, end = [], [], None
            for ev in self.exec_stream(cmd, env=env, cwd=cwd, timeout_seconds=timeout_seconds, stdin=stdin,
                                       on_stdout=on_stdout, on_stderr=on_stderr):
                if ev.kind == "stdout":
                    out.append(ev.data)
                elif ev.kind == "stderr":
                    err.append(ev.data)
                elif ev.kind == "exit":
                    end = ev
            assert end is not None
            stdout, stderr = "".join(out), "".join(err)
            result = ExecResult(stdout, stderr, end.exit_code, end.duration_ms or 0.0, end.signal, end.timed_out,
                                stdout_bytes=stdout.encode(), stderr_bytes=stderr.encode())
        else:
            body = _exec_body(cmd, env, cwd, timeout_seconds, stdin)
            result = ExecResult.from_json(self._t.json("POST", f"{self._path}/exec", json_body=body,
                                                       timeout=self._http_timeout(timeout_seconds)))
        if result.timed_out and raise_on_timeout:
            raise ExecTimeout("exec_timeout", f"the command ran past {timeout_seconds} s and was killed", result)
        return result

    def _http_timeout(self, timeout_seconds: Optional[float]) -> float:
        # The server ends the command at its timeout (default 600 s); wait a little longer than that.
        return (timeout_seconds or 600) + 60

    def exec_stream(self, cmd: Command, *, env: Optional[Mapping[str, str]] = None, cwd: Optional[str] = None,
                    timeout_seconds: Optional[float] = None, stdin: Optional[str] = None,
                    on_stdout: Optional[OutputCallback] = None, on_stderr: Optional[OutputCallback] = None,
                    include_start: bool = False) -> Iterator[ExecEvent]:
        """Runs a command and yields its events as they happen: ``stdout`` and ``stderr`` (``ev.data``)
        and a last ``exit`` (``ev.exit_code``). ``start`` too with ``include_start``.

        The stream never hangs on a dead sandbox: when the sandbox stops running (deleted, expired,
        lost) it ends with SandboxGone. Callbacks, if given, get each piece of output as it comes.
        """
        body = _exec_body(cmd, env, cwd, timeout_seconds, stdin)
        conn, resp, sock = self._t.open_stream("POST", f"{self._path}/exec", body, "application/x-ndjson",
                                         timeout=self._http_timeout(timeout_seconds))
        lines: "queue.Queue[tuple[str, Any]]" = queue.Queue()

        def reader() -> None:
            try:
                while True:
                    line = resp.readline()
                    if not line:
                        break
                    lines.put(("line", line))
            except Exception as e:  # noqa: BLE001 - handed to the consumer
                lines.put(("error", e))
            lines.put(("eof", None))

        thread = threading.Thread(target=reader, name=f"kiln-stream-{self.id}", daemon=True)
        thread.start()
        try:
            while True:
                try:
                    kind, item = lines.get(timeout=STREAM_LIVENESS_SECONDS)
                except queue.Empty:
                    self._check_still_running()
                    continue
                if kind == "eof" or kind == "error":
                    # The stream ended without an exit event: the sandbox (or kilnd) went away.
                    self._check_still_running()
                    raise ConnectionFailed("stream_broken", f"the exec stream of {self.id} ended without an exit"
                                           + (f" ({item!r})" if item is not None else "") + " though it still runs")
                if not item.strip():
                    continue
                try:
                    doc = json.loads(item)
                except ValueError as e:
                    raise ServerError("bad_response", f"not an NDJSON event: {item[:200]!r}") from e
                if doc.get("type") == "error":
                    err = doc.get("error") or {}
                    self._check_still_running()
                    raise error_for(500, err.get("code"), err.get("message", "the exec failed"))
                ev = ExecEvent.from_json(doc)
                if ev.kind == "stdout" and on_stdout:
                    on_stdout(ev.data)
                elif ev.kind == "stderr" and on_stderr:
                    on_stderr(ev.data)
                if ev.kind != "start" or include_start:
                    yield ev
                if ev.kind == "exit":
                    return
        finally:
            # Shut the socket down first: the reader thread may sit in a blocking read that holds
            # the response's lock, and close() alone would wait for it.
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()

    def _check_still_running(self) -> None:
        """Raises SandboxGone when the sandbox is no longer running (used while a stream is silent)."""
        try:
            self.refresh()
        except NotFound as e:
            raise SandboxGone("sandbox_gone", f"{self.id} no longer exists") from e
        except ConnectionFailed as e:
            raise SandboxGone("sandbox_gone", f"kilnd went away while streaming from {self.id}") from e
        if self.state != "running":
            raise SandboxGone("sandbox_gone", f"{self.id} is {self.state}" + (f": {self.error}" if self.error else ""))


class Filesystem:
    """The files API of one sandbox: paths are absolute guest paths."""

    def __init__(self, sandbox: Sandbox):
        self._sb = sandbox

    @property
    def _t(self) -> "Transport":
        return self._sb._t

    def _route(self, suffix: str = "") -> str:
        return f"/v1/sandboxes/{self._sb.id}/files{suffix}"

    def write(self, path: str, data: Union[bytes, str], mode: Optional[int] = None) -> FileInfo:
        """Writes a file atomically (str is encoded as UTF-8), creating parent folders."""
        payload = data.encode() if isinstance(data, str) else bytes(data)
        params: dict[str, Any] = {"path": path}
        if mode is not None:
            params["mode"] = f"{mode:04o}"
        return FileInfo.from_json(self._t.json("PUT", self._route(), params=params, body=payload,
                                               content_type="application/octet-stream"))

    def read(self, path: str) -> bytes:
        """A file's bytes."""
        return self._t.request("GET", self._route(), params={"path": path}, accept="application/octet-stream")[2]

    def stat(self, path: str) -> FileInfo:
        """A path's metadata (symlinks are not followed)."""
        return FileInfo.from_json(self._t.json("GET", self._route("/stat"), params={"path": path}))

    def exists(self, path: str) -> bool:
        """True when the path exists."""
        try:
            self.stat(path)
            return True
        except NotFound:
            return False

    def list(self, path: str) -> list[FileInfo]:
        """A folder's entries, sorted by name."""
        doc = self._t.json("GET", self._route("/list"), params={"path": path})
        return [FileInfo.from_json(e) for e in doc["entries"]]

    def mkdir(self, path: str) -> FileInfo:
        """Makes a folder and its parents (no error if it exists)."""
        return FileInfo.from_json(self._t.json("POST", self._route("/mkdir"), params={"path": path}))

    def remove(self, path: str, recursive: bool = False) -> None:
        """Removes a file, or a folder (``recursive=True`` when it is not empty)."""
        self._t.request("DELETE", self._route(), params={"path": path, "recursive": recursive or None})

    def upload_tar(self, path: str, tarball: Union[bytes, str, os.PathLike, io.IOBase]) -> dict:
        """Extracts a tarball (plain or gzip) under ``path`` in the guest; returns
        ``{"entries", "bytes"}``. ``tarball`` is the archive's bytes, a readable file, a local
        .tar file path, or a local folder (packed here, its contents at ``path``)."""
        if isinstance(tarball, (str, os.PathLike)):
            local = os.fspath(tarball)
            if os.path.isdir(local):
                data = pack_folder(local)
            else:
                with open(local, "rb") as f:
                    data = f.read()
        elif isinstance(tarball, (bytes, bytearray, memoryview)):
            data = bytes(tarball)
        else:
            data = tarball.read()
        return self._t.json("POST", self._route("/tar"), params={"path": path}, body=data,
                            content_type="application/x-tar")

    def download_tar(self, path: str) -> bytes:
        """A folder (or file) of the guest as an uncompressed tarball."""
        return self._t.request("GET", self._route("/tar"), params={"path": path}, accept="application/x-tar")[2]


def pack_folder(folder: str) -> bytes:
    """A local folder's contents as a tarball (names relative to the folder, symlinks kept as links)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name in sorted(os.listdir(folder)):
            tar.add(os.path.join(folder, name), arcname=name)
    return buf.getvalue()


__all__ = ["Sandbox", "Filesystem", "pack_folder", "KilnError"]

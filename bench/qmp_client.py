"""A small QMP client for the benchmarks: JSON lines over QEMU's unix socket, replies matched to
commands in order, events kept until asked for, fds passed with SCM_RIGHTS (for getfd)."""
from __future__ import annotations

import json
import socket
import time
from typing import Optional


class QmpError(RuntimeError):
    pass


class Qmp:
    def __init__(self, path: str, timeout: float = 15.0):
        """Connects (retrying while QEMU has not made its socket yet) and negotiates capabilities."""
        deadline = time.monotonic() + timeout
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(path)
                break
            except (FileNotFoundError, ConnectionRefusedError):
                sock.close()
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.002)
        self.sock = sock
        self.timeout = timeout
        self.sock.settimeout(timeout)
        self.buffer = b""
        self.events: list[dict] = []
        greeting = self._read_message()
        if "QMP" not in greeting:
            raise QmpError(f"not a QMP greeting: {greeting}")
        self.execute("qmp_capabilities")

    def _read_message(self) -> dict:
        while b"\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise QmpError("QEMU closed the QMP connection")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return json.loads(line)

    def execute(self, command: str, arguments: Optional[dict] = None, fd: Optional[int] = None):
        """Sends one command (with `fd` attached, for getfd) and returns its "return" value; events
        that arrive before the reply are kept for wait_event."""
        msg = {"execute": command}
        if arguments is not None:
            msg["arguments"] = arguments
        data = json.dumps(msg).encode() + b"\n"
        self.sock.settimeout(self.timeout)
        if fd is None:
            self.sock.sendall(data)
        else:
            socket.send_fds(self.sock, [data], [fd])
        while True:
            reply = self._read_message()
            if "event" in reply:
                self.events.append(reply)
            elif "error" in reply:
                raise QmpError(f"{command}: {reply['error'].get('desc', reply['error'])}")
            elif "return" in reply:
                return reply["return"]

    def wait_event(self, name: str, timeout: float = 30.0, match=lambda data: True) -> dict:
        """The first event called `name` whose data `match` accepts, kept or still to come."""
        deadline = time.monotonic() + timeout
        while True:
            for i, ev in enumerate(self.events):
                if ev["event"] == name and match(ev.get("data", {})):
                    return self.events.pop(i)
            left = deadline - time.monotonic()
            if left <= 0:
                raise QmpError(f"no {name} event within {timeout} s")
            self.sock.settimeout(left)
            try:
                self.events.append(self._read_message())
            except socket.timeout:
                raise QmpError(f"no {name} event within {timeout} s") from None

    def close(self) -> None:
        self.sock.close()

"""Starts, restarts and stops a real kilnd for the API and SDK suites: a fresh reflink data dir
under /var/lib/kiln, a free loopback port, tokens from `kilnd token create`, and /proc helpers
that count what it leaves behind (QEMU processes, fds, run dirs)."""
from __future__ import annotations

import http.client
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterator, Optional

REPO = Path(__file__).resolve().parents[2]
DATA_ROOT = Path(os.environ.get("KILN_TEST_DATA_ROOT", "/var/lib/kiln"))


def kilnd_binary() -> Path:
    build = Path(os.environ.get("KILN_BUILD", "build/release"))
    if not build.is_absolute():
        build = REPO / build
    return build / "src" / "kilnd" / "kilnd"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def qemu_pids(marker: str) -> list[int]:
    """PIDs of live QEMU processes whose command line mentions `marker` (a data dir)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # A zombie still has its stat but no cmdline; a zombie QEMU is not running.
        if b") Z " in stat:
            continue
        if b"qemu" in cmdline.split(b"\0", 1)[0] and marker.encode() in cmdline:
            pids.append(int(entry))
    return sorted(pids)


def cpu_ticks(pid: int) -> int | None:
    """User + system CPU time of `pid` so far, in clock ticks; None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    # Fields after the command name, which is in parentheses and may hold spaces.
    rest = stat[stat.rindex(")") + 2:].split()
    return int(rest[11]) + int(rest[12])  # utime, stime: fields 14 and 15


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return b") Z " not in f.read()
    except OSError:
        return False


def wait_until(predicate, timeout: float, interval: float = 0.1):
    """Polls `predicate` until it returns something truthy or `timeout` passes; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


class Kilnd:
    """One kilnd process over its own data dir. `extra_env` sets config (KILN_<KEY>=value)."""

    def __init__(self, extra_env: Optional[dict[str, str]] = None, name: str = "test"):
        self.binary = kilnd_binary()
        self.data_dir = DATA_ROOT / f"{name}-{secrets.token_hex(6)}"
        self.port = free_port()
        self.extra_env = dict(extra_env or {})
        self.log_dir = Path(tempfile.mkdtemp(prefix="kilnd-log-"))
        self.proc: Optional[subprocess.Popen] = None
        self.tokens: dict[str, str] = {}
        self.starts = 0

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"kilnd-{self.starts}.log"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("KILN_") or k == "KILN_CACHE"}
        env["KILN_DATA_DIR"] = str(self.data_dir)
        env["KILN_LISTEN"] = f"127.0.0.1:{self.port}"
        env.update(self.extra_env)
        return env

    @classmethod
    def launched(cls, extra_env: Optional[dict[str, str]] = None, name: str = "test",
                 tokens: Optional[dict[str, str]] = None) -> "Kilnd":
        """A started kilnd with these tokens (name -> scope) created first; cleaned up if the start fails."""
        instance = cls(extra_env, name)
        try:
            for token, scope in (tokens or {}).items():
                instance.create_token(token, scope)
            instance.start()
        except Exception:
            instance.cleanup()
            raise
        return instance

    def create_token(self, name: str, scope: str = "admin", quota: str = "", e2b: bool = False) -> str:
        """`kilnd token create --name NAME --scope SCOPE [--quota Q] [--e2b]`; the token is the last
        non-empty line of stdout. Admin by default: most tests act as the single operator. e2b: in
        the E2B API key form (docs/e2b.md)."""
        args = [str(self.binary), "token", "create", "--name", name, "--scope", scope]
        if quota:
            args += ["--quota", quota]
        if e2b:
            args.append("--e2b")
        out = subprocess.run(args, env=self.env(), capture_output=True, text=True, timeout=60)
        if out.returncode != 0:
            raise RuntimeError(f"kilnd token create failed ({out.returncode}): {out.stderr.strip()}")
        lines = [line.strip() for line in out.stdout.splitlines() if line.strip()]
        if not lines:
            raise RuntimeError(f"kilnd token create printed nothing; stderr: {out.stderr.strip()}")
        self.tokens[name] = lines[-1]
        return lines[-1]

    def start(self, timeout: float = 180.0) -> None:
        """Starts `kilnd serve` and waits for /healthz (the first start also bakes nothing: the
        template is baked on first use, which the callers wait for with a longer timeout)."""
        if not self.binary.exists():
            raise RuntimeError(f"{self.binary} does not exist (build kilnd, or set KILN_BUILD)")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.starts += 1
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([str(self.binary), "serve"], env=self.env(), stdout=log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"kilnd exited with {self.proc.returncode} while starting:\n{self.log_tail()}")
            if self.healthy():
                return
            time.sleep(0.05)
        raise RuntimeError(f"kilnd did not answer /healthz within {timeout} s:\n{self.log_tail()}")

    def healthy(self) -> bool:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
            conn.request("GET", "/healthz")
            resp = conn.getresponse()
            resp.read()
            conn.close()
            return resp.status == 200
        except OSError:
            return False

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def log_lines(self) -> list[dict]:
        """kilnd's JSON log lines of the current run (non-JSON lines are returned as {'raw': ...})."""
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                out.append({"raw": line})
        return out

    def stop(self, timeout: float = 60.0) -> Optional[int]:
        """SIGTERM by PID, then SIGKILL if it does not exit; returns the exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError(f"kilnd did not exit within {timeout} s of SIGTERM")

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def restart(self, timeout: float = 180.0) -> None:
        self.stop()
        self.start(timeout)

    def qemu_pids(self) -> list[int]:
        return qemu_pids(str(self.data_dir))

    def run_dirs(self) -> list[str]:
        vms = self.data_dir / "vms"
        return sorted(os.listdir(vms)) if vms.is_dir() else []

    def cleanup(self) -> list[int]:
        """Stops kilnd, kills (by PID) any QEMU still running on this data dir and removes the dir.
        Returns the QEMU PIDs it had to kill (a non-empty list is a leak worth reporting)."""
        try:
            self.stop()
        finally:
            leftover = self.qemu_pids()
            for pid in leftover:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            wait_until(lambda: not self.qemu_pids(), 10)
            shutil.rmtree(self.data_dir, ignore_errors=True)
            shutil.rmtree(self.log_dir, ignore_errors=True)
        return leftover


class HangingServer:
    """A listener on loopback that accepts connections and never answers (a git server that hangs:
    a job fetching from it stays in its checkout). close() drops every held connection."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)

    def close(self):
        self.sock.close()
        for c in self.held:
            c.close()


def serving(extra_env: Optional[dict[str, str]] = None, name: str = "test",
            tokens: Optional[dict[str, str]] = None) -> Iterator[Kilnd]:
    """For a module's kilnd fixture (`yield from serving(env, name, {"admin": "admin"})`): a
    Kilnd.launched one; afterwards stopped, failing when QEMU was left behind."""
    instance = Kilnd.launched(extra_env, name, tokens)
    yield instance
    leftover = instance.cleanup()
    assert not leftover, f"kilnd left QEMU processes behind: {leftover}"

"""A real PostgreSQL for the fleet tests: Debian's own binaries (initdb, pg_ctl) run as the
`postgres` user in a temporary directory, listening only on a unix socket inside it (no TCP port,
no system service, nothing left behind). kilnd reaches it with a libpq URL whose `host` is that
socket directory."""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import quote

PG_ROOT = Path("/usr/lib/postgresql")


def pg_bin_dir() -> Path:
    """The newest installed PostgreSQL's bin dir (Debian 12: /usr/lib/postgresql/15/bin)."""
    versions = sorted((p for p in PG_ROOT.glob("*/bin") if (p / "initdb").exists()),
                      key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
    if not versions:
        raise RuntimeError("PostgreSQL is not installed (no initdb under /usr/lib/postgresql/*/bin): "
                           "run scripts/install-deps.sh")
    return versions[-1]


def _as_postgres(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    """Runs a PostgreSQL tool as the postgres user (initdb and the server refuse root)."""
    return subprocess.run(["runuser", "-u", "postgres", "--", *args], capture_output=True, text=True, **kwargs)


class PgServer:
    """One PostgreSQL cluster of our own. `url` names a database `kiln` owned by `postgres`."""

    def __init__(self, database: str = "kiln"):
        self.bin = pg_bin_dir()
        self.root = Path(tempfile.mkdtemp(prefix="kiln-pg-"))
        self.data = self.root / "data"
        self.socket_dir = self.root / "run"
        self.log = self.root / "server.log"
        self.database = database
        self.running = False
        shutil.chown(self.root, "postgres", "postgres")
        os.chmod(self.root, 0o755)  # kilnd (root) and the tools reach the socket inside it
        self.socket_dir.mkdir()
        shutil.chown(self.socket_dir, "postgres", "postgres")
        init = _as_postgres([str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres",
                             "--auth=trust", "-E", "UTF8", "--no-sync"])
        if init.returncode != 0:
            raise RuntimeError(f"initdb failed: {init.stderr.strip() or init.stdout.strip()}")
        with open(self.data / "postgresql.conf", "a") as conf:
            # Unix socket only; fsync off because the tests' data need not survive a machine crash
            # (a PostgreSQL stop/start, which the tests do, keeps everything).
            conf.write(f"listen_addresses = ''\nunix_socket_directories = '{self.socket_dir}'\n"
                       "fsync = off\nmax_connections = 200\n")

    @property
    def url(self) -> str:
        return self.url_for(self.database)

    def url_for(self, database: str) -> str:
        return f"postgresql://postgres@/{database}?host={quote(str(self.socket_dir), safe='')}"

    def start(self, timeout: float = 60) -> None:
        started = _as_postgres([str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log),
                                "-w", "-t", str(int(timeout)), "start"])
        if started.returncode != 0:
            raise RuntimeError(f"pg_ctl start failed: {started.stderr.strip()}\n{self.tail_log()}")
        self.running = True
        if not self.psql("postgres", f"SELECT 1 FROM pg_database WHERE datname = '{self.database}'").strip():
            self.psql("postgres", f'CREATE DATABASE "{self.database}"')

    def stop(self, mode: str = "fast") -> None:
        """Stops the server (`fast`: disconnects clients, as a restart by an operator does;
        `immediate`: as a crash)."""
        if not self.running:
            return
        stopped = _as_postgres([str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop"])
        if stopped.returncode != 0:
            raise RuntimeError(f"pg_ctl stop failed: {stopped.stderr.strip()}")
        self.running = False

    def psql(self, database: str, sql: str) -> str:
        """Runs `sql` and returns its rows as psql prints them unaligned (-At)."""
        out = _as_postgres([str(self.bin / "psql"), "-h", str(self.socket_dir), "-U", "postgres", "-d", database,
                            "-v", "ON_ERROR_STOP=1", "-At", "-c", sql])
        if out.returncode != 0:
            raise RuntimeError(f"psql failed: {out.stderr.strip()}")
        return out.stdout

    def query(self, sql: str) -> list[list[str]]:
        """Rows of `sql` on the kiln database, each a list of column texts."""
        return [line.split("|") for line in self.psql(self.database, sql).splitlines() if line]

    def create_database(self, name: str) -> str:
        self.psql("postgres", f'CREATE DATABASE "{name}"')
        return self.url_for(name)

    def tail_log(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def cleanup(self) -> None:
        try:
            self.stop("immediate")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> "PgServer":
        try:
            self.start()
        except Exception:
            self.cleanup()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.cleanup()


def started(database: str = "kiln") -> PgServer:
    """A started server (the caller cleans it up); when CI=true a failure to start is an error the
    test reports, never a skip."""
    server = PgServer(database)
    try:
        server.start()
    except Exception:
        server.cleanup()
        raise
    return server

"""Two or three real kilnd hosts on one store for the fleet tests (docs/fleet.md): each with its own
data dir, port, host name, network pool and jail uids, all with one fleet secret. The store is
`store_url` (KILN_STORE, e.g. the `pg` fixture's PostgreSQL) when given; otherwise they share one
SQLite file: every host's kilnd.db is a symlink to the first host's (SQLite follows it, so the
WAL and its locks are one)."""
from __future__ import annotations

import hashlib
import hmac
import os
import sqlite3
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "api"))

from fleet_hosts import FLEET_SECRET, host_resources, remove_host_tables  # noqa: E402
from kilnd_fixture import Kilnd  # noqa: E402


def host_env(index: int, name: str, extra: dict[str, str]) -> dict[str, str]:
    """Host `index`'s own resources (fleet_hosts.host_resources), one CI worker, and `extra`."""
    return {**host_resources(index, name), "KILN_CI_WORKERS": "1", **extra}


class Fleet:
    """Hosts fleet-a, fleet-b, ... over one store. hosts[0] made the store and holds the tokens."""

    def __init__(self, extras: list[dict[str, str]], tokens: dict[str, str], store_url: str | None = None,
                 pg=None, database: str = ""):
        self.hosts: list[Kilnd] = []
        self.store_url = store_url
        self.pg, self.database = pg, database
        self.tokens: dict[str, str] = {}
        try:
            for index, extra in enumerate(extras):
                name = "fleet-" + "abc"[index]
                env = host_env(index, name, extra)
                if store_url:
                    env["KILN_STORE"] = store_url
                host = Kilnd(extra_env=env, name=name)
                host.host_name = name
                self.hosts.append(host)
                if index == 0:
                    for token, scope in tokens.items():
                        self.tokens[token] = host.create_token(token, scope)
                elif not store_url:
                    host.data_dir.mkdir(parents=True, exist_ok=True)
                    os.symlink(self.hosts[0].data_dir / "kilnd.db", host.data_dir / "kilnd.db")
            for host in self.hosts:
                host.start()
        except Exception:
            self.cleanup()
            raise

    def store_sql(self, sql: str) -> None:
        """Runs `sql` (values written in, no parameters) on the shared store directly: a record made
        wrong on purpose, a host that is not a kilnd."""
        if self.pg is not None:
            self.pg.psql(self.database, sql)
            return
        with sqlite3.connect(self.hosts[0].data_dir / "kilnd.db", timeout=10) as db:
            db.execute(sql)

    def cleanup(self) -> list[int]:
        leftover: list[int] = []
        for host in reversed(self.hosts):  # the store's own host last
            leftover += host.cleanup()
        remove_host_tables(self.hosts)
        return leftover


def fleet_headers(method: str, target: str, token_id: int, host: str = "fleet-x", secret: str = FLEET_SECRET,
                  time_ms: int | None = None, body: bytes = b"") -> dict[str, str]:
    """The headers a host sends with a forwarded request (daemon/fleet/fleet_signature.h)."""
    t = int(time.time() * 1000) if time_ms is None else time_ms
    body_sha256 = hashlib.sha256(body).hexdigest()
    message = f"kiln-fleet-v1\n{t}\n{host}\n{method}\n{target}\n{token_id}\n{body_sha256}".encode()
    return {
        "X-Kiln-Fleet-Host": host,
        "X-Kiln-Fleet-Time": str(t),
        "X-Kiln-Fleet-Token": str(token_id),
        "X-Kiln-Fleet-Body-Sha256": body_sha256,
        "X-Kiln-Fleet-Signature": hmac.new(secret.encode(), message, hashlib.sha256).hexdigest(),
    }

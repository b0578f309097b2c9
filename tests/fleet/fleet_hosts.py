"""Several kilnd hosts on one store for the fleet tests: each with its own data dir, port,
host_name, network pool and jail uid range, all sharing one store: PostgreSQL (pg_server.py) when
this kilnd build has the `store` key, otherwise (before the PostgreSQL engine is built in) one
SQLite file, the first host's kilnd.db, which the others' data dirs link to (SQLite follows the
link, so the WAL and its locks are shared too)."""
from __future__ import annotations

import hashlib
import secrets
import subprocess
from typing import Callable, Optional

from kilnd_fixture import Kilnd, kilnd_binary


def kilnd_has_postgresql() -> bool:
    """Whether this kilnd was built with the PostgreSQL store (it then names postgresql:// URLs)."""
    return b"postgresql://" in kilnd_binary().read_bytes()


# The secret every fleet test host shares (the forwarding tests also sign requests with it).
FLEET_SECRET = "fleet-test-" + secrets.token_hex(16)


def host_resources(index: int, name: str) -> dict[str, str]:
    """Host `index`'s name, fleet secret, network pool and jail uids: apart from every other
    host's on this machine and from the other suites' kilnds. Pools no other test uses
    (test_network's server is on 10.211/16, net_isolation's 10.209 and 10.207, the default 10.201)."""
    return {
        "KILN_HOST_NAME": name,
        "KILN_FLEET_SECRET": FLEET_SECRET,
        "KILN_NETWORK_POOL": f"10.{230 + index}.0.0/16",
        "KILN_JAIL_UID_BASE": str(2_100_000_000 + index * 100_000),
        "KILN_JAIL_UID_COUNT": "1000",
    }


def host_env(index: int, name: str, timeout_seconds: int) -> dict[str, str]:
    """A host whose heartbeat and timeout are short enough for a test to wait out."""
    return {**host_resources(index, name), "KILN_HOST_HEARTBEAT_SECONDS": "1",
            "KILN_HOST_TIMEOUT_SECONDS": str(timeout_seconds)}


def host_table(pool: str) -> str:
    """The nftables host table of a kilnd on `pool` (not the default pool): kiln_<8 hex of its SHA-256>."""
    return "kiln_" + hashlib.sha256(pool.encode()).hexdigest()[:8]


def remove_host_tables(hosts: list[Kilnd]) -> None:
    """kilnd leaves its nftables host table in place when it stops (for its next start); test
    hosts will not start again, and their rules must not outlive the test."""
    for pool in {h.extra_env["KILN_NETWORK_POOL"] for h in hosts}:
        subprocess.run(["nft", "delete", "table", "ip", host_table(pool)], capture_output=True)


class Fleet:
    """Makes hosts on one store; cleans every one up at the end."""

    def __init__(self, pg_url: Optional[Callable[[], str]], timeout_seconds: int = 6):
        self.hosts: list[Kilnd] = []
        self.timeout_seconds = timeout_seconds
        self.store_url = pg_url() if pg_url and kilnd_has_postgresql() else None
        self.tag = secrets.token_hex(3)

    def add(self, name: str, extra: Optional[dict[str, str]] = None, tokens: tuple[str, ...] = ()) -> Kilnd:
        env = host_env(len(self.hosts), f"{name}-{self.tag}", self.timeout_seconds)
        if self.store_url:
            env["KILN_STORE"] = self.store_url
        env.update(extra or {})
        host = Kilnd(extra_env=env, name=f"fleet-{name}")
        self.hosts.append(host)
        if not self.store_url and len(self.hosts) > 1:
            # One SQLite file for all: the first host's.
            host.data_dir.mkdir(parents=True, exist_ok=True)
            (host.data_dir / "kilnd.db").symlink_to(self.hosts[0].data_dir / "kilnd.db")
        for token in tokens:
            host.create_token(token, "admin")
        host.start()
        return host

    @property
    def host_names(self) -> list[str]:
        return [h.extra_env["KILN_HOST_NAME"] for h in self.hosts]

    def cleanup(self) -> None:
        for host in reversed(self.hosts):
            host.cleanup()
        remove_host_tables(self.hosts)

"""k.hosts against a real kilnd (a fleet of one): list, drain (a create is then refused with
ServerError 503 while a running sandbox keeps working), undrain; sb.host names the host; a
tenant's token is refused."""
from __future__ import annotations

import pytest

from kiln import Forbidden, Host, Kiln, KilnError


def test_hosts_list_drain_undrain(k, kilnd):
    hosts = k.hosts.list()
    assert len(hosts) == 1 and isinstance(hosts[0], Host)
    me = hosts[0]
    assert me.is_self and me.state == "alive" and not me.draining and me.max_sandboxes > 0, me
    with k.sandboxes.create(template="tiny", ttl_seconds=300) as sb:
        assert sb.host == me.name
        assert k.hosts.list()[0].live_sandboxes >= 1
        drained = k.hosts.drain(me.name)
        try:
            assert drained.state == "draining" and drained.draining
            with pytest.raises(KilnError) as refused:
                k.sandboxes.create(template="tiny", ttl_seconds=60)
            assert refused.value.code == "unavailable" and "draining" in str(refused.value)
            assert sb.exec("echo ok").stdout == "ok\n"
        finally:
            assert k.hosts.undrain(me.name).state == "alive"
    bob = Kiln(kilnd.url, kilnd.tokens["bob"])
    with pytest.raises(Forbidden):
        bob.hosts.list()

"""Several hosts on one machine: Linux network namespaces on a private bridge.

``with lan(3) as hosts:`` creates a *switch* namespace holding a bridge and one
namespace per host, each with a veth cable to the bridge and an address in a
private 10.231.X.0/24 range that exists only inside these namespaces.  Nothing is
attached to the machine's own interfaces, so no packet can leave.  Everything is
deleted on exit, also when the test fails.

Needs root and iproute2.  ``require_netns()`` skips with the reason otherwise — and
fails instead when ``VRAMANCER_REQUIRE_NETNS=1`` (set by ``.ci/run``: CI runs as
root, so a skip there would hide a broken test).
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import pytest

REQUIRE_ENV = "VRAMANCER_REQUIRE_NETNS"


def netns_unavailable_reason() -> str | None:
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "iproute2 (`ip`) is not installed"
    probe = f"vrmprobe{secrets.token_hex(3)}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"cannot create a network namespace: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def require_netns() -> None:
    reason = netns_unavailable_reason()
    if reason is None:
        return
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{REQUIRE_ENV}=1 but {reason}")
    pytest.skip(reason)


def _ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")


@dataclass(frozen=True)
class Host:
    namespace: str
    address: str

    def command(self, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside this host's namespace."""
        return ["ip", "netns", "exec", self.namespace, *argv]


@contextmanager
def lan(count: int) -> Iterator[list[Host]]:
    tag = secrets.token_hex(2)
    subnet = 10 + secrets.randbelow(240)
    switch = f"vrs{tag}"
    names = [f"vrh{tag}{i}" for i in range(count)]
    created: list[str] = []
    try:
        _ip("netns", "add", switch)
        created.append(switch)
        # Flood multicast like an unmanaged switch: with snooping, a port that joined
        # 224.0.0.251 late may miss mDNS until the bridge relearns its groups.
        _ip("-n", switch, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0")
        _ip("-n", switch, "link", "set", "br0", "up")
        hosts = []
        for index, name in enumerate(names):
            _ip("netns", "add", name)
            created.append(name)
            _ip("-n", name, "link", "set", "lo", "up")
            port = f"p{index}"
            _ip(
                "-n",
                switch,
                "link",
                "add",
                port,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                name,
            )
            _ip("-n", switch, "link", "set", port, "master", "br0")
            _ip("-n", switch, "link", "set", port, "up")
            address = f"10.231.{subnet}.{index + 2}"
            _ip("-n", name, "addr", "add", f"{address}/24", "dev", "eth0")
            _ip("-n", name, "link", "set", "eth0", "up")
            hosts.append(Host(name, address))
        yield hosts
    finally:
        for name in reversed(created):
            subprocess.run(["ip", "netns", "del", name], capture_output=True)

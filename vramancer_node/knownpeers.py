"""Addresses of the members last seen alive, kept so a restarted node finds its cluster.

Theory of operation
-------------------
A node that restarts with its stored membership but without ``--peer`` and without
mDNS would know nobody: the others keep probing the address it had, and if it comes
back on another one (a new DHCP lease, ``--listen`` on port 0) they never meet again.
Serf solves this with a snapshot of the member list; this is the same idea, smaller:

* while the node runs, every :data:`SAVE_INTERVAL_S` and once more at shutdown, the
  addresses of the members it sees alive (at most :data:`ADDRESSES_MAX`, by node id) are
  written to ``<state-dir>/known-peers.json`` when they changed (atomic, mode 0600);
* at start they are added to the membership seeds, after ``network.peers`` and the
  address it joined through.  A seed that no longer answers costs one failed
  push-pull; the join retries while the node is alone.

The file is a hint, never trusted for anything else: a malformed or unreadable one is
logged and ignored (the node starts as it would without it), and what a seed says is
authenticated like any other peer.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import trio

from vramancer_node.atomic import atomic_write
from vramancer_node.config import parse_hostport
from vramancer_node.layout import KNOWN_PEERS_FILE_NAME
from vramancer_node.logs import get_logger

log = get_logger("knownpeers")

VERSION = 1
ADDRESSES_MAX = 64
"""Addresses kept: enough to find a cluster again, small enough to try them all."""
FILE_BYTES_MAX = 64 * 1024
SAVE_INTERVAL_S = 30.0
"""How often the list is refreshed while the node runs (only written when it changed)."""


def known_peers_path(state_dir: Path) -> Path:
    return Path(state_dir) / KNOWN_PEERS_FILE_NAME


def encode(addresses: Iterable[str]) -> bytes:
    chosen = list(dict.fromkeys(addresses))[:ADDRESSES_MAX]
    return json.dumps({"version": VERSION, "addresses": chosen}, indent=1).encode() + b"\n"


def decode(raw: bytes) -> list[str]:
    """The addresses in ``raw``; ``ValueError`` naming what is wrong with it."""
    if len(raw) > FILE_BYTES_MAX:
        raise ValueError(f"larger than {FILE_BYTES_MAX} bytes")
    document: Any = json.loads(raw)
    if not isinstance(document, dict) or document.get("version") != VERSION:
        raise ValueError(f"not a version {VERSION} known-peers document")
    addresses = document.get("addresses")
    if not isinstance(addresses, list) or len(addresses) > ADDRESSES_MAX:
        raise ValueError(f"addresses must be a list of at most {ADDRESSES_MAX}")
    for address in addresses:
        if not isinstance(address, str):
            raise ValueError(f"address {address!r} is not a string")
        parse_hostport(address)  # ValueError names the bad one
    return list(addresses)


def load_known_peers(state_dir: Path) -> list[str]:
    """The saved addresses, or none when the file is absent, unreadable or malformed."""
    path = known_peers_path(state_dir)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return []
    except OSError as exc:
        log.warning("cannot read the known peers", extra={"path": str(path), "detail": str(exc)})
        return []
    try:
        return decode(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        log.warning(
            "ignoring a malformed known-peers file", extra={"path": str(path), "detail": str(exc)}
        )
        return []


class KnownPeersKeeper:
    """Writes the alive members' addresses when they change (see the module docstring)."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = Path(state_dir)
        self._saved: bytes | None = None

    async def save(self, addresses: Iterable[str]) -> None:
        """Write ``addresses`` (in the caller's order) unless they are what is saved."""
        data = encode(addresses)
        if data == self._saved:
            return
        try:
            await trio.to_thread.run_sync(atomic_write, known_peers_path(self.state_dir), data)
        except OSError as exc:
            log.warning("cannot save the known peers", extra={"detail": str(exc)})
            return
        self._saved = data

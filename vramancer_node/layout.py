"""The names of everything inside a node's state directory, in one place."""

from __future__ import annotations

KEY_FILE_NAME = "node.key"
"""Ed25519 identity key (mode 0600, created once, never replaced)."""

LOCK_FILE_NAME = "node.lock"
"""flock held by the running daemon; holds its pid."""

API_SOCKET_NAME = "api.sock"
"""Unix socket of the local HTTP API (mode 0600)."""

KNOWN_PEERS_FILE_NAME = "known-peers.json"
"""Members last seen alive, seeds for the next start (see :mod:`vramancer_node.knownpeers`)."""

DRAIN_FILE_NAME = "drain"
"""The operator's drain flag, JSON (see :mod:`vramancer_node.drain`); absent: not draining."""

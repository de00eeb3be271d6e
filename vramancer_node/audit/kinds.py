"""The kinds of audit record the daemon writes, and the body fields of each.

Theory of operation
-------------------
A record's ``kind`` names the event and its ``body`` carries the details.  The table
below is the contract between the code that records events and whoever reads the log
(operators, ``vramancer audit``, SIEM exports): each kind lists the fields its body must
have and the fields it may have, and nothing else is accepted, so no caller can slip
content into the log by accident.  Values are canonical msgpack values (no floats:
times are Unix seconds or milliseconds as integers, sizes are integers).

The table is **append only**: a kind is never renamed or given a new meaning, and a
field is never removed or redefined; a new field is optional.

=======================  =====================================================
kind                     body
=======================  =====================================================
``cluster_founded``      ``cluster_id`` (str), ``node_name`` (str): this node founded
                         the cluster and holds its CA key
``node_admitted``        ``node_id`` (str), ``node_name`` (str), ``serial`` (int): an
                         admin admitted a node and issued certificate ``serial``
``token_created``        ``token_id`` (str), ``uses`` (int), ``expires_at`` (int, Unix
                         s); never the token secret
``token_used``           ``token_id`` (str), ``node_id`` (str): who redeemed it
``handshake_refused``    ``reason`` (str), ``count`` (int), ``addresses`` (list of str,
                         at most ``REFUSED_ADDRESSES_MAX``); optional
                         ``addresses_omitted`` (int), ``interval_s`` (int): one
                         aggregated record per reason per interval
``certificate_revoked``  ``serial`` (int), ``node_id`` (str); optional ``reason`` (str),
                         ``log_index`` (int: the committed consensus entry)
``placement_committed``  ``model`` (str), ``placement_version`` (int); optional
                         ``stages`` (list of maps ``{node_id, layer_begin, layer_end}``),
                         ``log_index`` (int)
``config_changed``       ``keys`` (list of str: the settings that changed; never their
                         values, which may be secrets); optional ``by`` (str)
``key_rotated``          ``key`` (str: ``identity``, ``gossip``, ``ca``, ...),
                         ``new_fingerprint`` (str); optional ``old_fingerprint`` (str)
``federation_changed``   ``action`` (str: ``linked`` or ``unlinked``), ``cluster_id``
                         (str); optional ``ca_fingerprint`` (str), ``address`` (str)
``inference_served``     ``who`` (str: node id or API principal), ``model`` (str);
                         never prompts, completions or token ids
``cosign_refused``       ``node_id`` (str), ``size`` (int), ``reason`` (str): a peer
                         showed a checkpoint this node refused to cosign (a split
                         view, a rollback, an inconsistent log)
``member_committed``     ``node_id`` (str), ``node_name`` (str), ``serial`` (int),
                         ``log_index`` (int): an admission committed on the
                         consensus log (written by every node)
``federation_committed`` ``action`` (str: ``linked`` or ``unlinked``), ``address``
                         (str), ``ca_fingerprint`` (str), ``log_index`` (int)
``control_rejected``     ``log_index`` (int), ``reason`` (str); optional ``command``
                         (int: the command kind): a committed consensus entry every
                         node's state machine refused
``drain_changed``        ``node_id`` (str), ``draining`` (bool): an operator drained
                         this node (or undrained it) through the local API
=======================  =====================================================
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = [
    "CERTIFICATE_REVOKED",
    "CLUSTER_FOUNDED",
    "CONFIG_CHANGED",
    "CONTROL_REJECTED",
    "COSIGN_REFUSED",
    "DRAIN_CHANGED",
    "FEDERATION_CHANGED",
    "FEDERATION_COMMITTED",
    "HANDSHAKE_REFUSED",
    "INFERENCE_SERVED",
    "KEY_ROTATED",
    "KINDS",
    "MEMBER_COMMITTED",
    "NODE_ADMITTED",
    "PLACEMENT_COMMITTED",
    "TOKEN_CREATED",
    "TOKEN_USED",
    "BodyFields",
    "check_body",
]

CLUSTER_FOUNDED = "cluster_founded"
NODE_ADMITTED = "node_admitted"
TOKEN_CREATED = "token_created"
TOKEN_USED = "token_used"
HANDSHAKE_REFUSED = "handshake_refused"
CERTIFICATE_REVOKED = "certificate_revoked"
PLACEMENT_COMMITTED = "placement_committed"
CONFIG_CHANGED = "config_changed"
KEY_ROTATED = "key_rotated"
FEDERATION_CHANGED = "federation_changed"
INFERENCE_SERVED = "inference_served"
COSIGN_REFUSED = "cosign_refused"
MEMBER_COMMITTED = "member_committed"
FEDERATION_COMMITTED = "federation_committed"
CONTROL_REJECTED = "control_rejected"
DRAIN_CHANGED = "drain_changed"


@dataclass(frozen=True)
class BodyFields:
    """The fields a body of one kind must and may carry."""

    required: frozenset[str]
    optional: frozenset[str] = frozenset()


def _fields(required: str, optional: str = "") -> BodyFields:
    return BodyFields(frozenset(required.split()), frozenset(optional.split()))


KINDS: Mapping[str, BodyFields] = {
    CLUSTER_FOUNDED: _fields("cluster_id node_name"),
    NODE_ADMITTED: _fields("node_id node_name serial"),
    TOKEN_CREATED: _fields("token_id uses expires_at"),
    TOKEN_USED: _fields("token_id node_id"),
    HANDSHAKE_REFUSED: _fields("reason count addresses", "addresses_omitted interval_s"),
    CERTIFICATE_REVOKED: _fields("serial node_id", "reason log_index"),
    PLACEMENT_COMMITTED: _fields("model placement_version", "stages log_index"),
    CONFIG_CHANGED: _fields("keys", "by"),
    KEY_ROTATED: _fields("key new_fingerprint", "old_fingerprint"),
    FEDERATION_CHANGED: _fields("action cluster_id", "ca_fingerprint address"),
    INFERENCE_SERVED: _fields("who model"),
    COSIGN_REFUSED: _fields("node_id size reason"),
    MEMBER_COMMITTED: _fields("node_id node_name serial log_index"),
    FEDERATION_COMMITTED: _fields("action address ca_fingerprint log_index"),
    CONTROL_REJECTED: _fields("log_index reason", "command"),
    DRAIN_CHANGED: _fields("node_id draining"),
}
"""Every kind and its body fields.  Append only."""


def check_body(kind: str, body: Mapping[str, object]) -> None:
    """Raise ``ValueError`` unless ``body`` has exactly the fields ``kind`` allows."""
    fields = KINDS.get(kind)
    if fields is None:
        raise ValueError(f"unknown audit record kind {kind!r} (see vramancer_node.audit.kinds)")
    keys = set(body)
    missing = fields.required - keys
    unknown = keys - fields.required - fields.optional
    if missing:
        raise ValueError(f"{kind} body lacks {', '.join(sorted(missing))}")
    if unknown:
        raise ValueError(f"{kind} body has unknown fields {', '.join(sorted(unknown))}")

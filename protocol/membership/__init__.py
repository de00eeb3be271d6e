"""SWIM + Lifeguard cluster membership as a pure, sans-I/O core (after hashicorp/memberlist).

One concept per module:

=================  ==============================================================
``core``           :class:`Membership`: inputs, timers, outputs (start here)
``table``          applying alive / suspect / dead rumours to the member table
``state``          member states, claims and the transition table
``record``         :class:`MemberRecord` and :class:`DeviceInfo`, with their limits
``messages``       the wire messages and :class:`MessageType`
``codec``          the versioned msgpack wire format and the datagram budget
``events``         :class:`Outgoing` and the membership events
``suspicion``      Lifeguard's dynamic suspicion timeout
``awareness``      Lifeguard's local health multiplier
``broadcast``      the transmit-limited piggyback queue
``probe``          randomized round-robin probing and probes in flight
``rtt``            RTT averages from our probes and when to publish them
``timing``         :class:`MembershipTiming` and the LAN / WAN / LOCAL presets
``testing``        a seeded fake network and a discrete-event cluster driver
=================  ==============================================================
"""

from __future__ import annotations

from protocol.membership.codec import (
    DATAGRAM_PLAINTEXT_BYTES_MAX,
    UDP_PAYLOAD_BYTES_MAX,
    decode,
    encode,
)
from protocol.membership.core import Membership
from protocol.membership.events import (
    MemberAlive,
    MemberDead,
    MemberJoined,
    MemberLeft,
    MembershipEvent,
    MemberSuspected,
    MemberUpdated,
    Outgoing,
)
from protocol.membership.messages import MessageType
from protocol.membership.record import DeviceInfo, MemberRecord, peer_values
from protocol.membership.state import Member, MemberState
from protocol.membership.timing import MembershipTiming

__all__ = [
    "DATAGRAM_PLAINTEXT_BYTES_MAX",
    "UDP_PAYLOAD_BYTES_MAX",
    "DeviceInfo",
    "Member",
    "MemberAlive",
    "MemberDead",
    "MemberJoined",
    "MemberLeft",
    "MemberRecord",
    "MemberState",
    "MemberSuspected",
    "MemberUpdated",
    "Membership",
    "MembershipEvent",
    "MembershipTiming",
    "MessageType",
    "Outgoing",
    "decode",
    "encode",
    "peer_values",
]

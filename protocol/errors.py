"""Whose fault it was: the two errors every protocol core raises (after h11).

::

    ProtocolError
    ├── LocalProtocolError   we misused the API (a bug on our side)
    └── RemoteProtocolError  the peer sent something invalid: close that connection,
                             count it, keep serving everyone else
"""

from __future__ import annotations


class ProtocolError(Exception):
    """Base class of protocol errors."""


class LocalProtocolError(ProtocolError):
    """The caller used a protocol core wrongly."""


class RemoteProtocolError(ProtocolError):
    """The peer violated the protocol; the message says how."""

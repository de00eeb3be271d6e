"""The trio I/O shell of VRAMancer node: everything that touches the world."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("vramancer-node")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

PROTOCOL_VERSION = 1
"""Wire protocol generation; a peer with another value is refused at the handshake."""

"""Hard limits of the Noise framework (revision 34), as named constants.

Theory of operation
-------------------
Noise bounds two quantities and this module names both so no other module spells a
magic number:

* every Noise message, handshake or transport, is at most 65535 bytes (spec section
  3), which is also what the 2-byte length prefix of our TCP framing can express;
* a cipher key carries at most 2^64-1 messages: the nonce is a 64-bit counter and
  its top value 2^64-1 is reserved for ``REKEY()`` (spec sections 5.1 and 11.3).
"""

from __future__ import annotations

__all__ = ["MAX_MESSAGE_BYTES", "MAX_NONCE", "TAG_BYTES"]

#: Largest Noise message, handshake or transport, in bytes (spec section 3).
MAX_MESSAGE_BYTES = 65535

#: Reserved nonce value: reaching it ends the key's life; REKEY() encrypts with it.
MAX_NONCE = 2**64 - 1

#: Authentication tag appended by every Noise AEAD cipher, in bytes.
TAG_BYTES = 16

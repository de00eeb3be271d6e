"""Pure cryptography of VRAMancer node, built on PyNaCl.

Identities, the Noise protocol, certificates, join tokens, audit-record signing and
Merkle trees.  Like :mod:`protocol`, nothing here performs I/O or reads a clock.
"""

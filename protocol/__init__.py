"""Pure, sans-I/O protocol cores of VRAMancer node.

Nothing in this package performs I/O, reads a clock or uses module-level randomness:
time enters as a ``now: float`` argument and randomness as an injected
``random.Random``.  ``tests/test_purity.py`` enforces this by scanning imports.
"""

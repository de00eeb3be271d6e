"""Networking of the node: the Noise secure channel over TCP and what runs on it."""

"""Command-line front ends: ``vramancer-node`` (the daemon) and ``vramancer`` (the client)."""

"""Ports for the servers a test or a benchmark starts."""
from __future__ import annotations

import socket


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on `host` that nothing listens on (free when asked: the caller binds it soon)."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]

"""Network helpers shared by the servers the load test and the tests start."""

from __future__ import annotations

import socket


def free_port(taken: tuple[int, ...] = ()) -> int:
    """A TCP port nothing listens on (bound once by the OS, then released), other than ``taken``."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in taken:
            return port

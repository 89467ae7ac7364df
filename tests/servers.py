"""What the tests that start a server of their own share: a free port, and waiting until it listens."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable


def free_port() -> int:
    """A TCP port nothing listens on now, on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_listening(
    port: int, process: subprocess.Popen, seconds: float, why_not: Callable[[], str] = lambda: ""
) -> None:
    """Return once 127.0.0.1:``port`` accepts a connection; raise AssertionError with ``why_not()`` (say, the
    server's log) if ``process`` ends first or ``seconds`` pass."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the server on port {port} did not start: {why_not()}") from None
            time.sleep(0.2)

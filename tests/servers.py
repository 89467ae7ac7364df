"""What the tests that start a server of their own share: a free port, waiting until it listens, and a server
that never answers."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import threading
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


class SilentServer:
    """A TCP server that accepts connections and never answers, as a hung host does: a client's connect
    succeeds and its first read waits. ``accepted`` is set once a client connected; :meth:`release` closes the
    connections held and stops listening, so the waiting client sees its connection drop."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.accepted = threading.Event()
        self._held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return  # released
            self._held.append(conn)
            self.accepted.set()

    def release(self) -> None:
        self.listener.close()
        for conn in self._held:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

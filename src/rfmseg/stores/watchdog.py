"""A watchdog for PostgreSQL reads: libpq waits without a limit for a server that stopped answering,
so a thread cuts the connection of a read that outlives its deadline."""

from __future__ import annotations

import os
import socket
import threading
import time
from typing import Any

import psycopg

WATCHDOG_GRACE_S = 1.0
"""How long after ``read_timeout`` the watchdog cuts a read the server has not cancelled itself."""


class Watchdog:
    """Cuts the connection of a read that outlives its deadline: a server that stopped answering (a hung
    host, a stopped process) also cannot run its statement_timeout, and libpq waits for it without a limit.

    One thread per store, started at the first read and parked between reads; a read arms it with its
    connection and deadline and disarms it when done. Cutting is a shutdown of the socket (on a duplicate of
    its descriptor), which makes the blocked read fail at once with a connection error.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._armed: tuple[psycopg.Connection[Any], float] | None = None
        self._thread: threading.Thread | None = None
        self._stopped = False
        self.fired = False

    def arm(self, conn: psycopg.Connection[Any], seconds: float) -> None:
        with self._cond:
            self._armed, self.fired = (conn, time.monotonic() + seconds), False
            if self._thread is None:
                self._thread = threading.Thread(target=self._watch, name="rfmseg-pg-watchdog", daemon=True)
                self._thread.start()
            self._cond.notify()

    def disarm(self) -> None:
        with self._cond:
            self._armed = None

    def stop(self) -> None:
        with self._cond:
            self._stopped, self._armed = True, None
            self._cond.notify()

    def _watch(self) -> None:
        with self._cond:
            while not self._stopped:
                if self._armed is None:
                    self._cond.wait()
                    continue
                conn, deadline = self._armed
                left = deadline - time.monotonic()
                if left > 0:
                    self._cond.wait(left)
                    continue
                self._armed, self.fired = None, True
                cut(conn)


def cut(conn: psycopg.Connection[Any]) -> None:
    """Shut the connection's socket down under the read blocked on it."""
    try:
        fd = os.dup(conn.pgconn.socket)
    except (OSError, psycopg.Error):
        return  # closed meanwhile
    try:
        with socket.socket(fileno=fd) as sock:
            sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass

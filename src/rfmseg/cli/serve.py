"""serve, report: the HTTP API with the explorer, and the self-contained HTML report."""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import os
import socket
from pathlib import Path
from typing import Annotated

import typer

from rfmseg.cli.common import app, err, out
from rfmseg.cli.options import ConfigOpt, RunId, RunsDir, ServeStore
from rfmseg.config import resolve
from rfmseg.errors import ParameterError, RfmsegError
from rfmseg.install import install_command
from rfmseg.io.outputs import is_stdout
from rfmseg.runs import DEFAULT_RUNS_DIR, get_run
from rfmseg.stores.base import MAX_READ_TIMEOUT_S


def bind_address(host: str) -> str:
    """The address to listen on as the socket takes it: an IPv6 literal without the brackets of a URL
    (``[::1]`` -> ``::1``)."""
    host = host.strip()
    if host.startswith("[") and host.endswith("]"):
        return host[1:-1]
    return host


def is_loopback(host: str) -> bool:
    host = bind_address(host)
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def check_bind(host: str, api_key: str | None) -> None:
    """Refuse to listen beyond this machine without an API key."""
    if not is_loopback(host) and not api_key:
        raise ParameterError(
            f"refusing to serve on {host} without an API key: set RFMSEG_API_KEY (clients then send "
            "'Authorization: Bearer <key>') or keep the default --host 127.0.0.1"
        )


def check_port(host: str, port: int, flag: str = "--port") -> None:
    """Refuse, in one line naming ``flag``, a ``host``:``port`` the server could not listen on (in use by
    another process, a privileged port, an address not on this machine), before anything says it serves.

    Binds a socket to each address ``host`` resolves to, with the options uvicorn's server uses
    (``SO_REUSEADDR``, an IPv6 socket only for IPv6), then closes them: nothing listened, so the port is free
    again at once. (Another process may still take it in between: then uvicorn's own error stands.)"""
    shown = f"[{host}]" if ":" in host else host
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ParameterError(
            f"cannot listen on {shown}: {exc.strerror or exc}; give an address of this machine with --host, "
            "e.g. 127.0.0.1"
        ) from None
    with contextlib.ExitStack() as held:
        for family, kind, proto, _name, address in addresses:
            sock = held.enter_context(socket.socket(family, kind, proto))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(address)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise ParameterError(
                        f"port {port} on {shown} is in use (another server listens there); pick another {flag}, "
                        "or stop that server"
                    ) from None
                if exc.errno == errno.EACCES:
                    raise ParameterError(
                        f"port {port} on {shown} needs privileges this user lacks; pick a {flag} above 1023"
                    ) from None
                raise ParameterError(
                    f"cannot listen on port {port} on {shown}: {exc.strerror or exc}; give an address of this "
                    f"machine with --host (e.g. 127.0.0.1), or another {flag}"
                ) from None


@app.command()
def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option("--host", help="Address to listen on; beyond loopback needs RFMSEG_API_KEY.")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option("--port", help="TCP port.")] = 8000,
    runs_dir: RunsDir = DEFAULT_RUNS_DIR,
    store: ServeStore = None,
    store_timeout: Annotated[
        float | None,
        typer.Option(
            "--store-timeout",
            help="Seconds a profile store read may wait before the request answers 503 "
            "(default: $RFMSEG_STORE_TIMEOUT, else 2).",
        ),
    ] = None,
    workers: Annotated[int, typer.Option("--workers", help="Worker processes.", min=1)] = 1,
    access_log: Annotated[bool, typer.Option("--access-log/--no-access-log", help="Log every request.")] = True,
    log_level: Annotated[str, typer.Option("--log-level", help="critical, error, warning, info, debug.")] = "info",
    config: ConfigOpt = None,
) -> None:
    """Serve the HTTP API and the explorer (at /) with uvicorn; OpenAPI docs at /docs."""
    try:
        from rfmseg.service.deps import ENV_RUNS_DIR, ENV_STORE, ENV_STORE_TIMEOUT, Settings
    except ImportError as exc:  # the core install has no FastAPI
        raise RfmsegError(f"rfmseg serve needs {exc.name}: {install_command('serve')}") from None

    settings = resolve(ctx)  # runs_dir and store: options, else $RFMSEG_RUNS_DIR / $RFMSEG_STORE, else rfmseg.toml
    runs_dir = settings.runs_path
    host = bind_address(host)
    if store_timeout is not None:
        if not 0 < store_timeout <= MAX_READ_TIMEOUT_S:
            raise ParameterError(
                f"--store-timeout {store_timeout:g} is not a number of seconds in (0, {MAX_READ_TIMEOUT_S:g}]; e.g. 2"
            )
        os.environ[ENV_STORE_TIMEOUT] = repr(store_timeout)
    api_key = Settings.from_env().api_key  # stripped; a blank key, a bad timeout or body limit stops here
    check_bind(host, api_key)
    if not 0 < port < 65536:
        raise ParameterError(f"--port {port} is not a TCP port; use 1-65535, e.g. 8000")
    try:
        import uvicorn

        import rfmseg.service.app  # noqa: F401  (fails early when FastAPI is missing)
    except ImportError as exc:
        raise RfmsegError(f"rfmseg serve needs {exc.name}: {install_command('serve')}") from None
    check_port(host, port)  # before saying it serves: a port in use is one line, not uvicorn's log and exit 3
    # uvicorn workers build the app from the environment (rfmseg.service.app:app_from_env)
    os.environ[ENV_RUNS_DIR] = str(runs_dir.resolve())
    if settings.store:
        os.environ[ENV_STORE] = settings.store
    shown = f"[{host}]" if ":" in host else host
    err.print(
        f"rfmseg: serving the API and the explorer on http://{shown}:{port}/ (runs in {runs_dir}; "
        f"API docs at /docs){'; API key required' if api_key else ''}",
        markup=False,
    )
    uvicorn.run(
        "rfmseg.service.app:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        access_log=access_log,
        log_level=log_level,
    )


@app.command()
def report(
    ctx: typer.Context,
    run_id: RunId = "latest",
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", help="HTML file to write (default: report-<run id>.html); - for standard output."
        ),
    ] = None,
    runs_dir: RunsDir = DEFAULT_RUNS_DIR,
    config: ConfigOpt = None,
) -> None:
    """Write a run's report: one self-contained HTML file (charts, data and plotly.js inlined; opens from disk)."""
    from rfmseg.report import write_report

    runs_dir = resolve(ctx).runs_path
    run = get_run(run_id, runs_dir)
    path = write_report(run.run_id, output or Path(f"report-{run.run_id}.html"), runs_dir)
    if is_stdout(path):  # the page went to standard output: what was done goes to stderr
        err.print(f"Report of run {run.run_id} written to standard output.", markup=False)
        return
    size = f" ({path.stat().st_size / 1e6:.1f} MB)" if path.is_file() else ""  # a pipe has no size
    out.print(f"Report of run {run.run_id} written to {path}{size}; open it in a browser.", markup=False)

"""What every command shares: the Typer app, JSON output, the segment table, error handling."""

from __future__ import annotations

import errno
import functools
import json
import os
import select
import shutil
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import typer
import typer.main
from typer.exceptions import TyperException

from rfmseg.cli.options import flag_of
from rfmseg.errors import RfmsegError, one_line, os_failure
from rfmseg.install import typed_path

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from rfmseg.features import Units

app = typer.Typer(
    name="rfmseg",
    help="Which customers are similar, and what to do about each group: RFM + K-Means segmentation.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},  # every command and group inherits it
)


class LazyConsole:
    """A rich Console made on first use: importing rich and building its styles costs a run 20-30 ms, which a
    command that prints only JSON (``rfmseg run --json``) need not pay. Every attribute is the Console's, and
    it is entered as the Console is (by a live display)."""

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._console: Console | None = None

    def made(self) -> Console:
        """The Console itself, made the first time it is asked for."""
        if self._console is None:
            self._console = _console_class()(**self._options)
        return self._console

    def __getattr__(self, name: str) -> Any:
        return getattr(self.made(), name)

    def __enter__(self) -> Console:  # a live display (the progress) enters its console
        return self.made().__enter__()

    def __exit__(self, *exc: Any) -> None:
        self.made().__exit__(*exc)


@functools.cache
def _console_class() -> type[Console]:
    """rich's Console, with what a closed pipe does to rfmseg's output (rich's own default points stdout at
    /dev/null, whichever stream broke, and exits 1)."""
    from rich.console import Console

    class RfmsegConsole(Console):
        def on_broken_pipe(self) -> None:
            """The reader of this console's stream has gone (``| head``). Standard output: the
            BrokenPipeError goes on up, and :func:`run_app` ends the command quietly (:data:`CLOSED_OUTPUT_EXIT`).
            Standard error, which carries only messages and the progress: the console falls silent and the
            command goes on, so that the work is done (``rfmseg serve`` serves) and an error keeps its exit code."""
            self.quiet = True
            if not self.stderr:
                raise BrokenPipeError(errno.EPIPE, "the reader of the output has gone")

    return RfmsegConsole


out = cast("Console", LazyConsole(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 120))
err = cast("Console", LazyConsole(stderr=True, highlight=False, soft_wrap=True))


def rfmseg_command() -> str:
    """How to type this program again, for the commands a message suggests: ``rfmseg`` when that name on the
    PATH is this program, else the path it was started by (``.venv/bin/rfmseg``), or ``python -m rfmseg``."""
    started = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if started is not None and started.name == "__main__.py" and started.parent.name == "rfmseg":
        return f"{typed_path(Path(sys.executable))} -m rfmseg"
    if started is None or started.name != "rfmseg":
        return "rfmseg"  # embedded (tests, notebooks): the plain name
    on_path = shutil.which("rfmseg")
    if on_path and Path(on_path).resolve() == started.resolve():
        return "rfmseg"
    return typed_path(started)


def print_json(data: Any) -> None:
    """Machine-readable output: JSON and nothing else on stdout."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def units_of(summary: Mapping[str, Any] | None) -> Units:
    """The words of a run (customers/orders/spend, users/sessions/features, ...) from its summary."""
    from rfmseg.features import Units

    return Units.from_dict((summary or {}).get("units"))


def as_of_words(as_of: object) -> str:
    """``as of 2024-12-31``; a run of a ready RFM table has no as-of date (its recency came computed)."""
    return f"as of {as_of}" if as_of else "no as-of date: a ready RFM table"


def rich_table(**options: Any) -> Table:
    """A rich Table (rich is imported when a command first prints one: see :class:`LazyConsole`)."""
    from rich.table import Table

    return Table(**options)


def segment_rich_table(summary: Mapping[str, Any]) -> Table:
    """The segment table, worded in the run's units (customers/orders/spend, users/sessions/features, ...)."""
    cur = summary.get("currency", "$")
    u = units_of(summary)
    total = f", {u.total} {u.value(summary['total_revenue'], cur)}" if u.total else ""
    when = as_of_words(summary.get("as_of"))
    t = rich_table(title=f"Segments — {summary['n_customers']:,} {u.entity}{total}, {when}")
    cols = ["#", "segment", u.entity, "share"]
    cols += [u.total, "rev%" if u.total == "revenue" else "share of total"] if u.total else []
    cols += ["recency", u.frequency, u.monetary, *([u.ratio] if u.ratio else [])]
    for col in cols:
        t.add_column(col, justify="left" if col == "segment" else "right", no_wrap=True)
    for s in summary["segments"]:
        row = [str(s["priority"]), s["name"], f"{s['customers']:,}", f"{s['share_customers']:.0%}"]
        row += [u.value(s["revenue"], cur), f"{s['share_revenue']:.0%}"] if u.total else []
        row += [f"{s['mean_recency_days']:.0f}d", f"{s['mean_frequency']:.1f}", u.value(s["mean_monetary"], cur)]
        row += [u.value(s["aov"], cur)] if u.ratio else []
        t.add_row(*row)
    return t


def print_summary(summary: Mapping[str, Any]) -> None:
    out.print(segment_rich_table(summary))
    out.print("[bold]Actions, in priority order[/bold]")
    for s in summary["segments"]:
        out.print(f" {s['priority']}. {s['name']}: {s['action']}", markup=False)
        if s.get("sequencing"):
            out.print(f"    {s['name']} is {s['sequencing']}.", markup=False)
    if summary.get("insights"):
        out.print("[bold]Insights[/bold]")
        for i in summary["insights"]:
            out.print(f" • {i['text']}")
    rows = summary.get("rows")
    if rows:
        q = rows.get("quarantined") or {}
        detail = ", ".join(f"{k} {v:,}" for k, v in sorted(q.items())) or "none"
        out.print(f"Rows: {rows['read']:,} read, {rows['used']:,} used, {sum(q.values()):,} quarantined ({detail})")
    for w in summary.get("warnings", []):
        out.print(f"[yellow]warning:[/yellow] {w['text'] if isinstance(w, dict) else w}")
    for n in summary.get("notes", []):
        preset = n.get("values", {}).get("preset")
        out.print(f"note: {n['text']}{f'; run it with --preset {preset}' if preset else ''}", markup=False)


def parse_ids(value: str | None) -> list[str]:
    return [x.strip() for x in value.split(",") if x.strip()] if value else []


def flags_of_command(argv: list[str]) -> Callable[[str], str]:
    """How the command that ``argv`` runs names a parameter: its own option for that parameter where it has
    one (``--from`` for ``transitions``, ``--from-run`` for ``ask intervention``), else :func:`flag_of`."""
    command: Any = typer.main.get_command(app)  # typer's own click: a group has ``commands``
    for word in argv:
        if word.startswith("-"):
            continue
        if word not in (getattr(command, "commands", None) or {}):
            break
        command = command.commands[word]
    own = {
        p.name: next((o for o in p.opts if o.startswith("--")), p.opts[0])
        for p in command.params
        if p.param_type_name == "option" and p.name and p.opts
    }
    return lambda param: own.get(param) or flag_of(param)


CLOSED_OUTPUT_EXIT = 0
"""The exit code of a command whose reader left before it had printed everything (``rfmseg show latest | head
-1``): 0, quietly, whatever the command and whichever library noticed (rich, click, a plain write).

Python's note on SIGPIPE (https://docs.python.org/3/library/signal.html#note-on-sigpipe) leaves the choice to
the program: die as if by SIGPIPE (141 in a shell, as GNU tools do) or exit quietly. rfmseg exits 0 because
every command prints after its work is done (the run written, the store published, the file exported): what
the reader did not take is only the rest of the text it chose not to read, so the command did not fail, and a
script under ``set -o pipefail`` that reads the first lines (``rfmseg runs list | head -3``) must not fail
either. A reader that failed says so by its own exit code, which ``pipefail`` reports. The process never takes
SIGPIPE's default action: that would also kill ``rfmseg serve`` when a client drops its connection."""


def _broken_pipe(exc: BaseException) -> bool:
    """Whether ``exc`` is a write to a pipe or socket whose reader left: a :class:`BrokenPipeError`, or the
    ``SystemExit(1)`` rich (``Console.on_broken_pipe``) and click raise in its place while handling one."""
    if isinstance(exc, SystemExit):
        exc = exc.__context__ if exc.__context__ is not None else exc
    return isinstance(exc, OSError) and exc.errno == errno.EPIPE


class Outputs:
    """Standard output and error as the command started with them, to tell, when a pipe breaks, whether it was
    theirs (the reader of ``| head`` left) or another one's (a connection to a server)."""

    FDS = (1, 2)

    def __init__(self) -> None:
        self.devnull_at_start = {fd: _is_devnull(fd) for fd in self.FDS}

    def gone(self) -> list[int]:
        """The descriptors whose reader has gone: poll says so (POLLERR for a pipe, POLLHUP for a socket), or
        they were pointed at /dev/null since the start, which is what rich and :mod:`rfmseg.io.outputs` do to
        a stream whose reader left (Python's documented remedy)."""
        return [fd for fd in self.FDS if _reader_left(fd) or (_is_devnull(fd) and not self.devnull_at_start[fd])]

    def silence(self, fds: list[int]) -> None:
        """Point ``fds`` at /dev/null, so that what Python still holds for them is flushed there, not to a
        closed pipe (with a traceback at exit)."""
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
        except OSError:
            return
        for fd in fds:
            try:
                os.dup2(devnull, fd)
            except OSError:
                continue
        os.close(devnull)


def _reader_left(fd: int) -> bool:
    try:
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        return any(event & (select.POLLERR | select.POLLHUP) for _, event in poller.poll(0))
    except (OSError, ValueError, AttributeError):  # a closed descriptor; no poll (Windows)
        return False


def _is_devnull(fd: int) -> bool:
    try:
        return os.path.samestat(os.fstat(fd), os.stat(os.devnull))
    except (OSError, ValueError):
        return False


def run_app(argv: list[str] | None = None) -> int:
    """Run the CLI; user errors become one line on stderr and exit code 2; a reader of the output that left
    early (``| head``) ends the command quietly with :data:`CLOSED_OUTPUT_EXIT`."""
    outputs = Outputs()
    try:
        return _run_app(argv)
    except (OSError, SystemExit) as exc:
        gone = outputs.gone() if _broken_pipe(exc) else []
        if not gone:  # another pipe or connection broke (a server's): not the reader leaving
            raise
        outputs.silence(gone)
        return CLOSED_OUTPUT_EXIT


def _run_app(argv: list[str] | None) -> int:
    try:
        app(args=argv, prog_name="rfmseg", standalone_mode=False)
    except RfmsegError as exc:
        message = exc.render(flags_of_command(sys.argv[1:] if argv is None else argv))
        err.print(f"error: {one_line(message)}", markup=False)
        return exc.exit_code
    except typer.Abort:
        err.print("aborted", markup=False)
        return 130
    except TyperException as exc:  # usage errors: unknown option, missing argument, bad value
        message = exc.format_message()
        if message:  # no arguments at all: the help was printed, nothing else to say
            err.print(f"error: {one_line(message)} (see `rfmseg --help`)", markup=False)
        return 2
    except typer.Exit as exc:
        return exc.exit_code
    except Exception as exc:
        from rfmseg.runs.damage import damaged_run_file

        failure: RfmsegError | None = damaged_run_file(exc)  # a file of a run folder damaged or removed
        if failure is None:
            if not isinstance(exc, OSError) or _broken_pipe(exc):
                raise  # a bug (a traceback), or a reader gone (run_app tells whose)
            # a file or folder the machine refused where no step expected it: still one line
            failure = os_failure(exc, "the command could not go on")
        err.print(f"error: {one_line(failure.message)}", markup=False)
        return failure.exit_code
    return 0

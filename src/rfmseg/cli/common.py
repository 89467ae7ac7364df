"""What every command shares: the Typer app, JSON output, the segment table, error handling."""

from __future__ import annotations

import json
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
            from rich.console import Console

            self._console = Console(**self._options)
        return self._console

    def __getattr__(self, name: str) -> Any:
        return getattr(self.made(), name)

    def __enter__(self) -> Console:  # a live display (the progress) enters its console
        return self.made().__enter__()

    def __exit__(self, *exc: Any) -> None:
        self.made().__exit__(*exc)


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


def run_app(argv: list[str] | None = None) -> int:
    """Run the CLI; user errors become one line on stderr and exit code 2."""
    try:
        app(args=argv, prog_name="rfmseg", standalone_mode=False)
    except RfmsegError as exc:
        message = exc.render(flags_of_command(sys.argv[1:] if argv is None else argv))
        err.print(f"error: {one_line(message)}", markup=False)
        return exc.exit_code
    except OSError as exc:  # a file or folder the machine refused where no step expected it: still one line
        failure = os_failure(exc, "the command could not go on")
        err.print(f"error: {one_line(failure.message)}", markup=False)
        return failure.exit_code
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
    return 0

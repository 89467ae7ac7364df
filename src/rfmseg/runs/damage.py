"""Run files that cannot be read: one line naming the file and the fix, whichever reader met it.

A run folder is read in many places (``Run.table`` with pyarrow, DuckDB's ``read_parquet`` in the history,
the warnings, the report, the export and the API's segment lists), and a file of it can be damaged after the
run was written (cut short by a full disk or a copy, overwritten, removed). Rather than wrap each reader, the
CLI's and the API's top-level handlers hand every read error to :func:`damaged_run_file`: when the error names
a file inside a run folder (a folder with a ``manifest.json``, as :func:`rfmseg.runs.registry.list_runs` knows
one), it becomes a :class:`rfmseg.errors.RunFileError` naming the run, the file and the fix (exit code 2 on the
CLI, 503 on the API); any other error is left as it was.

A reader that fails without naming its file (a page damaged inside a file whose footer is intact: DuckDB's
"Parquet file is likely corrupted", pyarrow's "Couldn't deserialize thrift") cannot be told from a bug here and
stays one.

:func:`runs_missing` lists the runs whose ``assignments.parquet`` was removed: the history, the transitions and
the warnings leave them out, and the commands say so in a note.
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

import duckdb
import pyarrow as pa

from rfmseg.errors import ENVIRONMENT_ERRNOS, RunFileError, one_line
from rfmseg.runs.registry import DEFAULT_RUNS_DIR, Run, list_runs, run_file_error

READ_ERRORS: tuple[type[Exception], ...] = (
    OSError,  # a file removed (FileNotFoundError), pyarrow's I/O errors
    pa.ArrowInvalid,  # pyarrow: "Could not open Parquet input source '...': Parquet magic bytes not found"
    duckdb.IOException,  # DuckDB: "No files found that match the pattern "..."
    duckdb.InvalidInputException,  # DuckDB: "File '...' too small to be a Parquet file", "No magic bytes found"
)
"""what the readers of run files raise for a file they cannot read; :func:`damaged_run_file` takes any error"""

_QUOTED = re.compile(r"'([^'\n]+)'|\"([^\"\n]+)\"")
_DUCKDB_PREFIX = re.compile(r"^[A-Z][A-Za-z ]* Error: ")
SHOWN_DETAIL = 120
"""characters of a reader's own message a line repeats when it has no plainer words for it"""


def damaged_run_file(exc: BaseException) -> RunFileError | None:
    """The one-line error for ``exc`` when it is a failed read of a file inside a run folder, else None."""
    if not isinstance(exc, READ_ERRORS) or isinstance(exc, PermissionError):
        return None  # a permission refused is the machine's setup, said by rfmseg.errors.os_failure
    if isinstance(exc, OSError) and exc.errno in ENVIRONMENT_ERRNOS:
        return None  # a disk failing is the machine's failure (exit code 3), not the file's
    text = str(exc)
    candidates = [a or b for a, b in _QUOTED.findall(text)]
    if isinstance(exc, OSError):  # Python's own names its file; pyarrow's FileNotFoundError is just the path
        candidates += [name for name in (exc.filename, *exc.args) if isinstance(name, str)]
    for candidate in candidates:
        path = Path(candidate)
        if (path.parent / "manifest.json").is_file():
            return _error(path, _reason(path, exc))
    return None


def _reason(path: Path, exc: BaseException) -> str:
    """What is wrong with ``path``, in plain words where they are known."""
    text = str(exc).strip()
    if not path.exists():
        return "is missing"
    if path.is_dir():
        return "is a folder, not a file"
    with contextlib.suppress(OSError):
        if path.stat().st_size == 0:
            return "is empty"
    if "magic bytes" in text or "too small to be a Parquet file" in text:
        return "is not a Parquet file (damaged or cut short)"
    first = _DUCKDB_PREFIX.sub("", text.splitlines()[0] if text else type(exc).__name__)
    shown = first[:SHOWN_DETAIL] + ("…" if len(first) > SHOWN_DETAIL else "")
    return f"cannot be read ({shown})"


def _error(path: Path, reason: str) -> RunFileError:
    return run_file_error(path, reason)


def runs_missing(runs_dir: str | Path = DEFAULT_RUNS_DIR, name: str = "assignments.parquet") -> list[Run]:
    """The runs of ``runs_dir`` whose file ``name`` is gone (every run writes it): what the history leaves out."""
    return [run for run in list_runs(Path(runs_dir)) if not (run.path / name).exists()]


def missing_note(runs: list[Run], name: str = "assignments.parquet", leaves_out: str = "the history") -> str:
    """One line saying that ``runs`` (from :func:`runs_missing`) lack ``name`` and are left out, and the fix."""
    shown = ", ".join(r.run_id for r in runs[:3]) + (f" and {len(runs) - 3} more" if len(runs) > 3 else "")
    if len(runs) == 1:
        return one_line(
            f"run {shown} has no {name} and is left out of {leaves_out}; restore the file from a backup, or "
            f"remove the run folder {runs[0].path}"
        )
    return one_line(
        f"runs {shown} have no {name} and are left out of {leaves_out}; restore the files from a backup, or "
        f"remove those run folders from {runs[0].path.parent}"
    )

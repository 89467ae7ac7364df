"""Where a command's output file goes: the one rule from a file name to a format, and how a file is put in place.

A regular file (or a name not yet taken) is written aside and renamed into place, so it is never seen half
written. Anything else is written into, never replaced: ``-`` (standard output), a path that is this
process's standard output (``/dev/stdout``), a path that is or leads through a link to a process's open file
(``/dev/stderr``, ``/dev/fd/3``, ``/proc/self/fd/1``), and an existing path that is not a regular file (a named
pipe, a character device such as ``/dev/null``). Renaming over those would swap the pipe or the device node for
a file, and the reader on the other end would get nothing.
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

from rfmseg.errors import ParameterError

STDOUT = "-"
"""the output name that means standard output"""
FORMATS = ("csv", "parquet", "jsonl")
SUFFIXES = {
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
}
"""file suffix -> format (a ``.gz`` after a csv or jsonl suffix compresses the file with gzip)"""
EXTENSIONS = {"csv": ".csv", "parquet": ".parquet", "jsonl": ".jsonl"}
_PROC = Path("/proc")


def format_of(
    path: Path | None,
    given: str | None = None,
    formats: Sequence[str] = FORMATS,
    *,
    param: str = "out",
    format_param: str | None = "file_format",
) -> str:
    """The format to write ``path`` in: ``given`` when set (one of ``formats``), else the one its suffix says
    (:data:`SUFFIXES`; a ``.gz`` after it is allowed), else csv for a name without a suffix (``-``,
    ``/dev/stdout``, a named pipe). A suffix that names no format of ``formats`` (``.xlsx``, ``.txt``) is
    refused in one line: writing CSV text into a file named ``.xlsx`` would be a file no program reads.
    ``param`` and ``format_param`` name the parameters the error is about (no ``format_param``: the caller
    takes no format)."""
    if given is not None:
        fmt = given.strip().lower()
        if fmt not in formats:
            raise ParameterError(
                f"{{{format_param}}} '{given}' is not a format; use {', '.join(formats)}", param=format_param or ()
            )
        return fmt
    if path is None:
        return "csv"
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes.pop()
    if not suffixes:
        return "csv"
    known = SUFFIXES.get(suffixes[-1])
    if known in formats:
        return str(known)
    names = []
    for f in formats:
        others = [s for s, g in SUFFIXES.items() if g == f and s != EXTENSIONS[f]]
        names.append(EXTENSIONS[f] + (f" (or {', '.join(others)})" if others else ""))
    fix = f"end the name of {{{param}}} in {', '.join(names)}"
    if format_param:
        fix += f", or set {{{format_param}}}"
    raise ParameterError(
        f"{path}: {suffixes[-1]} is not a format this writes ({', '.join(formats)}); {fix}",
        param=(param, format_param) if format_param else param,
    )


def is_stdout(path: Path | str) -> bool:
    """``-``, or a path that is this process's standard output (``/dev/stdout``, ``/proc/self/fd/1``, or a file
    stdout was redirected to): what a command prints must then go elsewhere (stderr)."""
    if str(path) == STDOUT:
        return True
    try:
        return os.path.samestat(os.stat(path), os.fstat(sys.stdout.fileno()))
    except (OSError, ValueError, AttributeError):  # a captured stdout (no descriptor), a path that is not there
        return False


def is_stream(path: Path | str) -> bool:
    """Whether ``path`` is written into rather than replaced (see the module docstring)."""
    if is_stdout(path):
        return True
    if _through_proc(Path(path)):
        return True
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False  # not there yet (or not reachable: the write says why)
    return not stat.S_ISREG(mode) and not stat.S_ISDIR(mode)


def _through_proc(path: Path) -> bool:
    """Whether ``path``, or a link on the way to what it names, is in /proc (a process's open file: /dev/stderr
    and /dev/fd/N lead there). Followed link by link, as :func:`os.path.realpath` would resolve the last one to
    the file behind the descriptor."""
    here = Path(os.path.abspath(path))
    for _ in range(40):  # the kernel's own limit on links in a row
        here = Path(os.path.realpath(here.parent)) / here.name
        if here.is_relative_to(_PROC):
            return True
        if not here.is_symlink():
            return False
        here = Path(os.path.abspath(here.parent / os.readlink(here)))
    return False


def staging_folder(path: Path) -> Path:
    """Where to write ``path``'s content before it is put in place: beside it for a file (the rename stays on
    one file system), the temporary folder for a stream (``/dev`` is no place for a file)."""
    return Path(tempfile.gettempdir()) if is_stream(path) else path.parent


def put_in_place(written: Path, path: Path) -> None:
    """Make the content of ``written`` (a file in :func:`staging_folder`) the content of ``path``: a rename
    for a file; for a stream, the bytes copied into it (``written`` is left for its owner to remove). Raises
    the :class:`OSError` of a failed write (:class:`BrokenPipeError` when the reader left)."""
    if not is_stream(path):
        os.replace(written, path)
        return
    with open(written, "rb") as source:
        if str(path) == STDOUT:
            _to_stdout(source)
        else:
            with open(path, "wb") as dest:
                shutil.copyfileobj(source, dest, 1 << 20)


def _to_stdout(source: BinaryIO) -> None:
    """Copy ``source`` to standard output. A reader that left (``| head``) raises :class:`BrokenPipeError`,
    which the command line ends quietly on (:func:`rfmseg.cli.common.run_app`)."""
    sys.stdout.flush()
    shutil.copyfileobj(source, sys.stdout.buffer, 1 << 20)
    sys.stdout.buffer.flush()

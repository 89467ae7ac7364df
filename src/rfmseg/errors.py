"""The errors a user can see. Each carries a one-line message naming the problem and the fix,
the process exit code of the CLI, and the HTTP status of the API.

An error about a parameter knows which one: its message is a template whose ``{name}`` fields are the
parameters it is about::

    ParameterError("{k} 3 is larger than the number of customers (2); use a smaller {k}", param="k")

``str(err)`` and ``err.message`` speak Python (``k 3 is larger ...; use a smaller k``); each adapter renders
the same error in its own words with :meth:`RfmsegError.render`: the CLI names the flag (``--k 3 is larger
...; use a smaller --k``), the API the JSON field. The core never names a command-line flag. Only ``{name}``
for a name in ``param`` is replaced; other braces (a path, a TOML example) are left as they are.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterable

_FIELD = re.compile(r"\{([a-z_][a-z0-9_.]*)\}")
Namer = Callable[[str], str]
"""parameter name -> how an adapter calls it (a flag, a JSON field)"""


def python_name(param: str) -> str:
    """How Python callers know a parameter: by its name."""
    return param


class RfmsegError(Exception):
    """Base of every error caused by what the user gave (file, option, id, store URL)."""

    exit_code = 2
    http_status = 400

    def __init__(self, message: str, *, param: str | Iterable[str] = ()) -> None:
        self.template = message
        self.params: tuple[str, ...] = (param,) if isinstance(param, str) else tuple(param)
        self.message = message
        """the message Python callers read (parameters by their names)"""
        self.message = self.render(python_name)
        super().__init__(self.message)

    def render(self, name_of: Namer) -> str:
        """The message with each parameter named by ``name_of`` (the CLI: a flag; the API: a JSON field)."""
        if not self.params:  # nothing to name: the message as it is
            return self.message
        names = {p: name_of(p) for p in self.params}
        return _FIELD.sub(lambda m: names.get(m[1], m[0]), self.template)

    def __str__(self) -> str:
        return self.message

    def with_hint(self, hint: str, *, param: str | Iterable[str] = ()) -> RfmsegError:
        """The same error (same class, same exit code and status) with ``hint`` appended to its one line;
        ``hint`` may name parameters of its own (``{preset}``) through ``param``."""
        extra = (param,) if isinstance(param, str) else tuple(param)
        other = copy.copy(self)
        other.template = f"{self.template}; {hint}"
        other.params = (*self.params, *extra)
        other.message = f"{self.template}; {hint}"
        other.message = other.render(python_name)
        other.args = (other.message,)
        return other


class InputError(RfmsegError):
    """The input file or table cannot be used as given."""


class ColumnError(InputError):
    """A required column is missing."""


class ParameterError(RfmsegError):
    """A parameter has a value that is not allowed; ``param`` names it (``param="k"``, or several)."""


class NotFoundError(RfmsegError):
    """A run, customer or segment does not exist."""

    http_status = 404


class ModelFormatError(RfmsegError):
    """A stored model cannot be loaded by this version."""


class EnvironmentFailure(RfmsegError):
    """The machine failed the command, not the input: a full disk, an I/O error. Exit code 3."""

    exit_code = 3
    http_status = 507


ENVIRONMENT_ERRNOS = frozenset({28, 122, 5, 12})
"""ENOSPC, EDQUOT, EIO, ENOMEM: an :class:`OSError` with one of these is the machine's failure"""


def os_failure(exc: OSError, doing: str, param: str = "") -> RfmsegError:
    """The one-line error of ``exc``, raised while ``doing`` (e.g. "writing the run to runs/"): an
    :class:`EnvironmentFailure` for a full disk or an I/O error, else a :class:`ParameterError` naming the
    path (and ``param``, the parameter that gave it, as ``{runs_dir}``)."""
    where = f" ({exc.filename})" if exc.filename else ""
    reason = exc.strerror or str(exc) or type(exc).__name__
    if exc.errno in ENVIRONMENT_ERRNOS:
        return EnvironmentFailure(f"{doing}: {reason}{where}; free space (or fix the disk) and run again")
    fix = f"give a folder you can write to with {{{param}}}" if param else "check the path and its permissions"
    return ParameterError(f"{doing}: {reason}{where}; {fix}", param=param or ())


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_BREAKS = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]")


def one_line(message: str) -> str:
    """``message`` as one line whatever it quotes (a column name, a path, an id from the user's file): every
    control character, and each character Python or a terminal reads as a line break (``\x1e``, U+2028),
    shown as ``?``."""
    return _BREAKS.sub("?", message)


def shown_id(value: str, width: int = 40) -> str:
    """An id (a customer's, a target's) as a one-line message shows it: a control character (a line break)
    as ``?``, and cut after ``width`` characters with ``…``."""
    return _CONTROL.sub("?", value[:width]) + ("…" if len(value) > width else "")


def check_customer_id(customer_id: str, max_length: int = 128) -> str:
    """``customer_id`` when the one id rule allows it (1 to ``max_length`` characters, not blank, no control
    character: what a run accepts, docs/data-quality.md), else a :class:`ParameterError` saying so."""
    if not customer_id.strip() or len(customer_id) > max_length or _CONTROL.search(customer_id):
        raise ParameterError(
            f"customer id '{shown_id(customer_id)}' is not valid: ids are 1 to {max_length} characters, "
            "not blank, with no control characters"
        )
    return customer_id


class RunFileError(RfmsegError):
    """A file of a run folder cannot be read: damaged, cut short or removed after the run was written
    (:func:`rfmseg.runs.damage.damaged_run_file` makes it from the reader's error, naming the file). The data
    on the machine is broken, not what was asked: the API answers 503, as when the profile store cannot
    serve, until the file is restored or the run removed."""

    http_status = 503


class DatasetError(RfmsegError):
    """A public data set cannot be fetched, checked or converted (``rfmseg datasets fetch``)."""


class StoreError(RfmsegError):
    """The online store cannot be reached or refused the operation."""

    http_status = 503

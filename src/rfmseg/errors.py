"""The errors a user can see. Each carries a one-line message naming the problem and the fix,
the process exit code of the CLI, and the HTTP status of the API."""

from __future__ import annotations


class RfmsegError(Exception):
    """Base of every error caused by what the user gave (file, option, id, store URL)."""

    exit_code = 2
    http_status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InputError(RfmsegError):
    """The input file or table cannot be used as given."""


class ColumnError(InputError):
    """A required column is missing."""


class ParameterError(RfmsegError):
    """An option has a value that is not allowed."""


class NotFoundError(RfmsegError):
    """A run, customer or segment does not exist."""

    http_status = 404


class ModelFormatError(RfmsegError):
    """A stored model cannot be loaded by this version."""


class StoreError(RfmsegError):
    """The online store cannot be reached or refused the operation."""

    http_status = 503

"""The online profile store: each customer's current segment, indexed by customer id, for downstream
systems (marketing platform, API, CRM). The backend is chosen by URL::

    sqlite:///profiles.db              embedded default (relative path; sqlite:////abs/path.db is absolute)
    postgresql://user@host:5432/db     PostgreSQL, needs the postgres extra (rfmseg[postgres])
    redis://host:6379/0                Redis, needs the redis extra (rfmseg[redis])

Any URL takes ``?namespace=name`` (default ``rfmseg``) to keep several stores apart in one database.

    with open_store("sqlite:///profiles.db") as store:
        store.publish(assignments, run_id, as_of, model_version)
        store.get("C0001")

A publish may also be staged in batches from several processes (Spark executors): the driver begins it,
workers stage batches with the picklable token, the driver commits (one atomic flip) or aborts::

    with open_store(url) as store, store.begin_publish(run_id, as_of, model_version) as staged:
        token = staged.token                        # picklable: send it to the workers
        ...                                         # each worker: stage_batch(token, batch), or
        ...                                         #   with open_stager(token) as stager: stager.stage(batch)
        report = staged.commit(expected_rows)       # aborts instead if the block raises
"""

from __future__ import annotations

import importlib
from types import TracebackType
from typing import Self
from urllib.parse import urlsplit

import pyarrow as pa

from rfmseg.errors import StoreError
from rfmseg.install import install_command
from rfmseg.stores.base import (
    ChangesPage,
    FeedCursorAheadError,
    FeedTrimmedError,
    ProfileStore,
    PublishReport,
    StagedBatch,
    StagedPublish,
    StageToken,
)
from rfmseg.stores.rows import CHANGE_FIELDS, PROFILE_FIELDS
from rfmseg.stores.urls import redact_url

__all__ = [
    "CHANGE_FIELDS",
    "PROFILE_FIELDS",
    "SCHEMES",
    "ChangesPage",
    "FeedCursorAheadError",
    "FeedTrimmedError",
    "ProfileStore",
    "PublishReport",
    "StageToken",
    "StagedBatch",
    "StagedPublish",
    "Stager",
    "check_store_url",
    "open_stager",
    "open_store",
    "stage_batch",
]

# scheme -> (module, class, driver package, pip extra)
_BACKENDS: dict[str, tuple[str, str, str, str | None]] = {
    "sqlite": ("rfmseg.stores.sqlite", "SqliteStore", "sqlite3", None),
    "postgresql": ("rfmseg.stores.postgres", "PostgresStore", "psycopg", "postgres"),
    "postgres": ("rfmseg.stores.postgres", "PostgresStore", "psycopg", "postgres"),
    "redis": ("rfmseg.stores.redis", "RedisStore", "redis", "redis"),
    "rediss": ("rfmseg.stores.redis", "RedisStore", "redis", "redis"),
}
SCHEMES = tuple(_BACKENDS)
_EXAMPLES = "sqlite:///path/to/profiles.db, postgresql://user@host:5432/db or redis://host:6379/0"


def check_store_url(url: str) -> str:
    """The scheme of the profile store URL ``url``, or StoreError when no store can be opened from it (no
    scheme, an unknown one, a Redis database that is not a number): checked before a job computes anything,
    so that a run is not written only to find its store URL wrong. Nothing is connected to."""
    if not isinstance(url, str) or "://" not in url:
        raise StoreError(
            f"the profile store URL {redact_url(str(url))!r} has no scheme; "
            f"supported: {', '.join(SCHEMES)} (e.g. {_EXAMPLES})"
        )
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _BACKENDS:
        raise StoreError(
            f"unsupported profile store scheme {scheme!r} in {redact_url(url)}; "
            f"supported: {', '.join(SCHEMES)} (e.g. {_EXAMPLES})"
        )
    db = parts.path.strip("/")
    if scheme in ("redis", "rediss") and db and not db.isdigit():  # redis-py would use database 0 instead
        raise StoreError(
            f"the Redis database {db!r} in {redact_url(url)} is not a number; give one, e.g. redis://host:6379/0"
        )
    return scheme


def open_store(url: str, namespace: str | None = None, read_timeout: float | None = None) -> ProfileStore:
    """Connect to the profile store at ``url``; raise StoreError if it is unknown or unreachable.

    ``namespace`` (or the URL parameter ``?namespace=``) isolates one store from others in the same
    database or Redis; the default is ``rfmseg``. ``read_timeout`` (seconds) bounds how long a read waits
    for a PostgreSQL or Redis server that does not answer (a SQLite file has nothing to wait for): the read
    raises StoreError "did not answer a read within N s", and reads fail at once for a few seconds after.
    Publishing is not bounded by it.
    """
    scheme = check_store_url(url)
    module_name, class_name, driver, extra = _BACKENDS[scheme]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        if exc.name is not None and exc.name.split(".")[0] == driver and extra:
            raise StoreError(
                f"the {scheme} profile store needs the {driver} package: {install_command(extra)}"
            ) from exc
        raise
    store_class: type[ProfileStore] = getattr(module, class_name)
    return store_class(url, namespace=namespace, read_timeout=read_timeout)


class Stager:
    """A worker's side of a staged publish: stages batches with one connection to the store, opened at the
    first batch (a worker with nothing to stage never connects), and keeps the totals of what it staged."""

    def __init__(self, token: StageToken) -> None:
        if not isinstance(token, StageToken):
            raise StoreError(f"a stager needs the StageToken of a staged publish, got {type(token).__name__}")
        self.token = token
        self.rows = self.changed = self.new = self.batches = self.repeated = 0
        self._store: ProfileStore | None = None

    def stage(self, assignments: pa.Table, key: str | None = None) -> StagedBatch:
        """Stage one batch (see :meth:`ProfileStore.stage`); a batch sent again under its ``key`` counts in
        ``repeated``, not in the totals."""
        if self._store is None:
            self._store = open_store(self.token.url, namespace=self.token.namespace)
        batch = self._store.stage(self.token, assignments, key)
        if batch.repeated:
            self.repeated += 1
            return batch
        self.rows += batch.rows
        self.changed += batch.changed
        self.new += batch.new
        self.batches += 1
        return batch

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def open_stager(token: StageToken) -> Stager:
    """A :class:`Stager` for the staged publish of ``token``, in any process (use it as a context manager)."""
    return Stager(token)


def stage_batch(token: StageToken, assignments: pa.Table, key: str | None = None) -> StagedBatch:
    """Stage one batch of ``assignments`` for the staged publish of ``token``, from any process: connect,
    compute the batch's history against the run served when the publish began, write it, disconnect."""
    with open_stager(token) as stager:
        return stager.stage(assignments, key)

"""What every profile store shares: the publish report, the abstract interface with the
backend-independent parts of a publish and a staged publish (checks, read timeouts), and the refusals
of a staged publish, in the same words on every backend. What is written lives in
:mod:`rfmseg.stores.rows`, URLs and driver failures in :mod:`rfmseg.stores.urls`.

A staged publish does the same as a publish in three steps that may run in different processes: the driver
begins it (:meth:`ProfileStore.begin_publish`), any number of workers add batches of customers to it with the
picklable :class:`StageToken` it hands out (:func:`rfmseg.stores.stage_batch`), and the driver commits it
(:meth:`StagedPublish.commit`: the same one atomic step) or aborts it.

Every publish, one-shot or staged, also appends to the store's change feed, in that same atomic step, one
change per customer whose segment differs from what the store served before (new, moved, left); consumers
read it incrementally with :meth:`ProfileStore.changes` and a cursor.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, ClassVar, Self

import pyarrow as pa

from rfmseg.errors import ParameterError, StoreError
from rfmseg.stores.rows import CHANGE_FIELDS, RunInfo, prepare_assignments, run_info
from rfmseg.stores.urls import redact_url, split_namespace, url_secrets


@dataclass(frozen=True)
class PublishReport:
    """The outcome of one publish: how many customers are served now, and how many of them moved."""

    run_id: str
    customers: int
    changed: int
    new: int
    seconds: float


SILENT_PAUSE_S = 5.0
"""After a read timed out, how long reads fail at once before the store is tried again."""
MAX_READ_TIMEOUT_S = 3600.0

MAX_BATCH_KEY = 200
"""Longest key a staged batch may have (:meth:`ProfileStore.stage`)."""

MAX_CHANGES_LIMIT = 100_000
"""Most changes one :meth:`ProfileStore.changes` call returns."""


class FeedTrimmedError(StoreError):
    """A change feed cursor older than the feed's trim point: the changes after it were removed, so the
    consumer must reload and start again (HTTP 410 Gone: the store is up, what was asked for is gone)."""

    http_status = 410


class FeedCursorAheadError(ParameterError):
    """A change feed cursor past the last change this store's feed ever had: not one of its cursors (another
    store's, or one from before a drop), so reading on from it would silently miss every change up to it.
    ``cursor`` is the cursor given, ``last`` the last change's (None: the feed never had one)."""

    def __init__(self, message: str, *, cursor: str, last: str | None, param: str = "after") -> None:
        super().__init__(message, param=param)
        self.cursor, self.last = cursor, last


def cursor_ahead(cursor: str, last: str | None, where: str, start: str = "after=None") -> FeedCursorAheadError:
    """The error of ``cursor`` past ``last`` (the last change's cursor, None if none) in the feed of the store
    at ``where``; ``start`` says how to read from the start. An adapter that names ``after`` its own way
    passes ``start`` with ``{after}`` in it (``"leave {after} out"``)."""
    fix = f"read the feed from the start ({start})"
    if last is not None:
        fix += f", or from {{after}}={last} to skip the changes already there"
    return FeedCursorAheadError(
        f"cursor {cursor} is past the last change of the change feed of the profile store at {where} "
        f"({'it has none yet' if last is None else last}), so it is not one of this store's cursors (another "
        f"store's, or one from before a drop); {fix}",
        cursor=cursor,
        last=last,
        param="after",
    )


@dataclass(frozen=True)
class ChangesPage:
    """One page of the change feed (:meth:`ProfileStore.changes`)."""

    rows: list[dict[str, Any]]
    """The changes, oldest first; keys :data:`~rfmseg.stores.rows.CHANGE_FIELDS`."""
    next_cursor: str | None
    """What to pass as ``after`` for the next page: the cursor of the last row, or ``after`` itself when
    there was none (None: nothing was read yet). Save it once the rows are processed."""
    more: bool
    """Whether more changes were in the feed after this page when it was read (ask again at once)."""


@dataclass(frozen=True)
class StageToken:
    """What a worker needs to add batches to a staged publish: small and picklable (it travels to Spark
    executors). It holds the store URL with its password, which its repr hides."""

    url: str = field(repr=False)
    namespace: str
    stage: str
    """The staged publish's id in the store (a table suffix for SQL stores, a version number for Redis)."""
    generation: int
    """The generation served when the publish began (0: nothing was published)."""
    served: str | None
    """The table (SQL) or hash key (Redis) served when the publish began; history is read from it."""
    run_id: str
    as_of: dt.date
    model_version: str

    @property
    def url_display(self) -> str:
        return redact_url(self.url)

    @property
    def run(self) -> RunInfo:
        return RunInfo(self.run_id, self.as_of, self.model_version)


@dataclass(frozen=True)
class StagedBatch:
    """What one staged batch added: customers, and how many of them changed segment or are new."""

    rows: int
    changed: int
    new: int
    repeated: bool = False
    """True when a batch of the same key had been staged already (a retried worker sending it again):
    nothing was written, and the figures are those of the first time."""


class ProfileStore(ABC):
    """A key-value view of the latest published run: customer id -> profile.

    Readers always see one whole run: a publish becomes visible in a single atomic step, and a
    publish that dies half way leaves the previous run served.
    """

    backend: ClassVar[str]
    url_display: str
    namespace: str

    def __init__(self, url: str, namespace: str | None = None, read_timeout: float | None = None) -> None:
        self._url, self.namespace = split_namespace(url, namespace)
        self.url_display = redact_url(url)
        self._secrets = url_secrets(url)
        self._closed = False
        self.read_timeout = check_read_timeout(read_timeout)
        """Seconds a read may wait for the store (None: the driver's own limits); see :meth:`_silent`."""
        self._silent_until = 0.0

    def publish(self, assignments: pa.Table, run_id: str, as_of: dt.date, model_version: str) -> PublishReport:
        """Replace the served run by ``assignments`` atomically and report what changed."""
        run = run_info(run_id, as_of, model_version)
        table = prepare_assignments(assignments)
        self._ensure_open()
        started = time.perf_counter()
        changed, new = self._publish(table, run)
        return PublishReport(
            run_id=run_id,
            customers=table.num_rows,
            changed=changed,
            new=new,
            seconds=round(time.perf_counter() - started, 3),
        )

    @abstractmethod
    def _publish(self, assignments: pa.Table, run: RunInfo) -> tuple[int, int]:
        """Load and flip; ``assignments`` has :data:`~rfmseg.stores.rows.ASSIGNMENT_SCHEMA`. Returns (changed, new)."""

    # --- staged publish ---------------------------------------------------------------------------------

    def begin_publish(self, run_id: str, as_of: dt.date, model_version: str) -> StagedPublish:
        """Start a publish whose customers are added in batches, from this process or any other.

        The store records the run served now (the history of every batch is computed against it) and
        makes an empty staging area; nothing readers see changes until :meth:`StagedPublish.commit`.
        Hand :attr:`StagedPublish.token` to the workers; they call :func:`rfmseg.stores.stage_batch`.
        """
        run = run_info(run_id, as_of, model_version)
        self._ensure_open()
        return StagedPublish(self, self._begin(run))

    def stage(self, token: StageToken, assignments: pa.Table, key: str | None = None) -> StagedBatch:
        """Add one batch of customers to the staged publish of ``token``, with their segment history
        computed against the run served when it began. Each customer must be staged once.

        ``key`` names the batch so that sending it again is harmless: a batch whose key was staged already
        writes nothing and returns the first staging's figures with ``repeated=True``. A worker that may
        be retried (a Spark task, a queue job) keys each batch by what it covers, e.g. partition and
        batch number, and a retry re-sends the same batches; the same key with other customers is refused.
        """
        if not isinstance(token, StageToken):
            raise ParameterError(f"token must be a StageToken (StagedPublish.token), got {type(token).__name__}")
        if token.namespace != self.namespace:
            raise ParameterError(
                f"the token belongs to namespace {token.namespace!r}, this store is namespace {self.namespace!r}"
            )
        if key is not None and (not isinstance(key, str) or not key or len(key) > MAX_BATCH_KEY):
            raise ParameterError(
                f"a batch key is a non-empty string of at most {MAX_BATCH_KEY} characters, got {key!r}"
            )
        table = prepare_assignments(assignments)
        self._ensure_open()
        batch = self._stage(token, table, key)
        if batch.repeated and batch.rows != table.num_rows:
            raise StoreError(
                f"the staged publish of run {token.run_id} at {self.url_display} got batch {key!r} again with "
                f"{table.num_rows:,} customers where it had {batch.rows:,}; it was not staged again: a batch key "
                "must name the same customers each time it is sent"
            )
        return batch

    @abstractmethod
    def _begin(self, run: RunInfo) -> StageToken:
        """Make the staging area and record the generation served now."""

    @abstractmethod
    def _stage(self, token: StageToken, assignments: pa.Table, key: str | None) -> StagedBatch:
        """Compute one batch's history against ``token.served`` and write it to the staging area, in one
        step that either happens whole or not at all; a batch of a ``key`` recorded already writes nothing
        and returns the recorded figures with ``repeated=True``."""

    @abstractmethod
    def _commit(self, token: StageToken, expected_rows: int) -> tuple[int, int, int]:
        """Check and flip atomically (see :meth:`StagedPublish.commit`); returns (customers, changed, new)."""

    @abstractmethod
    def _abort(self, token: StageToken) -> None:
        """Remove the staging area (nothing if the publish was committed)."""

    @abstractmethod
    def get(self, customer_id: str) -> dict[str, Any] | None:
        """One profile (keys = :data:`~rfmseg.stores.rows.PROFILE_FIELDS`), or None when the id is not served."""

    @abstractmethod
    def get_many(self, customer_ids: list[str]) -> dict[str, dict[str, Any]]:
        """Profiles of the ids that are served, all from the same run; unknown ids are left out."""

    @abstractmethod
    def current_run(self) -> str | None:
        """The run id being served, None if nothing was ever published."""

    @abstractmethod
    def count(self) -> int:
        """How many customers the served run has (0 if nothing was published)."""

    # --- change feed --------------------------------------------------------------------------------------

    def changes(self, after: str | None = None, limit: int = 1000) -> ChangesPage:
        """The changes appended to the feed after cursor ``after`` (None: from the oldest kept), at most
        ``limit``, oldest first.

        A change is one customer whose segment a publish changed: ``reason`` ``new`` (from_segment None),
        ``moved``, or ``left`` (to_segment None: the customer is not in the published run); run_id, as_of
        and model_version are the publish's. A publish appends its changes in the same atomic step that
        serves its run, so the feed never holds changes of a run that was not served and never lags the
        served run. Cursors are opaque strings, strictly increasing: a consumer that saves
        ``next_cursor`` after processing a page and resumes from it (another process, days later) reads
        every change once. A cursor older than a :meth:`trim_changes` raises FeedTrimmedError, a StoreError
        (changes after it were removed: reload the customers and start again from None). A cursor past the
        last change the feed ever had (another store's, or one from before a :meth:`drop`) raises
        FeedCursorAheadError, a ParameterError (the last change's own cursor is fine: an empty page).
        """
        if after is not None and (not isinstance(after, str) or not self._cursor_re.fullmatch(after)):
            raise ParameterError(
                f"{after!r} is not a change feed cursor of a {self.backend} store (a cursor is the "
                "next_cursor of a page read from it, or None to read from the start)"
            )
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_CHANGES_LIMIT:
            raise ParameterError(f"limit must be a whole number from 1 to {MAX_CHANGES_LIMIT:,}, got {limit!r}")
        rows, trimmed, last = self._changes(after, limit + 1)
        if after is not None and not rows:
            newest = max((c for c in (last, trimmed) if c is not None), key=self._cursor_key, default=None)
            if newest is None or self._cursor_key(after) > self._cursor_key(newest):
                if not any(self._cursor_key(after)):  # "0" (or "0-0"): before any change, so from the start
                    return ChangesPage([], after, False)
                raise cursor_ahead(after, newest, self.url_display)
        if after is not None and trimmed is not None and self._cursor_key(after) < self._cursor_key(trimmed):
            raise FeedTrimmedError(
                f"the change feed of the profile store at {self.url_display} was trimmed through {trimmed}, "
                f"past cursor {after}: changes after it were removed; reload the customers and read the feed "
                "from the start (after=None)"
            )
        page = [dict(zip(CHANGE_FIELDS, row, strict=True)) for row in rows[:limit]]
        return ChangesPage(page, page[-1]["cursor"] if page else after, len(rows) > limit)

    def trim_changes(self, through: str) -> int:
        """Remove the changes up to and including cursor ``through`` (e.g. the oldest cursor any consumer
        has saved); returns how many were removed. Consumers whose saved cursor is ``through`` or later go
        on as before; one with an older cursor gets a StoreError instead of a gap. The feed keeps every
        change until it is trimmed."""
        if not isinstance(through, str) or not self._cursor_re.fullmatch(through):
            raise ParameterError(f"{through!r} is not a change feed cursor of a {self.backend} store")
        self._ensure_open()
        return self._trim_changes(through)

    _cursor_re: ClassVar[re.Pattern[str]] = re.compile(r"[0-9]{1,18}")
    """What a cursor of this backend looks like (SQL stores: the row id)."""

    @staticmethod
    def _cursor_key(cursor: str) -> tuple[int, ...]:
        """A cursor as numbers that compare in feed order."""
        return tuple(int(part) for part in cursor.split("-"))

    @abstractmethod
    def _changes(self, after: str | None, limit: int) -> tuple[list[tuple[Any, ...]], str | None, str | None]:
        """Up to ``limit`` changes after ``after`` as tuples in :data:`~rfmseg.stores.rows.CHANGE_FIELDS`
        order (cursor first, as_of an ISO date), the cursor the feed was trimmed through (None if never), and
        the cursor of the last change kept (None if none), the last two read together after the rows (so a
        trim or a publish in between is seen)."""

    @abstractmethod
    def _trim_changes(self, through: str) -> int:
        """Delete the changes up to ``through`` and record it as the trim point; refuse a cursor past the
        last change."""

    def drop(self) -> None:
        """Delete everything this namespace holds (after any publish in progress); nothing is served then."""
        self._ensure_open()
        self._drop()

    @abstractmethod
    def _drop(self) -> None:
        """Delete the namespace's tables or keys, holding the publisher lock."""

    def close(self) -> None:
        """Release connections; the store cannot be used afterwards."""
        if not self._closed:
            self._closed = True
            self._close()

    @abstractmethod
    def _close(self) -> None:
        """Close the backend's connections."""

    def _ensure_open(self) -> None:
        if self._closed:
            raise StoreError(f"the profile store at {self.url_display} is closed")

    def _ensure_answering(self) -> None:
        """Before a read: refuse at once while the store is taken for silent (see :meth:`_silent`)."""
        self._ensure_open()
        if self._silent_until and time.monotonic() < self._silent_until:
            raise StoreError(
                f"the profile store at {self.url_display} did not answer a read within {self.read_timeout:g} s "
                f"a moment ago (reads fail at once for {SILENT_PAUSE_S:g} s, then try it again); check that it is "
                "up and not overloaded"
            )

    def _silent(self, exc: BaseException) -> StoreError:
        """The StoreError for a read that got no answer within :attr:`read_timeout` (to raise ``from exc``).

        For :data:`SILENT_PAUSE_S` afterwards, reads fail at once instead of each waiting the whole timeout:
        the API's requests that need the store answer 503 at once instead of each holding a worker thread.
        """
        self._silent_until = time.monotonic() + SILENT_PAUSE_S
        return StoreError(
            f"the profile store at {self.url_display} did not answer a read within {self.read_timeout:g} s "
            f"(timed out); check that it is up and not overloaded"
        )

    def health(self) -> dict[str, Any]:
        """Whether the store answers, and what it serves. Never raises for a store that is down."""
        report: dict[str, Any] = {
            "ok": True,
            "backend": self.backend,
            "url": self.url_display,
            "run_id": None,
            "customers": 0,
        }
        try:
            report["run_id"] = self.current_run()
            report["customers"] = self.count()
        except StoreError as exc:
            report.update(ok=False, error=exc.message)
        return report

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url_display!r}, namespace={self.namespace!r})"


class StagedPublish:
    """A publish begun by :meth:`ProfileStore.begin_publish`, on the driver that will commit or abort it.

    Used as a context manager it aborts on exit unless it was committed.
    """

    def __init__(self, store: ProfileStore, token: StageToken) -> None:
        self.store = store
        self.token = token
        self.state = "open"
        self._started = time.perf_counter()

    @property
    def run_id(self) -> str:
        return self.token.run_id

    def stage(self, assignments: pa.Table, key: str | None = None) -> StagedBatch:
        """Stage a batch from this process (workers use :func:`rfmseg.stores.stage_batch` with the token)."""
        self._check_open("stage a batch")
        return self.store.stage(self.token, assignments, key)

    def commit(self, expected_rows: int) -> PublishReport:
        """Serve the staged customers, in one atomic step, if the store holds exactly ``expected_rows`` of
        them and still serves the run it served at begin; otherwise raise StoreError and change nothing.

        ``expected_rows`` is the caller's own count of the customers it meant to publish: a batch that was
        lost (a worker that died) makes the store's count fall short. The counts of the report are those
        a one-shot :meth:`ProfileStore.publish` of the same customers would give.
        """
        self._check_open("commit")
        if isinstance(expected_rows, bool) or not isinstance(expected_rows, int) or expected_rows <= 0:
            raise ParameterError(f"expected_rows must be a positive number of customers, got {expected_rows!r}")
        self.store._ensure_open()
        customers, changed, new = self.store._commit(self.token, expected_rows)
        self.state = "committed"
        return PublishReport(
            run_id=self.token.run_id,
            customers=customers,
            changed=changed,
            new=new,
            seconds=round(time.perf_counter() - self._started, 3),
        )

    def abort(self) -> None:
        """Remove what was staged; the served run stays. Does nothing after a commit or a first abort."""
        if self.state != "open":
            return
        self.store._ensure_open()
        self.store._abort(self.token)
        self.state = "aborted"

    def _check_open(self, action: str) -> None:
        if self.state != "open":
            raise StoreError(
                f"cannot {action}: the staged publish of run {self.token.run_id} was {self.state} already; "
                "begin a new one"
            )

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.abort()

    def __repr__(self) -> str:
        return f"StagedPublish(run_id={self.token.run_id!r}, store={self.store.url_display!r}, state={self.state!r})"


# --- read timeouts and the refusals of a staged publish -------------------------------------------------


def check_read_timeout(value: float | None) -> float | None:
    """A read timeout as the stores take it: None, or a positive number of seconds."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= MAX_READ_TIMEOUT_S:
        raise ParameterError(
            f"the store read timeout must be a number of seconds above 0 and at most {MAX_READ_TIMEOUT_S:g}, "
            f"got {value!r}"
        )
    return float(value)


# the refusals of a staged publish, the same words on every backend


def stage_moved(token: StageToken, url_display: str, current_run: str | None) -> StoreError:
    """Another publish flipped the store after ``token``'s publish began: its history is stale."""
    other = f"run {current_run}" if current_run else "a drop of the store"
    return StoreError(
        f"another publish ({other}) reached the profile store at {url_display} after the staged publish of "
        f"run {token.run_id} began; nothing was changed, publish run {token.run_id} again"
    )


def stage_gone(token: StageToken, url_display: str) -> StoreError:
    return StoreError(
        f"the staged publish of run {token.run_id} at {url_display} no longer exists (aborted, committed or "
        f"removed by another publish); nothing was changed, publish run {token.run_id} again"
    )


def stage_short(token: StageToken, url_display: str, rows: int, expected: int) -> StoreError:
    return StoreError(
        f"the staged publish of run {token.run_id} at {url_display} holds {rows:,} customers where {expected:,} "
        "were expected (a batch is missing or a worker died); nothing was changed, publish again"
    )


def stage_duplicated(token: StageToken, url_display: str, detail: str) -> StoreError:
    return StoreError(
        f"the staged publish of run {token.run_id} at {url_display} got customers from more than one batch "
        f"({detail}); nothing was changed, stage each customer once and publish again"
    )

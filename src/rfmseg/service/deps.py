"""What the routes depend on: the settings, the per-app state (store connection, caches of immutable run
files), JSON responses and the input checks shared by several routes."""

from __future__ import annotations

import os
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import duckdb
import orjson
from fastapi import Depends, Request
from fastapi.responses import Response

from rfmseg.errors import NotFoundError, ParameterError, RfmsegError, StoreError
from rfmseg.io.rules import MAX_ID_LENGTH
from rfmseg.report.html import JSON_OPTIONS
from rfmseg.runs import Run, get_run
from rfmseg.settings import DEFAULT_RUNS_DIR, RUNS_ENV, STORE_ENV, runs_path, store_url
from rfmseg.stores import ProfileStore, open_store
from rfmseg.stores.base import check_read_timeout
from rfmseg.stores.urls import redact_url


def dumps(data: Any) -> bytes:
    """A response body: orjson, 3-10x the standard library's speed on the hot path (non-finite floats as null)."""
    return orjson.dumps(data, option=JSON_OPTIONS, default=str)


ENV_RUNS_DIR = RUNS_ENV
ENV_STORE = STORE_ENV
ENV_API_KEY = "RFMSEG_API_KEY"
ENV_STORE_TIMEOUT = "RFMSEG_STORE_TIMEOUT"
ENV_MAX_BODY_BYTES = "RFMSEG_MAX_BODY_BYTES"
ENV_DATA_DIRS = "RFMSEG_DATA_DIRS"
DEFAULT_STORE_TIMEOUT_S = 2.0
DEFAULT_MAX_BODY_BYTES = 10_000_000
"""10 MB: a /score call of 10,000 transactions is about 1 MB"""
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
"""what the id rule of a read refuses too (:data:`rfmseg.io.validate.BAD_CUSTOMER_ID`): every stored id passes"""
_SURROGATE = re.compile("[\ud800-\udfff]")
"""a lone surrogate: JSON can carry one (``"\\ud800"``), UTF-8 and so no store can"""


class TooLargeError(ParameterError):
    """A request asks for more than one call may (413)."""

    http_status = 413


class InvalidError(ParameterError):
    """A request value breaks a rule of the API (422)."""

    http_status = 422


@dataclass(frozen=True)
class Settings:
    """How the API is set up: a view of what it needs, the runs folder and the store resolved by
    :mod:`rfmseg.settings` (``store_url`` None means ``sqlite:///<runs_dir>/profiles.db``)."""

    runs_dir: Path = DEFAULT_RUNS_DIR
    store_url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    store_timeout: float = DEFAULT_STORE_TIMEOUT_S
    """Seconds a store read may wait before the request gets 503 (rfmseg.stores.open_store's read_timeout)."""
    max_lookup: int = 1_000
    max_page_size: int = 1_000
    max_score_rows: int = 10_000
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    """Largest request body in bytes; a larger one is answered 413 before it is read (RFMSEG_MAX_BODY_BYTES)."""
    data_dirs: tuple[Path, ...] | None = None
    """The folders a request may name a file in (campaign measure's transactions; RFMSEG_DATA_DIRS, separated
    by the system's path separator); None: the runs folder's parent and the server's working folder."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "api_key", clean_api_key(self.api_key))
        if isinstance(self.max_body_bytes, bool) or not isinstance(self.max_body_bytes, int) or self.max_body_bytes < 1:
            raise ParameterError(f"max_body_bytes must be a whole number of bytes above 0, got {self.max_body_bytes!r}")

    def readable(self, name: str) -> Path:
        """The file a request names, if it is inside one of :attr:`data_dirs` (links and ``..`` resolved first);
        else a one-line 400 that names the folders and the setting."""
        dirs = self.data_dirs if self.data_dirs is not None else (self.runs_dir.parent, Path.cwd())
        roots = [Path(os.path.realpath(d)) for d in dirs]
        path = Path(os.path.realpath(name))
        if not any(path == r or r in path.parents for r in roots):
            shown = ", ".join(str(r) for r in roots) or "none"
            raise ParameterError(
                f"{name} is outside the folders this server reads files from ({shown}); put the file in one of "
                f"them or add its folder to {ENV_DATA_DIRS} (separated by '{os.pathsep}')"
            )
        return path

    @property
    def store(self) -> str:
        return store_url(self.runs_dir, self.store_url, env={})  # from_env has read $RFMSEG_STORE already

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Settings from RFMSEG_RUNS_DIR, RFMSEG_STORE, RFMSEG_STORE_TIMEOUT, RFMSEG_MAX_BODY_BYTES,
        RFMSEG_DATA_DIRS and RFMSEG_API_KEY; ``overrides`` win when not None."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {
            "runs_dir": runs_path(None, env),
            "store_url": env.get(ENV_STORE) or None,
            "api_key": env.get(ENV_API_KEY) or None,
        }
        timeout = env.get(ENV_STORE_TIMEOUT)
        if timeout:
            try:
                values["store_timeout"] = check_read_timeout(float(timeout))
            except (ValueError, ParameterError):
                raise ParameterError(
                    f"{ENV_STORE_TIMEOUT}={timeout!r} is not a number of seconds above 0; e.g. {ENV_STORE_TIMEOUT}=2"
                ) from None
        body = env.get(ENV_MAX_BODY_BYTES)
        if body:
            values["max_body_bytes"] = max_body_bytes(body)
        dirs = env.get(ENV_DATA_DIRS)
        if dirs:
            values["data_dirs"] = tuple(Path(d) for d in dirs.split(os.pathsep) if d.strip())
        values.update({k: v for k, v in overrides.items() if v is not None})
        values["runs_dir"] = Path(values["runs_dir"])
        return cls(**values)


def clean_api_key(key: str | None) -> str | None:
    """The API key as the server compares it: surrounding whitespace stripped (a trailing newline or space from
    a secrets file or a shell is never part of the key; clients' keys are stripped the same way). A key that
    is only whitespace is refused: serving with it would either lock everyone out or serve without a key."""
    if key is None or key == "":
        return None
    stripped = key.strip()
    if not stripped:
        raise ParameterError(
            f"{ENV_API_KEY} is set but blank (only whitespace); set it to the key clients send, or unset it"
        )
    return stripped


def max_body_bytes(text: str) -> int:
    """RFMSEG_MAX_BODY_BYTES as a number of bytes (digits, ``_`` allowed: ``10_000_000``)."""
    try:
        value = int(text.strip())
    except ValueError:
        value = 0
    if value < 1:
        raise ParameterError(
            f"{ENV_MAX_BODY_BYTES}={text!r} is not a whole number of bytes above 0; e.g. {ENV_MAX_BODY_BYTES}=10000000"
        )
    return value


class AppState:
    """One per app: the profile store (opened on first use and reused by every request; the stores are
    thread-safe), and caches of what never changes once a run is written (its summary and its view)."""

    VIEWS_CACHED = 4

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._store: ProfileStore | None = None
        self._store_lock = threading.Lock()
        """held while the store opens, which may wait on a silent server: only for requests that need the store"""
        self._lock = threading.Lock()
        self._summaries: dict[str, dict[str, Any]] = {}
        self._actions: dict[str, dict[str, tuple[str | None, int | None]]] = {}
        self._views: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._duckdb = duckdb.connect()

    # -- store
    def store(self, wait: bool = True) -> ProfileStore:
        """The store, opened on first use. Without ``wait``, a store another request is still opening (a
        silent server can hold that for the whole read timeout) is a StoreError at once: ``/health`` says
        so instead of queueing behind that request."""
        store = self._store
        if store is None:
            if not self._store_lock.acquire(blocking=wait):
                raise StoreError(
                    f"the profile store at {redact_url(self.settings.store)} has not answered yet: another request "
                    "is still connecting to it; ask again in a moment, and check that it is up if this persists"
                )
            try:
                if self._store is None:
                    self._store = open_store(self.settings.store, read_timeout=self.settings.store_timeout)
                store = self._store
            finally:
                self._store_lock.release()
        return store

    def close(self) -> None:
        with self._store_lock:
            if self._store is not None:
                self._store.close()
                self._store = None
        with self._lock:
            self._duckdb.close()

    # -- runs
    def run(self, ref: str | None) -> Run:
        return get_run(ref or "latest", self.settings.runs_dir)

    def summary(self, run: Run) -> dict[str, Any]:
        cached = self._summaries.get(run.run_id)
        if cached is None:
            cached = self._summaries[run.run_id] = dict(run.summary)
        return cached

    def actions(self, run_id: str) -> dict[str, tuple[str | None, int | None]]:
        """segment name -> (action, priority) of a run; {} (remembered) when the run is not in this runs
        folder, e.g. a store published from another machine."""
        found = self._actions.get(run_id)
        if found is None:
            try:
                run = get_run(run_id, self.settings.runs_dir)
                found = {s["name"]: (s.get("action"), s.get("priority")) for s in self.summary(run)["segments"]}
            except (RfmsegError, OSError, ValueError, KeyError):
                found = {}
            self._actions[run_id] = found
        return found

    def view(self, run: Run, build: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        with self._lock:
            if run.run_id in self._views:
                self._views.move_to_end(run.run_id)
                return self._views[run.run_id]
        view = build()
        with self._lock:
            self._views[run.run_id] = view
            while len(self._views) > self.VIEWS_CACHED:
                self._views.popitem(last=False)
        return view

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A DuckDB cursor for one request (cursors of one connection may run in different threads)."""
        return self._duckdb.cursor()


def field_of(param: str) -> str:
    """How the API names a core parameter in an error's ``detail``: the JSON field (``as_of``, ``k``); a column
    of the input rows by its field (``columns.customer_id`` -> ``customer_id``)."""
    return _FIELDS.get(param) or param.removeprefix("columns.")


_FIELDS = {
    "from_run": "from",
    "to_run": "to",
    "recency_jump_days": "recency_jump",
    "period_days": "period",
    "overdue_days": "overdue_days",
    "window_days": "window",
    "lookback_days": "lookback",
}
"""parameter -> query field, where the API names it otherwise (history's queries)"""


def get_state(request: Request) -> AppState:
    return request.app.state.rfmseg


StateDep = Annotated[AppState, Depends(get_state)]


def json_response(data: Any, status_code: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(dumps(data), status_code=status_code, media_type="application/json", headers=headers)


def check_id(customer_id: str) -> str:
    """A customer id as the API accepts it: 1 to 128 characters, none of them a control character or a lone
    surrogate."""
    if (
        not customer_id
        or not customer_id.strip()
        or len(customer_id) > MAX_ID_LENGTH
        or _CONTROL.search(customer_id)
        or _SURROGATE.search(customer_id)
    ):
        shown = printable(_CONTROL.sub("?", customer_id[:40])) + ("…" if len(customer_id) > 40 else "")
        raise InvalidError(
            f"customer id '{shown}' is not valid: ids are 1 to {MAX_ID_LENGTH} characters, "
            "not blank, with no control characters"
        )
    return customer_id


def printable(text: str) -> str:
    """``text`` as a response may carry it: a lone surrogate (which JSON can hold, UTF-8 cannot) shown as '?'."""
    return text.encode("utf-8", "replace").decode("utf-8")


def not_served(store: ProfileStore) -> NotFoundError:
    return NotFoundError(
        f"no run is published in the profile store at {store.url_display}; publish one with `rfmseg publish latest`"
    )

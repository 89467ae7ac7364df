"""What the routes depend on: the settings, the per-app state (store connection, caches of immutable run
files), JSON responses and the input checks shared by several routes."""

from __future__ import annotations

import json
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import duckdb
from fastapi import Depends, Request
from fastapi.responses import Response

from rfmseg.errors import NotFoundError, ParameterError, RfmsegError
from rfmseg.io.rules import MAX_ID_LENGTH
from rfmseg.runs import Run, get_run
from rfmseg.settings import DEFAULT_RUNS_DIR, RUNS_ENV, STORE_ENV, runs_path, store_url
from rfmseg.stores import ProfileStore, open_store
from rfmseg.stores.base import check_read_timeout

try:  # orjson is 3-10x faster on the hot path; the stdlib is the fallback
    import orjson

    def dumps(data: Any) -> bytes:
        return orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY, default=str)

except ImportError:  # pragma: no cover - orjson is in the serve extra

    def dumps(data: Any) -> bytes:
        return json.dumps(data, default=str, separators=(",", ":"), allow_nan=False).encode()


ENV_RUNS_DIR = RUNS_ENV
ENV_STORE = STORE_ENV
ENV_API_KEY = "RFMSEG_API_KEY"
ENV_STORE_TIMEOUT = "RFMSEG_STORE_TIMEOUT"
DEFAULT_STORE_TIMEOUT_S = 2.0
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
"""what the id rule of a read refuses too (:data:`rfmseg.io.validate.BAD_CUSTOMER_ID`): every stored id passes"""


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

    @property
    def store(self) -> str:
        return store_url(self.runs_dir, self.store_url, env={})  # from_env has read $RFMSEG_STORE already

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Settings from RFMSEG_RUNS_DIR, RFMSEG_STORE, RFMSEG_STORE_TIMEOUT and RFMSEG_API_KEY; ``overrides``
        win when not None."""
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
        values.update({k: v for k, v in overrides.items() if v is not None})
        values["runs_dir"] = Path(values["runs_dir"])
        return cls(**values)


class AppState:
    """One per app: the profile store (opened on first use and reused by every request; the stores are
    thread-safe), and caches of what never changes once a run is written (its summary and its view)."""

    VIEWS_CACHED = 4

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._store: ProfileStore | None = None
        self._lock = threading.Lock()
        self._summaries: dict[str, dict[str, Any]] = {}
        self._actions: dict[str, dict[str, tuple[str | None, int | None]]] = {}
        self._views: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._duckdb = duckdb.connect()

    # -- store
    def store(self) -> ProfileStore:
        store = self._store
        if store is None:
            with self._lock:
                if self._store is None:
                    self._store = open_store(self.settings.store, read_timeout=self.settings.store_timeout)
                store = self._store
        return store

    def close(self) -> None:
        with self._lock:
            if self._store is not None:
                self._store.close()
                self._store = None
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
    """A customer id as the API accepts it: 1 to 128 characters, none of them a control character."""
    if not customer_id or not customer_id.strip() or len(customer_id) > MAX_ID_LENGTH or _CONTROL.search(customer_id):
        shown = _CONTROL.sub("?", customer_id[:40]) + ("…" if len(customer_id) > 40 else "")
        raise InvalidError(
            f"customer id '{shown}' is not valid: ids are 1 to {MAX_ID_LENGTH} characters, "
            "not blank, with no control characters"
        )
    return customer_id


def not_served(store: ProfileStore) -> NotFoundError:
    return NotFoundError(
        f"no run is published in the profile store at {store.url_display}; publish one with `rfmseg publish latest`"
    )

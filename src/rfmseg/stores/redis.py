"""The Redis profile store (redis-py; pipelined writes, atomic reads by a Lua script).

Keys for namespace ``ns``:

* ``ns:v:<n>`` - one hash per published version: field = customer id, value = the profile packed as
  ``segment, previous_segment, segment_since, recency_days, frequency, monetary, distance, p_alive,
  expected_orders_90d, expected_value_90d`` (empty for none) joined by the unit separator ``\\x1f`` (a compact
  string, cheaper to write and read than a hash per customer);
* ``ns:v:<n>:state`` - a list of Arrow IPC parts holding customer_id, segment, previous_segment and
  segment_since of that version, read back by the next publish to carry the segment history forward;
* ``ns:current`` - the pointer: JSON with the served version's hash key, run id, as-of date, model
  version and customer count;
* ``ns:seq`` (version counter), ``ns:versions`` (versions not yet cleaned up), ``ns:lock`` (publisher);
* ``ns:changes`` - the change feed, a stream: one entry per change (fields customer_id, from_segment,
  to_segment, reason, segment_reason, run_id, as_of, model_version; an empty string is a NULL), the entry
  id is the cursor; ``ns:changes:trimmed`` the cursor it was trimmed through.

A publish takes the lock, deletes leftovers of dead publishes, writes a new version with HSETs of 1,000
fields pipelined on one connection, then swaps the pointer in one command (refused if the lock was
lost), then UNLINKs the old version. Readers run a small Lua script that reads the pointer and the hash
in one atomic step, so a batch always comes from one run and there is no window between the two reads.
A publish killed half way leaves its version unreferenced; the next publish deletes it.

The change feed is appended by the pointer swap itself: the publish RPUSHes its changes (computed in Arrow with
the history, in customer id order) to ``ns:v:<n>:changes`` beforehand, and the Lua script that swaps the pointer
XADDs them to ``ns:changes`` and deletes the list, in the same atomic step. Redis runs nothing else meanwhile:
2-3 microseconds per change on the project machine (a publish that changes 200,000 customers holds the
server about half a second; docs/stores.md).

A staged publish writes a version the same way from several processes. Begin (under the lock): take a version
number and register it with ``ns:v:<n>:stage``, a hash of the version served at begin and the running totals
(customers, changed, new, batches, and the first problem found). Each batch, from any process: one Lua script
checks that the pointer still names the version served at begin and that the stage exists, and HMGETs the
served profiles of the batch's ids; the history is computed in Arrow, the HSETs are streamed into ``ns:v:<n>``
as by a publish (an HSET that adds fewer fields than it sent means a customer was staged twice: recorded as
the stage's problem), and a second script appends the batch's Arrow history to ``ns:v:<n>:state`` and adds its
counts, and the Arrow parts of its new and moved customers to ``ns:v:<n>:staged_changes``. A keyed batch is
recorded once, as the field ``batch:<key>`` of the stage hash (set by that script
only if absent): sent again, it writes nothing; its HSETs may rewrite fields a dead attempt of the same batch
left, so an HSET adding fewer fields is no problem there, and a customer staged twice under two keys is caught
by the HLEN check of the commit. Commit (under the lock): check the pointer, the totals and HLEN against the
expected count, add the customers that left (the served history against the staged ids), then the same
pointer swap as a publish, with the changes. A stage that can no longer commit (the pointer moved
on) is removed by the next flip or begin, with any keys a late batch wrote.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from rfmseg.errors import StoreError
from rfmseg.stores import redis_scripts
from rfmseg.stores.base import (
    ProfileStore,
    StagedBatch,
    StageToken,
    stage_duplicated,
    stage_gone,
    stage_moved,
    stage_short,
)
from rfmseg.stores.redis_pipe import LOCK_TTL_MS, raw, text, write_changes, write_hash
from rfmseg.stores.rows import (
    PROFILE_FIELDS,
    SEPARATOR,
    STATE_SCHEMA,
    RunInfo,
    changes_from_parts,
    changes_parts,
    departed,
    empty_state,
    history_and_changes,
    in_feed_order,
    state_from_parts,
    state_parts,
)
from rfmseg.stores.urls import failed, unreachable

CONNECT_TIMEOUT_S = 5.0
SOCKET_TIMEOUT_S = 60.0
LOCK_WAIT_S = 120.0
READ_CHUNK = 10_000
_FEED_FIELDS = ("customer_id", "from_segment", "to_segment", "reason", "segment_reason")
_RUN_FIELDS = ("run_id", "as_of", "model_version")
_MAX_ID = 2**64 - 1
"""The largest part of a stream id (milliseconds, sequence)."""


class RedisStore(ProfileStore):
    """Profiles in Redis; one instance may be shared by threads (redis-py pools connections)."""

    backend = "redis"
    _cursor_re = re.compile(r"[0-9]{1,20}-[0-9]{1,20}")

    def __init__(self, url: str, namespace: str | None = None, read_timeout: float | None = None) -> None:
        super().__init__(url, namespace, read_timeout)
        ns = self.namespace
        self._pointer, self._seq, self._versions, self._lock_key = (
            f"{ns}:current",
            f"{ns}:seq",
            f"{ns}:versions",
            f"{ns}:lock",
        )
        self._feed, self._feed_trim = f"{ns}:changes", f"{ns}:changes:trimmed"
        self._client = self._connect()
        self._read_script = self._client.register_script(redis_scripts.READ_LUA)
        self._flip_script = self._client.register_script(redis_scripts.FLIP_LUA)
        self._trim_script = self._client.register_script(redis_scripts.TRIM_LUA)
        self._changes_script = self._client.register_script(redis_scripts.CHANGES_LUA)
        self._release_script = self._client.register_script(redis_scripts.RELEASE_LUA)
        self._stage_read_script = self._client.register_script(redis_scripts.STAGE_READ_LUA)
        self._stage_record_script = self._client.register_script(redis_scripts.STAGE_RECORD_LUA)
        self._cache_lock = threading.Lock()
        self._cached_raw: bytes | None = None
        self._cached_pointer: dict[str, Any] = {}

    def _connect(self, single: bool = False) -> redis.Redis:
        """A client: the shared pool (reads; ``read_timeout`` bounds its replies) or, with ``single``, one
        connection of its own for a publish or a batch.

        The pool retries a read once after a broken connection (a restarted server) and never after a
        timeout: redis-py's default, ten retries, made a read of a silent server wait eleven timeouts."""
        options: dict[str, Any] = {}
        if not single:
            options["retry"] = Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,))
        try:
            client = redis.Redis.from_url(
                self._url,
                socket_connect_timeout=CONNECT_TIMEOUT_S,
                socket_timeout=SOCKET_TIMEOUT_S if single or self.read_timeout is None else self.read_timeout,
                single_connection_client=single,
                **options,
            )
            client.ping()
        except (redis.RedisError, ValueError) as exc:
            raise unreachable(self.url_display, exc, self._secrets) from exc
        return client

    def _version_key(self, version: int | str) -> str:
        return f"{self.namespace}:v:{version}"

    # --- reads --------------------------------------------------------------------------------------------

    def _parse_pointer(self, raw: bytes) -> dict[str, Any]:
        with self._cache_lock:
            if raw != self._cached_raw:
                self._cached_pointer, self._cached_raw = json.loads(raw), raw
            return self._cached_pointer

    def _lookup(self, customer_ids: list[str]) -> tuple[dict[str, Any] | None, list[bytes | None]]:
        """(pointer, packed values) read atomically; (None, []) if nothing was ever published."""
        self._ensure_answering()
        try:
            reply = self._read_script(keys=[self._pointer], args=customer_ids)
        except redis.TimeoutError as exc:
            raise self._silent(exc) from exc
        except redis.RedisError as exc:
            raise failed(self.url_display, "read", exc, self._secrets) from exc
        if reply is None:
            return None, []
        return self._parse_pointer(reply[0]), reply[1:]

    @staticmethod
    def _profile(customer_id: str, packed: bytes, pointer: dict[str, Any]) -> dict[str, Any]:
        fields = packed.decode().split(SEPARATOR)
        segment, previous, since, recency, frequency, monetary, distance = fields[:7]
        rhythm = fields[7:] or ["", "", ""]  # a version published before the rhythm columns: none
        values = (
            customer_id,
            segment,
            previous or None,
            since,
            int(recency),
            int(frequency),
            float(monetary),
            float(distance),
            *(float(v) if v else None for v in rhythm),
            pointer["run_id"],
            pointer["as_of"],
            pointer["model_version"],
        )
        return dict(zip(PROFILE_FIELDS, values, strict=True))

    def get(self, customer_id: str) -> dict[str, Any] | None:
        pointer, values = self._lookup([customer_id])
        if pointer is None or values[0] is None:
            return None
        return self._profile(customer_id, values[0], pointer)

    def get_many(self, customer_ids: list[str]) -> dict[str, dict[str, Any]]:
        ids = list(dict.fromkeys(customer_ids))
        if not ids:
            return {}
        for _attempt in range(5):
            # large batches are read in chunks (so Redis is not blocked long); all must see one version
            chunks = [self._lookup(ids[i : i + READ_CHUNK]) for i in range(0, len(ids), READ_CHUNK)]
            pointers = {None if pointer is None else pointer["key"] for pointer, _ in chunks}
            if len(pointers) == 1:
                break
        else:
            raise StoreError(f"the profile store at {self.url_display} kept changing during a batch read; try again")
        pointer = chunks[0][0]
        if pointer is None:
            return {}
        values = [value for _, chunk in chunks for value in chunk]
        return {
            cid: self._profile(cid, value, pointer) for cid, value in zip(ids, values, strict=True) if value is not None
        }

    def _current(self) -> dict[str, Any] | None:
        self._ensure_answering()
        try:
            pointer = self._client.get(self._pointer)
        except redis.TimeoutError as exc:
            raise self._silent(exc) from exc
        except redis.RedisError as exc:
            raise failed(self.url_display, "read", exc, self._secrets) from exc
        return None if pointer is None else self._parse_pointer(raw(pointer))

    def current_run(self) -> str | None:
        pointer = self._current()
        return None if pointer is None else str(pointer["run_id"])

    def count(self) -> int:
        pointer = self._current()
        return 0 if pointer is None else int(pointer["customers"])

    def _changes(self, after: str | None, limit: int) -> tuple[list[tuple[Any, ...]], str | None, str | None]:
        self._ensure_answering()
        try:
            text, trimmed, last = self._changes_script(
                keys=[self._feed, self._feed_trim], args=[self._start(after), limit]
            )
        except redis.TimeoutError as exc:
            raise self._silent(exc) from exc
        except redis.RedisError as exc:
            raise failed(self.url_display, "read", exc, self._secrets) from exc
        rows = []
        for entry_id, pairs in json.loads(text):
            fields = dict(zip(pairs[::2], pairs[1::2], strict=True))
            values = [fields.get(name, "") or None for name in _FEED_FIELDS]
            rows.append((entry_id, *values, *(fields.get(name, "") for name in _RUN_FIELDS)))
        return rows, None if trimmed is None else trimmed.decode(), None if last is None else last.decode()

    @staticmethod
    def _start(after: str | None) -> str:
        """Where XRANGE starts after cursor ``after`` (Redis refuses an id part past 64 bits): ``''`` when no
        stream id can follow it, so it is past the last change."""
        if after is None:
            return "-"
        ms, seq = (int(part) for part in after.split("-"))
        if seq < _MAX_ID and ms <= _MAX_ID:
            return f"({after}"
        return f"{ms + 1}-0" if ms < _MAX_ID else ""  # the first id after it (inclusive), or none

    def _trim_changes(self, through: str) -> int:
        ms, seq = (int(part) for part in through.split("-"))
        try:
            removed = int(self._trim_script(keys=[self._feed, self._feed_trim], args=[f"{ms}-{seq + 1}", through]))
        except redis.RedisError as exc:
            raise failed(self.url_display, "trim the change feed", exc, self._secrets) from exc
        if removed < 0:
            raise StoreError(
                f"cursor {through} is past the last change of the feed at {self.url_display}; nothing was trimmed"
            )
        return removed

    def _drop(self) -> None:
        with self._locked("drop the store") as (holder, _lock):
            self._drop_versions(holder, {text(v) for v in holder.smembers(self._versions)})
            served = self._served_version(holder)
            if served is not None:
                self._drop_versions(holder, {served})
            holder.unlink(self._pointer, self._seq, self._versions, self._feed, self._feed_trim)

    def _close(self) -> None:
        self._client.close()

    # --- publish ------------------------------------------------------------------------------------------

    def _publish(self, assignments: pa.Table, run: RunInfo) -> tuple[int, int]:
        with self._locked(f"publish run {run.run_id}") as (holder, lock):
            return self._load_and_flip(holder, lock, assignments, run)

    @contextlib.contextmanager
    def _locked(self, action: str) -> Iterator[tuple[redis.Redis, str]]:
        """(single-connection client, lock token) while holding the publisher lock; Redis errors become
        StoreError naming ``action``."""
        holder = self._connect(single=True)  # the lock lives as long as this connection
        try:
            lock = self._acquire(holder)
            try:
                yield holder, lock
            finally:
                with contextlib.suppress(redis.RedisError):  # a lost lock expires by itself
                    self._release_script(keys=[self._lock_key], args=[lock], client=holder)
        except redis.RedisError as exc:
            raise failed(self.url_display, action, exc, self._secrets) from exc
        finally:
            holder.close()

    def _acquire(self, holder: redis.Redis) -> str:
        """Take the publisher lock; a lock whose holder's connection is gone is taken over at once."""
        token = f"{holder.client_id()}:{os.getpid()}:{uuid.uuid4().hex}"
        deadline = time.monotonic() + LOCK_WAIT_S
        while True:
            if holder.set(self._lock_key, token, nx=True, px=LOCK_TTL_MS):
                return token
            current = holder.get(self._lock_key)
            if current is not None and not self._holder_alive(holder, text(current)):
                self._release_script(keys=[self._lock_key], args=[current], client=holder)
                continue
            if time.monotonic() > deadline:
                raise StoreError(
                    f"another publish to the profile store at {self.url_display} has held the "
                    f"lock for over {LOCK_WAIT_S:.0f} s; try again later"
                )
            time.sleep(0.1)

    @staticmethod
    def _holder_alive(holder: redis.Redis, token: str) -> bool:
        client_id = token.split(":", 1)[0]
        try:
            return bool(holder.execute_command("CLIENT", "LIST", "ID", client_id))
        except redis.ResponseError:
            return True  # CLIENT LIST not allowed: wait for the lock's TTL instead

    def _load_and_flip(self, holder: redis.Redis, token: str, assignments: pa.Table, run: RunInfo) -> tuple[int, int]:
        served = self._served_version(holder)
        self._drop_leftovers(holder, served)

        state = self._read_state(holder, served) if served else empty_state()
        rows, changed, new, changes = history_and_changes(assignments, state, run.as_of, departures=True)

        version = str(holder.incr(self._seq))
        holder.sadd(self._versions, version)  # registered first, so a dead publish's keys can be found
        key = self._version_key(version)
        try:
            written = write_hash(holder, key, rows, self._lock_key)
            if written != rows.num_rows:
                raise StoreError(
                    f"the profile store at {self.url_display} stored {written} of {rows.num_rows} "
                    "profiles; nothing was changed, publish again"
                )
            self._write_state(holder, key, rows)
            write_changes(holder, key, changes, self._lock_key)
            self._flip(holder, token, version, run, rows.num_rows)
        except BaseException:
            with contextlib.suppress(redis.RedisError):  # best effort: the next publish removes it anyway
                self._drop_versions(holder, {version})
            raise
        self._after_flip(holder, version)
        return changed, new

    def _served_version(self, client: redis.Redis) -> str | None:
        raw = client.get(self._pointer)
        return None if raw is None else str(json.loads(raw)["version"])

    def _flip(self, holder: redis.Redis, token: str, version: str, run: RunInfo, customers: int) -> None:
        """Point ``ns:current`` at ``version`` and append the changes listed in ``ns:v:<version>:changes`` to
        the feed, in one atomic step, if this publisher still holds the lock."""
        new_pointer = json.dumps(
            {
                "version": int(version),
                "key": self._version_key(version),
                "run_id": run.run_id,
                "as_of": run.as_of.isoformat(),
                "model_version": run.model_version,
                "customers": customers,
                "published_at": datetime.now(UTC).isoformat(timespec="seconds"),
            }
        )
        key = self._version_key(version)
        flipped = self._flip_script(
            keys=[self._lock_key, self._pointer, self._feed, f"{key}:changes", f"{key}:staged_changes"],
            args=[token, new_pointer, run.run_id, run.as_of.isoformat(), run.model_version],
            client=holder,
        )
        if not flipped:
            raise StoreError(
                f"the publish lock on {self.url_display} expired during the publish of "
                f"run {run.run_id}; nothing was changed, publish again"
            )

    def _after_flip(self, holder: redis.Redis, version: str) -> None:
        """Drop the version served before and the stages that can no longer commit; the new run is served
        already, so a failure here is left to the next publish."""
        with contextlib.suppress(redis.RedisError):
            self._drop_leftovers(holder, version)

    def _drop_leftovers(self, client: redis.Redis, served: str | None) -> None:
        """UNLINK every version but the served one and the stages begun on it (which may still commit)."""
        versions = sorted({text(v) for v in client.smembers(self._versions)} - {served})
        if not versions:
            return
        with client.pipeline(transaction=False) as pipe:
            for version in versions:
                pipe.hget(f"{self._version_key(version)}:stage", "served")
            began_on = pipe.execute()
        live = {v for v, b in zip(versions, began_on, strict=True) if b is not None and b.decode() == (served or "")}
        self._drop_versions(client, set(versions) - live)

    def _drop_versions(self, client: redis.Redis, versions: set[str]) -> None:
        """UNLINK whole versions (Redis frees the memory in the background)."""
        for version in versions:
            key = self._version_key(version)
            client.unlink(key, f"{key}:state", f"{key}:stage", f"{key}:changes", f"{key}:staged_changes")
            client.srem(self._versions, version)

    @staticmethod
    def _write_state(client: redis.Redis, key: str, rows: pa.Table) -> None:
        client.rpush(f"{key}:state", *state_parts(rows))

    def _read_state(self, client: redis.Redis, version: str) -> pa.Table:
        parts = client.lrange(f"{self._version_key(version)}:state", 0, -1)
        if not parts:
            raise StoreError(
                f"the profile store at {self.url_display} serves version {version} without its "
                "state; it was changed by hand - publish into a new namespace"
            )
        return state_from_parts([raw(part) for part in parts])

    # --- staged publish -----------------------------------------------------------------------------------

    def _begin(self, run: RunInfo) -> StageToken:
        with self._locked(f"begin the publish of run {run.run_id}") as (holder, _token):
            served = self._served_version(holder)
            self._drop_leftovers(holder, served)
            version = str(holder.incr(self._seq))
            with holder.pipeline(transaction=True) as pipe:
                pipe.sadd(self._versions, version)
                pipe.hset(
                    f"{self._version_key(version)}:stage",
                    mapping={
                        "served": served or "",
                        "run_id": run.run_id,
                        "rows": 0,
                        "changed": 0,
                        "new": 0,
                        "batches": 0,
                        "created": datetime.now(UTC).isoformat(timespec="seconds"),
                    },
                )
                pipe.execute()
        served_key = self._version_key(served) if served else None
        return StageToken(
            self._url, self.namespace, version, int(served or 0), served_key, run.run_id, run.as_of, run.model_version
        )

    def _stage_key(self, token: StageToken) -> str:
        return f"{self._version_key(token.stage)}:stage"

    def _began_on(self, token: StageToken) -> str:
        return str(token.generation) if token.served else ""

    def _stage(self, token: StageToken, assignments: pa.Table, key: str | None) -> StagedBatch:
        holder = self._connect(single=True)
        try:
            done = self._staged_batch(holder, token, key)
            if done is not None:
                return done
            state = self._staged_state(holder, token, assignments["customer_id"].to_pylist())
            # the batch's new and moved customers; those that left are known at the commit only
            rows, changed, new, changes = history_and_changes(assignments, state, token.as_of, departures=False)
            version = self._version_key(token.stage)
            written = write_hash(holder, version, rows, None)
            problem = ""
            if written != rows.num_rows and key is None:
                twice = rows.num_rows - written
                problem = f"{twice:,} customer(s) of a batch were staged by an earlier batch"
            states = [] if problem else state_parts(rows)
            recorded = self._stage_record_script(
                keys=[self._stage_key(token), self._versions, f"{version}:state", f"{version}:staged_changes"],
                args=[
                    token.stage,
                    rows.num_rows,
                    changed,
                    new,
                    problem,
                    key or "",
                    len(states),
                    *states,
                    *([] if problem else changes_parts(changes)),
                ],
                client=holder,
            )
            if recorded == 2:  # another attempt of this batch recorded it meanwhile
                done = self._staged_batch(holder, token, key)
        except redis.RedisError as exc:
            raise failed(self.url_display, f"stage a batch of run {token.run_id}", exc, self._secrets) from exc
        finally:
            holder.close()
        if not recorded:
            raise stage_gone(token, self.url_display)
        if problem:
            raise stage_duplicated(token, self.url_display, problem)
        return done or StagedBatch(rows.num_rows, changed, new)

    def _staged_batch(self, client: redis.Redis, token: StageToken, key: str | None) -> StagedBatch | None:
        """The figures of the batch staged under ``key`` (``repeated``), or None if there is none."""
        if key is None:
            return None
        found = client.hget(self._stage_key(token), f"batch:{key}")
        if found is None:
            return None
        rows, changed, new = (int(part) for part in text(found).split(","))
        return StagedBatch(rows, changed, new, repeated=True)

    def _staged_state(self, client: redis.Redis, token: StageToken, ids: list[str]) -> pa.Table:
        """The served history of ``ids``, read with the check that the stage may still commit."""
        found: list[str] = []
        values: list[bytes] = []
        for start in range(0, len(ids), READ_CHUNK):
            chunk = ids[start : start + READ_CHUNK]
            reply = self._stage_read_script(
                keys=[self._pointer, self._stage_key(token)],
                args=[self._began_on(token), token.served or "", *chunk],
                client=client,
            )
            status = reply[0].decode()
            if status == "moved":
                raise stage_moved(token, self.url_display, reply[1].decode() or None)
            if status == "gone":
                raise stage_gone(token, self.url_display)
            if status == "problem":
                raise stage_duplicated(token, self.url_display, reply[1].decode())
            for cid, value in zip(chunk, reply[1:], strict=False):
                if value is not None:
                    found.append(cid)
                    values.append(value)
        if not found:
            return empty_state()
        fields = pc.split_pattern(pa.array(values, pa.binary()).cast(pa.string()), SEPARATOR)
        previous = pc.list_element(fields, 1)
        return pa.table(
            [
                pa.array(found, pa.string()),
                pc.list_element(fields, 0),
                pc.if_else(pc.equal(previous, ""), pa.scalar(None, pa.string()), previous),
                pc.cast(pc.list_element(fields, 2), pa.date32()),
            ],
            schema=STATE_SCHEMA,
        )

    def _commit(self, token: StageToken, expected_rows: int) -> tuple[int, int, int]:
        key = self._version_key(token.stage)
        with self._locked(f"publish run {token.run_id}") as (holder, lock):
            raw = holder.get(self._pointer)
            pointer = None if raw is None else json.loads(raw)
            if (str(pointer["version"]) if pointer else "") != self._began_on(token):
                raise stage_moved(token, self.url_display, pointer["run_id"] if pointer else None)
            stage = {text(k): text(v) for k, v in holder.hgetall(self._stage_key(token)).items()}
            if not stage or not holder.sismember(self._versions, token.stage):
                raise stage_gone(token, self.url_display)
            if stage.get("problem"):
                raise stage_duplicated(token, self.url_display, stage["problem"])
            rows, changed, new = int(stage["rows"]), int(stage["changed"]), int(stage["new"])
            if rows != expected_rows:
                raise stage_short(token, self.url_display, rows, expected_rows)
            held = int(holder.hlen(key))
            if held != rows:  # a batch that died half way left fields without counting them
                raise stage_short(token, self.url_display, held, expected_rows)
            write_changes(holder, key, self._staged_changes(holder, token), self._lock_key)
            self._flip(holder, lock, token.stage, token.run, rows)
            with contextlib.suppress(redis.RedisError):
                holder.unlink(self._stage_key(token))  # a served version like any other now
            self._after_flip(holder, token.stage)
        return rows, changed, new

    def _staged_changes(self, holder: redis.Redis, token: StageToken) -> pa.Table:
        """The changes of a staged publish at its commit: the batches' new and moved customers, and the
        served customers no batch staged."""
        key = self._version_key(token.stage)
        arrived = changes_from_parts([raw(part) for part in holder.lrange(f"{key}:staged_changes", 0, -1)])
        if not token.served:
            return in_feed_order([arrived])
        staged_ids = state_from_parts([raw(part) for part in holder.lrange(f"{key}:state", 0, -1)])["customer_id"]
        served = self._read_state(holder, str(token.generation))
        return in_feed_order([arrived, departed(served, staged_ids)])

    def _abort(self, token: StageToken) -> None:
        try:
            if self._served_version(self._client) != token.stage:  # never the version it committed
                self._drop_versions(self._client, {token.stage})
        except redis.RedisError as exc:
            raise failed(self.url_display, f"abort the publish of run {token.run_id}", exc, self._secrets) from exc

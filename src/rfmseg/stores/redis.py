"""The Redis profile store (redis-py; pipelined writes, atomic reads by a Lua script).

Keys for namespace ``ns``:

* ``ns:v:<n>`` - one hash per published version: field = customer id, value = the profile packed as
  ``segment, previous_segment, segment_since, recency_days, frequency, monetary, distance`` joined by
  the unit separator ``\\x1f`` (a compact string, cheaper to write and read than a hash per customer);
* ``ns:v:<n>:state`` - a list of Arrow IPC parts holding customer_id, segment, previous_segment and
  segment_since of that version, read back by the next publish to carry the segment history forward;
* ``ns:current`` - the pointer: JSON with the served version's hash key, run id, as-of date, model
  version and customer count;
* ``ns:seq`` (version counter), ``ns:versions`` (versions not yet cleaned up), ``ns:lock`` (publisher).

A publish takes the lock, deletes leftovers of dead publishes, writes a new version with HSETs of 1,000
fields pipelined on one connection, then swaps the pointer in one command (refused if the lock was
lost), then UNLINKs the old version. Readers run a small Lua script that reads the pointer and the hash
in one atomic step, so a batch always comes from one run and there is no window between the two reads.
A publish killed half way leaves its version unreferenced; the next publish deletes it.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import redis

from rfmseg.errors import StoreError
from rfmseg.stores.base import (
    PROFILE_FIELDS,
    SEPARATOR,
    ProfileStore,
    RunInfo,
    apply_history,
    empty_state,
    failed,
    state_from_parts,
    state_parts,
    unreachable,
)

CONNECT_TIMEOUT_S = 5.0
SOCKET_TIMEOUT_S = 60.0
FIELDS_PER_HSET = 1_000
WRITE_BATCH_ROWS = 50_000
LOCK_TTL_MS = 60_000
LOCK_WAIT_S = 120.0
READ_CHUNK = 10_000

# KEYS[1] = pointer; ARGV = customer ids -> {pointer, value or false per id}, or nil if never published
_READ_LUA = """
local ptr = redis.call('GET', KEYS[1])
if not ptr then return false end
local key = cjson.decode(ptr)['key']
local out = {ptr}
for i = 1, #ARGV, 1000 do
  local vals = redis.call('HMGET', key, unpack(ARGV, i, math.min(i + 999, #ARGV)))
  for j = 1, #vals do out[#out + 1] = vals[j] end
end
return out
"""
# KEYS[1] = lock, KEYS[2] = pointer; ARGV[1] = lock token, ARGV[2] = new pointer -> 1 if swapped
_FLIP_LUA = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[2])
return 1
"""
# KEYS[1] = lock; ARGV[1] = token -> delete the lock only if it still holds that token
_RELEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def _bulk(value: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(value), value)


def _packed_pairs(batch: pa.RecordBatch) -> tuple[memoryview, np.ndarray]:
    """The Redis protocol encoding of ``customer_id`` and its packed profile for every row, as one data
    buffer and the offsets of each row's pair in it."""
    packed = pc.binary_join_element_wise(
        batch["segment"],
        pc.fill_null(batch["previous_segment"], ""),
        pc.cast(batch["segment_since"], pa.string()),
        pc.cast(batch["recency_days"], pa.string()),
        pc.cast(batch["frequency"], pa.string()),
        pc.cast(batch["monetary"], pa.string()),
        pc.cast(batch["distance"], pa.string()),
        SEPARATOR,
    )
    ids = batch["customer_id"]
    pairs = pc.binary_join_element_wise(
        "$",
        pc.cast(pc.binary_length(ids), pa.string()),
        "\r\n",
        ids,
        "\r\n$",
        pc.cast(pc.binary_length(packed), pa.string()),
        "\r\n",
        packed,
        "\r\n",
        "",
    )
    pairs = pc.cast(pairs, pa.large_binary())
    _validity, offsets, data = pairs.buffers()
    starts = np.frombuffer(offsets, dtype=np.int64, count=len(pairs) + 1, offset=8 * pairs.offset)
    return memoryview(data), starts


class RedisStore(ProfileStore):
    """Profiles in Redis; one instance may be shared by threads (redis-py pools connections)."""

    backend = "redis"

    def __init__(self, url: str, namespace: str | None = None) -> None:
        super().__init__(url, namespace)
        ns = self.namespace
        self._pointer, self._seq, self._versions, self._lock_key = (
            f"{ns}:current",
            f"{ns}:seq",
            f"{ns}:versions",
            f"{ns}:lock",
        )
        self._client = self._connect()
        self._read_script = self._client.register_script(_READ_LUA)
        self._flip_script = self._client.register_script(_FLIP_LUA)
        self._release_script = self._client.register_script(_RELEASE_LUA)
        self._cache_lock = threading.Lock()
        self._cached_raw: bytes | None = None
        self._cached_pointer: dict[str, Any] = {}

    def _connect(self, single: bool = False) -> redis.Redis:
        try:
            client = redis.Redis.from_url(
                self._url,
                socket_connect_timeout=CONNECT_TIMEOUT_S,
                socket_timeout=SOCKET_TIMEOUT_S,
                single_connection_client=single,
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
        self._ensure_open()
        try:
            reply = self._read_script(keys=[self._pointer], args=customer_ids)
        except redis.RedisError as exc:
            raise failed(self.url_display, "read", exc, self._secrets) from exc
        if reply is None:
            return None, []
        return self._parse_pointer(reply[0]), reply[1:]

    @staticmethod
    def _profile(customer_id: str, packed: bytes, pointer: dict[str, Any]) -> dict[str, Any]:
        segment, previous, since, recency, frequency, monetary, distance = packed.decode().split(SEPARATOR)
        values = (
            customer_id,
            segment,
            previous or None,
            since,
            int(recency),
            int(frequency),
            float(monetary),
            float(distance),
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
        self._ensure_open()
        try:
            raw = self._client.get(self._pointer)
        except redis.RedisError as exc:
            raise failed(self.url_display, "read", exc, self._secrets) from exc
        return None if raw is None else self._parse_pointer(raw)

    def current_run(self) -> str | None:
        pointer = self._current()
        return None if pointer is None else str(pointer["run_id"])

    def count(self) -> int:
        pointer = self._current()
        return 0 if pointer is None else int(pointer["customers"])

    def _drop(self) -> None:
        holder = self._connect(single=True)
        try:
            token = self._acquire(holder)
            try:
                self._drop_versions(holder, {v.decode() for v in holder.smembers(self._versions)})
                raw = holder.get(self._pointer)
                if raw is not None:
                    self._drop_versions(holder, {str(json.loads(raw)["version"])})
                holder.unlink(self._pointer, self._seq, self._versions)
            finally:
                self._release_script(keys=[self._lock_key], args=[token], client=holder)
        except redis.RedisError as exc:
            raise failed(self.url_display, "drop the store", exc, self._secrets) from exc
        finally:
            holder.close()

    def _close(self) -> None:
        self._client.close()

    # --- publish ------------------------------------------------------------------------------------------

    def _publish(self, assignments: pa.Table, run: RunInfo) -> tuple[int, int]:
        holder = self._connect(single=True)  # the lock lives as long as this connection
        try:
            token = self._acquire(holder)
            try:
                return self._load_and_flip(holder, token, assignments, run)
            finally:
                self._release_script(keys=[self._lock_key], args=[token], client=holder)
        except redis.RedisError as exc:
            raise failed(self.url_display, f"publish run {run.run_id}", exc, self._secrets) from exc
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
            if current is not None and not self._holder_alive(holder, current.decode()):
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
        raw = holder.get(self._pointer)
        pointer = None if raw is None else json.loads(raw)
        served = None if pointer is None else str(pointer["version"])
        self._drop_versions(holder, {v.decode() for v in holder.smembers(self._versions)} - {served})

        state = self._read_state(holder, served) if served else empty_state()
        rows, changed, new = apply_history(assignments, state, run.as_of)

        version = str(holder.incr(self._seq))
        holder.sadd(self._versions, version)  # registered first, so a dead publish's keys can be found
        key = self._version_key(version)
        try:
            self._write_hash(holder, key, rows)
            self._write_state(holder, key, rows)
            new_pointer = json.dumps(
                {
                    "version": int(version),
                    "key": key,
                    "run_id": run.run_id,
                    "as_of": run.as_of.isoformat(),
                    "model_version": run.model_version,
                    "customers": rows.num_rows,
                    "published_at": datetime.now(UTC).isoformat(timespec="seconds"),
                }
            )
            if not self._flip_script(keys=[self._lock_key, self._pointer], args=[token, new_pointer], client=holder):
                raise StoreError(
                    f"the publish lock on {self.url_display} expired during the publish of "
                    f"run {run.run_id}; nothing was changed, publish again"
                )
        except BaseException:
            with contextlib.suppress(redis.RedisError):  # best effort: the next publish removes it anyway
                self._drop_versions(holder, {version})
            raise
        if served:
            self._drop_versions(holder, {served})
        return changed, new

    def _drop_versions(self, client: redis.Redis, versions: set[str]) -> None:
        """UNLINK whole versions (Redis frees the memory in the background)."""
        for version in versions:
            key = self._version_key(version)
            client.unlink(key, f"{key}:state")
            client.srem(self._versions, version)

    def _write_hash(self, holder: redis.Redis, key: str, rows: pa.Table) -> None:
        """HSET every packed profile into ``key``, FIELDS_PER_HSET fields per command.

        The commands are encoded to the Redis protocol by Arrow, a batch at a time, and streamed on the
        lock holder's connection with the replies of one batch read while Redis works on the next: redis-py
        pipelines would spend most of the publish encoding two million arguments in Python.
        """
        conn = holder.connection
        if conn is None:  # pragma: no cover - a single-connection client always has one
            raise StoreError("the publish needs a single-connection Redis client")
        try:
            written = self._stream_hsets(conn, key, rows)
        except BaseException:
            conn.disconnect()  # replies may be left unread: start the next command on a fresh connection
            raise
        if written != rows.num_rows:
            raise StoreError(
                f"the profile store at {self.url_display} stored {written} of {rows.num_rows} "
                "profiles; nothing was changed, publish again"
            )

    def _stream_hsets(self, conn: Any, key: str, rows: pa.Table) -> int:
        """Send the HSETs batch by batch, reading a batch's replies after sending the next; fields added."""
        key_bulk = _bulk(key.encode())
        expire = b"".join(conn.pack_command("PEXPIRE", self._lock_key, LOCK_TTL_MS))
        written, pending = 0, 0
        for batch in rows.to_batches(max_chunksize=WRITE_BATCH_ROWS):
            data, offsets = _packed_pairs(batch)
            chunks: list[bytes | memoryview] = []
            for start in range(0, batch.num_rows, FIELDS_PER_HSET):
                stop = min(start + FIELDS_PER_HSET, batch.num_rows)
                chunks += [
                    b"*%d\r\n$4\r\nHSET\r\n" % (2 + 2 * (stop - start)),
                    key_bulk,
                    data[offsets[start] : offsets[stop]],
                ]
            chunks.append(expire)  # keep the lock while the load runs
            conn.send_packed_command([b"".join(chunks)], check_health=False)
            written += self._read_replies(conn, pending)
            pending = -(-batch.num_rows // FIELDS_PER_HSET)
        return written + self._read_replies(conn, pending)

    @staticmethod
    def _read_replies(conn: Any, hsets: int) -> int:
        """Read the replies of one batch (``hsets`` HSETs, then PEXPIRE); the number of fields added."""
        if not hsets:
            return 0
        added = sum(int(conn.read_response()) for _ in range(hsets))
        conn.read_response()
        return added

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
        return state_from_parts(parts)

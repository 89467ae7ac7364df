"""The change feed of the profile stores, on every backend against real servers (no mocks).

Every publish appends one change per customer whose segment differs from what the store served before
(new, moved, left) in the atomic step that serves the run; consumers read it with ``changes(after, limit)``.
The expected changes are computed here from the published tables themselves. The store fixtures are those
of tests/test_stores.py (SQLite always; PostgreSQL and Redis marked ``services``).
"""

from __future__ import annotations

import contextlib
import random
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pytest

import test_stores
from rfmseg.errors import InputError, ParameterError, StoreError
from rfmseg.stores import (
    CHANGE_FIELDS,
    ChangesPage,
    FeedCursorAheadError,
    FeedTrimmedError,
    ProfileStore,
    open_store,
    stage_batch,
)
from test_stores import D1, D2, D3, assignments, purge, uniform

# the store fixtures of test_stores.py: each test once per backend, in a namespace of its own
backend, url, namespace, store = test_stores.backend, test_stores.url, test_stores.namespace, test_stores.store


@pytest.fixture
def other(backend: str, url: str) -> Iterator[str]:
    """A second namespace in the same database, for the one-shot reference publishes."""
    ns = f"t{uuid.uuid4().hex[:12]}"
    yield ns
    purge(backend, url, ns)


def population(rows: dict[str, str], reasons: dict[str, str] | None = None) -> pa.Table:
    """An assignments table of ``rows`` (id -> segment) with a segment_reason column (``model`` unless
    ``reasons`` says otherwise)."""
    table = assignments(rows)
    given = reasons or {}
    return table.append_column("segment_reason", pa.array([given.get(cid, "model") for cid in rows], pa.string()))


def evolve(rows: dict[str, str], seed: int, next_id: int) -> dict[str, str]:
    """The next run of ``rows``: about 10% leave, 20% move to another segment, 15% new customers arrive."""
    rng = random.Random(seed)
    segments = ["Champions", "Loyal", "At risk", "Lost", "New"]
    out: dict[str, str] = {}
    for cid, segment in rows.items():
        draw = rng.random()
        if draw < 0.10:
            continue
        out[cid] = rng.choice([s for s in segments if s != segment]) if draw < 0.30 else segment
    for k in range(len(rows) * 15 // 100):
        out[f"N{next_id + k:06d}"] = rng.choice(segments)
    return out


def first_run(n: int) -> dict[str, str]:
    segments = ["Champions", "Loyal", "At risk", "Lost", "New"]
    ids = [f"C{i:06d}" for i in range(n)]
    random.Random(n).shuffle(ids)  # published in no particular order
    return {cid: segments[i % 5] for i, cid in enumerate(ids)}


def expected_changes(before: dict[str, str], after: dict[str, str], reasons: dict[str, str] | None = None) -> list:
    """The changes of publishing ``after`` over ``before`` as (customer_id, from, to, reason, segment_reason),
    in customer id order: the diff of the two tables."""
    given = reasons or {}
    out = []
    for cid in sorted(set(before) | set(after)):
        old, new = before.get(cid), after.get(cid)
        if old == new:
            continue
        reason = "new" if old is None else "left" if new is None else "moved"
        out.append((cid, old, new, reason, None if new is None else given.get(cid, "model")))
    return out


def read_all(store: ProfileStore, after: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    while True:
        page = store.changes(after, limit)
        rows += page.rows
        after = page.next_cursor
        if not page.more:
            return rows


def of_run(rows: list[dict[str, Any]], run_id: str) -> list[tuple[Any, ...]]:
    return [
        (r["customer_id"], r["from_segment"], r["to_segment"], r["reason"], r["segment_reason"])
        for r in rows
        if r["run_id"] == run_id
    ]


def key(cursor: str) -> tuple[int, ...]:
    """A cursor as numbers in feed order (SQL: the id; Redis: the stream id), to check the order."""
    return tuple(int(part) for part in cursor.split("-"))


def without_cursor(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in row.items() if k != "cursor"} for row in rows]


# --- what a publish records -------------------------------------------------------------------------------


def test_the_first_publish_records_every_customer_as_new(store: ProfileStore) -> None:
    assert store.changes(None, 10) == ChangesPage([], None, False)
    table = population({"B": "Loyal", "A": "Champions", "C": "At risk"}, {"C": "cold_start"})
    store.publish(table, "r1", D1, "m1")

    page = store.changes(None, 10)
    assert [tuple(row) for row in page.rows] == [CHANGE_FIELDS] * 3
    assert without_cursor(page.rows) == [
        {
            "customer_id": cid,
            "from_segment": None,
            "to_segment": segment,
            "reason": "new",
            "segment_reason": reason,
            "run_id": "r1",
            "as_of": "2024-10-31",
            "model_version": "m1",
        }
        for cid, segment, reason in (
            ("A", "Champions", "model"),
            ("B", "Loyal", "model"),
            ("C", "At risk", "cold_start"),
        )
    ]
    assert page.next_cursor == page.rows[-1]["cursor"] and page.more is False
    assert all(isinstance(row["cursor"], str) for row in page.rows)
    assert key(page.rows[0]["cursor"]) < key(page.rows[1]["cursor"]) < key(page.rows[2]["cursor"])
    # nothing after the last change; the cursor stays where it was
    assert store.changes(page.next_cursor, 10) == ChangesPage([], page.next_cursor, False)


def test_a_publish_records_the_diff_of_the_two_runs(store: ProfileStore) -> None:
    before = first_run(1_500)
    after = evolve(before, seed=1, next_id=0)
    reasons = {cid: "cold_start" for cid in list(after)[::9]}
    store.publish(population(before), "r1", D1, "m1")
    report = store.publish(population(after, reasons), "r2", D2, "m2")

    rows = read_all(store)
    expected = expected_changes(before, after, reasons)
    assert of_run(rows, "r2") == expected  # every change, nothing else, in customer id order
    assert of_run(rows, "r1") == expected_changes({}, before)
    assert {(r["as_of"], r["model_version"]) for r in rows if r["run_id"] == "r2"} == {("2024-11-30", "m2")}
    counts = Counter(change[3] for change in expected)
    assert set(counts) == {"new", "moved", "left"}
    assert (counts["moved"], counts["new"]) == (report.changed, report.new)
    # the feed is in cursor order, each change once
    cursors = [key(r["cursor"]) for r in rows]
    assert cursors == sorted(cursors) and len(set(cursors)) == len(rows) == len(before) + len(expected)


def test_a_publish_that_changes_nobody_records_nothing(store: ProfileStore) -> None:
    store.publish(population({"A": "Loyal", "B": "Lost"}), "r1", D1, "m1")
    first = read_all(store)
    store.publish(population({"A": "Loyal", "B": "Lost"}, {"A": "cold_start"}), "r2", D2, "m1")
    assert read_all(store) == first
    assert store.changes(first[-1]["cursor"], 5).rows == []


def test_a_customer_who_leaves_and_comes_back_is_new_again(store: ProfileStore) -> None:
    store.publish(population({"A": "Loyal", "B": "Lost"}), "r1", D1, "m1")
    store.publish(population({"A": "Loyal"}), "r2", D2, "m1")
    store.publish(population({"A": "Champions", "B": "Lost"}), "r3", D3, "m1")
    rows = read_all(store)
    assert of_run(rows, "r2") == [("B", "Lost", None, "left", None)]
    assert of_run(rows, "r3") == [("A", "Loyal", "Champions", "moved", "model"), ("B", None, "Lost", "new", "model")]


def test_assignments_without_segment_reason_record_none(store: ProfileStore) -> None:
    store.publish(assignments({"A": "Loyal"}), "r1", D1, "m1")
    reasons = pa.array(["cold_start", "model"]).dictionary_encode()  # a categorical column is read as text
    store.publish(assignments({"A": "Lost", "B": "New"}).append_column("segment_reason", reasons), "r2", D2, "m1")
    rows = read_all(store)
    assert [(r["customer_id"], r["segment_reason"]) for r in rows] == [("A", None), ("A", "cold_start"), ("B", "model")]
    with pytest.raises(InputError, match="segment_reason"):
        store.publish(assignments({"A": "Lost"}).append_column("segment_reason", pa.array([[1]])), "r3", D3, "m1")
    assert len(read_all(store)) == 3


def test_awkward_ids_and_segments_come_back_exactly_in_byte_order(store: ProfileStore) -> None:
    ids = ["zeta", "Émile", "émoji-🙂", 'id with spaces, commas; "quotes"', "x\ny", "Z", "10", "9", "ß"]
    store.publish(population({cid: 'Can\'t lose "them"' for cid in ids}), "r1", D1, "m1")
    rows = read_all(store)
    assert [r["customer_id"] for r in rows] == sorted(ids)  # code point order = UTF-8 byte order
    assert {r["to_segment"] for r in rows} == {'Can\'t lose "them"'}


# --- reading: pages, cursors, a consumer that restarts --------------------------------------------------


def publish_runs(store: ProfileStore, count: int, n: int = 400) -> list[dict[str, str]]:
    runs = [first_run(n)]
    for k in range(1, count):
        runs.append(evolve(runs[-1], seed=k, next_id=k * 1_000))
    for k, rows in enumerate(runs):
        store.publish(population(rows), f"r{k + 1}", D1, "m1")
    return runs


@pytest.mark.parametrize("limit", [1, 7, 250])
def test_pages_read_every_change_once_in_order(store: ProfileStore, limit: int) -> None:
    runs = publish_runs(store, 3, n=120 if limit == 1 else 400)
    everything = store.changes(None, 100_000)
    assert everything.more is False

    pages: list[ChangesPage] = []
    after = None
    while not pages or pages[-1].more:
        pages.append(store.changes(after, limit))
        after = pages[-1].next_cursor
    assert all(len(page.rows) == limit for page in pages[:-1]) and len(pages[-1].rows) <= limit
    assert [row for page in pages for row in page.rows] == everything.rows
    cursors = [key(row["cursor"]) for row in everything.rows]
    assert cursors == sorted(set(cursors))  # strictly increasing
    expected = [c for k in range(3) for c in expected_changes(runs[k - 1] if k else {}, runs[k])]
    assert [c for k in range(3) for c in of_run(everything.rows, f"r{k + 1}")] == expected


def test_a_consumer_resumes_from_its_saved_cursor_after_a_restart(url: str, namespace: str) -> None:
    consumed: list[dict[str, Any]] = []
    with open_store(url, namespace=namespace) as publisher:
        runs = [first_run(300)]
        publisher.publish(population(runs[0]), "r1", D1, "m1")
        with open_store(url, namespace=namespace) as consumer:  # reads two pages, saves its cursor, stops
            saved = None
            for _ in range(2):
                page = consumer.changes(saved, 40)
                consumed += page.rows
                saved = page.next_cursor
        assert saved is not None and len(consumed) == 80
        for k in (1, 2):  # publishes while the consumer is down
            runs.append(evolve(runs[-1], seed=k, next_id=k * 1_000))
            publisher.publish(population(runs[-1]), f"r{k + 1}", D2, "m1")

        with open_store(url, namespace=namespace) as restarted:  # a new store object, from the saved cursor
            first = restarted.changes(saved, 40)
            assert first.rows and key(first.rows[0]["cursor"]) > key(saved)
            consumed += first.rows + read_all(restarted, first.next_cursor, 40)

        runs.append(evolve(runs[-1], seed=3, next_id=3_000))
        publisher.publish(population(runs[-1]), "r4", D3, "m1")
        everything = read_all(publisher)
    with open_store(url, namespace=namespace) as again:  # and once more, for the publish after it
        consumed += read_all(again, consumed[-1]["cursor"], 40)

    assert consumed == everything  # nothing missed, nothing twice, in order
    for k in range(4):
        assert of_run(consumed, f"r{k + 1}") == expected_changes(runs[k - 1] if k else {}, runs[k])


def test_bad_cursors_and_limits_are_refused(store: ProfileStore, backend: str) -> None:
    store.publish(population({"A": "Loyal"}), "r1", D1, "m1")
    foreign = "1-0" if backend != "redis" else "1"  # a cursor of another kind of store
    for bad in ["", "abc", "-1", foreign, "1 OR 1=1", 3]:
        with pytest.raises(ParameterError, match="not a change feed cursor"):
            store.changes(bad, 10)  # type: ignore[arg-type]
    for limit in [0, -1, 100_001, True, 2.5]:
        with pytest.raises(ParameterError, match="limit"):
            store.changes(None, limit)  # type: ignore[arg-type]
    assert len(store.changes(None, 100_000).rows) == 1


def test_a_cursor_past_the_last_change_is_refused_not_an_empty_page(store: ProfileStore, backend: str) -> None:
    """A cursor of another store (or from before a drop) past this feed's end would read nothing until the
    feed caught up with it, silently skipping every change before: it is refused, on every publish."""
    ahead = "99999999999999-0" if backend == "redis" else "2358"
    with pytest.raises(FeedCursorAheadError) as caught:
        store.changes(ahead, 10)  # an empty feed: nothing is this store's cursor yet
    assert str(caught.value) == (
        f"cursor {ahead} is past the last change of the change feed of the profile store at {store.url_display} "
        "(it has none yet), so it is not one of this store's cursors (another store's, or one from before a drop); "
        "read the feed from the start (after=None)"
    )
    assert isinstance(caught.value, ParameterError) and caught.value.exit_code == 2
    assert caught.value.http_status == 400
    start = "0-0" if backend == "redis" else "0"  # before any change: from the start, never refused
    assert store.changes(start, 10) == ChangesPage([], start, False)

    runs = publish_runs(store, 2, n=50)
    rows = read_all(store)
    last = rows[-1]["cursor"]
    assert store.changes(last, 10) == ChangesPage([], last, False)  # the last change: caught up, an empty page
    for cursor in (
        beyond(last),
        ahead,
        "99999999999999999999-99999999999999999999" if backend == "redis" else "9" * 18,
    ):
        with pytest.raises(FeedCursorAheadError, match=f"past the last change .* \\({last}\\)") as caught:
            store.changes(cursor, 10)
        message = str(caught.value)
        assert message.endswith(
            f"read the feed from the start (after=None), or from after={last} to skip the changes already there"
        )
        assert "\n" not in message and (caught.value.cursor, caught.value.last) == (cursor, last)

    store.publish(population({**runs[-1], "NEW": "Loyal"}), "r3", D3, "m1")  # more changes: still refused
    with pytest.raises(FeedCursorAheadError):
        store.changes(ahead, 10)
    assert read_all(store, last) == read_all(store)[len(rows) :]  # the last cursor goes on with the new change
    assert [r["customer_id"] for r in read_all(store, last)] == ["NEW"]

    newest = read_all(store)[-1]["cursor"]
    assert store.trim_changes(newest) == len(rows) + 1  # the whole feed: its last change is still known
    assert store.changes(newest, 10) == ChangesPage([], newest, False)
    with pytest.raises(FeedCursorAheadError, match=f"\\({newest}\\)"):
        store.changes(beyond(newest), 10)
    with pytest.raises(FeedTrimmedError):  # older than the trim point: gone (410), as before
        store.changes(last, 10)

    store.drop()  # the feed starts again: a cursor from before the drop is past its end
    with pytest.raises(FeedCursorAheadError, match="it has none yet"):
        store.changes(newest, 10)


# --- what does not add changes --------------------------------------------------------------------------


def test_refused_aborted_and_failed_publishes_add_no_change(store: ProfileStore) -> None:
    store.publish(population({"A": "Loyal", "B": "Lost"}), "r1", D1, "m1")
    before = read_all(store)

    with pytest.raises(InputError, match="duplicate"):  # refused input
        store.publish(pa.concat_tables([population({"A": "X"}), population({"A": "X"})]), "bad", D2, "m1")
    staged = store.begin_publish("aborted", D2, "m1")  # staged, then aborted
    stage_batch(staged.token, population({"A": "Champions", "C": "New"}))
    staged.abort()
    with store.begin_publish("short", D2, "m1") as short:  # a commit short of a batch
        stage_batch(short.token, population({"A": "Champions"}))
        with pytest.raises(StoreError, match="were expected"):
            short.commit(2)
    with store.begin_publish("twice", D2, "m1") as twice:  # a customer in two batches
        stage_batch(twice.token, population({"A": "Champions", "B": "Lost"}))
        with contextlib.suppress(StoreError):  # SQLite and Redis refuse the batch, PostgreSQL the commit
            stage_batch(twice.token, population({"B": "Loyal"}))
        with pytest.raises(StoreError, match="more than one batch"):
            twice.commit(3)
    assert read_all(store) == before and store.current_run() == "r1"

    stale = store.begin_publish("stale", D2, "m1")  # a publish in between: only its own changes count
    stage_batch(stale.token, population({"A": "Champions", "B": "Lost"}))
    store.publish(population({"A": "Loyal", "D": "New"}), "between", D2, "m1")
    with pytest.raises(StoreError, match="another publish"):
        stale.commit(2)
    stale.abort()
    rows = read_all(store)
    assert rows[: len(before)] == before
    assert {r["run_id"] for r in rows[len(before) :]} == {"between"}
    assert of_run(rows, "between") == [("B", "Lost", None, "left", None), ("D", None, "New", "new", "model")]


# --- staged publish --------------------------------------------------------------------------------------


def test_a_staged_publish_records_what_a_one_shot_publish_records(
    backend: str, url: str, namespace: str, other: str
) -> None:
    runs = [first_run(900)]
    runs += [evolve(runs[0], seed=5, next_id=5_000)]
    runs += [evolve(runs[1], seed=6, next_id=6_000)]
    with open_store(url, namespace=namespace) as staged_store, open_store(url, namespace=other) as reference:
        for k, rows in enumerate(runs):
            table = population(rows, {cid: "cold_start" for cid in list(rows)[::7]})
            reference.publish(table, f"r{k + 1}", D1, "m1")
            size = -(-table.num_rows // 4)
            with staged_store.begin_publish(f"r{k + 1}", D1, "m1") as staged:
                for n, start in enumerate(range(0, table.num_rows, size)):  # four batches, one sent twice
                    stage_batch(staged.token, table.slice(start, size), key=f"b{n}")
                    if n == 1:
                        again = stage_batch(staged.token, table.slice(start, size), key=f"b{n}")
                        assert again.repeated
                staged.commit(table.num_rows)
        staged_rows, reference_rows = read_all(staged_store), read_all(reference)
    assert without_cursor(staged_rows) == without_cursor(reference_rows)
    assert of_run(staged_rows, "r3") == expected_changes(
        runs[1], runs[2], {cid: "cold_start" for cid in list(runs[2])[::7]}
    )
    assert {c[3] for c in of_run(staged_rows, "r3")} == {"new", "moved", "left"}


# --- atomicity: the run served and its changes go together -----------------------------------------------


def test_readers_never_see_a_run_without_its_changes_or_changes_without_their_run(url: str, namespace: str) -> None:
    n = 5_000
    order = {f"run-{k}": k for k in range(1, 6)}  # each run moves every customer (segment S<k>)
    with open_store(url, namespace=namespace) as publisher:
        publisher.publish(uniform(n, "S1", 1), "run-1", D1, "m1")
        stop = threading.Event()
        problems: list[str] = []
        checks: list[str] = []

        def read() -> None:
            with open_store(url, namespace=namespace) as reader:
                seen: Counter[str] = Counter()
                cursor = None
                while True:
                    last = stop.is_set()
                    served_before = reader.current_run()
                    while True:
                        page = reader.changes(cursor, 2_000)
                        seen.update(row["run_id"] for row in page.rows)
                        cursor = page.next_cursor
                        if not page.more:
                            break
                    served_after = reader.current_run()
                    assert served_before is not None and served_after is not None
                    if any(order[run] > order[served_after] for run in seen):
                        problems.append(f"changes of {sorted(seen)} while {served_after} was served")
                    if seen[served_before] != n:
                        problems.append(f"{served_before} served with {seen[served_before]} of its {n} changes")
                    checks.append(served_before)
                    if last or len(problems) > 5:
                        return

        thread = threading.Thread(target=read)
        thread.start()
        for run_id, k in list(order.items())[1:]:
            publisher.publish(uniform(n, f"S{k}", k), run_id, D2, "m1")
        stop.set()
        thread.join(120)
        assert not thread.is_alive()
        rows = read_all(publisher, limit=10_000)

    assert not problems, problems
    assert checks and checks[-1] == "run-5"
    assert Counter(row["run_id"] for row in rows) == {run: n for run in order}


# --- retention ---------------------------------------------------------------------------------------------


def beyond(cursor: str) -> str:
    """The cursor right after ``cursor``, which no change has yet."""
    if "-" in cursor:
        ms, seq = cursor.split("-")
        return f"{ms}-{int(seq) + 1}"
    return str(int(cursor) + 1)


def test_trim_removes_the_oldest_changes_and_stops_a_consumer_that_fell_behind(store: ProfileStore) -> None:
    runs = publish_runs(store, 2, n=50)
    rows = read_all(store)
    slow, through, fast = rows[9]["cursor"], rows[19]["cursor"], rows[29]["cursor"]

    assert store.trim_changes(through) == 20
    assert read_all(store) == rows[20:]  # from the start: the oldest change kept
    assert read_all(store, through) == rows[20:]  # a consumer at the trim point goes on
    assert read_all(store, fast) == rows[30:]
    with pytest.raises(StoreError, match=f"trimmed through {through}, past cursor {slow}") as caught:
        store.changes(slow, 10)
    assert "after=None" in str(caught.value) and "\n" not in str(caught.value)
    assert isinstance(caught.value, FeedTrimmedError) and caught.value.http_status == 410  # gone, not down

    assert store.trim_changes(through) == 0  # again: nothing left to remove
    assert store.trim_changes(slow) == 0  # an older cursor does not move the trim point back
    with pytest.raises(StoreError, match="trimmed through"):
        store.changes(slow, 10)
    last = rows[-1]["cursor"]
    with pytest.raises(StoreError, match="past the last change"):
        store.trim_changes(beyond(last))
    with pytest.raises(ParameterError, match="not a change feed cursor"):
        store.trim_changes("latest")
    assert read_all(store) == rows[20:]

    assert store.trim_changes(last) == len(rows) - 20  # everything; the cursors are never used again
    assert store.changes(None, 10) == ChangesPage([], None, False)
    assert store.changes(last, 10) == ChangesPage([], last, False)
    store.publish(population({"A": "Loyal"}), "r3", D3, "m1")
    after = read_all(store, last)
    assert of_run(after, "r3") == expected_changes(runs[-1], {"A": "Loyal"})
    assert key(after[0]["cursor"]) > key(last)
    assert read_all(store) == after


def test_trimming_an_empty_feed_is_refused(store: ProfileStore, backend: str) -> None:
    with pytest.raises(StoreError, match=r"past the last change of the feed .* nothing was trimmed"):
        store.trim_changes("1-0" if backend == "redis" else "1")
    assert store.changes(None, 10) == ChangesPage([], None, False)


def test_drop_removes_the_feed(store: ProfileStore) -> None:
    store.publish(population({"A": "Loyal"}), "r1", D1, "m1")
    store.drop()
    assert store.changes(None, 10) == ChangesPage([], None, False)
    store.publish(population({"A": "Lost"}), "r2", D2, "m1")
    assert of_run(read_all(store), "r2") == [("A", None, "Lost", "new", "model")]

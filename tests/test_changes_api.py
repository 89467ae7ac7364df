"""GET /changes: the profile store's change feed over HTTP, on every backend against real servers (the store
fixtures of tests/test_stores.py: SQLite always, PostgreSQL and Redis marked ``services``).

The consumer of docs/stores.md, over HTTP: it reads pages with a cursor, saves the cursor in a file after each
page, stops, and is started again as a new app and a new client; across the restarts and the publishes in
between it must see every change of the feed once, in order."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from fastapi.testclient import TestClient

import test_stores
from rfmseg.service import Settings, create_app
from rfmseg.stores import FeedTrimmedError, ProfileStore, open_store
from test_change_feed import evolve, expected_changes, first_run, key, of_run, population, read_all
from test_stores import D1, D2, D3, purge

# the store fixtures of test_stores.py: each test once per backend, in a namespace of its own
backend, url, namespace, store = test_stores.backend, test_stores.url, test_stores.namespace, test_stores.store


def namespaced(url: str, namespace: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}namespace={namespace}"


def app_settings(tmp_path: Path, url: str, namespace: str) -> Settings:
    return Settings(runs_dir=tmp_path / "runs", store_url=namespaced(url, namespace))


class Consumer:
    """A CRM sync over HTTP: its only state is the cursor file. Each :meth:`run` is a new process in
    spirit: a new app (new store connection) and a new client, resuming from the saved cursor."""

    def __init__(self, settings: Settings, cursor_file: Path, limit: int) -> None:
        self.settings, self.cursor_file, self.limit = settings, cursor_file, limit

    def run(self, pages: int | None = None) -> list[dict[str, Any]]:
        """Read until caught up (or ``pages`` pages), saving the cursor after each page is applied."""
        seen: list[dict[str, Any]] = []
        with TestClient(create_app(self.settings)) as client:
            cursor = self.cursor_file.read_text() if self.cursor_file.exists() else None
            read = 0
            while pages is None or read < pages:
                params: dict[str, Any] = {"limit": self.limit}
                if cursor is not None:
                    params["after"] = cursor
                r = client.get("/changes", params=params)
                assert r.status_code == 200, r.text
                body = r.json()
                assert body["after"] == cursor and body["count"] == len(body["items"]) <= self.limit
                seen += body["items"]  # "applied"
                if body["items"]:
                    assert body["next"] == body["items"][-1]["cursor"]
                    cursor = body["next"]
                    self.cursor_file.write_text(cursor)  # after the page is applied
                else:
                    assert body["next"] == cursor
                read += 1
                if not body["more"]:
                    break
        return seen


def test_a_consumer_over_http_resumes_from_its_saved_cursor_and_misses_nothing(
    url: str, namespace: str, tmp_path: Path
) -> None:
    settings = app_settings(tmp_path, url, namespace)
    consumer = Consumer(settings, tmp_path / "crm-sync.cursor", limit=37)
    with open_store(url, namespace=namespace) as publisher:
        runs = [first_run(200)]
        publisher.publish(population(runs[0]), "r1", D1, "m1")
        runs.append(evolve(runs[-1], seed=1, next_id=1_000))
        publisher.publish(population(runs[-1]), "r2", D2, "m1")

        consumed = consumer.run(pages=3)  # stops part way through the first publish
        assert len(consumed) == 3 * 37 and consumer.cursor_file.read_text() == consumed[-1]["cursor"]
        consumed += consumer.run()  # restarted: the rest of r1 and all of r2
        assert not consumer.run()  # caught up: a restart reads nothing, the cursor stays
        assert consumer.cursor_file.read_text() == consumed[-1]["cursor"]

        for k in (2, 3):  # two more publishes while the consumer is down
            runs.append(evolve(runs[-1], seed=k, next_id=k * 1_000))
            publisher.publish(population(runs[-1]), f"r{k + 1}", D3, "m1")
        consumed += consumer.run()
        everything = read_all(publisher)

    assert consumed == everything  # every change once, in feed order
    cursors = [key(c["cursor"]) for c in consumed]
    assert cursors == sorted(set(cursors))
    for k in range(4):  # and they are the diffs of the published tables
        assert of_run(consumed, f"r{k + 1}") == expected_changes(runs[k - 1] if k else {}, runs[k])
    assert {c["reason"] for c in consumed if c["run_id"] != "r1"} == {"new", "moved", "left"}


def test_the_route_answers_what_the_store_holds_and_declares_it(store: ProfileStore, tmp_path: Path) -> None:
    with TestClient(create_app(app_settings(tmp_path, store.url_display, store.namespace))) as client:
        empty = client.get("/changes")
        assert empty.status_code == 200
        assert empty.json() == {
            "store": namespaced(store.url_display, store.namespace),
            "after": None,
            "limit": 1000,
            "count": 0,
            "items": [],
            "next": None,
            "more": False,
        }
        store.publish(population({"B": "Loyal", "A": "Champions"}, {"B": "cold_start"}), "r1", D1, "m1")
        store.publish(population({"A": "Loyal", "C": "Lost"}), "r2", D2, "m2")
        body = client.get("/changes").json()
        assert [{k: v for k, v in i.items() if k != "cursor"} for i in body["items"]] == [
            {**change, "as_of": as_of, "model_version": model}
            for change, as_of, model in [
                ({"customer_id": "A", "from_segment": None, "to_segment": "Champions", "reason": "new",
                  "segment_reason": "model", "run_id": "r1"}, "2024-10-31", "m1"),
                ({"customer_id": "B", "from_segment": None, "to_segment": "Loyal", "reason": "new",
                  "segment_reason": "cold_start", "run_id": "r1"}, "2024-10-31", "m1"),
                ({"customer_id": "A", "from_segment": "Champions", "to_segment": "Loyal", "reason": "moved",
                  "segment_reason": "model", "run_id": "r2"}, "2024-11-30", "m2"),
                ({"customer_id": "B", "from_segment": "Loyal", "to_segment": None, "reason": "left",
                  "segment_reason": None, "run_id": "r2"}, "2024-11-30", "m2"),
                ({"customer_id": "C", "from_segment": None, "to_segment": "Lost", "reason": "new",
                  "segment_reason": "model", "run_id": "r2"}, "2024-11-30", "m2"),
            ]
        ]  # fmt: skip
        assert body["items"] == store.changes(None, 10).rows and body["more"] is False
        page = client.get("/changes", params={"limit": 2}).json()
        assert (page["count"], page["next"], page["more"]) == (2, body["items"][1]["cursor"], True)
        spec = client.get("/openapi.json").json()
        schema = spec["paths"]["/changes"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
        for answer in (body, page, empty.json()):
            jsonschema.Draft202012Validator({**schema, "components": spec["components"]}).validate(answer)
        params = {p["name"]: p["schema"] for p in spec["paths"]["/changes"]["get"]["parameters"]}
        assert (params["limit"]["minimum"], params["limit"]["maximum"], params["limit"]["default"]) == (1, 10_000, 1000)


# ------------------------------------------------------------------------------------------------ errors


def test_bad_cursors_and_limits_are_refused_with_one_line(store: ProfileStore, tmp_path: Path, backend: str) -> None:
    store.publish(population({"A": "Loyal"}), "r1", D1, "m1")
    foreign = "1-0" if backend != "redis" else "1"  # a cursor of another kind of store
    shown = namespaced(store.url_display, store.namespace)
    with TestClient(create_app(app_settings(tmp_path, store.url_display, store.namespace))) as client:
        spec = client.get("/openapi.json").json()
        error = spec["paths"]["/changes"]["get"]["responses"]["4XX"]["content"]["application/json"]["schema"]
        for bad in ("", "abc", foreign, "1 OR 1=1"):
            r = client.get("/changes", params={"after": bad})
            assert r.status_code == 400, (bad, r.text)
            assert r.json() == {
                "detail": f"after {bad!r} is not a cursor of the change feed of the profile store at "
                f"{shown}; pass the `next` of a page read from it, or leave after out to read from "
                "the oldest change"
            }
            jsonschema.Draft202012Validator({**error, "components": spec["components"]}).validate(r.json())
        for limit, why in (("0", "greater than or equal to 1"), ("10001", "less than or equal to 10000"), ("x", "")):
            r = client.get("/changes", params={"limit": limit})
            assert r.status_code == 422 and r.json()["detail"].startswith("query parameter 'limit': "), r.text
            assert why in r.json()["detail"] and "\n" not in r.json()["detail"]
        r = client.get("/changes", params={"after": "9" * 65})
        assert r.status_code == 422 and "query parameter 'after': String should have at most 64" in r.text


def test_a_cursor_behind_the_trim_point_is_gone_410(store: ProfileStore, tmp_path: Path) -> None:
    store.publish(population({f"C{i}": "Loyal" for i in range(10)}), "r1", D1, "m1")
    rows = store.changes(None, 100).rows
    assert store.trim_changes(rows[5]["cursor"]) == 6
    with pytest.raises(FeedTrimmedError):
        store.changes(rows[2]["cursor"], 10)
    with TestClient(create_app(app_settings(tmp_path, store.url_display, store.namespace))) as client:
        r = client.get("/changes", params={"after": rows[2]["cursor"]})
        assert r.status_code == 410
        assert r.json()["detail"] == (
            f"the change feed of the profile store at {namespaced(store.url_display, store.namespace)} was trimmed "
            f"through {rows[5]['cursor']}, "
            f"past cursor {rows[2]['cursor']}: changes after it were removed; reload the customers and read the "
            "feed from the start (leave after out)"
        )
        assert client.get("/changes", params={"after": rows[5]["cursor"]}).json()["items"] == rows[6:]


def test_a_cursor_of_another_store_past_the_last_change_is_a_400_not_an_empty_page(
    store: ProfileStore, backend: str, url: str, tmp_path: Path, cli: Any
) -> None:
    """A consumer pointed at another store (or one that was reset) with its old cursor must hear it, not read
    empty pages until the feed catches up with the cursor: over HTTP a 400, from the CLI exit 2, each in one
    line naming both ways to go on."""
    store.publish(population({"A": "Loyal", "B": "Lost"}), "r1", D1, "m1")
    mine = store.changes(None, 10).rows[-1]["cursor"]
    other = f"t{uuid.uuid4().hex[:12]}"
    try:
        with open_store(url, namespace=other) as elsewhere:  # a busier store, published after this one
            elsewhere.publish(population({f"C{i:03d}": "Loyal" for i in range(30)}), "r1", D1, "m1")
            foreign = read_all(elsewhere)[-1]["cursor"]
    finally:
        purge(backend, url, other)
    assert key(foreign) > key(mine)

    shown = namespaced(store.url_display, store.namespace)

    def refusal(cursor: str, last: str, after: str) -> str:
        return (
            f"cursor {cursor} is past the last change of the change feed of the profile store at {shown} ({last}), "
            "so it is not one of this store's cursors (another store's, or one from before a drop); read the feed "
            f"from the start (leave {after} out), or from {after}={last} to skip the changes already there"
        )

    # Redis cursors are the server's clock, so another namespace's cursor is past this feed only until its next
    # publish; the cursor QA used stands for one from a store whose clock ran ahead
    ahead = "99999999999999-0" if backend == "redis" else foreign
    with TestClient(create_app(app_settings(tmp_path, store.url_display, store.namespace))) as client:
        r = client.get("/changes", params={"after": foreign})
        assert (r.status_code, r.json()) == (400, {"detail": refusal(foreign, mine, "after")})
        for k in (2, 3):  # still refused after more publishes
            store.publish(population({"A": "Loyal", "B": "Lost", f"N{k}": "New"}), f"r{k}", D2, "m1")
            mine = store.changes(mine, 10).rows[-1]["cursor"]
            r = client.get("/changes", params={"after": ahead})
            assert (r.status_code, r.json()) == (400, {"detail": refusal(ahead, mine, "after")})
        caught_up = client.get("/changes", params={"after": mine})  # the last change itself: an empty page
        assert caught_up.status_code == 200 and caught_up.json()["items"] == [] and caught_up.json()["next"] == mine

    result = cli("ask", "changes-since", "--after", ahead, "--store", shown, "--runs-dir", tmp_path / "runs")
    assert (result.code, result.out) == (2, "")
    assert result.err.strip().splitlines() == [f"error: {refusal(ahead, mine, '--after')}"]


def test_a_store_that_is_down_is_a_503(tmp_path: Path) -> None:
    down = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    with TestClient(create_app(Settings(runs_dir=tmp_path, store_url=down))) as client:
        r = client.get("/changes")
        assert r.status_code == 503
        assert r.json()["detail"].startswith(f"cannot reach the profile store at {down} (")

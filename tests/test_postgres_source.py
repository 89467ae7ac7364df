"""Reading transactions straight from PostgreSQL (the real server on 127.0.0.1:5432)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rfmseg import config
from rfmseg.io.postgres import PostgresSource
from rfmseg.presets import get_preset

psycopg = pytest.importorskip("psycopg")
pytestmark = pytest.mark.services

URL = "postgresql://postgres@127.0.0.1:5432/test"
DOWN_URL = "postgresql://postgres:s3cret-pw@127.0.0.1:1/test"  # nothing listens on port 1


@pytest.fixture
def crm_table() -> Iterator[str]:
    """The crm sample loaded into a uniquely named table (typed columns), dropped afterwards."""
    name = f"rfmseg_crm_{uuid.uuid4().hex[:10]}"
    sample = get_preset("crm").sample_path()
    with psycopg.connect(URL, autocommit=True) as conn:
        conn.execute(
            f"CREATE TABLE {name} (lead_id text, last_activity timestamp, touchpoint_count integer, "
            "deal_value numeric(12, 2), note text)"
        )
        with (
            conn.cursor().copy(
                f"COPY {name} (lead_id, last_activity, touchpoint_count, deal_value) FROM STDIN (FORMAT csv, HEADER)"
            ) as copy,
            sample.open("rb") as f,
        ):
            copy.write(f.read())
    try:
        yield name
    finally:
        with psycopg.connect(URL, autocommit=True) as conn:
            conn.execute(f"DROP TABLE IF EXISTS {name}")


def project_file(folder: Path, url: str, query: str, preset: str = "crm") -> Path:
    path = folder / "rfmseg.toml"
    path.write_text(
        f'preset = "{preset}"\nruns_dir = "runs"\n[source]\ntype = "postgres"\nurl = "{url}"\nquery = "{query}"\n',
        encoding="utf-8",
    )
    return path


def test_arrow_types_follow_the_result_columns(crm_table: str) -> None:
    src = PostgresSource(URL, f"SELECT * FROM {crm_table} ORDER BY lead_id, last_activity;", block_bytes=16_384)
    table = src.read_arrow()
    assert table.schema.field("lead_id").type == pa.string()
    assert table.schema.field("last_activity").type == pa.timestamp("us")
    assert table.schema.field("touchpoint_count").type == pa.int64()
    assert table.schema.field("deal_value").type == pa.float64()
    assert table.schema.field("note").type == pa.string()  # all NULL, still typed from the result
    assert table.column("note").null_count == table.num_rows
    sample_rows = sum(1 for _ in get_preset("crm").sample_path().open()) - 1
    assert table.num_rows == sample_rows == src.stats["rows"]
    assert src.stats["batches"] == -(-src.stats["bytes"] // 16_384) > 1  # parsed block by block, not at once


def test_run_from_a_postgres_query_matches_the_file(cli, tmp_path: Path, crm_table: str, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    project_file(tmp_path, URL, f"SELECT lead_id, last_activity, touchpoint_count, deal_value FROM {crm_table}")
    r = cli("run", "--json")
    assert r.code == 0, r.err
    from_db = r.json()
    from_file = cli("run", get_preset("crm").sample_path(), "--json")
    assert from_file.code == 0, from_file.err
    keep = ("name", "customers", "revenue", "mean_recency_days", "mean_frequency", "mean_monetary")
    assert [{k: s[k] for k in keep} for s in from_db["segments"]] == [
        {k: s[k] for k in keep} for s in from_file.json()["segments"]
    ]
    a = pq.read_table(Path(from_db["run_dir"]) / "rfm.parquet")
    b = pq.read_table(Path(from_file.json()["run_dir"]) / "rfm.parquet")
    assert a.equals(b)
    manifest = json.loads((Path(from_db["run_dir"]) / "manifest.json").read_text())
    assert manifest["input"]["format"] == "postgres"
    assert manifest["input"]["path"] == f"{URL} (query)"
    assert len(manifest["input"]["sha256"]) == 64


def test_server_down_is_one_line_naming_the_url_without_its_password(cli, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    project_file(tmp_path, DOWN_URL, "SELECT 1")
    r = cli("run")
    assert r.code == 2
    assert r.err.count("\n") == 1
    assert "cannot connect to PostgreSQL at postgresql://postgres:***@127.0.0.1:1/test" in r.err
    assert "check source.url" in r.err and "s3cret-pw" not in r.err
    assert not (tmp_path / "runs").exists()
    shown = cli("config", "show", "--json").json()["settings"]
    assert shown["source.url"]["value"] == "postgresql://postgres:***@127.0.0.1:1/test"


def test_bad_query_and_bad_database_say_what_to_fix(cli, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    missing = f"rfmseg_missing_{uuid.uuid4().hex[:8]}"
    project_file(tmp_path, URL, f"SELECT * FROM {missing}")
    r = cli("run")
    assert r.code == 2 and r.err.count("\n") == 1
    assert f"PostgreSQL at {URL} rejected source.query" in r.err and missing in r.err
    project_file(tmp_path, "postgresql://postgres@127.0.0.1:5432/no_such_db_rfmseg", "SELECT 1")
    r = cli("run")
    assert r.code == 2 and "cannot connect" in r.err and "no_such_db_rfmseg" in r.err
    assert not (tmp_path / "runs").exists()


def test_empty_result_is_refused(crm_table: str) -> None:
    from rfmseg.errors import InputError

    with pytest.raises(InputError, match="returned no rows; check its WHERE clause"):
        import duckdb

        PostgresSource(URL, f"SELECT * FROM {crm_table} WHERE false").register(duckdb.connect())


def test_settings_build_the_postgres_source(tmp_path: Path) -> None:
    f = project_file(tmp_path, URL, "SELECT 1")
    spec = config.resolve(config=f, env={}).source_spec()
    assert isinstance(spec, PostgresSource) and spec.url == URL and spec.query == "SELECT 1"


def test_text_nulls_and_special_values_come_through_the_copy_stream() -> None:
    query = (
        "SELECT * FROM (VALUES ('a,b', E'say \"hi\"\\nthen go', '', NULL::text, true, "
        "TIMESTAMPTZ '2024-03-01 10:00:00+02', DATE '2024-01-05', 'NaN'::numeric, '{\"k\": 1}'::jsonb, 5::bigint), "
        "('%', 'x', 'y', 'z', false, NULL, NULL, 1.5, NULL, NULL)) AS t(a, b, c, d, e, f, g, h, j, k) "
        "WHERE a LIKE '%' OR true;"
    )
    rows = PostgresSource(URL, query).read_arrow().to_pylist()
    first, second = rows
    assert (first["a"], first["b"], first["c"], first["d"], first["e"]) == ("a,b", 'say "hi"\nthen go', "", None, True)
    assert first["f"].isoformat() == "2024-03-01T08:00:00+00:00" and first["g"].isoformat() == "2024-01-05"
    assert first["h"] != first["h"] and first["j"] == '{"k": 1}' and first["k"] == 5  # NaN stays NaN, not NULL
    assert (second["a"], second["e"], second["f"], second["h"], second["k"]) == ("%", False, None, 1.5, None)


def test_a_value_arrow_cannot_hold_is_one_line_naming_the_fix() -> None:
    from rfmseg.errors import InputError

    with pytest.raises(InputError) as caught:
        PostgresSource(URL, "SELECT 'infinity'::date AS day").read_arrow()
    assert str(caught.value) == (
        "cannot read the rows of source.query on postgresql://postgres@127.0.0.1:5432/test (In CSV column #0: "
        "CSV conversion error to date32[day]: invalid value 'infinity'); cast that column to text or to a plain "
        "type in the query"
    )

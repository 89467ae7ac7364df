"""Features as definitions and the domain presets, end to end on their shipped sample data."""

from __future__ import annotations

import json
import re
from datetime import date
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from sklearn.metrics import adjusted_rand_score

from rfmseg import features
from rfmseg.datasets import study
from rfmseg.errors import ParameterError
from rfmseg.features import DEFAULT_FEATURES, Agg, FeatureSet
from rfmseg.presets import PRESETS, get_preset
from rfmseg.presets.generators import generators

PRESET_NAMES = ("ecommerce", "saas", "crm", "education")


# ------------------------------------------------------------------------------------------- features
def test_default_featureset_generates_the_core_rfm_sql() -> None:
    as_of = date(2024, 12, 31)
    assert features.rfm_sql("canon", as_of) == features.RFM_SQL.format(source="canon", as_of="2024-12-31")
    assert features.rfm_sql("canon", as_of, FeatureSet.from_dict(DEFAULT_FEATURES.to_dict())) == features.rfm_sql(
        "canon", as_of
    )


def test_explicit_default_featureset_reproduces_the_study_rfm_table() -> None:
    import rfmseg

    result = rfmseg.segment(study.path(study.ORDERS_FILE), as_of=study.AS_OF, runs_dir=None, feature_set=FeatureSet())
    expected = pd.read_csv(study.path(study.RFM_FILE)).sort_values("customer_id").reset_index(drop=True)
    got = result.rfm.to_pandas()[["customer_id", "recency_days", "frequency", "monetary"]]
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)


def _canonical_events(seed: int = 7, n: int = 400) -> pd.DataFrame:
    """A judged canonical table: multi-row orders, returns, a category and a progress column, bad rows."""
    rng = np.random.default_rng(seed)
    customers = rng.integers(1, 25, size=n)
    orders = [f"O{c}-{o}" for c, o in zip(customers, rng.integers(1, 6, size=n), strict=True)]
    is_return = rng.random(n) < 0.1
    amount = np.round(rng.uniform(5, 200, size=n), 2) * np.where(is_return, -1, 1)
    return pd.DataFrame(
        {
            "customer_id": [f"C{c:02d}" for c in customers],
            "order_id": orders,
            "ts": pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 300, size=n), unit="D"),
            "amount": amount,
            "cat": rng.choice(["a", "b", "c", "d", None], size=n),
            "progress": rng.integers(0, 101, size=n).astype(float),
            "is_return": is_return,
            "_reason": np.where(rng.random(n) < 0.05, "bad_date", None),
        }
    )


def _expected(df: pd.DataFrame, agg: Agg) -> pd.Series:
    """The definition written out in pandas, independently of the SQL."""
    used = df[df["_reason"].isna()]
    events = used[~used["is_return"]]
    # an order is a return when all its rows are returns
    order_ret = used.groupby(["customer_id", "order_id"])["is_return"].all()
    if agg.fn == "count_distinct" and agg.column == "order_id":
        return (~order_ret).groupby(level=0).sum()
    if agg.fn == "count_distinct":
        return events.dropna(subset=[agg.column]).groupby("customer_id")[agg.column].nunique()
    if agg.fn == "count":
        kept = order_ret[~order_ret].reset_index()[["customer_id", "order_id"]]
        return used.merge(kept).groupby("customer_id").size()
    if agg.fn == "sum":
        return used.groupby("customer_id")[agg.column].sum()
    kept = order_ret[~order_ret].reset_index()[["customer_id", "order_id"]]
    rows = used.merge(kept)
    return getattr(rows.groupby("customer_id")[agg.column], agg.fn)()


@pytest.mark.parametrize(
    "agg",
    [
        Agg("count_distinct", "order_id"),
        Agg("count"),
        Agg("count_distinct", "cat"),
        Agg("sum", "amount"),
        Agg("max", "progress"),
        Agg("min", "progress"),
        Agg("mean", "progress"),
    ],
    ids=str,
)
def test_each_aggregation_means_what_its_definition_says(agg: Agg) -> None:
    df = _canonical_events()
    con = duckdb.connect()
    con.register("canon", df)
    as_of = date(2024, 12, 31)
    freq = FeatureSet(frequency=agg, monetary=Agg("sum", "amount"))
    mon = FeatureSet(monetary=agg)
    got_f = features.compute_rfm(con, "canon", as_of, freq).to_pandas().set_index("customer_id")
    got_m = features.compute_rfm(con, "canon", as_of, mon).to_pandas().set_index("customer_id")
    want = _expected(df, agg).reindex(got_m.index).fillna(0)
    rounded = np.round(want, 2) if agg.fn in ("sum", "mean") else want
    np.testing.assert_allclose(got_m["monetary"].to_numpy(float), rounded.to_numpy(float), rtol=1e-9)
    np.testing.assert_array_equal(got_f["frequency"].to_numpy(), np.round(want.to_numpy(float)))
    # recency and the dates do not depend on the definition of F and M
    base = features.compute_rfm(con, "canon", as_of).to_pandas().set_index("customer_id")
    for got in (got_f, got_m):
        pd.testing.assert_frame_equal(
            got[["recency_days", "first_order_date", "last_order_date"]],
            base[["recency_days", "first_order_date", "last_order_date"]],
        )


def test_spark_dialect_differs_only_in_the_date_difference() -> None:
    fs = FeatureSet(Agg("sum", "session_count"), Agg("count_distinct", "feature_name"))
    duck = features.rfm_sql("canon", date(2025, 6, 30), fs)
    spark = features.rfm_sql("canon", date(2025, 6, 30), fs, dialect="spark")
    assert "date_diff('day'" in duck and "date_diff" not in spark
    assert "datediff(DATE '2025-06-30', CAST(max(ts) FILTER (WHERE NOT is_return) AS DATE))" in spark
    with pytest.raises(ParameterError, match="unknown SQL dialect"):
        features.rfm_sql("canon", date(2025, 6, 30), fs, dialect="mysql")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("avg(amount)", "unknown aggregation 'avg'"),
        ("count(order_id)", "use count\\(\\*\\) for events or count_distinct\\(order_id\\)"),
        ("sum amount", "is not an aggregation"),
        ("sum()", "needs a canonical column name"),
    ],
)
def test_bad_aggregations_are_refused_with_the_rule(text: str, message: str) -> None:
    with pytest.raises(ParameterError, match=message):
        Agg.parse(text)


def test_recency_is_the_last_event_only() -> None:
    with pytest.raises(ParameterError, match="recency 'min\\(ts\\)' is not supported"):
        FeatureSet(recency=Agg("min", "ts"))


# ------------------------------------------------------------------------------------------- samples
@pytest.mark.parametrize("name", PRESET_NAMES)
def test_shipped_sample_is_what_the_seeded_generator_writes(name: str) -> None:
    file_name, generate = generators()[name]
    assert get_preset(name).sample == file_name
    shipped = get_preset(name).sample_path().read_text(encoding="utf-8")
    assert shipped == generate().csv_text()


# ------------------------------------------------------------------------------------------- end to end
def _prototype_order(voc_types: list, names: list[str], j: int) -> list[str]:
    by_name = {t.name: (t.recency, t.frequency, t.monetary) for t in voc_types}
    return sorted(names, key=lambda n: by_name[n][j])


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_preset_end_to_end_on_its_sample(name: str, cli, runs_dir: Path) -> None:
    preset = get_preset(name)
    sample = generators()[name][1]()
    r = cli("run", "--preset", name, preset.sample_path(), "--runs-dir", runs_dir, "--json")
    assert r.code == 0, r.err
    summary = r.json()
    assert summary["preset"] == name
    assert summary["units"] == preset.units.to_dict()
    vocabulary = {t.name: t for t in preset.vocabulary.types}
    names = [s["name"] for s in summary["segments"]]
    assert len(names) == 4 and set(names) <= set(vocabulary)
    for s in summary["segments"]:  # the action shown is the preset's, not the e-commerce one
        assert s["action"] == vocabulary[s["name"]].action

    run_dir = Path(summary["run_dir"])
    assignments = pq.read_table(run_dir / "assignments.parquet").to_pandas()
    truth = assignments["customer_id"].map(sample.truth)
    assert truth.notna().all()
    assert adjusted_rand_score(truth, assignments["cluster"]) >= 0.9
    # each segment is named after the group most of its members were generated as
    for seg, members in assignments.groupby("segment"):
        assert truth[members.index].value_counts().idxmax() == seg

    # the RFM the preset's features compute is exactly what the generator drew for each entity
    rfm = pq.read_table(run_dir / "rfm.parquet").to_pandas().set_index("customer_id")
    drawn = pd.DataFrame([e.__dict__ for e in sample.entities]).set_index("entity_id")
    drawn = drawn.loc[rfm.index]
    np.testing.assert_array_equal(rfm["recency_days"].to_numpy(), drawn["recency_days"].to_numpy())
    np.testing.assert_array_equal(rfm["frequency"].to_numpy(), drawn["frequency"].to_numpy())
    np.testing.assert_allclose(rfm["monetary"].to_numpy(), drawn["monetary"].to_numpy())

    # names fit the profiles: the segment whose prototype is best on a feature is best on it in the data
    segs = {s["name"]: s for s in summary["segments"]}
    means = ("mean_recency_days", "mean_frequency", "mean_monetary")
    for j, key in enumerate(means):
        order = _prototype_order(list(preset.vocabulary.types), names, j)
        best = min(names, key=lambda n: segs[n][key]) if j == 0 else max(names, key=lambda n: segs[n][key])
        worst = max(names, key=lambda n: segs[n][key]) if j == 0 else min(names, key=lambda n: segs[n][key])
        assert best == order[-1] and worst == order[0], (key, order, {n: segs[n][key] for n in names})

    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["params"]["features"] == preset.features.to_dict()


def test_preset_tables_speak_the_domain(cli, runs_dir: Path) -> None:
    r = cli("run", "--preset", "education", get_preset("education").sample_path(), "--runs-dir", runs_dir)
    assert r.code == 0, r.err
    head = r.out.split("Actions")[0]
    assert "students" in head and "progress" in head and "sessions" in head
    assert "$" not in head and "revenue" not in head and "AOV" not in head
    r = cli("run", "--preset", "crm", get_preset("crm").sample_path(), "--runs-dir", runs_dir, "--json")
    texts = [i["text"] for i in r.json()["insights"]]
    assert texts and all("leads" in t and "customers" not in t and "revenue" not in t for t in texts)


# ------------------------------------------------------------------------------------------- extra columns
def _saas_frame() -> pd.DataFrame:
    return pd.read_csv(get_preset("saas").sample_path(), dtype=str)


def test_extra_columns_are_mapped_with_col(cli, tmp_path: Path, runs_dir: Path) -> None:
    df = _saas_frame().rename(columns={"session_count": "visits", "feature_name": "tool"})
    path = tmp_path / "usage.csv"
    df.to_csv(path, index=False)
    r = cli("run", "--preset", "saas", path, "--runs-dir", runs_dir, "--json")
    assert r.code == 2
    assert r.err.count("\n") == 1
    assert "no session_count column" in r.err and "--col session_count=NAME" in r.err and "visits" in r.err
    r = cli(
        "run", "--preset", "saas", path, "--col", "session_count=visits", "--col", "feature_name=tool",
        "--runs-dir", runs_dir, "--json",
    )  # fmt: skip
    assert r.code == 0, r.err
    assert r.json()["rows"]["used"] == len(df)


def test_bad_values_in_extra_columns_stop_or_are_quarantined(cli, tmp_path: Path, runs_dir: Path) -> None:
    df = _saas_frame()
    df.loc[[3, 10], "session_count"] = "lots"
    path = tmp_path / "usage.csv"
    df.to_csv(path, index=False)
    r = cli("run", "--preset", "saas", path, "--runs-dir", runs_dir)
    assert r.code == 2 and r.err.count("\n") == 1
    assert "2 row(s) with session_count missing or not a number (reason bad_session_count, first at row 4)" in r.err
    assert not runs_dir.exists() or not any(runs_dir.iterdir())
    r = cli("run", "--preset", "saas", path, "--bad-rows", "quarantine", "--runs-dir", runs_dir, "--json")
    assert r.code == 0, r.err
    assert r.json()["rows"]["quarantined"] == {"bad_session_count": 2}
    q = pq.read_table(Path(r.json()["run_dir"]) / "quarantine.parquet").to_pandas()
    assert q["row_number"].tolist() == [4, 11] and set(q["session_count"]) == {"lots"}


def test_progress_outside_its_range_is_quarantined(cli, tmp_path: Path, runs_dir: Path) -> None:
    df = pd.read_csv(get_preset("education").sample_path(), dtype=str)
    df.loc[5, "progress_pct"] = "140"
    path = tmp_path / "learners.csv"
    df.to_csv(path, index=False)
    r = cli("run", "--preset", "education", path, "--bad-rows", "quarantine", "--runs-dir", runs_dir, "--json")
    assert r.code == 0, r.err
    assert r.json()["rows"]["quarantined"] == {"out_of_range_progress_pct": 1}


def test_presets_command_lists_every_preset_with_its_sample(cli) -> None:
    r = cli("presets", "--json")
    assert r.code == 0, r.err
    listed = {p["name"]: p for p in r.json()}
    assert set(PRESET_NAMES) <= set(listed)
    for name in PRESET_NAMES:
        assert Path(listed[name]["sample"]).is_file()
        assert listed[name]["features"] == get_preset(name).features.to_dict()


@pytest.mark.spark
def test_generated_sql_gives_the_same_rfm_on_spark(tmp_path: Path) -> None:
    """The Spark engine runs the same SQL text (dialect 'spark'): same RFM as DuckDB for every preset."""
    pyspark_sql = pytest.importorskip("pyspark.sql")
    from rfmseg.io.intake import read_rfm

    spark = (
        pyspark_sql.SparkSession.builder.master("local[1]")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", "2")
        .getOrCreate()
    )
    try:
        for name in ("saas", "education"):  # a distinct count joined in, and a max
            p = get_preset(name)
            con = duckdb.connect()
            prepared = read_rfm(con, p.sample_path(), preset=p)
            canon = tmp_path / f"{name}.parquet"
            con.execute(f"COPY (SELECT * FROM {prepared.view}) TO '{canon}' (FORMAT parquet)")
            want = features.compute_rfm(con, prepared.view, prepared.as_of, p.features).to_pandas()
            spark.read.parquet(str(canon)).createOrReplaceTempView("canon")
            sql = features.rfm_sql("canon", prepared.as_of, p.features, dialect="spark")
            got = spark.sql(sql).toPandas().sort_values("customer_id").reset_index(drop=True)
            for col in ("recency_days", "frequency", "monetary"):
                np.testing.assert_allclose(got[col].to_numpy(float), want[col].to_numpy(float), err_msg=name)
    finally:
        spark.stop()


def test_every_cli_line_speaks_of_the_presets_entity(cli, tmp_path: Path, runs_dir: Path) -> None:
    # users, sessions and features used (no money) for the saas preset, in the lines outside the segment
    # table too: publish, cold start, assign, runs show, history, transitions and choose-k
    path = get_preset("saas").sample_path()
    store = f"sqlite:///{tmp_path / 'profiles.db'}"
    earlier = ("--as-of", "2025-05-31", "--bad-rows", "quarantine")  # a month before the sample's end
    first = cli("run", "--preset", "saas", path, *earlier, "--runs-dir", runs_dir)
    second = cli("run", "--preset", "saas", path, "--runs-dir", runs_dir, "--store", store, "--customers", "U0001")
    assert first.code == second.code == 0, first.err + second.err
    assert "Published to " + store + ": 400 users (0 changed segment, 400 new)" in second.out
    assert "U0001: " in second.out and " sessions, " in second.out and " features used" in second.out
    outputs = {
        "publish": cli("publish", "latest", "--runs-dir", runs_dir, "--store", store),
        "assign": cli("assign", path, "--model", "latest", "--runs-dir", runs_dir, "--show", "3"),
        "runs show": cli("runs", "show", "latest", "--runs-dir", runs_dir),
        "history": cli("history", "U0001", "--runs-dir", runs_dir),
        "transitions": cli("transitions", "--runs-dir", runs_dir, "--limit", "3"),
        "choose-k": cli("choose-k", "--preset", "saas", path, "--k-max", "4", "--no-stability"),
    }
    for name, res in outputs.items():
        assert res.code == 0, (name, res.err)
        text = res.out + res.err
        assert "users" in text or "sessions" in text, (name, text)
        wrong = re.findall(r"\bcustomers?\b(?! success)|(?<!priority )\borders?\b", text)  # "customer success": a team
        assert not wrong, (name, wrong, text)
        assert "$" not in text and "revenue" not in text, (name, text)
    assert "Published " in outputs["publish"].out and ": 400 users, " in outputs["publish"].out
    assert "Scored 400 users with model" in outputs["assign"].out
    assert "users with a thin history get it anyway" in outputs["assign"].out
    assert "Cold start: 1 users with fewer than 2 sessions or a first session" in outputs["assign"].out
    assert ", 400 users, input " in outputs["runs show"].out
    assert "Transitions in users" in outputs["transitions"].out
    assert "Transitions in revenue" not in outputs["transitions"].out  # a sum of features used means nothing
    assert "Choosing K — 400 users" in outputs["choose-k"].out


@pytest.mark.parametrize("name", list(PRESETS))
def test_a_built_in_preset_round_trips_through_its_json_definition(name: str) -> None:
    from rfmseg.presets import Preset

    p = get_preset(name)
    d = json.loads(json.dumps(p.to_dict()))  # JSON-able, all of it
    assert Preset.from_dict(d) == p
    assert d["name"] == name and d["features"] == p.features.to_dict()
    assert len(d["vocabulary"]["types"]) == len(p.vocabulary.types)


def test_the_sample_helpers_import_no_preset_module() -> None:
    import subprocess
    import sys

    code = "import sys, rfmseg.presets.samples; "
    code += "print(sorted(m for m in sys.modules if m.startswith('rfmseg.presets.')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    # the package loads the Preset value (presets.preset) and no domain module: the registry of generators,
    # presets.generators, imports them instead
    assert out.strip() == "['rfmseg.presets.preset', 'rfmseg.presets.samples']"

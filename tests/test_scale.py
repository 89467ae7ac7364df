"""The scale paths on small data: the sampled K-Means fit, chunked assignment, the streaming validation
path (used above read_passes.MATERIALISE_MAX_ROWS rows), the synthetic generator, and the CLI options."""

from __future__ import annotations

import sys
from contextlib import suppress
from dataclasses import replace
from datetime import date
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.cluster import KMeans

import rfmseg.io.passes as read_passes
import rfmseg.io.validate as validate
from rfmseg.io import Policy
from rfmseg.jobs.run import segment
from rfmseg.model import SegmentModel
from rfmseg.model import kmeans as km
from rfmseg.presets import Preset, get_preset

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
import generate  # noqa: E402  (bench/generate.py)

CANCELLATIONS = Policy(bad_rows="quarantine", returns_condition="order_id LIKE 'C%'")


@pytest.fixture(scope="module")
def tx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """30,000 generated order lines (about 3,000 customers)."""
    return generate.generate(30_000, tmp_path_factory.mktemp("gen") / "tx.parquet", seed=3, quiet=True)


def blobs(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = np.array([[0.1, 0.1, 0.1], [0.8, 0.2, 0.3], [0.3, 0.9, 0.5], [0.6, 0.6, 0.9]])
    return centres[rng.integers(0, 4, n)] + rng.normal(0, 0.08, (n, 3))


# ------------------------------------------------------------------------------------------------- K-Means
def test_nearest_in_blocks_equals_brute_force(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(km, "CHUNK", 1000)  # several blocks, the last one partial
    rng = np.random.default_rng(1)
    x = rng.random((4321, 3))
    centres = rng.random((5, 3))
    x[7] = centres[2]  # exactly on a centre
    d = np.sqrt(((x[:, None, :] - centres[None]) ** 2).sum(axis=2))
    labels, dist, margin = km.nearest(x, centres)
    assert np.array_equal(labels, d.argmin(axis=1))
    np.testing.assert_allclose(dist, d.min(axis=1), atol=1e-12)
    np.testing.assert_allclose(margin, np.sort(d, axis=1)[:, 1] - d.min(axis=1), atol=1e-12)
    assert dist[7] == 0.0
    one = km.nearest(x, centres[:1])
    assert (one[0] == 0).all() and np.isinf(one[2]).all()


def test_nearest_ties_go_to_the_lower_centre() -> None:
    labels, dist, margin = km.nearest(np.array([[0.5, 0.0, 0.0]]), np.array([[1.0, 0, 0], [0.0, 0, 0]]))
    assert labels.tolist() == [0] and margin.tolist() == [0.0] and dist.tolist() == [0.5]


def test_cluster_means_are_the_member_means() -> None:
    rng = np.random.default_rng(2)
    x = rng.random((1000, 3))
    labels = rng.integers(0, 4, 1000)
    expected = np.vstack([x[labels == c].mean(axis=0) for c in range(4)])
    np.testing.assert_allclose(km.cluster_means(x, labels, 4), expected, rtol=1e-12)


def test_sample_and_refine_is_chosen_above_the_threshold_and_matches_the_full_fit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    x = blobs(20_000)
    monkeypatch.setattr(km, "SCALE_THRESHOLD", 5_000)
    assert km.choose_method(4_000) == "exact"
    assert km.choose_method(20_000, sample_size=2_000) == "sample+refine"
    fit = km.fit_kmeans(x, 4, n_init=10, random_state=7, sample_size=2_000)
    assert fit.method == "sample+refine" and fit.sample_size == 2_000
    assert fit.labels.shape == (20_000,)
    full = KMeans(n_clusters=4, n_init=10, random_state=7).fit(x)
    assert fit.inertia <= full.inertia_ * (1 + km.INERTIA_BOUND)
    # the inertia reported is that of all points with the centres found
    _, dist, _ = km.nearest(x, fit.centers)
    assert fit.inertia == pytest.approx(float((dist**2).sum()), rel=1e-9)
    again = km.fit_kmeans(x, 4, n_init=10, random_state=7, sample_size=2_000)
    assert np.array_equal(again.centers, fit.centers)
    assert fit.describe() == {"method": "sample+refine", "n_iter": fit.n_iter, "sample_size": 2_000,
                              "sample_n_iter": fit.sample_n_iter}  # fmt: skip
    # many points: the sample's centres are refined on a larger sample first, then on all points
    monkeypatch.setattr(km, "PRE_REFINE_FROM", 10_000)
    monkeypatch.setattr(km, "PRE_REFINE_SIZE", 6_000)
    staged = km.fit_kmeans(x, 4, n_init=10, random_state=7, sample_size=2_000)
    assert staged.describe()["pre_refine"] == {"size": 6_000, "n_iter": staged.pre_refine["n_iter"]}
    assert staged.inertia <= full.inertia_ * (1 + km.INERTIA_BOUND) and staged.labels.shape == (20_000,)
    _, dist, _ = km.nearest(x, staged.centers)
    assert staged.inertia == pytest.approx(float((dist**2).sum()), rel=1e-9)
    assert km.fit_kmeans(x, 4, n_init=10, random_state=7, sample_size=2_000).pre_refine == staged.pre_refine


@pytest.mark.parametrize("k", [2, 4, 6])
@pytest.mark.parametrize("data", ["blobs", "uniform", "ties"])
def test_the_exact_fit_matches_scikit_learn(data: str, k: int) -> None:
    """Our k-means++ restarts with Lloyd (the exact path) against scikit-learn's KMeans(n_init=10): the
    inertia within the documented bound, the labels those of the nearest centre, the same result each time."""
    rng = np.random.default_rng(11)
    x = {
        "blobs": blobs(3_000, seed=4),
        "uniform": rng.random((3_000, 3)),
        "ties": rng.integers(0, 5, (3_000, 3)).astype(float),  # many identical points, as RFM data has
    }[data]
    fit = km.fit_kmeans(x, k, n_init=10, random_state=3)
    assert fit.method == "exact" and fit.describe() == {"method": "exact", "n_iter": fit.n_iter}
    full = KMeans(n_clusters=k, n_init=10, random_state=3).fit(x)
    if data != "ties":  # a grid of tied points has many equally good solutions: either may land 1 % above
        assert fit.inertia <= full.inertia_ * (1 + km.INERTIA_BOUND)
    labels, dist, _ = km.nearest(x, fit.centers)
    assert np.array_equal(labels, fit.labels)
    assert fit.inertia == pytest.approx(float((dist**2).sum()), rel=1e-9)
    again = km.fit_kmeans(x, k, n_init=10, random_state=3)
    assert np.array_equal(again.centers, fit.centers)
    assert len(np.unique(fit.labels)) == k


def test_kmeans_plusplus_draws_distinct_points_spread_out() -> None:
    x = blobs(2_000, seed=9)
    centres = km.kmeans_plusplus(x, 4, np.random.default_rng(0))
    assert centres.shape == (4, 3)
    assert all(any(np.array_equal(c, p) for p in x) for c in centres)  # drawn from the points
    # one centre per blob: the four true centres each have a drawn centre near them
    truth = np.array([[0.1, 0.1, 0.1], [0.8, 0.2, 0.3], [0.3, 0.9, 0.5], [0.6, 0.6, 0.9]])
    nearest_truth = np.sqrt(((centres[:, None, :] - truth[None]) ** 2).sum(axis=2)).argmin(axis=1)
    assert sorted(nearest_truth.tolist()) == [0, 1, 2, 3]
    same = km.kmeans_plusplus(np.ones((10, 3)), 3, np.random.default_rng(0))  # all points equal: no error
    assert np.array_equal(same, np.ones((3, 3)))


def test_segment_model_records_the_fit_path(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(5)
    x = np.column_stack([rng.integers(1, 365, 3000), rng.integers(1, 30, 3000), rng.gamma(2, 200, 3000)])
    exact = SegmentModel(k=4).fit(x)
    assert exact.fit_info_["method"] == "exact"
    monkeypatch.setattr(km, "SCALE_THRESHOLD", 1_000)
    model = SegmentModel(k=4, sample_size=500).fit(x)
    assert model.fit_info_ == {**model.fit_info_, "method": "sample+refine", "sample_size": 500}
    back = SegmentModel.from_dict(model.to_dict())
    assert back.sample_size == 500 and back.fit_info_ == model.fit_info_
    assert sorted(back.names_) == sorted(model.names_)
    with pytest.raises(Exception, match=r"sample_size 2 should be a whole number >= k \(4\)"):
        SegmentModel(k=4, sample_size=2).fit(x)


# ------------------------------------------------------------------------------------------------- validation
def _both_paths(monkeypatch: pytest.MonkeyPatch, source: Path, **kwargs):
    out = []
    monkeypatch.setattr(read_passes, "STRICT_FIRST_FROM_ROWS", 10**12)
    for limit in (10**12, 0):  # materialised table, then streamed views
        monkeypatch.setattr(read_passes, "MATERIALISE_MAX_ROWS", limit)
        out.append(segment(source, **kwargs))
    return out


def _kept_a_table(source: Path, policy: Policy, preset: Preset | None = None) -> bool:
    """Whether the local engine's read of ``source`` kept its judged rows in a table (else it streamed), whether
    or not the read then stopped on a row set aside."""
    from rfmseg.engines.local import LocalEngine
    from rfmseg.timing import Timer

    engine = LocalEngine()
    try:
        with suppress(validate.InputError):
            engine.load_rfm(source, None, None, policy, Timer(), preset, preset.features if preset else None)
        tables = engine.con.execute("SELECT table_name FROM duckdb_tables()").fetchall()
    finally:
        engine.close()
    return ("judged",) in tables


def test_a_clean_parquet_in_error_mode_is_read_by_the_strict_pass_first(
    monkeypatch: pytest.MonkeyPatch, tx: Path, tmp_path: Path, online_retail: Path
) -> None:
    """From STRICT_FIRST_FROM_ROWS rows (1M; lowered here), a Parquet file read in error mode is streamed even
    below MATERIALISE_MAX_ROWS, with the same result as its table; quarantine mode, a CSV and a policy with a
    check over the whole source (the duplicate lines of online-retail) keep the table."""
    nets = Policy(returns_condition="order_id LIKE 'C%'")  # error mode: the generator's cancellations netted
    assert _kept_a_table(tx, nets)
    monkeypatch.setattr(read_passes, "STRICT_FIRST_FROM_ROWS", 1_000)
    assert not _kept_a_table(tx, nets)
    assert _kept_a_table(tx, CANCELLATIONS)  # quarantine mode
    csv = tmp_path / "tx.csv"
    duckdb.execute(f"COPY (FROM '{tx}') TO '{csv}'")
    assert _kept_a_table(csv, nets)
    retail = get_preset("online-retail")
    assert _kept_a_table(online_retail, replace(retail.policy, bad_rows="error"), retail)
    streamed = segment(tx, policy=nets, runs_dir=None)
    monkeypatch.setattr(read_passes, "STRICT_FIRST_FROM_ROWS", 10**12)
    kept = segment(tx, policy=nets, runs_dir=None)
    assert streamed.rfm.equals(kept.rfm) and streamed.manifest["rows"] == kept.manifest["rows"]
    assert streamed.manifest["as_of"] == kept.manifest["as_of"]
    # a row that breaks a rule stops the read with the same message either way
    broken = tmp_path / "broken.parquet"
    duckdb.execute(
        f"COPY (SELECT * REPLACE (CASE WHEN amount > 0 AND customer_id % 97 = 0 THEN -amount ELSE amount END "
        f"AS amount) FROM '{tx}') TO '{broken}'"
    )
    messages = []
    for limit in (1_000, 10**12):
        monkeypatch.setattr(read_passes, "STRICT_FIRST_FROM_ROWS", limit)
        with pytest.raises(validate.InputError) as err:
            segment(broken, policy=nets, runs_dir=None)
        messages.append(str(err.value))
    assert messages[0] == messages[1] and "negative" in messages[0]


def test_streaming_path_equals_the_materialised_one_on_online_retail(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, online_retail: Path
) -> None:
    kept, streamed = _both_paths(monkeypatch, online_retail, preset="online-retail", runs_dir=tmp_path)
    assert streamed.manifest["rows"] == kept.manifest["rows"]
    rows = streamed.manifest["rows"]
    assert rows["read"] == rows["used"] + sum(rows["quarantined"].values()) == 541_909
    assert rows["quarantined"]["returns_only_customer"] > 0  # settled from the RFM table when streaming
    assert streamed.rfm.equals(kept.rfm)
    qa = pq.read_table(kept.path / "quarantine.parquet")
    qb = pq.read_table(streamed.path / "quarantine.parquet")
    assert qb.equals(qa)


def test_streaming_path_on_generated_lines_with_bad_rows(
    monkeypatch: pytest.MonkeyPatch, tx: Path, tmp_path: Path
) -> None:
    con = duckdb.connect()
    messy = tmp_path / "messy.parquet"
    con.execute(
        # a missing id every 997 rows, a negative amount every 1009, and every 53rd customer with returns only
        f"COPY (SELECT CASE WHEN n % 997 = 0 THEN NULL ELSE customer_id END AS customer_id, "
        f"CASE WHEN customer_id % 53 = 0 AND order_id NOT LIKE 'C%' THEN 'C' || order_id ELSE order_id END "
        f"AS order_id, order_date, CASE WHEN n % 1009 = 0 OR customer_id % 53 = 0 THEN -abs(amount) ELSE amount END "
        f"AS amount FROM (SELECT *, row_number() OVER () AS n FROM '{tx}')) TO '{messy}' (FORMAT parquet)"
    )
    for as_of in (None, "2024-06-30"):
        kept, streamed = _both_paths(monkeypatch, messy, policy=CANCELLATIONS, as_of=as_of, runs_dir=tmp_path)
        assert streamed.manifest["rows"] == kept.manifest["rows"]
        assert streamed.rfm.equals(kept.rfm)
        # the streamed read writes its quarantine from the rows it set aside with their originals (its table of
        # them, or the view that found them when a later rule set aside more), the materialised one joins the
        # source: the same rows, every reason
        q_streamed = pq.read_table(streamed.path / "quarantine.parquet")
        assert _same_rows(q_streamed, pq.read_table(kept.path / "quarantine.parquet"))
        assert q_streamed.num_rows == sum(streamed.manifest["rows"]["quarantined"].values())
    q = streamed.manifest["rows"]["quarantined"]
    assert q["missing_customer_id"] > 0 and q["negative_amount"] > 0 and q["after_as_of"] > 0
    assert q["returns_only_customer"] > 0
    assert not any(int(c) % 53 == 0 for c in streamed.rfm.column("customer_id").to_pylist())
    monkeypatch.setattr(read_passes, "MATERIALISE_MAX_ROWS", 0)
    with pytest.raises(validate.InputError, match=r"row\(s\) with no customer id .*first at row 997"):
        segment(messy, policy=Policy(returns_condition="order_id LIKE 'C%'"), runs_dir=None)


def test_unclean_id_condition_is_exactly_what_cleaning_changes() -> None:
    """The cheap test the RFM pass runs per order agrees with id_expr on every kind of id."""
    ids = [
        "536365", "C536365", "", " ", "A1 ", " A1", "17850.0", "17850.00", "12.50", "A.0", ".0", "1.", "x.y",
        "\u00a0A1", "A1\u3000", "\u2003", "caf\u00e9", "caf\u00e9 ", "\tA1", "A1\n", "A\u00a0B", None,
    ]  # fmt: skip
    con = duckdb.connect()
    con.execute("CREATE TABLE orders (customer_id VARCHAR, order_id VARCHAR)")
    con.executemany("INSERT INTO orders VALUES (?, ?)", [(i, i) for i in ids])
    types = {"c": "VARCHAR", "o": "VARCHAR"}
    test = validate.unclean_id_condition({"customer_id": "c", "order_id": "o"}, types)
    got = con.execute(f"SELECT order_id, {test} FROM orders").fetchall()
    want = con.execute(
        f"SELECT o, ({validate.id_expr('o', 'VARCHAR')}) IS DISTINCT FROM o FROM orders AS t(c, o)"
    ).fetchall()
    assert got == want
    assert [i for i, dirty in got if dirty] == [
        "",
        " ",
        "A1 ",
        " A1",
        "17850.0",
        "17850.00",
        "\u00a0A1",
        "A1\u3000",
        "\u2003",
        "caf\u00e9 ",
    ]
    assert validate.unclean_id_condition({"customer_id": "c"}, {"c": "BIGINT"}) is None


def test_streaming_path_cleans_text_ids_only_when_one_needs_it(
    monkeypatch: pytest.MonkeyPatch, tx: Path, tmp_path: Path
) -> None:
    """Large inputs take text ids as they are when none needs cleaning, and clean them all when one does:
    either way the same RFM table as the materialised path, which always cleans."""
    con = duckdb.connect()
    clean, messy = tmp_path / "clean.parquet", tmp_path / "messy.parquet"
    con.execute(
        f"COPY (SELECT 'K' || customer_id AS customer_id, order_id, order_date, amount FROM '{tx}') TO '{clean}'"
    )
    con.execute(
        # the same customers and orders, some ids written with spaces or as '123.0' (a float exported as text)
        f"COPY (SELECT CASE WHEN n % 7 = 0 THEN ' K' || customer_id || ' ' ELSE 'K' || customer_id END AS customer_id, "
        f"CASE WHEN n % 11 = 0 AND order_id NOT LIKE 'C%' THEN order_id || '.0' ELSE order_id END AS order_id, "
        f"order_date, amount FROM (SELECT *, row_number() OVER () AS n FROM '{tx}')) TO '{messy}'"
    )
    calls: list[bool] = []
    prepare = read_passes._prepare

    def spy(*args, **kwargs):  # records whether each preparation was asked to clean every id
        calls.append(kwargs.get("clean_ids", False))
        return prepare(*args, **kwargs)

    monkeypatch.setattr(read_passes, "_prepare", spy)
    kept_clean, streamed_clean = _both_paths(monkeypatch, clean, policy=CANCELLATIONS, runs_dir=None)
    assert calls == [False, False]  # materialised (cleans anyway), then streamed with the ids as they are
    assert streamed_clean.rfm.equals(kept_clean.rfm)
    calls.clear()
    kept_messy, streamed_messy = _both_paths(monkeypatch, messy, policy=CANCELLATIONS, runs_dir=None)
    assert calls == [False, False, True]  # the RFM pass found an id to clean: prepared again, cleaning all
    assert streamed_messy.rfm.equals(kept_messy.rfm)
    assert streamed_messy.rfm.equals(streamed_clean.rfm)  # cleaning made the messy ids the clean ones
    # a problem found with the ids as they are is reported as the clean ids have it
    bad = tmp_path / "bad.parquet"
    con.execute(
        f"COPY (SELECT CASE WHEN order_id = (SELECT min(order_id) FROM '{tx}') THEN ' ' ELSE order_id END "
        f"AS order_id, * EXCLUDE (order_id) FROM '{tx}') TO '{bad}'"
    )
    monkeypatch.setattr(read_passes, "MATERIALISE_MAX_ROWS", 0)
    with pytest.raises(validate.InputError, match=r"row\(s\) with no order id"):
        segment(bad, policy=Policy(returns_condition="order_id LIKE 'C%'"), runs_dir=None)


def test_streaming_path_settles_counts_and_as_of_from_the_rfm_pass(
    monkeypatch: pytest.MonkeyPatch, tx: Path, tmp_path: Path
) -> None:
    """A large Parquet input is settled by the strict RFM pass: with every row used, no counting pass at all;
    a return dated after the last order (the default as-of date would set it aside) sends the input through
    the counting pass. In quarantine mode, when the strict pass meets a row set aside (here: rows after a given
    as-of date), the rows set aside are kept in a table and counted from it instead; with the default as-of
    date and a late return, that too ends in the counting pass. Every case equals the materialised path, which
    counts first, quarantine file included."""
    counting, setting_aside = read_passes._count, read_passes._set_aside
    passes: list[date | None] = []
    tables: list[bool] = []

    def spy(con, prepared, as_of):
        passes.append(as_of)
        return counting(con, prepared, as_of)

    def spy_aside(con, prepared, as_of):
        kept = setting_aside(con, prepared, as_of)
        tables.append(kept is not None)
        return kept

    monkeypatch.setattr(read_passes, "_count", spy)
    monkeypatch.setattr(read_passes, "_set_aside", spy_aside)
    kept, streamed = _both_paths(monkeypatch, tx, policy=CANCELLATIONS, runs_dir=None)
    assert passes == [] and streamed.manifest["rows"] == kept.manifest["rows"]
    assert streamed.rfm.equals(kept.rfm) and streamed.manifest["as_of"] == kept.manifest["as_of"]
    late = tmp_path / "late.parquet"
    con = duckdb.connect()
    con.execute(
        # a cancellation three days after the last order of the file, by its first customer
        f"COPY (SELECT * FROM '{tx}' UNION ALL SELECT min(customer_id), 'C999999', "
        f"max(order_date) + INTERVAL 3 DAY, -10.0 FROM '{tx}') TO '{late}'"
    )
    kept, streamed = _both_paths(monkeypatch, late, policy=CANCELLATIONS, runs_dir=None)
    assert passes == [None] and kept.manifest["rows"]["quarantined"] == {"after_as_of": 1}
    assert streamed.manifest["rows"] == kept.manifest["rows"] and streamed.rfm.equals(kept.rfm)
    assert tables == []  # the strict pass used every row: nothing to keep
    passes.clear()
    runs = tmp_path / "runs"
    kept, streamed = _both_paths(monkeypatch, tx, policy=CANCELLATIONS, as_of="2024-03-31", runs_dir=runs)
    assert passes == [] and tables == [True] and kept.manifest["rows"]["quarantined"]["after_as_of"] > 0
    assert streamed.manifest["rows"] == kept.manifest["rows"] and streamed.rfm.equals(kept.rfm)
    quarantine = pq.read_table(streamed.path / "quarantine.parquet")
    assert _same_rows(quarantine, pq.read_table(kept.path / "quarantine.parquet"))
    assert quarantine.num_rows == kept.manifest["rows"]["quarantined"]["after_as_of"]
    # a row set aside and a late return: the table is kept and counted, the as-of date cannot be settled from
    # the RFM table, and the counting pass settles it
    both = tmp_path / "late_and_bad.parquet"
    con.execute(
        f"COPY (SELECT * FROM '{late}' UNION ALL SELECT NULL, 'X1', min(order_date), 5.0 FROM '{tx}') TO '{both}'"
    )
    passes.clear()
    tables.clear()
    kept, streamed = _both_paths(monkeypatch, both, policy=CANCELLATIONS, runs_dir=runs)
    assert passes == [None] and tables == [True]
    assert kept.manifest["rows"]["quarantined"] == {"missing_customer_id": 1, "after_as_of": 1}
    assert streamed.manifest["rows"] == kept.manifest["rows"] and streamed.rfm.equals(kept.rfm)
    quarantine = pq.read_table(streamed.path / "quarantine.parquet")
    assert _same_rows(quarantine, pq.read_table(kept.path / "quarantine.parquet")) and quarantine.num_rows == 2


def _same_rows(a: pa.Table, b: pa.Table) -> bool:
    """The same columns (names and types) and rows; a column that holds no null may be marked not-null in one
    file and not in the other (DuckDB's Parquet writer marks it from what it knows of the column)."""
    types = [(f.name, f.type) for f in a.schema]
    return types == [(f.name, f.type) for f in b.schema] and a.to_pylist() == b.to_pylist()


def test_strict_pass_stops_at_a_row_set_aside_even_with_ids_to_clean(
    monkeypatch: pytest.MonkeyPatch, tx: Path, tmp_path: Path
) -> None:
    """Ids that need cleaning and rows to set aside in the same large file: the strict pass stops, the
    counting pass runs, the pass runs again and finds the ids, and everything is redone on clean ids. The
    result is the materialised path's, and the strict pass gave up before reading every row."""
    messy = tmp_path / "messy_and_dirty.parquet"
    duckdb.connect().execute(
        f"COPY (SELECT CASE WHEN n % 7 = 0 THEN ' K' || customer_id ELSE 'K' || customer_id END AS customer_id, "
        f"order_id, order_date, CASE WHEN n = 5 THEN NULL ELSE amount END AS amount "
        f"FROM (SELECT *, row_number() OVER () AS n FROM '{tx}')) TO '{messy}'"
    )
    outcomes: list[bool] = []
    rfm_pass = read_passes._rfm_pass

    def spy(con, prepared, fs):
        table = rfm_pass(con, prepared, fs)
        outcomes.append(table is not None)
        return table

    monkeypatch.setattr(read_passes, "_rfm_pass", spy)
    kept, streamed = _both_paths(monkeypatch, messy, policy=CANCELLATIONS, runs_dir=None)
    # materialised: one pass; streamed: strict pass stops, pass after counting, then the same on clean ids
    assert outcomes == [True, False, True, False, True]
    assert streamed.manifest["rows"] == kept.manifest["rows"] and streamed.rfm.equals(kept.rfm)
    assert kept.manifest["rows"]["quarantined"] == {"bad_amount": 1}


def test_empty_quarantine_file_keeps_its_columns(tx: Path, tmp_path: Path) -> None:
    result = segment(tx, policy=CANCELLATIONS, runs_dir=tmp_path)
    assert result.manifest["rows"]["quarantined"] == {}
    q = pq.read_table(result.path / "quarantine.parquet")
    assert q.num_rows == 0
    assert q.column_names == ["row_number", "reason", "customer_id", "order_id", "order_date", "amount"]


# ------------------------------------------------------------------------------------------------- generator
def test_generator_is_seeded_exact_and_shaped_like_online_retail(tx: Path, tmp_path: Path) -> None:
    again = generate.generate(30_000, tmp_path / "again.parquet", seed=3, quiet=True)
    a, b = pq.read_table(tx), pq.read_table(again)
    assert a.equals(b) and a.num_rows == 30_000
    assert a.column_names == ["customer_id", "order_id", "order_date", "amount"]
    other = pq.read_table(generate.generate(30_000, tmp_path / "other.parquet", seed=4, quiet=True))
    assert not other.equals(a)
    con = duckdb.connect()
    stats = con.execute(
        f"""SELECT count(DISTINCT customer_id), count(*) FILTER (WHERE order_id LIKE 'C%'),
                   bool_and((order_id LIKE 'C%') = (amount < 0)), min(order_date) >= TIMESTAMP '2023-01-01',
                   max(order_date) < TIMESTAMP '2025-01-01'
            FROM '{tx}'"""
    ).fetchone()
    customers, cancelled, sign_matches, starts, ends = stats
    assert 2_000 < customers < 4_500  # about a tenth of the rows
    assert cancelled > 0 and sign_matches and starts and ends
    ordered = con.execute(f"SELECT bool_and(d >= p) FROM (SELECT order_date d, lag(order_date) OVER () p FROM '{tx}')")
    assert ordered.fetchone()[0]  # written in time order, as a transaction log is
    orders = con.execute(
        f"SELECT count(DISTINCT order_id) AS n FROM '{tx}' WHERE order_id NOT LIKE 'C%' GROUP BY customer_id"
    ).fetchnumpy()["n"]
    assert 0.3 < (orders == 1).mean() < 0.6 and orders.max() >= 20  # many one-time buyers, a heavy tail
    result = segment(tx, policy=CANCELLATIONS, runs_dir=None)
    rows = result.manifest["rows"]
    assert rows["read"] == 30_000 == rows["used"] + sum(rows["quarantined"].values())
    assert result.manifest["customers"] == customers


def test_row_counts_parse() -> None:
    assert generate.parse_rows("1e6, 10M,2.5e5") == [1_000_000, 10_000_000, 250_000]
    assert generate.label(100_000_000) == "100M" and generate.label(250_000) == "250K"
    with pytest.raises(SystemExit, match="not a row count"):
        generate.parse_rows("lots")


# ------------------------------------------------------------------------------------------------- CLI
def test_cli_scale_options_are_checked(cli, study_orders: Path, runs_dir: Path) -> None:
    res = cli("run", study_orders, "--engine", "dask", "--runs-dir", runs_dir)
    assert res.code == 2 and "error: --engine 'dask' is not known; use local or spark" in res.err
    res = cli("run", study_orders, "--spark-master", "local[2]", "--runs-dir", runs_dir)
    assert res.code == 2 and "--spark-master go(es) with --engine spark" in res.err
    res = cli("run", study_orders, "--sample-size", "3", "--runs-dir", runs_dir)
    assert res.code == 2 and "--sample-size 3 should be a whole number >= --k (4)" in res.err
    assert not runs_dir.exists() or not any(runs_dir.iterdir())
    res = cli("run", study_orders, "--sample-size", "50000", "--as-of", "2024-12-31", "--runs-dir", runs_dir, "--json")
    assert res.code == 0, res.err
    (run,) = [d for d in runs_dir.iterdir() if (d / "manifest.json").exists()]  # not the shared plotly.js folder
    manifest = __import__("json").loads((run / "manifest.json").read_text())
    assert manifest["params"]["sample_size"] == 50000
    assert manifest["model"]["fit"]["method"] == "exact"  # 200 customers: the exact fit, whatever the option
    assert manifest["engine"] == "local"


def test_a_run_leaves_scikit_learn_and_scipy_alone(study_orders: Path, tmp_path: Path) -> None:
    """scikit-learn takes longer to import than a run on a million order lines takes: the fit is our own
    k-means++ and Lloyd, and the K choice (silhouette and the other scores) is computed when first shown, so a
    run, its report included, never imports it. Nor scipy.optimize: the naming solves its small assignment
    problem itself (naming.cheapest_pairs)."""
    import subprocess

    code = (
        "import sys; import rfmseg.cli, rfmseg.jobs.run as p; "
        "before = any(m in sys.modules for m in ('sklearn', 'scipy.optimize')); "
        f"r = p.segment({str(study_orders)!r}, runs_dir={str(tmp_path / 'runs')!r}); "
        "print(before, sorted(m for m in ('sklearn', 'kneed') if m in sys.modules), "
        "'scipy.optimize' in sys.modules, r.summary['n_customers'])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "[]", "False", "200"]


def test_the_readme_scale_walkthrough_runs_on_the_generated_data(cli, tx: Path, tmp_path: Path) -> None:
    """README's scale section runs `rfmseg run bench/data/tx_1M.parquet --returns net`: the generator's
    cancellations (a `C` invoice with a negative amount) are refused as they are, with the fix named, and
    netted as returns with the option, every row used."""
    runs = tmp_path / "runs"
    refused = cli("run", tx, "--runs-dir", runs)
    assert refused.code == 2 and "negative amount" in refused.err and "--returns net" in refused.err
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    assert "rfmseg run bench/data/tx_1M.parquet --returns net" in readme
    r = cli("run", tx, "--returns", "net", "--runs-dir", runs, "--json")
    assert r.code == 0, r.err
    rows = r.json()["rows"]
    assert rows["read"] == 30_000 == rows["used"] and rows["quarantined"] == {}

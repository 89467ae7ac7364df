"""Bad input: one line naming the problem and the fix, exit code 2, and no run directory written."""

from __future__ import annotations

from pathlib import Path

import pytest

ORDERS_HEADER = "customer_id,order_id,order_date,amount\n"


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def assert_clean_failure(r, runs_dir: Path, *fragments: str) -> None:
    assert r.code == 2, (r.out, r.err)
    lines = r.err.strip().splitlines()
    assert len(lines) == 1, r.err
    assert lines[0].startswith("error: ")
    for f in fragments:
        assert f in lines[0], lines[0]
    assert not runs_dir.exists(), list(runs_dir.iterdir())  # no run, and no empty runs folder


def test_unknown_column_lists_columns_and_option(cli, tmp_path: Path, runs_dir: Path) -> None:
    p = write(tmp_path, "o.csv", "client,invoice,ts,total\nA,1,2024-01-01,10\n")
    r = cli("run", p, "--runs-dir", runs_dir)
    assert_clean_failure(
        r, runs_dir, "no customer_id column", "columns found: client, invoice, ts, total", "--customer-col"
    )


def test_missing_column_names_the_parameter_in_python_and_the_flag_in_the_cli(
    cli, tmp_path: Path, runs_dir: Path
) -> None:
    """The core error names the parameter (``columns.customer_id``); the CLI renders it as its flag."""
    import duckdb

    from rfmseg.errors import ColumnError
    from rfmseg.io.intake import read_rfm

    p = write(tmp_path, "o.csv", "client,invoice,ts,total\nA,1,2024-01-01,10\n")
    with pytest.raises(ColumnError) as raised:
        read_rfm(duckdb.connect(), p)
    assert raised.value.params == ("columns.customer_id",)
    assert str(raised.value).endswith("map yours with columns.customer_id NAME"), str(raised.value)
    r = cli("run", p, "--runs-dir", runs_dir)
    assert_clean_failure(r, runs_dir, "map yours with --customer-col NAME")


def test_mapped_column_that_does_not_exist(cli, tmp_path: Path, runs_dir: Path) -> None:
    p = write(tmp_path, "o.csv", ORDERS_HEADER + "A,1,2024-01-01,10\n")
    r = cli("run", p, "--amount-col", "price", "--runs-dir", runs_dir)
    assert_clean_failure(r, runs_dir, "no column 'price'", "columns found: customer_id, order_id")


def test_empty_file(cli, tmp_path: Path, runs_dir: Path) -> None:
    r = cli("run", write(tmp_path, "o.csv", ""), "--runs-dir", runs_dir)
    assert_clean_failure(r, runs_dir, "the file is empty")


def test_header_only(cli, tmp_path: Path, runs_dir: Path) -> None:
    r = cli("run", write(tmp_path, "o.csv", ORDERS_HEADER), "--runs-dir", runs_dir)
    assert_clean_failure(r, runs_dir, "has no rows")


def test_unreadable_date(cli, tmp_path: Path, runs_dir: Path) -> None:
    text = ORDERS_HEADER + "A,1,2024-01-01,10\nB,2,2024-13-45,12\nC,3,2024-02-01,8\n"
    r = cli("run", write(tmp_path, "o.csv", text), "--k", "2", "--runs-dir", runs_dir)
    assert_clean_failure(
        r,
        runs_dir,
        "1 row(s) with order date missing or not a date",
        "first at row 2",
        "--date-format",
        "--bad-rows quarantine",
    )


def test_negative_amount(cli, tmp_path: Path, runs_dir: Path) -> None:
    text = ORDERS_HEADER + "A,1,2024-01-01,10\nB,2,2024-01-02,-5\nC,3,2024-02-01,8\n"
    r = cli("run", write(tmp_path, "o.csv", text), "--k", "2", "--runs-dir", runs_dir)
    assert_clean_failure(r, runs_dir, "negative amount", "first at row 2")


def test_non_numeric_amount(cli, tmp_path: Path, runs_dir: Path) -> None:
    text = ORDERS_HEADER + "A,1,2024-01-01,10\nB,2,2024-01-02,ten\nC,3,2024-02-01,8\n"
    r = cli("run", write(tmp_path, "o.csv", text), "--k", "2", "--runs-dir", runs_dir)
    assert_clean_failure(r, runs_dir, "amount missing or not a number", "first at row 2")


def test_bad_rows_can_be_quarantined_instead(cli, tmp_path: Path, runs_dir: Path) -> None:
    text = ORDERS_HEADER + "".join(f"C{i},{i},2024-01-{i % 28 + 1:02d},{10 + i}\n" for i in range(1, 40))
    text += "X,99,2024-13-45,12\nY,98,2024-01-02,-5\n"
    r = cli(
        "run", write(tmp_path, "o.csv", text), "--k", "2", "--bad-rows", "quarantine", "--runs-dir", runs_dir, "--json"
    )
    assert r.code == 0, r.err
    assert r.json()["rows"] == {"read": 41, "used": 39, "quarantined": {"bad_date": 1, "negative_amount": 1}}


def test_k_larger_than_customers(cli, tmp_path: Path, runs_dir: Path) -> None:
    text = ORDERS_HEADER + "A,1,2024-01-01,10\nB,2,2024-01-02,12\nC,3,2024-02-01,8\n"
    r = cli("run", write(tmp_path, "o.csv", text), "--k", "5", "--runs-dir", runs_dir)
    assert_clean_failure(r, runs_dir, "--k 5 is larger than the number of customers (3); use a smaller --k")


def test_wrong_format_for_extension(cli, tmp_path: Path, runs_dir: Path) -> None:
    r = cli("run", write(tmp_path, "o.parquet", ORDERS_HEADER + "A,1,2024-01-01,10\n"), "--runs-dir", runs_dir)
    assert_clean_failure(r, runs_dir, "not a parquet file")


def test_missing_file_and_unknown_type(cli, tmp_path: Path, runs_dir: Path) -> None:
    assert_clean_failure(cli("run", tmp_path / "nope.csv", "--runs-dir", runs_dir), runs_dir, "no such file")
    assert_clean_failure(
        cli("run", write(tmp_path, "o.json", "{}"), "--runs-dir", runs_dir), runs_dir, "unknown file type '.json'"
    )


def test_a_folder_is_named_a_folder_whatever_its_name_ends_in(cli, tmp_path: Path, runs_dir: Path) -> None:
    for name in ("adir", "d.csv"):
        (tmp_path / name).mkdir()
        r = cli("run", tmp_path / name, "--runs-dir", runs_dir)
        assert_clean_failure(r, runs_dir, f"{tmp_path / name}: is a folder, not a file; give the path of a CSV")
    r = cli("run", tmp_path / "nothere", "--runs-dir", runs_dir)  # a missing path without a suffix: missing
    assert_clean_failure(r, runs_dir, "nothere: no such file; check the path")


def test_a_date_format_that_matches_no_date_says_so_with_a_date(cli, tmp_path: Path, runs_dir: Path) -> None:
    """The format given is named as the problem, with a date of the file, not "give --date-format" again."""
    p = write(tmp_path, "good.csv", ORDERS_HEADER + "C1,1,2024-01-05,10\nC2,2,2024-02-05,20\nC3,3,2024-03-05,20\n")
    for bad_rows in ("error", "quarantine"):
        r = cli("run", p, "--date-format", "%d/%m/%Y", "--bad-rows", bad_rows, "--k", "2", "--runs-dir", runs_dir)
        assert_clean_failure(
            r,
            runs_dir,
            "no date of column 'order_date' (e.g. '2024-01-05') is written as the --date-format given, '%d/%m/%Y'",
            "give the format its dates are written in, or leave out --date-format to have it detected",
        )
        assert "or give --date-format" not in r.err
    r = cli("run", p, "--date-format", "%Y-%m-%d", "--k", "2", "--runs-dir", runs_dir, "--json")
    assert r.code == 0, r.err  # the fix it names works
    r = cli("run", p, "--date-col", "order_id", "--k", "2", "--runs-dir", tmp_path / "r2")
    assert_clean_failure(r, tmp_path / "r2", "column 'order_id' holds no readable dates (e.g. '1'); map the order")


def test_a_glob_that_matches_nothing_names_where_it_was_given(
    cli, tmp_path: Path, runs_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "parts").mkdir()
    r = cli("run", "parts/*.parquet", "--runs-dir", runs_dir)
    assert_clean_failure(
        r, runs_dir, "error: parts/*.parquet: no file matches this glob; check the folder and the file names"
    )
    assert "source.glob" not in r.err  # typed on the command line, not set in a project file
    project = tmp_path / "proj"
    project.mkdir()
    (project / "rfmseg.toml").write_text('[source]\nglob = "exports/*.parquet"\n')
    r = cli("run", "--config", project / "rfmseg.toml", "--runs-dir", runs_dir)
    assert_clean_failure(r, runs_dir, f"check the pattern in source.glob of {project / 'rfmseg.toml'}")


def test_a_ready_rfm_table_with_other_names_says_what_an_rfm_table_needs(cli, tmp_path: Path, runs_dir: Path) -> None:
    text = "customer_id,recency,frequency,monetary\nC1,3,2,50\nC2,40,1,20\nC3,10,5,300\nC4,90,1,10\nC5,5,3,80\n"
    p = write(tmp_path, "rfm.csv", text)
    r = cli("run", p, "--runs-dir", runs_dir)
    assert_clean_failure(
        r,
        runs_dir,
        "no order_date column, and no recency_days column for a ready RFM table (one row per customer: customer_id, "
        "recency_days, frequency, monetary)",
        "columns found: customer_id, recency, frequency, monetary; map yours with --col recency_days=recency",
    )
    other = write(tmp_path, "rfm2.csv", "cust,recency,freq,monetary_value\nC1,3,2,50\n")
    r = cli("choose-k", other)
    assert_clean_failure(
        r,
        runs_dir,
        "no recency_days, frequency or monetary column for a ready RFM table",
        "--col recency_days=recency --col frequency=freq --col monetary=monetary_value",
    )
    # a transactions file without its date is still told to map the date
    r = cli(
        "run", write(tmp_path, "o.csv", "customer_id,order_id,when,amount\nC1,1,2024-01-01,5\n"), "--runs-dir", runs_dir
    )
    assert_clean_failure(r, runs_dir, "no order_date column; columns found: customer_id, order_id, when, amount")
    r = cli("run", p, "--col", "recency_days=recency", "--k", "2", "--runs-dir", runs_dir, "--json")
    assert r.code == 0, r.err  # the mapping it names reads the table
    assert r.json()["n_customers"] == 5


def test_bad_as_of_and_bad_transform(cli, study_orders: Path, runs_dir: Path) -> None:
    assert_clean_failure(
        cli("run", study_orders, "--as-of", "31/12/2024", "--runs-dir", runs_dir),
        runs_dir,
        "--as-of '31/12/2024' is not a date",
    )
    assert_clean_failure(
        cli("run", study_orders, "--transform", "zscore", "--runs-dir", runs_dir),
        runs_dir,
        "unknown transform 'zscore'",
    )


def test_a_failure_while_writing_leaves_no_run(tmp_path: Path, study_orders: Path, monkeypatch) -> None:
    import errno

    import rfmseg
    from rfmseg.engines.local import LocalEngine
    from rfmseg.errors import EnvironmentFailure

    def boom(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(LocalEngine, "write_quarantine", boom)
    runs = tmp_path / "runs"
    with pytest.raises(EnvironmentFailure, match="No space left on device; free space"):
        rfmseg.segment(study_orders, as_of="2024-12-31", runs_dir=runs)
    assert not runs.exists()  # the run created the folder: it goes with the run


# ------------------------------------------------------------------------------ errors name parameters
TINY = ORDERS_HEADER + "A,1,2024-01-01,10\nB,2,2024-02-01,20\nC,3,2024-03-01,30\nA,4,2024-03-05,15\n"


def test_a_core_error_names_the_python_parameter() -> None:
    import numpy as np

    from rfmseg.errors import ParameterError
    from rfmseg.model.segment_model import SegmentModel

    with pytest.raises(ParameterError) as caught:
        SegmentModel(k=4).fit(np.array([[1.0, 1, 1], [2, 2, 2], [3, 3, 3]]))
    assert str(caught.value) == "k 4 is larger than the number of customers (3); use a smaller k"
    assert caught.value.params == ("k",)


def test_the_same_error_through_the_cli_names_the_flag(cli, tmp_path: Path, runs_dir: Path) -> None:
    r = cli("run", write(tmp_path, "o.csv", TINY), "--k", "4", "--runs-dir", runs_dir)
    assert_clean_failure(r, runs_dir)
    assert r.err.strip() == "error: --k 4 is larger than the number of customers (3); use a smaller --k"


def test_a_python_caller_reads_parameter_names_where_the_cli_reads_flags(tmp_path: Path) -> None:
    from rfmseg.cli.options import flag_of
    from rfmseg.errors import ParameterError
    from rfmseg.presets import build_policy, get_preset

    with pytest.raises(ParameterError) as caught:
        build_policy(get_preset("ecommerce"), returns="sometimes")
    err = caught.value
    assert str(err) == "returns 'sometimes' is not allowed; use net or exclude"
    assert err.render(flag_of) == "--returns 'sometimes' is not allowed; use net or exclude"
    # other braces in a message are text, not parameters
    assert ParameterError("{path = 'x'}: see {k}", param="k").render(flag_of) == "{path = 'x'}: see --k"


def test_the_cli_names_column_parameters_by_their_flags() -> None:
    from rfmseg.cli.options import flag_of

    assert [flag_of(p) for p in ("k", "as_of", "columns.customer_id", "columns.unit_price", "new_per_week")] == [
        "--k",
        "--as-of",
        "--customer-col",
        "--price-col",
        "--new-per-week",
    ]


def test_a_rule_fix_names_parameters_not_flags(tmp_path: Path) -> None:
    """The rules' fixes are templates: Python callers read parameter names, the CLI flags (above)."""
    import duckdb

    from rfmseg.errors import InputError
    from rfmseg.io.intake import read_rfm

    p = write(tmp_path, "o.csv", ORDERS_HEADER + "A,1,2024-01-01,10\nB,2,2024-13-45,12\n")
    with pytest.raises(InputError) as raised:
        read_rfm(duckdb.connect(), p)
    assert set(raised.value.params) == {"date_format", "bad_rows"}
    assert "set date_format" in str(raised.value) and "pass bad_rows quarantine" in str(raised.value)
    assert "--" not in str(raised.value)


def test_a_store_that_is_down_names_the_store_option_and_keeps_the_run(cli, tmp_path: Path, runs_dir: Path) -> None:
    """The store error names the store parameter: the CLI as its flag, also once the error says where the
    unpublished run is kept."""
    text = ORDERS_HEADER + "".join(f"C{i},{i},2024-01-{i % 28 + 1:02d},{10 + i}\n" for i in range(1, 30))
    r = cli(
        "run", write(tmp_path, "o.csv", text), "--k", "2", "--runs-dir", runs_dir, "--store", "redis://127.0.0.1:1/0"
    )
    assert r.code != 0 and "cannot reach the profile store at redis://127.0.0.1:1/0" in r.err
    assert "start it or fix the store URL (--store)" in r.err and "publish it later with `rfmseg publish" in r.err

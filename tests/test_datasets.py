"""rfmseg datasets: the cache filled from the shared folder, a download checked by SHA-256 from a real HTTP server
on loopback (serving a zip built from the reference table, laid out like the UCI workbook), an offline
``--from``, and every way a fetch can fail: one line, exit code 2, nothing left in the cache."""

from __future__ import annotations

import hashlib
import json
import threading
import zipfile
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import openpyxl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rfmseg.datasets import cached, data_dir, fetch
from rfmseg.datasets import online_retail as retail
from rfmseg.datasets.base import table_sha256
from rfmseg.datasets.cache import shared_folders
from rfmseg.datasets.study import ORDERS_FILE
from rfmseg.datasets.study import path as study_path
from rfmseg.digest import file_sha256
from rfmseg.errors import DatasetError
from servers import free_port
from workbooks import write_workbook, zip_workbook


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder the HTTP server serves."""
    return tmp_path_factory.mktemp("served")


@pytest.fixture(scope="module")
def server(served: Path) -> Iterator[str]:
    """A real HTTP server on a free loopback port, serving ``served``; its base URL."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(QuietHandler, directory=str(served)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def reference(online_retail: Path) -> pa.Table:
    return pq.read_table(online_retail)


@pytest.fixture(scope="module")
def official_like(reference: pa.Table, served: Path) -> tuple[Path, Path]:
    """The reference table as the UCI workbook and as the zip UCI ships (in the served folder)."""
    workbook = write_workbook(reference, served / "Online Retail.xlsx")
    return workbook, zip_workbook(workbook, served / "online+retail.zip")


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("RFMSEG_DATA_DIR", str(root))
    return root


def one_error_line(err: str) -> str:
    """The error of a failed command: exactly one ``error:`` line, the last one (progress lines come first)."""
    lines = err.strip().splitlines()
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], err
    return errors[0]


def nothing_cached(root: Path) -> bool:
    return not root.exists() or not any(root.iterdir())


def tiny_workbook(path: Path, rows: list[list[object]], header: tuple[str, ...] = retail.COLUMNS) -> Path:
    wb = openpyxl.Workbook()
    ws = wb.active
    assert ws is not None
    ws.append(list(header))
    for r in rows:
        ws.append(r)
    wb.save(path)
    return path


# ------------------------------------------------------------------------------------------------ where
def test_the_cache_folder_is_the_env_var_else_the_user_cache() -> None:
    assert data_dir({"RFMSEG_DATA_DIR": "/data/rfm"}) == Path("/data/rfm")
    assert data_dir({"XDG_CACHE_HOME": "/c"}) == Path("/c/rfmseg")
    assert data_dir({}) == Path.home() / ".cache" / "rfmseg"


def test_the_cache_is_filled_from_the_shared_folder_once(cli, cache: Path) -> None:
    folders = shared_folders(retail.DATASET)
    if not folders:
        pytest.skip("no shared/data/online_retail/ beside the checkout or the working folder")
    r = cli("datasets", "fetch", "online-retail")
    assert r.code == 0, r.err
    target = cache / "online-retail" / "online_retail.parquet"
    assert f"Cached UCI Online Retail: 541,909 rows in {target} (from {folders[0]}" in r.out
    assert f"run --preset online-retail {target}" in r.out
    shared_file = folders[0] / "online_retail.parquet"
    assert target.read_bytes() == shared_file.read_bytes()  # the file its README describes, as it is
    meta = json.loads((cache / "online-retail" / "source.json").read_text())
    assert (meta["how"], meta["rows"], meta["origin_sha256"]) == ("shared", 541_909, retail.SHARED_PARQUET_SHA256)
    assert table_sha256(pq.read_table(target)) == retail.TABLE_SHA256
    mtime = target.stat().st_mtime_ns

    again = cli("datasets", "fetch", "online-retail")
    assert again.code == 0 and again.out.startswith("Already cached: UCI Online Retail")
    assert target.stat().st_mtime_ns == mtime  # not filled twice
    listed = cli("datasets", "list", "--json").json()
    assert [(d["name"], d["cached"]["path"], d["cached"]["rows"]) for d in listed] == [  # type: ignore[union-attr]
        ("online-retail", str(target), 541_909)
    ]
    assert cli("datasets", "path", "online-retail").out.strip() == str(target)
    forced = cli("datasets", "fetch", "online-retail", "--force")
    assert forced.code == 0 and forced.out.startswith("Cached")
    assert sorted(p.name for p in cache.iterdir()) == ["online-retail"]  # no temporary folder left


def test_an_empty_cache_lists_how_to_fill_it(cli, cache: Path) -> None:
    r = cli("datasets", "list")
    assert r.code == 0
    assert f"Data sets in {cache}" in r.out
    assert "online-retail  UCI Online Retail: not cached; `rfmseg datasets fetch online-retail`" in r.out
    assert cli("datasets", "list", "--json").json() == [
        {"name": "online-retail", "title": "UCI Online Retail", "url": retail.URL, "cached": None}
    ]


# ------------------------------------------------------------------------------------------------ download
@pytest.mark.slow
def test_a_download_is_checked_converted_and_cached(
    cli, cache: Path, server: str, official_like: tuple[Path, Path], reference: pa.Table
) -> None:
    _, archive = official_like
    url = f"{server}/online+retail.zip"
    r = cli("datasets", "fetch", "online-retail", "--url", url, "--sha256", file_sha256(archive))
    assert r.code == 0, r.err
    assert r.err.splitlines()[:2] == [f"downloading {url}", f"checked: SHA-256 {file_sha256(archive)}"]
    found = cached("online-retail")
    assert found is not None and found.how == "download" and found.origin == url
    table = pq.read_table(found.path)
    assert table.num_rows == 541_909
    assert table.equals(reference)  # the workbook's conversion is the reference table, cell for cell
    assert table_sha256(table) == retail.TABLE_SHA256
    assert f"Cached UCI Online Retail: 541,909 rows in {found.path} (from {url}, checked by given checksum)" in r.out


@pytest.mark.slow
def test_the_workbook_from_a_file_offline_is_the_reference_table(
    cli, cache: Path, official_like: tuple[Path, Path], reference: pa.Table
) -> None:
    workbook, _ = official_like
    r = cli("datasets", "fetch", "online-retail", "--from", workbook)
    assert r.code == 0, r.err
    found = cached("online-retail")
    assert found is not None and (found.how, found.verified) == ("file", "table")
    assert pq.read_table(found.path).equals(reference)


def test_a_bad_checksum_caches_nothing(cli, cache: Path, served: Path, server: str, tmp_path: Path) -> None:
    wrong = zip_workbook(tiny_workbook(tmp_path / "w.xlsx", []), served / "not-the-file.zip")
    url = f"{server}/{wrong.name}"
    r = cli("datasets", "fetch", "online-retail", "--url", url)  # checked against the official checksum
    assert r.code == 2
    line = one_error_line(r.err)
    assert f"the download from {url} has SHA-256 {file_sha256(wrong)}, not the {retail.ZIP_SHA256}" in line
    assert "nothing was cached" in line and "--from FILE" in line
    assert nothing_cached(cache)
    given = cli("datasets", "fetch", "online-retail", "--url", url, "--sha256", hashlib.sha256(b"x").hexdigest())
    assert given.code == 2 and "has SHA-256" in one_error_line(given.err)
    assert nothing_cached(cache)


def test_an_unreachable_address_is_one_line(cli, cache: Path, server: str) -> None:
    dead = f"http://127.0.0.1:{free_port()}/online+retail.zip"
    r = cli("datasets", "fetch", "online-retail", "--url", dead)
    assert r.code == 2
    line = one_error_line(r.err)
    assert line.startswith(f"error: cannot download online-retail from {dead} (")
    assert "refused" in line and line.endswith(f"download {retail.URL} elsewhere and pass --from FILE")
    missing = cli("datasets", "fetch", "online-retail", "--url", f"{server}/nothing-here.zip")
    assert missing.code == 2 and "(HTTP 404 File not found)" in one_error_line(missing.err)
    assert nothing_cached(cache)


def test_the_python_api_raises_the_same_error(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}/x.zip"
    with pytest.raises(DatasetError, match=r"cannot download online-retail .* and pass source FILE$"):
        fetch("online-retail", root=tmp_path / "c", shared=[], url=dead)
    assert nothing_cached(tmp_path / "c")


def test_a_checksum_needs_an_address(cli, cache: Path) -> None:
    r = cli("datasets", "fetch", "online-retail", "--sha256", "ab" * 32)
    assert r.code == 2 and one_error_line(r.err) == "error: a checksum applies to a download: give --url with --sha256"


def test_an_unknown_data_set_names_the_known_ones(cli, cache: Path) -> None:
    r = cli("datasets", "fetch", "retail")
    assert r.code == 2 and one_error_line(r.err) == "error: unknown data set 'retail'; choose one of online-retail"


# ------------------------------------------------------------------------------------------------ --from a wrong file
def _not_a_zip(tmp: Path) -> Path:
    (p := tmp / "online+retail.zip").write_text("<html>a login page</html>")
    return p


def _zip_without_workbook(tmp: Path) -> Path:
    with zipfile.ZipFile(p := tmp / "other.zip", "w") as z:
        z.writestr("readme.txt", "hello")
    return p


def _other_columns(tmp: Path) -> Path:
    return tiny_workbook(tmp / "orders.xlsx", [["C001", 1, 12.5]], ("customer", "order", "amount"))


def _same_layout_other_rows(tmp: Path) -> Path:
    from datetime import datetime

    row = [536365, "85123A", "WHITE HANGING HEART T-LIGHT HOLDER", 6, datetime(2010, 12, 1, 8, 26), 2.55, 17850, "UK"]
    return tiny_workbook(tmp / "Online Retail.xlsx", [row, row])


def _not_a_workbook(tmp: Path) -> Path:
    (p := tmp / "Online Retail.xlsx").write_bytes(b"\x00\x01 not a workbook")
    return p


WRONG_FILES = {
    "csv": (lambda tmp: study_path(ORDERS_FILE), "a .csv cannot hold UCI Online Retail; give the .zip downloaded"),
    "missing": (lambda tmp: tmp / "nowhere.zip", "nowhere.zip: no such file; give the .zip downloaded from"),
    "not a zip": (_not_a_zip, "online+retail.zip: not a zip file; give the .zip downloaded from"),
    "zip of something else": (_zip_without_workbook, "other.zip: the zip holds readme.txt, not Online Retail.xlsx"),
    "other columns": (_other_columns, "the columns are customer, order, amount, not those of UCI Online Retail"),
    "other rows": (_same_layout_other_rows, "the table in it (2 rows, columns InvoiceNo, StockCode, "),
    "not a workbook": (_not_a_workbook, "Online Retail.xlsx: cannot be read as a workbook"),
}


@pytest.mark.parametrize("case", sorted(WRONG_FILES))
def test_from_a_wrong_file_is_one_line_and_caches_nothing(cli, cache: Path, tmp_path: Path, case: str) -> None:
    make, expected = WRONG_FILES[case]
    r = cli("datasets", "fetch", "online-retail", "--from", make(tmp_path))
    assert r.code == 2
    assert expected in one_error_line(r.err)
    assert nothing_cached(cache)

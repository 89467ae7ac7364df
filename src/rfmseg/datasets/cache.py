"""The data set cache: public data sets as checked Parquet files in one folder, filled once.

Where: ``$RFMSEG_DATA_DIR``, else ``$XDG_CACHE_HOME/rfmseg``, else ``~/.cache/rfmseg``; one folder per data set
(``online-retail/``) holding the Parquet file and ``source.json`` (where it came from, the checksums, when).

How a data set gets there (:func:`fetch`), the first that applies:

1. ``source``: a file already downloaded (the official .zip, the workbook inside it, or a Parquet of it);
2. the ``shared/data/<folder>/`` beside the checkout (or beside the working folder), when it exists and no
   ``url`` is given;
3. a download from ``url``, by default the official one.

A download must have the SHA-256 the data set records (``sha256`` overrides it for a mirror); whatever the
origin, the table converted from it must be the reference table (:func:`rfmseg.datasets.base.table_sha256`),
else nothing is cached. The folder is written under a temporary name and renamed when complete: a failed
fetch leaves nothing behind, and two processes filling the cache at once both end with the same files.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rfmseg.datasets import online_retail
from rfmseg.datasets.base import Dataset, table_sha256
from rfmseg.digest import file_sha256
from rfmseg.errors import DatasetError, ParameterError

if TYPE_CHECKING:
    import pyarrow as pa

DATA_ENV = "RFMSEG_DATA_DIR"
SOURCE_FILE = "source.json"
DATASETS: dict[str, Dataset] = {online_retail.NAME: online_retail.DATASET}
DOWNLOAD_TIMEOUT_S = 60.0
Say = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


def data_dir(env: Mapping[str, str] | None = None) -> Path:
    """The cache folder: ``$RFMSEG_DATA_DIR``, else ``$XDG_CACHE_HOME/rfmseg``, else ``~/.cache/rfmseg``."""
    env = os.environ if env is None else env
    if env.get(DATA_ENV):
        return Path(env[DATA_ENV]).expanduser()
    return Path(env.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "rfmseg"


def get_dataset(name: str) -> Dataset:
    try:
        return DATASETS[name]
    except KeyError:
        raise ParameterError(f"unknown data set '{name}'; choose one of {', '.join(sorted(DATASETS))}") from None


@dataclass(frozen=True)
class Cached:
    """A data set in the cache."""

    dataset: Dataset
    path: Path
    """the Parquet file"""
    origin: str
    """where it was filled from: a URL, a file, or the shared folder"""
    how: str
    """``download``, ``file`` or ``shared``"""
    origin_sha256: str
    verified: str
    """what the origin was checked by: ``official download``, ``official workbook`` or ``table``"""
    rows: int
    table_sha256: str
    fetched: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.dataset.name,
            "title": self.dataset.title,
            "path": str(self.path),
            "origin": self.origin,
            "how": self.how,
            "origin_sha256": self.origin_sha256,
            "verified": self.verified,
            "rows": self.rows,
            "table_sha256": self.table_sha256,
            "bytes": self.path.stat().st_size,
            "fetched": self.fetched,
            "license": self.dataset.license,
            "citation": self.dataset.citation,
        }


def cached(name: str, root: Path | None = None) -> Cached | None:
    """The data set ``name`` as the cache holds it, or None when it is not there (or not complete)."""
    ds = get_dataset(name)
    folder = (root or data_dir()) / ds.name
    path, meta = folder / ds.file_name, folder / SOURCE_FILE
    if not (path.is_file() and meta.is_file()):
        return None
    try:
        m = json.loads(meta.read_text(encoding="utf-8"))
        return Cached(
            ds,
            path,
            m["origin"],
            m["how"],
            m["origin_sha256"],
            m["verified"],
            m["rows"],
            m["table_sha256"],
            m["fetched"],
        )
    except (ValueError, KeyError, TypeError):
        return None  # a folder this version cannot read is treated as empty: fetch --force writes it again


def shared_folders(ds: Dataset) -> list[Path]:
    """Where a ``shared/data/<folder>`` may sit: beside the checkout this package runs from, and beside the
    working folder. Only those that exist."""
    here = Path(__file__).resolve()
    roots = [Path.cwd().resolve()]
    checkout = here.parents[3]  # src/rfmseg/datasets/cache.py -> the checkout, in an editable install
    if (checkout / "pyproject.toml").is_file():
        roots.insert(0, checkout)
    found: list[Path] = []
    for root in roots:
        folder = root.parent / "shared" / "data" / ds.shared_folder
        if folder.is_dir() and folder not in found:
            found.append(folder)
    return found


def fetch(
    name: str,
    *,
    source: str | Path | None = None,
    url: str | None = None,
    sha256: str | None = None,
    force: bool = False,
    root: Path | None = None,
    shared: Sequence[Path] | None = None,
    say: Say = _quiet,
) -> Cached:
    """Put the data set ``name`` in the cache (see the module's docstring for the order of origins) and return
    it. Already cached: returned as it is unless ``force``. ``shared``: the shared folders to look in (default
    :func:`shared_folders`). ``say`` receives a line per step."""
    ds = get_dataset(name)
    root = root or data_dir()
    if sha256 is not None and url is None:
        raise ParameterError("a checksum applies to a download: give {url} with {sha256}", param=("url", "sha256"))
    found = cached(name, root)
    if found is not None and not force:
        return found
    try:
        root.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{ds.name}.", dir=root))
    except OSError as exc:
        raise DatasetError(
            f"cannot write the data set cache {root} ({exc.strerror}); set {DATA_ENV} to a folder you can write"
        ) from None
    try:
        if source is not None:
            filled = _from_file(ds, Path(source), work, say)
        elif url is None and (folders := shared_folders(ds) if shared is None else list(shared)):
            filled = _from_shared(ds, folders[0], work, say)
        else:
            filled = _from_download(ds, url or ds.url, sha256 or ds.download_sha256, work, say)
        return _install(ds, work, root, filled, force)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def ensure(name: str, root: Path | None = None, shared: Sequence[Path] | None = None, say: Say = _quiet) -> Cached:
    """The cached data set, fetched first if it is not there (from the shared folder, else downloaded)."""
    return cached(name, root) or fetch(name, root=root, shared=shared, say=say)


def listing(root: Path | None = None) -> list[tuple[Dataset, Cached | None]]:
    """Every data set rfmseg can fetch, with its cache entry (None: not cached)."""
    return [(ds, cached(name, root)) for name, ds in sorted(DATASETS.items())]


# ------------------------------------------------------------------------------------------------ origins
@dataclass(frozen=True)
class _Filled:
    origin: str
    how: str
    origin_sha256: str
    verified: str
    rows: int


def _from_download(ds: Dataset, url: str, expected: str, work: Path, say: Say) -> _Filled:
    target = work / "download"
    say(f"downloading {url}")
    request = urllib.request.Request(url, headers={"User-Agent": "rfmseg"})
    try:
        with urllib.request.urlopen(request, timeout=DOWNLOAD_TIMEOUT_S) as response, target.open("wb") as f:
            shutil.copyfileobj(response, f, 1 << 20)
    except urllib.error.HTTPError as exc:
        raise _unreachable(ds, url, f"HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise _unreachable(ds, url, str(exc.reason)) from None
    except (OSError, ValueError) as exc:  # a timeout, a connection reset, a URL urllib cannot open
        raise _unreachable(ds, url, str(exc) or type(exc).__name__) from None
    got = file_sha256(target)
    if got != expected.lower():
        raise DatasetError(
            f"the download from {url} has SHA-256 {got}, not the {expected} of the {ds.title} file: it is damaged or "
            "not that file, and nothing was cached; try again, or pass {source} FILE with a copy of the file",
            param="source",
        )
    say(f"checked: SHA-256 {got}")
    rows = _write(ds, _convert_archive(ds, target, url, work, say), work, url)
    return _Filled(url, "download", got, "official download" if got == ds.download_sha256 else "given checksum", rows)


def _unreachable(ds: Dataset, url: str, reason: str) -> DatasetError:
    return DatasetError(
        f"cannot download {ds.name} from {url} ({reason}); check the network, or download {ds.url} elsewhere and "
        "pass {source} FILE",
        param="source",
    )


def _from_file(ds: Dataset, path: Path, work: Path, say: Say) -> _Filled:
    if not path.is_file():
        raise DatasetError(f"{path}: no such file; give the .zip downloaded from {ds.url} or the .xlsx inside it")
    sha = file_sha256(path)
    suffix = path.suffix.lower()
    if suffix == ".zip":
        table = _convert_archive(ds, path, str(path), work, say)
        verified = "official download" if sha == ds.download_sha256 else "table"
    elif suffix == ".xlsx":
        say(f"converting {path}")
        table = ds.convert(path)
        verified = "official workbook" if sha == ds.member_sha256 else "table"
    elif suffix == ".parquet":
        table = _read_parquet(path)
        verified = "table"
    else:
        raise DatasetError(
            f"{path}: a {suffix or 'file without extension'} cannot hold {ds.title}; give the .zip downloaded from "
            f"{ds.url}, the {ds.member} inside it, or a Parquet of it"
        )
    rows = _write(ds, table, work, str(path))
    return _Filled(str(path.resolve()), "file", sha, verified, rows)


def _from_shared(ds: Dataset, folder: Path, work: Path, say: Say) -> _Filled:
    parquet = folder / ds.file_name
    if parquet.is_file():
        sha = file_sha256(parquet)
        if sha == ds.shared_parquet_sha256:  # the file its README describes: copied as it is
            say(f"copying {parquet}")
            shutil.copyfile(parquet, work / ds.file_name)
            return _Filled(str(folder), "shared", sha, "shared file", ds.rows)
        say(f"checking {parquet}")
        rows = _write(ds, _read_parquet(parquet), work, str(parquet))
        return _Filled(str(folder), "shared", sha, "table", rows)
    for candidate in (folder / ds.member, *sorted(folder.glob("*.zip"))):
        if candidate.is_file():
            filled = _from_file(ds, candidate, work, say)
            return _Filled(str(folder), "shared", filled.origin_sha256, filled.verified, filled.rows)
    raise DatasetError(
        f"{folder} holds no {ds.file_name}, {ds.member} or .zip of {ds.title}; remove the folder or put the file there"
    )


# ------------------------------------------------------------------------------------------------ conversion
def _convert_archive(ds: Dataset, archive: Path, origin: str, work: Path, say: Say) -> pa.Table:
    try:
        with zipfile.ZipFile(archive) as z:
            names = [n for n in z.namelist() if n.lower().endswith(".xlsx")]
            member = ds.member if ds.member in names else (names[0] if len(names) == 1 else None)
            if member is None:
                raise DatasetError(
                    f"{origin}: the zip holds {', '.join(z.namelist()) or 'nothing'}, not {ds.member}; "
                    f"give the .zip downloaded from {ds.url}"
                )
            extracted = Path(z.extract(member, work / "unzipped"))
    except zipfile.BadZipFile:
        raise DatasetError(f"{origin}: not a zip file; give the .zip downloaded from {ds.url}") from None
    say(f"converting {member}")
    return ds.convert(extracted)


def _read_parquet(path: Path) -> pa.Table:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise DatasetError(f"{path}: cannot be read as Parquet ({exc})") from None


def _write(ds: Dataset, table: pa.Table, work: Path, origin: str) -> int:
    """Check that ``table`` is the reference table, then write it as the cache's Parquet file."""
    import pyarrow.parquet as pq

    got = table_sha256(table)
    if got != ds.table_sha256:
        shape = f"{table.num_rows:,} rows, columns {', '.join(table.column_names)}"
        raise DatasetError(
            f"{origin}: the table in it ({shape}) is not the {ds.title} table ({ds.rows:,} rows; content SHA-256 "
            f"{got[:12]}…, expected {ds.table_sha256[:12]}…); nothing was cached; use the file from {ds.url}"
        )
    pq.write_table(table, work / ds.file_name, compression="zstd", row_group_size=max(table.num_rows, 1))
    return table.num_rows


def _install(ds: Dataset, work: Path, root: Path, filled: _Filled, force: bool) -> Cached:
    """Move the checked file into place: a new folder renamed to the data set's name in one step."""
    staged = Path(tempfile.mkdtemp(prefix=f".{ds.name}.", dir=root))
    staged.chmod(0o755)  # mkdtemp makes it private; the cache is readable like any other
    shutil.move(str(work / ds.file_name), staged / ds.file_name)
    meta = {
        "name": ds.name,
        "origin": filled.origin,
        "how": filled.how,
        "origin_sha256": filled.origin_sha256,
        "verified": filled.verified,
        "rows": filled.rows,
        "table_sha256": ds.table_sha256,
        "parquet_sha256": file_sha256(staged / ds.file_name),
        "fetched": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    (staged / SOURCE_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    final = root / ds.name
    old: Path | None = None
    try:
        if final.exists() and (force or cached(ds.name, root) is None):  # replaced, or not complete
            old = Path(tempfile.mkdtemp(prefix=f".{ds.name}.old.", dir=root))
            os.replace(final, old / ds.name)
        try:
            os.replace(staged, final)
        except OSError:  # another process filled it meanwhile: theirs is the same checked table
            if cached(ds.name, root) is None:
                raise
    finally:
        shutil.rmtree(staged, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    found = cached(ds.name, root)
    assert found is not None
    return found

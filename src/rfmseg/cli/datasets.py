"""datasets fetch, list, path: public data sets in rfmseg's cache, one command away."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rfmseg.cli.common import app, err, out, print_json, rfmseg_command
from rfmseg.cli.options import Json
from rfmseg.datasets import DATA_ENV, DATASETS, Cached, cached, data_dir, ensure, fetch, listing

datasets_app = typer.Typer(
    help=f"Public data sets, checked and cached as Parquet (in ${DATA_ENV}, else ~/.cache/rfmseg).",
    no_args_is_help=True,
)
app.add_typer(datasets_app, name="datasets")

Name = Annotated[str, typer.Argument(help=f"The data set: {', '.join(sorted(DATASETS))}.", show_default=False)]


def _say(line: str) -> None:
    err.print(line, markup=False)


def _where(c: Cached) -> str:
    return f"{c.dataset.title}: {c.rows:,} rows in {c.path} (from {c.origin}, checked by {c.verified})"


@datasets_app.command("fetch")
def fetch_cmd(
    name: Name,
    source: Annotated[
        Path | None,
        typer.Option(
            "--from",
            help="A file already downloaded, offline: the official .zip, the .xlsx inside it, or a Parquet of it.",
            show_default=False,
        ),
    ] = None,
    url: Annotated[
        str | None,
        typer.Option("--url", help="Download from this address instead (a mirror of the official file)."),
    ] = None,
    sha256: Annotated[
        str | None, typer.Option("--sha256", help="The SHA-256 the file at --url must have (default: the official).")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Fetch again even when it is cached.")] = False,
    as_json: Json = False,
) -> None:
    """Download a data set (checked by SHA-256), convert it to Parquet and keep it in the cache.

    Beside a checkout with shared/data/<name>/ the cache is filled from there, without a download."""
    before = None if force else cached(name)
    c = fetch(name, source=source, url=url, sha256=sha256, force=force, say=_say)
    if as_json:
        print_json({**c.to_dict(), "already_cached": before is not None})
        return
    if before is not None:
        out.print(f"Already cached: {_where(c)}; --force fetches it again.", markup=False)
    else:
        out.print(f"Cached {_where(c)}.", markup=False)
    preset = " --preset online-retail" if name == "online-retail" else ""
    out.print(f"Segment it: {rfmseg_command()} run{preset} {c.path}", markup=False)


@datasets_app.command("list")
def list_cmd(as_json: Json = False) -> None:
    """The data sets rfmseg can fetch, and which are in the cache."""
    rows = listing()
    if as_json:
        print_json(
            [
                {"name": ds.name, "title": ds.title, "url": ds.url, "cached": c.to_dict() if c else None}
                for ds, c in rows
            ]
        )
        return
    where = data_dir()
    out.print(f"Data sets in {where} (${DATA_ENV}, else ~/.cache/rfmseg):", markup=False)
    for ds, c in rows:
        if c is None:
            fetch_it = f"{rfmseg_command()} datasets fetch {ds.name}"
            out.print(f"  {ds.name}  {ds.title}: not cached; `{fetch_it}`", markup=False)
            continue
        size = c.path.stat().st_size / 1e6
        fetched = c.fetched[:16].replace("T", " ")
        out.print(
            f"  {ds.name}  {ds.title}: {c.rows:,} rows, {size:.1f} MB, fetched {fetched} from {c.origin}\n    {c.path}",
            markup=False,
        )


@datasets_app.command("path")
def path_cmd(name: Name) -> None:
    """Print the cached file's path (fetched first when it is not cached), for scripts:
    rfmseg run --preset online-retail "$(rfmseg datasets path online-retail)"."""
    out.print(str(ensure(name, say=_say).path), markup=False)

"""`rfmseg export`: a run's segment lists as CSV, Parquet or JSON Lines (:mod:`rfmseg.jobs.export`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rfmseg.cli.common import app, as_of_words, err, out, print_json
from rfmseg.cli.options import ConfigOpt, Json, RunsDir
from rfmseg.config import resolve
from rfmseg.errors import ParameterError
from rfmseg.io.outputs import is_stdout
from rfmseg.runs import DEFAULT_RUNS_DIR


@app.command("export")
def export_cmd(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(help="Run id, unique prefix, or 'latest'.")] = "latest",
    out_file: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", help="One file of every customer exported (format from its suffix); - for standard output."
        ),
    ] = None,
    out_dir: Annotated[
        Path | None, typer.Option("--out-dir", help="A folder for one file per segment (<segment-slug>.<format>).")
    ] = None,
    file_format: Annotated[
        str | None,
        typer.Option("--format", help="csv, parquet or jsonl (default: the suffix of --out; csv without one)."),
    ] = None,
    segment: Annotated[
        list[str] | None, typer.Option("--segment", help="Only this segment (repeatable; any case, or a slug).")
    ] = None,
    changed_since: Annotated[
        str | None,
        typer.Option(
            "--changed-since",
            help="Only customers whose segment differs from this run's: new, moved, and left (segment empty).",
        ),
    ] = None,
    runs_dir: RunsDir = DEFAULT_RUNS_DIR,
    as_json: Json = False,
    config: ConfigOpt = None,
) -> None:
    """Write a run's segment lists for a CRM: one row per customer with segment, previous segment, since when,
    RFM values and the segment's action."""
    from rfmseg.jobs.export import export

    piped = out_file is not None and out_dir is None and is_stdout(out_file)
    if piped and as_json:
        raise ParameterError(
            f"--out {out_file} and --json both write to standard output; write the export to a file, or drop --json"
        )
    r = export(
        resolve(ctx).runs_path,
        run_id,
        out=out_file,
        out_dir=out_dir,
        file_format=file_format,
        segments=segment,
        changed_since=changed_since,
    )
    if as_json:
        print_json(r.to_dict())
        return
    scope = f"segments {', '.join(r.selected)}" if r.selected else "all segments"
    head = f"Exported run {r.run_id} ({as_of_words(r.as_of)}), {scope}: {r.rows:,} customers"
    changed = r.changed_since
    if changed:
        head += (
            f" whose segment differs from run {changed['run_id']} ({as_of_words(changed['as_of'])}): "
            f"{changed['new']:,} new, "
            f"{changed['moved']:,} moved, {changed['left']:,} left"
        )
        if changed["left"]:
            head += " (rows with the segment empty and from_segment where they were)"
    said = err if piped else out  # the rows went to standard output: what was done goes to stderr
    said.print(head, markup=False)
    for f in r.files:
        what = f" ({f.segment})" if f.segment else ""
        said.print(f"  {f.path}{what}: {f.rows:,} rows, {r.format}", markup=False)
    counts = ", ".join(f"{name} {n:,}" for name, n in r.segments.items())
    said.print(f"By segment now: {counts or 'none'}", markup=False)

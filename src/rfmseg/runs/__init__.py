"""The run registry (:mod:`rfmseg.runs.registry`), the typed run files (:mod:`rfmseg.runs.artifacts`), the
manifest builder (:mod:`rfmseg.runs.manifest`) and the history over the runs (:mod:`rfmseg.runs.history`)."""

from rfmseg.runs.registry import DEFAULT_RUNS_DIR, FILES, Run, RunWriter, get_run, list_runs, new_run_id

__all__ = ["DEFAULT_RUNS_DIR", "FILES", "Run", "RunWriter", "get_run", "list_runs", "new_run_id"]

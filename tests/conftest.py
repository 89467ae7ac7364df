"""Shared fixtures: the study files, the UCI Online Retail file (from the data set cache), a fresh runs folder,
and the CLI run in-process."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from rfmseg.cli.common import run_app
from rfmseg.datasets import study

REPO = Path(__file__).resolve().parents[1]


def online_retail_or_skip() -> Path:
    """The UCI Online Retail Parquet from the data set cache, filled first when it is empty (from
    ../shared/data/online_retail/ beside the checkout, else downloaded from UCI); when neither is possible
    the test is skipped with the reason."""
    from rfmseg.datasets import data_dir, online_retail_path
    from rfmseg.errors import DatasetError

    try:
        return online_retail_path()
    except DatasetError as exc:
        pytest.skip(
            f"UCI Online Retail is not in the data set cache ({data_dir()}) and cannot be fetched: {exc}; "
            "fill it with `rfmseg datasets fetch online-retail --from FILE`"
        )


@pytest.fixture(scope="session")
def online_retail() -> Path:
    """The UCI Online Retail Parquet (see :func:`online_retail_or_skip`)."""
    return online_retail_or_skip()


@dataclass
class CliResult:
    code: int
    out: str
    err: str

    def json(self) -> object:
        return json.loads(self.out)


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]):
    """Run `rfmseg ARGS` in-process; returns exit code, stdout and stderr."""

    def invoke(*args: str) -> CliResult:
        capsys.readouterr()
        code = run_app([str(a) for a in args])
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return invoke


@pytest.fixture
def runs_dir(tmp_path: Path) -> Path:
    return tmp_path / "runs"


@pytest.fixture(scope="session")
def study_orders() -> Path:
    return study.path(study.ORDERS_FILE)


@pytest.fixture(scope="session")
def study_rfm_file() -> Path:
    return study.path(study.RFM_FILE)


@pytest.fixture(scope="session")
def sim_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The simulated 12 weeks, built once for the suite: retrain at weeks 0 and 6, refresh the other weeks,
    publish the last, campaign touches imported; the truth table is beside the runs (truth.parquet)."""
    import pyarrow.parquet as pq

    from rfmseg.jobs import refresh, retrain
    from rfmseg.simulate import SimConfig, simulate
    from rfmseg.touches import import_touches, simulate_touches

    base = tmp_path_factory.mktemp("sim")
    runs = base / "runs"
    s = simulate(SimConfig(customers=800, weeks=12, seed=7))
    for week, d in enumerate(s.config.as_of_dates()):
        if week in (0, 6):
            retrain(s.snapshot(d), as_of=d, runs_dir=runs, previous="latest" if week else None, publish=False)
        else:
            refresh(s.snapshot(d), as_of=d, runs_dir=runs, publish=week == 12)
    touches = base / "touches.parquet"
    pq.write_table(simulate_touches(s.truth, s.config.start, seed=7), touches)
    import_touches(touches, runs)
    pq.write_table(s.truth, base / "truth.parquet")
    return runs

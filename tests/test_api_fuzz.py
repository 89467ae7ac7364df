"""Schemathesis against the live app (in-process, over ASGI) on the published study runs: every operation of
/openapi.json gets its schema's examples, the coverage phase's boundary and invalid values, and seeded
Hypothesis fuzzing (positive and negative), and every response must be no server error, a declared status
with a declared content type, and a body that validates against the schema declared for that status.

Bounded and reproducible: at most ``MAX_EXAMPLES`` fuzzed cases per operation, derandomized, no example
database; about a minute. The number of requests sent is printed at the end of the run.

On the code before issue 15 item 4 this run sent 1,487 requests and failed on 2 of the 20 operations: GET
/campaigns/size answered 500 (ZeroDivisionError for uplift=5e-324; 7 cases) and GET /runs/{id}/report declared
its JSON errors as text/html. Since: 1,614 requests, no failure. (The larger findings of the issue, such as a
page beyond int64, are each pinned by tests/test_api_hardening.py.)
"""

from __future__ import annotations

import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from rfmseg.service import Settings, create_app
from rfmseg.service.deps import AppState
from test_api import build_study_runs

pytestmark = pytest.mark.slow

MAX_EXAMPLES = 50
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
REQUESTS: Counter[str] = Counter()
"""requests sent, per operation"""


APP = create_app(Settings(runs_dir=Path(tempfile.gettempdir()) / "rfmseg-fuzz-unset"))
"""The app whose schema is loaded at import (it does not depend on the runs); :func:`study` points it at the
published study runs before the first request."""
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


@pytest.fixture(scope="module", autouse=True)
def study(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[None]:
    runs = build_study_runs(tmp_path_factory.mktemp("fuzz"))
    APP.state.rfmseg.close()
    APP.state.rfmseg = AppState(Settings(runs_dir=runs.runs_dir, store_url=runs.store_url))
    yield
    APP.state.rfmseg.close()
    line = f"schemathesis: {sum(REQUESTS.values()):,} requests over {len(REQUESTS)} operations"
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"\n{line}")
    print(line)
    for label, n in sorted(REQUESTS.items()):
        print(f"  {label}: {n}")


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    print_blob=True,
)
def test_no_server_error_and_every_response_as_declared(case: schemathesis.Case) -> None:
    REQUESTS[case.operation.label] += 1
    case.call_and_validate(checks=CHECKS)

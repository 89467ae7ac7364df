"""A store that stops answering holds up only the requests that need it: the store is read off the event
loop, so ``/segments`` (which reads the run registry, not the store) and ``/health`` (which does not queue
behind a request still connecting) answer while a request waits on a silent store.

Real servers: a TCP server of the test's own that accepts connections and never answers (the store's
connect succeeds, its first read waits), and a redis-server stopped with SIGSTOP. Asserted by order of
completion, not by time: the waiting request is released only after the others have answered.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess

import httpx
import pytest

from rfmseg.jobs.publish import publish_run
from rfmseg.service import Settings, create_app
from servers import SilentServer
from test_api import StudyRuns, build_study_runs
from test_store_timeout import own_redis  # noqa: F401  (a fixture)

HUNG_TIMEOUT_S = 30.0
"""the read timeout of the apps below: long, so that only the test's release ends the hung request (before
the fix, the event loop stayed blocked for all of it and /segments answered after the hung request)"""


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> StudyRuns:
    return build_study_runs(tmp_path_factory.mktemp("hung"))


async def _while_hung(
    app: object, started: asyncio.Future[object] | None, release: object, others: tuple[str, ...]
) -> list[tuple[str, int]]:
    """GET /customers/C087 (it waits on the store); once it waits, GET each of ``others`` in turn; then release
    the store. The (path, status) pairs in the order the requests completed."""
    done: list[tuple[str, int]] = []
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://api", timeout=120) as client:

        async def get(path: str) -> httpx.Response:
            r = await client.get(path)
            done.append((path, r.status_code))
            return r

        hung = asyncio.create_task(get("/customers/C087"))
        if started is not None:
            await started
        for path in others:
            await get(path)
        still_waiting = not hung.done()
        await asyncio.to_thread(release)  # type: ignore[arg-type]
        await hung
        assert still_waiting, f"the store request ended before the others were asked: {done}"
    return done


def test_a_silent_store_delays_neither_segments_nor_health(runs: StudyRuns) -> None:
    silent = SilentServer()
    settings = Settings(
        runs_dir=runs.runs_dir, store_url=f"redis://127.0.0.1:{silent.port}/0", store_timeout=HUNG_TIMEOUT_S
    )
    app = create_app(settings)

    async def main() -> list[tuple[str, int]]:
        started = asyncio.ensure_future(asyncio.to_thread(silent.accepted.wait, 60))
        return await _while_hung(app, started, silent.release, ("/segments", "/health"))

    try:
        done = asyncio.run(main())
    finally:
        silent.release()
        app.state.rfmseg.close()
    # /health did not wait for the request still connecting: it said the store has not answered yet (503)
    assert done == [("/segments", 200), ("/health", 503), ("/customers/C087", 503)]


@pytest.mark.services
def test_a_stopped_redis_delays_neither_segments_nor_health(
    runs: StudyRuns,
    own_redis: tuple[str, subprocess.Popen[bytes]],  # noqa: F811
) -> None:
    url, proc = own_redis
    publish_run(runs.latest.run_id, runs.runs_dir, url)
    app = create_app(Settings(runs_dir=runs.runs_dir, store_url=url, store_timeout=HUNG_TIMEOUT_S))
    app.state.rfmseg.store()  # opened while the server answers; then it stops
    proc.send_signal(signal.SIGSTOP)
    try:
        done = asyncio.run(_while_hung(app, None, lambda: proc.send_signal(signal.SIGCONT), ("/segments", "/runs")))
    finally:
        proc.send_signal(signal.SIGCONT)
        app.state.rfmseg.close()
    # (/health is not asked here: it reads the stopped server itself, and answers when it does or times out)
    assert done == [("/segments", 200), ("/runs", 200), ("/customers/C087", 200)]

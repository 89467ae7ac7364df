"""The API under abuse (issue 15 item 4): request bodies over the limit refused before they are read, input
bounded so that no value reaches a 500, one error body for every error status (declared on every operation
and checked here against the published schema), the API key stripped, IPv6 loopback served."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import jsonschema
import pytest
from fastapi.testclient import TestClient

from rfmseg.cli.serve import bind_address, is_loopback
from rfmseg.errors import ParameterError
from rfmseg.service import Settings, create_app
from rfmseg.service.deps import InvalidError, check_id, printable
from servers import free_port
from test_api import StudyRuns, build_study_runs

LIMIT = 4_000
RFM = {"customer_id": "N1", "recency_days": 5, "frequency": 30, "monetary": 8000}
TOO_LARGE = (
    "the request body is {size}, over the limit of 4,000 bytes; send it in smaller batches, or raise the limit "
    "with RFMSEG_MAX_BODY_BYTES"
)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> StudyRuns:
    return build_study_runs(tmp_path_factory.mktemp("hardening"))


@pytest.fixture(scope="module")
def client(runs: StudyRuns) -> Iterator[TestClient]:
    settings = Settings(runs_dir=runs.runs_dir, store_url=runs.store_url, max_body_bytes=LIMIT)
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        yield c


@pytest.fixture(scope="module")
def spec(client: TestClient) -> dict:
    return client.get("/openapi.json").json()


def conforms(spec: dict, method: str, path: str, r: httpx.Response) -> None:
    """``r`` is a declared status of the operation and its body validates against that status's schema."""
    responses = spec["paths"][path][method]["responses"]
    declared = responses.get(str(r.status_code)) or responses[f"{str(r.status_code)[0]}XX"]
    schema = declared["content"]["application/json"]["schema"]
    jsonschema.Draft202012Validator({**schema, "components": spec["components"]}).validate(r.json())


# ----------------------------------------------------------------------------------------------- body limit
def test_a_body_over_the_limit_is_a_413_by_its_length(client: TestClient, spec: dict) -> None:
    rows = [dict(RFM, customer_id=f"N{i}") for i in range(100)]  # ~8 KB of JSON
    r = client.post("/score", json={"rfm": rows})
    size = int(r.request.headers["content-length"])
    assert r.status_code == 413
    assert r.json() == {"detail": TOO_LARGE.format(size=f"{size:,} bytes")}
    conforms(spec, "post", "/score", r)
    assert client.post("/score", json={"rfm": rows[:10]}).status_code == 200  # within the limit


def test_a_chunked_body_is_counted_as_it_arrives(client: TestClient) -> None:
    def chunks(n: int) -> Iterator[bytes]:
        yield b'{"ids": ["C001"'
        for _ in range(n):
            yield b', "C002"' * 50  # 400 bytes
        yield b"]}"

    over = client.post("/customers/lookup", content=chunks(20), headers={"content-type": "application/json"})
    assert over.request.headers["transfer-encoding"] == "chunked"
    assert over.status_code == 413
    assert over.json() == {"detail": TOO_LARGE.format(size="over 4,000 bytes (chunked)")}
    within = client.post("/customers/lookup", content=chunks(2), headers={"content-type": "application/json"})
    assert within.status_code == 200
    assert [c["customer_id"] for c in within.json()["customers"]] == ["C001", "C002"]


def test_rfmseg_serve_answers_413_before_the_body_is_sent(runs: StudyRuns) -> None:
    """A real server, told of a 56 MB body that is never sent: it answers 413 at once (it would wait for the
    body if it read it first)."""
    port = free_port()
    env = {**os.environ, "RFMSEG_MAX_BODY_BYTES": "1_000_000"}
    for var in ("RFMSEG_API_KEY", "RFMSEG_STORE"):
        env.pop(var, None)
    cmd = [sys.executable, "-m", "rfmseg", "serve", "--port", str(port), "--runs-dir", str(runs.runs_dir)]
    proc = subprocess.Popen([*cmd, "--store", runs.store_url, "--no-access-log"], env=env, stderr=subprocess.PIPE)
    try:
        _wait_for(f"http://127.0.0.1:{port}/health", proc)
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(
                b"POST /score HTTP/1.1\r\nHost: api\r\nContent-Type: application/json\r\n"
                b"Content-Length: 56000000\r\n\r\n"
            )
            answer = b""
            while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
                data = sock.recv(65536)
                if not data:
                    break
                answer += data
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 413 "), answer
        assert body.decode() == (
            '{"detail":"the request body is 56,000,000 bytes, over the limit of 1,000,000 bytes; send it in '
            'smaller batches, or raise the limit with RFMSEG_MAX_BODY_BYTES"}'
        )
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_the_body_limit_setting(tmp_path: Path) -> None:
    assert Settings.from_env({}, runs_dir=tmp_path).max_body_bytes == 10_000_000
    assert Settings.from_env({"RFMSEG_MAX_BODY_BYTES": "2_000_000"}, runs_dir=tmp_path).max_body_bytes == 2_000_000
    for bad in ("10MB", "0", "-5"):
        with pytest.raises(ParameterError) as raised:
            Settings.from_env({"RFMSEG_MAX_BODY_BYTES": bad}, runs_dir=tmp_path)
        assert str(raised.value) == (
            f"RFMSEG_MAX_BODY_BYTES={bad!r} is not a whole number of bytes above 0; e.g. RFMSEG_MAX_BODY_BYTES=10000000"
        )


# ----------------------------------------------------------------------------------------------- bounded input
def _score(row: str) -> tuple[str, str, dict[str, str]]:
    return ("post", "/score", {"content": '{"rfm": [' + row + "]}"})


ABUSE = {
    "page beyond int64": ("get", "/segments/at-risk/customers?page=9223372036854775807", {}),
    "page_size huge": ("get", "/segments/at-risk/customers?page_size=99999999999999999999", {}),
    "filter infinite": ("get", "/segments/at-risk/customers?min_monetary=inf", {}),
    "filter NaN": ("get", "/segments/at-risk/customers?max_recency=nan", {}),
    "period huge": ("get", "/warnings?period=99999999999999999999", {}),
    "trend_runs huge": ("get", "/warnings?trend_runs=99999999999999999999", {}),
    "recency_jump huge": ("get", "/warnings?recency_jump=36501", {}),
    "frequency 1e19": _score(
        '{"customer_id": "a", "recency_days": 1, "frequency": 10000000000000000000, "monetary": 1}'
    ),
    "recency Infinity": _score('{"customer_id": "a", "recency_days": Infinity, "frequency": 1, "monetary": 1}'),
    "monetary Infinity": _score('{"customer_id": "a", "recency_days": 1, "frequency": 1, "monetary": Infinity}'),
    "monetary NaN": _score('{"customer_id": "a", "recency_days": 1, "frequency": 1, "monetary": NaN}'),
    "monetary 1e400": _score('{"customer_id": "a", "recency_days": 1, "frequency": 1, "monetary": 1e400}'),
    "score id lone surrogate": _score('{"customer_id": "\\ud800", "recency_days": 1, "frequency": 1, "monetary": 1}'),
    "amount -Infinity": (
        "post",
        "/score",
        {
            "content": '{"transactions": [{"customer_id": "a", "order_id": "1", "order_date": "2024-12-01", '
            '"amount": -Infinity}]}'
        },
    ),
    "lookup lone surrogate": ("post", "/customers/lookup", {"content": '{"ids": ["C001", "\\udc80x"]}'}),
    "campaign size confidence 1-": (
        "get",
        "/campaigns/size?baseline=0.1&uplift=0.03&confidence=0.9999999999999999",
        {},
    ),
}


@pytest.mark.parametrize("case", list(ABUSE))
def test_out_of_range_non_finite_and_invalid_text_are_a_422(client: TestClient, spec: dict, case: str) -> None:
    method, url, kwargs = ABUSE[case]
    headers = {"content-type": "application/json"} if method == "post" else {}
    r = client.request(method.upper(), url, headers=headers, **kwargs)
    assert r.status_code == 422, r.text
    body = r.json()
    assert "\n" not in body["detail"]
    assert body["errors"] and all(set(e) == {"loc", "msg", "type"} for e in body["errors"])
    conforms(spec, method, url.split("?")[0].replace("at-risk", "{name}"), r)


def test_what_the_422s_say(client: TestClient) -> None:
    page = client.get("/segments/at-risk/customers?page=9223372036854775807").json()
    assert page == {
        "detail": "query parameter 'page': Input should be less than or equal to 1000000000 "
        "(got '9223372036854775807')",
        "errors": [
            {
                "loc": ["query", "page"],
                "msg": "Input should be less than or equal to 1000000000",
                "type": "less_than_equal",
            }
        ],
    }
    inf = client.post(
        "/score",
        content='{"rfm": [{"customer_id": "a", "recency_days": 1, "frequency": 1, "monetary": Infinity}]}',
        headers={"content-type": "application/json"},
    )
    assert inf.json()["detail"] == "body field 'rfm.0.monetary': Input should be a finite number"
    assert inf.json()["errors"][0]["type"] == "finite_number"
    surrogate = client.post(
        "/customers/lookup", content='{"ids": ["\\ud800"]}', headers={"content-type": "application/json"}
    )
    assert surrogate.json()["detail"] == (
        "body field 'ids.0': the text holds a lone surrogate (\\ud800-\\udfff), which is not a character; "
        "send valid Unicode"
    )
    long = client.get("/segments/at-risk/customers", params={"sort": "x" * 500}).json()["detail"]
    assert long.endswith("(got '" + "x" * 60 + "'…)")


def test_an_id_with_a_lone_surrogate_is_refused_and_shown_printable() -> None:
    with pytest.raises(InvalidError) as raised:
        check_id("C\ud8001")
    assert raised.value.http_status == 422
    assert str(raised.value).startswith("customer id 'C?1' is not valid")
    assert printable("a\udc80b") == "a?b"


def test_an_uplift_no_campaign_can_detect_is_a_400_not_a_500(client: TestClient, spec: dict) -> None:
    r = client.get("/campaigns/size", params={"baseline": 5e-324, "uplift": 5e-324, "customers": 1})
    assert r.status_code == 400
    assert r.json()["detail"] == (
        "uplift 4.94066e-324 over baseline 4.94066e-324 cannot be detected by any campaign (it needs more than "
        "1e+12 customers at this holdout and confidence); ask for a larger uplift, a holdout nearer 50 % or a "
        "lower confidence"
    )
    conforms(spec, "get", "/campaigns/size", r)


def test_the_last_pages_are_empty_not_an_overflow(client: TestClient) -> None:
    r = client.get("/segments/at-risk/customers", params={"page": 1_000_000_000, "page_size": 1000})
    assert r.status_code == 200
    assert r.json()["customers"] == [] and r.json()["page"] == 1_000_000_000


# ----------------------------------------------------------------------------------------------- one error body
def test_every_error_status_answers_the_declared_body(runs: StudyRuns, client: TestClient, spec: dict) -> None:
    down = create_app(Settings(runs_dir=runs.runs_dir, store_url="redis://127.0.0.1:1/0"))
    keyed = create_app(Settings(runs_dir=runs.runs_dir, store_url=runs.store_url, api_key="k"))
    with TestClient(down) as d, TestClient(keyed) as k:
        seen = {
            400: ("get", "/warnings", client.get("/warnings?recency_jump=-1")),
            401: ("get", "/segments", k.get("/segments")),
            404: ("get", "/customers/{customer_id}", client.get("/customers/C999")),
            413: ("post", "/customers/lookup", client.post("/customers/lookup", json={"ids": ["C1"] * 1001})),
            422: ("get", "/changes", client.get("/changes?limit=0")),
            503: ("get", "/customers/{customer_id}", d.get("/customers/C001")),
        }
    for status, (method, path, r) in seen.items():
        assert r.status_code == status, r.text
        declared = spec["paths"][path][method]["responses"][str(status)]
        assert declared["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorPublic"}
        conforms(spec, method, path, r)
        assert "\n" not in r.json()["detail"]
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            for status in ("400", "401", "404", "413", "422", "500", "503"):
                if (path, status) == ("/health", "503"):
                    continue  # /health's 503 is the health report itself (HealthPublic)
                schema = op["responses"][status]["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/ErrorPublic"}, (method, path, status)
    assert "HTTPValidationError" not in spec["components"]["schemas"]


# ----------------------------------------------------------------------------------------------- key and host
def test_the_api_key_is_stripped_of_surrounding_whitespace(runs: StudyRuns, tmp_path: Path) -> None:
    settings = Settings.from_env({"RFMSEG_API_KEY": " k-123 \n"}, runs_dir=runs.runs_dir, store_url=runs.store_url)
    assert settings.api_key == "k-123"
    with TestClient(create_app(settings)) as c:
        assert c.get("/segments", headers={"Authorization": "Bearer k-123"}).status_code == 200
        assert c.get("/segments", headers={"Authorization": "Bearer  k-123 "}).status_code == 200
        assert c.get("/segments", headers={"Authorization": "Bearer k-12"}).status_code == 401
    with pytest.raises(ParameterError) as blank:
        Settings.from_env({"RFMSEG_API_KEY": " \t"}, runs_dir=tmp_path)
    assert (
        str(blank.value)
        == "RFMSEG_API_KEY is set but blank (only whitespace); set it to the key clients send, or unset it"
    )


def test_serve_refuses_a_blank_key_in_one_line(cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RFMSEG_API_KEY", "  ")
    result = cli("serve", "--host", "0.0.0.0")
    assert result.code == 2
    assert result.err.strip() == (
        "error: RFMSEG_API_KEY is set but blank (only whitespace); set it to the key clients send, or unset it"
    )


def test_ipv6_loopback_literals() -> None:
    assert [bind_address(h) for h in ("[::1]", "::1", " 127.0.0.1 ", "example.com")] == [
        "::1",
        "::1",
        "127.0.0.1",
        "example.com",
    ]
    assert all(is_loopback(h) for h in ("[::1]", "::1", "127.0.0.1", "127.8.0.1", "localhost"))
    assert not any(is_loopback(h) for h in ("[::]", "0.0.0.0", "::", "example.com", "[fe80::1]"))


def test_rfmseg_serve_binds_the_ipv6_loopback_given_in_brackets(runs: StudyRuns) -> None:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("this machine has no IPv6 loopback (::1)")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("RFMSEG_API_KEY", "RFMSEG_STORE")}
    cmd = [sys.executable, "-m", "rfmseg", "serve", "--host", "[::1]", "--port", str(port), "--no-access-log"]
    proc = subprocess.Popen(
        [*cmd, "--runs-dir", str(runs.runs_dir), "--store", runs.store_url], env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        r = _wait_for(f"http://[::1]:{port}/health", proc)
        assert r.status_code == 200 and r.json()["served_run"] == runs.latest.run_id
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=20)
    assert f"serving the API and the explorer on http://[::1]:{port}/" in err


def test_rfmseg_serve_on_a_port_in_use_says_so_in_one_line_before_serving(runs: StudyRuns) -> None:
    """Another server holds the port: one line naming the port and the fix, exit 2, and no "serving" line
    first (uvicorn used to log its bind error after it, and exit 3)."""
    env = {k: v for k, v in os.environ.items() if k not in ("RFMSEG_API_KEY", "RFMSEG_STORE")}
    with socket.create_server(("127.0.0.1", 0)) as taken:  # listening, as another server would be
        port = taken.getsockname()[1]
        for host in ("127.0.0.1", "localhost"):
            cmd = [sys.executable, "-m", "rfmseg", "serve", "--host", host, "--port", str(port)]
            done = subprocess.run(
                [*cmd, "--runs-dir", str(runs.runs_dir)], env=env, capture_output=True, text=True, timeout=60
            )
            assert (done.returncode, done.stdout) == (2, ""), done.stderr
            assert done.stderr.splitlines() == [
                f"error: port {port} on {host} is in use (another server listens there); pick another --port, "
                "or stop that server"
            ]
    free = free_port()  # and a port nobody holds is served as before, after the check let it go
    proc = subprocess.Popen(
        [sys.executable, "-m", "rfmseg", "serve", "--port", str(free), "--runs-dir", str(runs.runs_dir)],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert _wait_for(f"http://127.0.0.1:{free}/health", proc).status_code == 200
    finally:
        proc.terminate()
        proc.communicate(timeout=20)


def test_rfmseg_serve_refuses_an_address_not_on_this_machine(cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RFMSEG_API_KEY", "k-1")  # beyond loopback needs a key; then the bind check speaks
    result = cli("serve", "--host", "192.0.2.1", "--port", "8123")  # TEST-NET-1: never this machine's
    assert (result.code, result.out) == (2, "")
    assert result.err.strip() == (
        "error: cannot listen on port 8123 on 192.0.2.1: Cannot assign requested address; give an address of this "
        "machine with --host (e.g. 127.0.0.1), or another --port"
    )


def _wait_for(url: str, proc: subprocess.Popen) -> httpx.Response:
    deadline = time.monotonic() + 60
    while True:
        try:
            return httpx.get(url, timeout=5)
        except httpx.TransportError:
            if proc.poll() is not None:
                raise AssertionError(f"rfmseg serve ended: {proc.communicate()[1]}") from None
            assert time.monotonic() < deadline, "rfmseg serve did not start"
            time.sleep(0.2)

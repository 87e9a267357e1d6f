"""The API app in-process (httpx's ASGI transport, under trio) with a fake backend.

The same app runs in the daemon; the schemathesis test in tests/integration/node drives it
there against its OpenAPI document. These tests pin what the document cannot say: who may
call what, what reaches the backend, and the answers' wording.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from fastapi.routing import APIRoute

from node.api.app import MAX_BODY, ApiApp
from node.api.client import ApiClient
from node.api.errors import ApiError, InvalidAction, NotReady, Unavailable
from node.api.models import (
    AcceptJob,
    Action,
    ActionOutcome,
    ChainPosition,
    NodeStatus,
    StagedInput,
    SubmitJob,
    SubmittedJob,
    Withdraw,
)
from node.config.model import Role
from node.metrics import Metrics
from node.state.model import JobStatus

TOKEN = "t0ken"
MAX_INPUT = 256 * 1024
JOB = "0x" + "ab" * 32
KEY = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
JOB_ROW = {
    "job_id": JOB,
    "status": "open",
    "client": KEY,
    "provider": None,
    "price": "100",
    "deadline": 1_700_000_000,
    "input_hash": "0x" + "11" * 32,
    "output_hash": None,
    "error": "",
    "updated_seq": 3,
    "detail": "{}",
}


class FakeBackend:
    def __init__(self, role: Role = Role.PROVIDER) -> None:
        self.role = role
        self.queries: list[tuple[str, dict[str, str], int]] = []
        self.actions: list[tuple[Action, str | None]] = []
        self.fail_with: Exception | None = None
        self.staged: list[bytes] = []

    def status(self) -> NodeStatus:
        return NodeStatus(
            version="0.1.0",
            role=self.role,
            address=KEY,
            peer_id="12D3KooW",
            state_seq=7,
            jobs=1,
            effects_pending=0,
            chain=ChainPosition(rpc_url=None, confirmed_block=None),
        )

    def rows(self, table: str, where: dict[str, str], limit: int) -> list[dict[str, Any]]:
        self.queries.append((table, where, limit))
        if table == "jobs" and where.get("job_id", JOB) == JOB:
            return [JOB_ROW]
        return []

    async def act(self, action: Action, *, job_id: str | None = None) -> ActionOutcome:
        if self.fail_with is not None:
            raise self.fail_with
        self.actions.append((action, job_id))
        return ActionOutcome(origin="cli:r1", seq=8, duplicate=False, rejected="")

    async def stage_input(self, data: bytes) -> StagedInput:
        self.staged.append(data)
        return StagedInput(input_id="0x" + hashlib.sha256(data).hexdigest(), size=len(data))

    async def submit(self, action: SubmitJob) -> SubmittedJob:
        self.actions.append((action, None))
        return SubmittedJob(origin="cli:r1", seq=9, duplicate=False, rejected="", job_id=JOB)

    def output_of(self, job_id: str) -> Path:
        raise NotReady(f"job {job_id} is running, not verified")


def _ask(
    backend: FakeBackend,
    method: str,
    path: str,
    *,
    token: str | None = TOKEN,
    **kwargs: Any,
) -> httpx.Response:
    app = ApiApp(backend, TOKEN, Metrics(), max_input=MAX_INPUT)

    async def go() -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        headers.update(kwargs.pop("headers", {}))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            return await client.request(method, path, headers=headers, **kwargs)

    return trio.run(go)


@pytest.fixture
def backend() -> FakeBackend:
    return FakeBackend()


# ------------------------------------------------------------------------------- gate


def test_every_path_but_health_and_the_document_needs_the_token(backend: FakeBackend) -> None:
    for path in ("/v1/status", "/metrics", "/v1/jobs", f"/v1/jobs/{JOB}", "/nowhere"):
        for token in (None, "wrong", TOKEN + "x"):
            answer = _ask(backend, "GET", path, token=token)
            assert answer.status_code == 401, (path, token)
            assert answer.json() == {"error": "missing or wrong bearer token"}
            assert answer.headers["www-authenticate"] == "Bearer"
    assert _ask(backend, "GET", "/healthz", token=None).json() == {"ok": True}
    assert _ask(backend, "GET", "/openapi.json", token=None).status_code == 200


def test_an_unauthorised_body_is_not_read_or_acted_on(backend: FakeBackend) -> None:
    answer = _ask(backend, "POST", "/v1/withdrawals", token=None, content=b"{not json")
    assert answer.status_code == 401
    assert (
        _ask(backend, "POST", "/v1/withdrawals", token=None, json={"amount": "1"}).status_code
        == 401
    )
    assert backend.actions == []


def test_bodies_over_the_cap_are_refused(backend: FakeBackend) -> None:
    large = json.dumps({"amount": "1", "request_id": "x" * MAX_BODY}).encode()
    answer = _ask(backend, "POST", "/v1/withdrawals", content=large)
    assert answer.status_code == 413
    assert answer.json() == {"error": f"body larger than {MAX_BODY} bytes"}

    async def chunks() -> Any:  # no content-length: the gate counts what arrives
        for _ in range(5):
            yield b" " * (MAX_BODY // 4)

    streamed = _ask(backend, "POST", "/v1/withdrawals", content=chunks())
    assert streamed.status_code == 413
    assert backend.actions == []
    just_under = json.dumps({"amount": "1"}).encode().ljust(MAX_BODY)
    assert _ask(backend, "POST", "/v1/withdrawals", content=just_under).status_code == 422


# ------------------------------------------------------------------------------- reads


def test_status_and_tables_answer_typed_rows(backend: FakeBackend) -> None:
    assert _ask(backend, "GET", "/v1/status").json()["role"] == "provider"
    assert _ask(backend, "GET", "/v1/jobs?status=open&limit=5").json() == {"jobs": [JOB_ROW]}
    assert _ask(backend, "GET", "/v1/effects?status=failed").json() == {"effects": []}
    assert _ask(backend, "GET", "/v1/transactions?status=reverted").json() == {"transactions": []}
    assert _ask(backend, "GET", "/v1/approvals?status=approved").json() == {"approvals": []}
    assert _ask(backend, "GET", "/v1/offers").json() == {"offers": []}
    assert _ask(backend, "GET", "/v1/peers?limit=1000").json() == {"peers": []}
    assert backend.queries == [
        ("jobs", {"status": "open"}, 5),
        ("effects", {"status": "failed"}, 100),
        ("transactions", {"status": "reverted"}, 100),
        ("approvals", {"status": "approved"}, 100),
        ("offers", {}, 100),
        ("peers", {}, 1000),
    ]


def test_one_job_by_id_in_any_case(backend: FakeBackend) -> None:
    assert _ask(backend, "GET", f"/v1/jobs/{JOB.upper().replace('0X', '0x')}").json() == JOB_ROW
    absent = "0x" + "cd" * 32
    answer = _ask(backend, "GET", f"/v1/jobs/{absent}")
    assert answer.status_code == 404
    assert answer.json() == {"error": f"no job {absent}"}


@pytest.mark.parametrize(
    ("path", "says"),
    [
        ("/v1/jobs?limit=many", "query.limit: Input should be a valid integer"),
        ("/v1/jobs?limit=0", "query.limit: Input should be greater than or equal to 1"),
        ("/v1/jobs?limit=1001", "query.limit: Input should be less than or equal to 1000"),
        ("/v1/jobs?status=lost", "query.status: Input should be 'submitted'"),
        ("/v1/effects?status=open", "query.status: Input should be 'pending', 'done' or"),
        ("/v1/jobs/0x1234", "path.job_id: String should match pattern"),
    ],
)
def test_bad_parameters_are_refused_by_name(backend: FakeBackend, path: str, says: str) -> None:
    answer = _ask(backend, "GET", path)
    assert answer.status_code == 422
    assert answer.json()["error"].startswith(says), answer.json()
    assert backend.queries == []


def test_metrics_are_prometheus_text(backend: FakeBackend) -> None:
    answer = _ask(backend, "GET", "/metrics")
    assert answer.headers["content-type"].startswith("text/plain")
    assert "capa_effects_pending" in answer.text


def test_routing_answers_in_the_error_style(backend: FakeBackend) -> None:
    missing = _ask(backend, "GET", "/v2/status")
    assert missing.status_code == 404
    assert missing.json() == {"error": "no route GET /v2/status"}
    wrong_method = _ask(backend, "DELETE", "/v1/jobs")
    assert wrong_method.status_code == 405
    # Both routes on the path are named, not only the first one Starlette matched.
    assert wrong_method.headers["allow"] == "GET, POST"
    assert _ask(backend, "PUT", f"/v1/jobs/{JOB}/accept").headers["allow"] == "POST"


# ------------------------------------------------------------------------------- actions


def test_each_action_reaches_the_backend_as_its_model(backend: FakeBackend) -> None:
    answer = _ask(
        backend, "POST", f"/v1/jobs/{JOB}/accept", json={"enclave_key": KEY, "request_id": "r1"}
    )
    assert answer.json() == {"origin": "cli:r1", "seq": 8, "duplicate": False, "rejected": ""}
    assert (
        _ask(backend, "POST", "/v1/withdrawals", json={"amount": "5", "to": KEY}).status_code == 200
    )
    assert backend.actions == [
        (AcceptJob(request_id="r1", enclave_key=KEY), JOB),
        (Withdraw(amount="5", to=KEY), None),
    ]


def test_actions_of_another_role_are_refused_before_the_backend(backend: FakeBackend) -> None:
    for path in (f"/v1/jobs/{JOB}/claim-timeout", f"/v1/jobs/{JOB}/cancel"):
        answer = _ask(backend, "POST", path, json={})
        assert answer.status_code == 409
        assert answer.json() == {
            "error": "only a client node takes this action; this one is a provider"
        }
    verifier = FakeBackend(Role.VERIFIER)
    answer = _ask(verifier, "POST", "/v1/withdrawals", json={"amount": "1"})
    assert answer.status_code == 409
    assert "only a provider or client node" in answer.json()["error"]
    assert backend.actions == verifier.actions == []


@pytest.mark.parametrize(
    ("path", "body", "says"),
    [
        (
            "/v1/withdrawals",
            {"amount": "0"},
            "body.amount: expected decimal text of an integer from 1",
        ),
        ("/v1/withdrawals", {"amount": 5}, "body.amount: Input should be a valid string"),
        ("/v1/withdrawals", {"amount": "05"}, "body.amount: expected decimal text"),
        ("/v1/withdrawals", {"amount": str(2**256)}, "body.amount: expected decimal text"),
        (
            "/v1/withdrawals",
            {"amount": "1", "too": KEY},
            "body.too: Extra inputs are not permitted",
        ),
        ("/v1/withdrawals", {"amount": "1", "to": "0x12"}, "body.to: String should match pattern"),
        (f"/v1/jobs/{JOB}/accept", {}, "body.enclave_key: Field required"),
        (f"/v1/jobs/{JOB}/accept", [], "body: expected a JSON object"),
        (
            "/v1/jobs",
            {"workload": "gpu", "measurement": JOB, "input_id": JOB, "max_price": "1"},
            "body.workload: Input should be 'wasm', 'onnx' or 'exec'",
        ),
        (
            "/v1/jobs",
            {"workload": "wasm", "measurement": JOB, "input_id": JOB, "max_price": "0"},
            "body.max_price:",
        ),
    ],
)
def test_malformed_actions_are_refused_by_field(
    backend: FakeBackend, path: str, body: object, says: str
) -> None:
    answer = _ask(backend, "POST", path, json=body)
    assert answer.status_code == 422
    assert answer.json()["error"].startswith(says), answer.json()
    assert backend.actions == []


def test_a_body_that_is_not_json_is_refused_in_the_error_style(backend: FakeBackend) -> None:
    for content in (b"{not json", b"\xff\xfe", b""):
        answer = _ask(
            backend,
            "POST",
            "/v1/withdrawals",
            content=content,
            headers={"Content-Type": "application/json"},
        )
        assert answer.status_code == 422, content
        assert answer.json()["error"].startswith("body:"), answer.json()


def test_backend_refusals_become_their_statuses(backend: FakeBackend) -> None:
    backend.fail_with = InvalidAction("matchJob: arguments the market cannot take")
    refused = _ask(backend, "POST", "/v1/withdrawals", json={"amount": "1"})
    assert (refused.status_code, refused.json()) == (
        422,
        {"error": "matchJob: arguments the market cannot take"},
    )
    backend.fail_with = Unavailable("the node is stopping")
    busy = _ask(backend, "POST", "/v1/withdrawals", json={"amount": "1"})
    assert (busy.status_code, busy.json()) == (503, {"error": "the node is stopping"})


# ------------------------------------------------------------------------------- document


def _operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            yield path, method, operation


def test_the_document_types_every_parameter_body_and_answer(backend: FakeBackend) -> None:
    document = _ask(backend, "GET", "/openapi.json", token=None).json()
    assert document["openapi"].startswith("3.1")
    assert document["components"]["securitySchemes"]["token"]["scheme"] == "bearer"
    assert "HTTPValidationError" not in document["components"]["schemas"]
    for path, method, operation in _operations(document):
        where = f"{method.upper()} {path}"
        public = path == "/healthz"
        assert operation["security"] == ([] if public else [{"token": []}]), where
        responses = operation["responses"]
        if not public:
            assert "401" in responses, where
        if "requestBody" in operation:
            assert {"413", "422"} <= set(responses), where
            (media,) = operation["requestBody"]["content"]  # JSON, or raw bytes for inputs
            assert media == (
                "application/octet-stream" if path == "/v1/inputs" else "application/json"
            ), where
            assert operation["requestBody"]["content"][media]["schema"], where
        if operation.get("parameters"):
            assert "422" in responses, where
        for parameter in operation.get("parameters", []):
            assert parameter["schema"], (where, parameter)
        for status, response in responses.items():
            content = response.get("content")
            assert content, (where, status)
            for media in content.values():
                assert media["schema"], (where, status)
            if status != "200":
                assert content == {
                    "application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}
                }, (where, status)
    metrics = document["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert metrics == {"text/plain": {"schema": {"type": "string"}}}


def test_routes_and_handlers_stay_on_the_event_loop(backend: FakeBackend) -> None:
    # A sync route or handler would run on a worker thread, outside trio's cancellation.
    api = ApiApp(backend, TOKEN, Metrics()).api
    routes = [r for r in api.routes if isinstance(r, APIRoute)]
    assert routes
    for route in routes:
        assert inspect.iscoroutinefunction(route.endpoint), route.path
    for handler in api.exception_handlers.values():
        target = getattr(handler, "func", handler)
        assert inspect.iscoroutinefunction(target), handler


# ------------------------------------------------------------------------------- client


class _AppTransport(httpx.BaseTransport):
    """Runs the ASGI app for the sync client, one trio run per request (tests only)."""

    def __init__(self, app: ApiApp) -> None:
        self._asgi = httpx.ASGITransport(app=app)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        async def go() -> httpx.Response:
            answer = await self._asgi.handle_async_request(request)
            body = await answer.aread()
            return httpx.Response(answer.status_code, headers=answer.headers, content=body)

        return trio.run(go)


def _client(backend: FakeBackend) -> ApiClient:
    app = ApiApp(backend, TOKEN, Metrics())
    return ApiClient("http://127.0.0.1", TOKEN, transport=_AppTransport(app))


def test_the_client_speaks_the_apps_models(backend: FakeBackend) -> None:
    client = _client(backend)
    assert client.status().state_seq == 7
    [job] = client.jobs(JobStatus.OPEN, limit=5)
    assert job.status is JobStatus.OPEN and job.job_id == JOB
    assert client.job(JOB.upper().replace("0X", "0x")).price == "100"
    outcome = client.accept_job(JOB, AcceptJob(enclave_key=KEY))
    assert outcome.seq == 8
    client.withdraw(Withdraw(amount=str(10**30)))
    assert backend.actions == [
        (AcceptJob(enclave_key=KEY), JOB),
        (Withdraw(amount=str(10**30)), None),
    ]


def test_the_client_reports_refusals_in_the_daemons_words(backend: FakeBackend) -> None:
    client = _client(backend)
    with pytest.raises(ApiError, match="HTTP 409: only a client node takes this action"):
        client.claim_timeout(JOB)
    with pytest.raises(ApiError, match="HTTP 404: no job 0xcdcd"):
        client.job("0x" + "cd" * 32)
    # A job id goes into the path: one that is not a job id never leaves the CLI.
    with pytest.raises(ApiError, match="not a job id"):
        client.cancel_job("../withdrawals")
    assert backend.actions == []


def test_a_client_stages_an_input_up_to_its_own_limit_and_submits_a_job() -> None:
    backend = FakeBackend(Role.CLIENT)
    data = b"x" * (MAX_INPUT - 1)  # above the JSON limit, within the input limit
    staged = _ask(backend, "POST", "/v1/inputs", content=data)
    assert staged.status_code == 200, staged.text
    assert staged.json() == {"input_id": "0x" + hashlib.sha256(data).hexdigest(), "size": len(data)}
    assert backend.staged == [data]
    too_big = _ask(backend, "POST", "/v1/inputs", content=b"x" * (MAX_INPUT + 1))
    assert too_big.status_code == 413
    assert backend.staged == [data]
    body = {
        "workload": "wasm",
        "measurement": JOB,
        "input_id": staged.json()["input_id"],
        "max_price": "1000",
    }
    submitted = _ask(backend, "POST", "/v1/jobs", json=body)
    assert submitted.status_code == 200, submitted.text
    assert submitted.json()["job_id"] == JOB
    ((action, _),) = backend.actions
    assert isinstance(action, SubmitJob) and action.timeout_s == "600" and action.tee_kinds == 0


def test_only_a_client_stages_inputs_and_big_bodies_elsewhere_are_refused() -> None:
    provider = FakeBackend(Role.PROVIDER)
    assert _ask(provider, "POST", "/v1/inputs", content=b"abc").status_code == 409
    assert provider.staged == []
    body = {"workload": "wasm", "measurement": JOB, "input_id": JOB, "max_price": "1"}
    assert _ask(provider, "POST", "/v1/jobs", json=body).status_code == 409
    # The input limit is the staging path's own: other paths keep the small JSON limit.
    huge = b"{" + b" " * (MAX_INPUT - 10) + b"}"
    answer = _ask(provider, "POST", "/v1/withdrawals", content=huge)
    assert answer.status_code == 413


def test_an_output_before_verification_is_a_conflict_naming_the_state() -> None:
    answer = _ask(FakeBackend(Role.CLIENT), "GET", f"/v1/jobs/{JOB}/output")
    assert answer.status_code == 409
    assert answer.json() == {"error": f"job {JOB} is running, not verified"}


def test_a_taken_api_port_is_one_line_naming_the_key(tmp_path: Path) -> None:
    """Two daemons on one machine: the second says which key to change, no traceback."""
    import socket

    from node.api.server import ApiServer
    from node.cli.node_run import OPERATOR_ERRORS
    from node.config.errors import PortInUse
    from node.exception_groups import first_of

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = ApiServer(
            ApiApp(FakeBackend(), TOKEN, Metrics()),
            host="127.0.0.1",
            port=port,
            token=TOKEN,
            token_file=tmp_path / "api.token",
        )

        async def start() -> None:
            async with trio.open_nursery() as nursery:
                await nursery.start(server.run)
                nursery.cancel_scope.cancel()

        with pytest.raises(BaseException) as raised:
            trio.run(start)
    found = first_of(raised.value, OPERATOR_ERRORS)
    assert isinstance(found, PortInUse), raised.value
    assert str(found) == (
        f"api.port: 127.0.0.1:{port} is already in use (another daemon on this machine?): "
        "set api.port (or CAPA_API_PORT) to a free port"
    )
    assert not (tmp_path / "api.token").exists()

"""The API app: FastAPI routes over the daemon's backend, behind a token and body-size gate.

FastAPI runs on anyio, which runs on trio here (hypercorn's trio worker): every route and
error handler is `async def` and calls the backend directly, so nothing hops to a thread and
no asyncio loop is involved. The OpenAPI document is FastAPI's, from the models in
`node.api.models`, completed with what the gate answers (401, 413) from the same constants the
gate uses.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from functools import partial
from pathlib import Path as FilePath
from typing import Annotated, Any, Protocol

from fastapi import FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException
from starlette.routing import Match

from node import __version__
from node.api import paths
from node.api.errors import (
    ApiError,
    InvalidAction,
    NotFound,
    NotReady,
    Unavailable,
    WrongRole,
)
from node.api.models import (
    MAX_LIMIT,
    AcceptJob,
    Action,
    ActionOutcome,
    ApprovalList,
    CancelJob,
    ClaimTimeout,
    EffectList,
    EffectStatus,
    ErrorBody,
    Health,
    JobIdText,
    JobList,
    JobView,
    NodeStatus,
    OfferList,
    PeerList,
    StagedInput,
    SubmitJob,
    SubmittedJob,
    TransactionList,
    Withdraw,
)
from node.config.model import Role
from node.metrics import Metrics
from node.state.model import ApprovalStatus, JobStatus
from node.store.records import TxStatus

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Asgi = Callable[[Scope, Receive, Send], Awaitable[None]]

MAX_BODY = 64 * 1024

DESCRIPTION = (
    "Local control API of a capa daemon; it listens on 127.0.0.1 only. Send the content of "
    "the token file as `Authorization: Bearer <token>`. Every error answers "
    '`{"error": "<what went wrong>"}`.'
)


class ApiBackend(Protocol):
    """What the API needs of the daemon (`node.daemon.api_backend` is the real one)."""

    @property
    def role(self) -> Role: ...

    def status(self) -> NodeStatus: ...

    def rows(self, table: str, where: dict[str, str], limit: int) -> list[dict[str, Any]]: ...

    async def act(self, action: Action, *, job_id: str | None = None) -> ActionOutcome: ...

    async def stage_input(self, data: bytes) -> StagedInput: ...

    async def submit(self, action: SubmitJob) -> SubmittedJob: ...

    def output_of(self, job_id: str) -> FilePath: ...


class ApiApp:
    """The ASGI application the server runs: the gate in front of the FastAPI app."""

    def __init__(
        self, backend: ApiBackend, token: str, metrics: Metrics, *, max_input: int = 0
    ) -> None:
        self.api = build_api(backend, metrics)
        self._gate = RequestGate(self.api, token, max_input=max_input)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._gate(scope, receive, send)

    def openapi(self) -> dict[str, Any]:
        return self.api.openapi()


# ------------------------------------------------------------------------------- routes

Limit = Annotated[
    int, Query(ge=1, le=MAX_LIMIT, description="At most this many rows, newest first")
]
JobIdPath = Annotated[JobIdText, Path()]

_ERROR_TEXT = {
    404: "No such resource",
    409: "Not an action this node's role takes, or not yet possible (an output not verified)",
    413: "The body is larger than this node takes",
    422: "The request does not match its schema, or names values that cannot be used",
    503: "The daemon cannot take the action now (busy or stopping); retry later",
}


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": ErrorBody, "description": _ERROR_TEXT[status]} for status in statuses}


_TABLE = _errors(422)
_ACTION = _errors(409, 422, 503)
_JOB_ACTION = _errors(404, 409, 422, 503)


def build_api(backend: ApiBackend, metrics: Metrics) -> FastAPI:
    api = FastAPI(
        title="CapaCloud node API",
        version=__version__,
        description=DESCRIPTION,
        openapi_url=paths.OPENAPI,
        docs_url=None,
        redoc_url=None,
        servers=[{"url": "http://127.0.0.1"}],
        generate_unique_id_function=lambda route: route.name,
    )

    def only(roles: Iterable[Role]) -> None:
        allowed = tuple(roles)
        if backend.role not in allowed:
            takers = " or ".join(role.value for role in allowed)
            raise WrongRole(f"only a {takers} node takes this action; this one is a {backend.role}")

    async def act(
        action: Action, roles: Iterable[Role], job_id: str | None = None
    ) -> ActionOutcome:
        only(roles)
        return await backend.act(action, job_id=job_id)

    @api.get(paths.HEALTH, summary="Liveness: answers while the daemon runs", tags=["node"])
    async def healthz() -> Health:
        return Health(ok=True)

    @api.get(
        paths.METRICS,
        summary="Prometheus metrics",
        tags=["node"],
        response_class=Response,
        responses={
            200: {
                "description": "The metrics in the Prometheus text exposition format",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            }
        },
    )
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @api.get(
        paths.STATUS,
        summary="Role, account, peer id, chain position, pending effects",
        tags=["node"],
    )
    async def status() -> NodeStatus:
        return backend.status()

    @api.get(
        paths.JOBS, summary="Jobs known to this node, newest first", tags=["jobs"], responses=_TABLE
    )
    async def jobs(status: JobStatus | None = None, limit: Limit = 100) -> JobList:
        return JobList.model_validate({"jobs": backend.rows("jobs", _where(status), limit)})

    @api.get(paths.JOB, summary="One job", tags=["jobs"], responses=_errors(404, 422))
    async def job(job_id: JobIdPath) -> JobView:
        rows = backend.rows("jobs", {"job_id": job_id.lower()}, 1)
        if not rows:
            raise NotFound(f"no job {job_id}")
        return JobView.model_validate(rows[0])

    @api.post(
        paths.INPUTS,
        summary="Client: stage a plaintext input (the raw bytes as the body)",
        description="The input stays on this machine: the daemon seals it to the enclave it "
        "chooses. Bodies up to the client's `max_input_bytes`.",
        tags=["jobs"],
        responses=_errors(409, 413, 422, 503),
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/octet-stream": {"schema": {"type": "string"}}},
            }
        },
    )
    async def stage_input(request: Request) -> StagedInput:
        only([Role.CLIENT])
        return await backend.stage_input(await request.body())

    @api.post(
        paths.JOBS,
        summary="Client: submit a job; the daemon picks, checks and pays a provider",
        description="The job id is derived from this node's address and the request id, so a "
        "retried submission is the same job.",
        tags=["jobs"],
        responses=_errors(409, 422, 503),
    )
    async def submit_job(body: SubmitJob) -> SubmittedJob:
        only([Role.CLIENT])
        return await backend.submit(body)

    @api.get(
        paths.JOB_OUTPUT,
        summary="Client: a verified job's decrypted output (raw bytes)",
        tags=["jobs"],
        responses={
            200: {"content": {"application/octet-stream": {"schema": {"type": "string"}}}},
            **_errors(404, 409, 422),
        },
        response_class=Response,
    )
    async def job_output(job_id: JobIdPath) -> Response:
        path = backend.output_of(job_id.lower())
        return Response(path.read_bytes(), media_type="application/octet-stream")

    @api.post(
        paths.ACCEPT_JOB,
        summary="Provider: accept an open job, bound to an enclave key",
        tags=["jobs"],
        responses=_JOB_ACTION,
    )
    async def accept_job(job_id: JobIdPath, body: AcceptJob) -> ActionOutcome:
        return await act(body, [Role.PROVIDER], job_id)

    @api.post(
        paths.CLAIM_TIMEOUT,
        summary="Client: claim the refund of an assigned job past its deadline",
        tags=["jobs"],
        responses=_JOB_ACTION,
    )
    async def claim_timeout(job_id: JobIdPath, body: ClaimTimeout) -> ActionOutcome:
        return await act(body, [Role.CLIENT], job_id)

    @api.post(
        paths.CANCEL_JOB,
        summary="Client: cancel an open job nobody accepted yet",
        tags=["jobs"],
        responses=_JOB_ACTION,
    )
    async def cancel_job(job_id: JobIdPath, body: CancelJob) -> ActionOutcome:
        return await act(body, [Role.CLIENT], job_id)

    @api.post(
        paths.WITHDRAWALS,
        summary="Withdraw earnings or refunds from the market",
        tags=["funds"],
        responses=_ACTION,
    )
    async def withdraw(body: Withdraw) -> ActionOutcome:
        return await act(body, [Role.PROVIDER, Role.CLIENT])

    @api.get(paths.EFFECTS, summary="Effects, newest first", tags=["state"], responses=_TABLE)
    async def effects(status: EffectStatus | None = None, limit: Limit = 100) -> EffectList:
        return EffectList.model_validate(
            {"effects": backend.rows("effects", _where(status), limit)}
        )

    @api.get(
        paths.TRANSACTIONS,
        summary="Transactions this node signed",
        tags=["state"],
        responses=_TABLE,
    )
    async def transactions(status: TxStatus | None = None, limit: Limit = 100) -> TransactionList:
        rows = backend.rows("transactions", _where(status), limit)
        return TransactionList.model_validate({"transactions": rows})

    @api.get(
        paths.OFFERS, summary="Offers received from providers", tags=["market"], responses=_TABLE
    )
    async def offers(limit: Limit = 100) -> OfferList:
        return OfferList.model_validate({"offers": backend.rows("offers", {}, limit)})

    @api.get(paths.PEERS, summary="Peers seen", tags=["market"], responses=_TABLE)
    async def peers(limit: Limit = 100) -> PeerList:
        return PeerList.model_validate({"peers": backend.rows("peers", {}, limit)})

    @api.get(paths.APPROVALS, summary="Verifier approvals", tags=["state"], responses=_TABLE)
    async def approvals(status: ApprovalStatus | None = None, limit: Limit = 100) -> ApprovalList:
        rows = backend.rows("approvals", _where(status), limit)
        return ApprovalList.model_validate({"approvals": rows})

    api.add_exception_handler(RequestValidationError, _invalid_request)
    api.add_exception_handler(HTTPException, _http_error)
    for error, code in _STATUS_OF.items():
        api.add_exception_handler(error, partial(_api_error, code))
    api.openapi = partial(_document, api)  # type: ignore[method-assign]
    return api


def _where(status: str | None) -> dict[str, str]:
    return {} if status is None else {"status": str(status)}


# ------------------------------------------------------------------------------- errors

_STATUS_OF: dict[type[ApiError], int] = {
    NotFound: 404,
    WrongRole: 409,
    NotReady: 409,
    InvalidAction: 422,
    Unavailable: 503,
}


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(ErrorBody(error=message).model_dump(), status, headers=headers)


async def _api_error(status: int, request: Request, exc: Exception) -> Response:
    return _error(status, str(exc))


async def _invalid_request(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    problems = [_problem(error) for error in exc.errors()]
    return _error(422, "; ".join(problems) or "invalid request")


_NOT_AN_OBJECT = frozenset({"model_attributes_type", "model_type", "dict_type"})


def _problem(error: Any) -> str:
    location = tuple(error.get("loc", ()))
    if error.get("type") == "json_invalid":
        return f"body: not JSON ({error.get('ctx', {}).get('error', 'cannot be decoded')})"
    if location == ("body",) and error.get("type") in _NOT_AN_OBJECT:
        # Not JSON, not an object, or not sent as application/json: pydantic's words for
        # these ("valid dictionary or object to extract fields from") would not help.
        return "body: expected a JSON object, sent as application/json"
    where = ".".join(str(part) for part in location)
    message = str(error.get("msg", "invalid"))
    return f"{where}: {message}" if where else message


async def _http_error(request: Request, exc: Exception) -> Response:
    """Framework answers (404 no such path, 405 no such method on it) in the API's style."""
    assert isinstance(exc, HTTPException)
    if exc.status_code == 400:
        # FastAPI's answer to a body it cannot decode (not UTF-8, say): the same failure as
        # any other body that is not a JSON object, so the same answer.
        return _error(422, "body: expected a JSON object, sent as application/json")
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        # Starlette names only the methods of the first route matching the path; the other
        # routes on the same path (GET and POST /v1/jobs) belong in Allow too.
        headers["Allow"] = ", ".join(sorted(_methods_at(request)))
    message = (
        f"no route {request.method} {request.url.path}"
        if exc.status_code in (404, 405)
        else str(exc.detail)
    )
    return _error(exc.status_code, message, headers)


def _methods_at(request: Request) -> set[str]:
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches(request.scope)
        if match is not Match.NONE:
            methods |= getattr(route, "methods", None) or set()
    return methods


# ------------------------------------------------------------------------------- document


def _document(api: FastAPI) -> dict[str, Any]:
    if api.openapi_schema is None:
        document = get_openapi(
            title=api.title,
            version=api.version,
            description=api.description,
            routes=api.routes,
            servers=api.servers,
        )
        components = document.setdefault("components", {})
        components.setdefault("securitySchemes", {})["token"] = {
            "type": "http",
            "scheme": "bearer",
            "description": "The content of the daemon's token file (api.token)",
        }
        error = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
        for path, operations in document["paths"].items():
            for operation in operations.values():
                responses = operation["responses"]
                if path in paths.PUBLIC:
                    operation["security"] = []
                else:
                    operation["security"] = [{"token": []}]
                    responses["401"] = {
                        "description": "Missing or wrong bearer token",
                        "content": error,
                    }
                if "requestBody" in operation:
                    responses["413"] = {
                        "description": f"Body larger than {MAX_BODY} bytes",
                        "content": error,
                    }
        api.openapi_schema = document
    return api.openapi_schema


# ------------------------------------------------------------------------------- gate


class RequestGate:
    """Checks the bearer token and caps the body before the framework parses anything.

    Every path but the public ones needs the token, so a route added later is protected
    without having to ask for it.
    """

    def __init__(self, app: Asgi, token: str, *, max_input: int = 0) -> None:
        self._app = app
        self._token = token.encode()
        self._max_input = max_input  # the input staging path's own limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        if scope["path"] not in paths.PUBLIC and not self._authorised(scope):
            await _send_error(
                send, 401, "missing or wrong bearer token", [(b"www-authenticate", b"Bearer")]
            )
            return
        limit = MAX_BODY
        if scope["path"] == paths.INPUTS and scope.get("method") == "POST":
            limit = max(self._max_input, MAX_BODY)
        too_large = f"body larger than {limit} bytes"
        if _declared_length(scope) > limit:
            await _send_error(send, 413, too_large)
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away before sending its body
            body += message.get("body", b"")
            if len(body) > limit:
                await _send_error(send, 413, too_large)
                return
            if not message.get("more_body"):
                break
        await self._app(scope, _replay(bytes(body), receive), send)

    def _authorised(self, scope: Scope) -> bool:
        for name, value in scope.get("headers", []):
            if name == b"authorization" and value.startswith(b"Bearer "):
                return hmac.compare_digest(value[7:].strip(), self._token)
        return False


def _declared_length(scope: Scope) -> int:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return 0  # the server refuses a malformed length before we see it
    return 0


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replayed


async def _send_error(
    send: Send, status: int, message: str, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = json.dumps({"error": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})

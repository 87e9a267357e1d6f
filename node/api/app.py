"""The ASGI app: a small route table, token auth, JSON answers, OpenAPI from the same table.

Hand-written rather than a framework: a dozen routes do not justify the import cost in a
daemon that must idle under 150 MB, and the OpenAPI document stays exact by construction.
"""

from __future__ import annotations

import hmac
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import parse_qs

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from node import __version__
from node.api.errors import BadRequest, NotFound
from node.metrics import Metrics

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

MAX_BODY = 64 * 1024
QUERYABLE = ("jobs", "effects", "transactions", "offers", "peers", "approvals")


class ApiBackend(Protocol):
    def status(self) -> dict[str, Any]: ...

    def rows(self, table: str, where: dict[str, str], limit: int) -> list[dict[str, Any]]: ...

    async def act(self, action: dict[str, Any]) -> dict[str, Any]: ...


@dataclass(frozen=True)
class _Route:
    method: str
    pattern: str
    summary: str
    handler: str
    auth: bool = True
    query: tuple[str, ...] = ()

    @property
    def regex(self) -> re.Pattern[str]:
        return re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", self.pattern) + "$")


ROUTES = (
    _Route("GET", "/healthz", "Liveness: answers while the daemon runs", "_healthz", auth=False),
    _Route("GET", "/openapi.json", "This API's OpenAPI description", "_openapi", auth=False),
    _Route("GET", "/metrics", "Prometheus metrics (text exposition format)", "_prometheus"),
    _Route(
        "GET", "/v1/status", "Role, account, peer id, chain position, pending effects", "_status"
    ),
    _Route(
        "GET",
        "/v1/jobs",
        "Jobs known to this node, newest first",
        "_jobs",
        query=("status", "limit"),
    ),
    _Route("GET", "/v1/jobs/{job_id}", "One job", "_job"),
    _Route("GET", "/v1/effects", "Effects, newest first", "_effects", query=("status", "limit")),
    _Route(
        "GET",
        "/v1/transactions",
        "Transactions this node signed",
        "_transactions",
        query=("status", "limit"),
    ),
    _Route("GET", "/v1/offers", "Offers received from providers", "_offers", query=("limit",)),
    _Route("GET", "/v1/peers", "Peers seen", "_peers", query=("limit",)),
    _Route("GET", "/v1/approvals", "Verifier approvals", "_approvals", query=("status", "limit")),
    _Route(
        "POST",
        "/v1/actions",
        "Ask the node to act (accept_job, claim_timeout, cancel_job, withdraw, match_job, post_job)",
        "_action",
    ),
)

_ACTION_SCHEMA = {
    "type": "object",
    "required": ["action"],
    "properties": {
        "action": {
            "type": "string",
            "enum": [
                "accept_job",
                "claim_timeout",
                "cancel_job",
                "withdraw",
                "match_job",
                "post_job",
            ],
        },
        "request_id": {
            "type": "string",
            "description": "Idempotency key: a retried request with the same id acts once",
        },
        "job_id": {"type": "string", "pattern": "^0x[0-9a-f]{64}$"},
        "enclave_key": {"type": "string", "description": "accept_job: the enclave key's address"},
        "min_duration": {
            "type": "integer",
            "description": "accept_job: seconds the provider needs at least (default 600)",
        },
        "amount": {"type": "integer", "description": "withdraw: wei"},
        "to": {"type": "string", "description": "withdraw: recipient address (default: this node)"},
        "args": {
            "type": "array",
            "description": "match_job/post_job: the contract call's arguments",
        },
        "value": {"type": "integer", "description": "match_job/post_job: wei sent along"},
    },
}


def openapi_document() -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for route in ROUTES:
        operation: dict[str, Any] = {
            "summary": route.summary,
            "responses": {
                "200": {"description": "OK", "content": {"application/json": {}}},
                "401": {"description": "Missing or wrong bearer token"},
            },
            "parameters": [
                {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                for name in re.findall(r"\{(\w+)\}", route.pattern)
            ]
            + [
                {"name": name, "in": "query", "required": False, "schema": {"type": "string"}}
                for name in route.query
            ],
        }
        if route.auth:
            operation["security"] = [{"token": []}]
        else:
            operation["security"] = []
        if route.method == "POST":
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": _ACTION_SCHEMA}},
            }
            operation["responses"]["400"] = {"description": "Malformed action"}
        paths.setdefault(route.pattern, {})[route.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "CapaCloud node API",
            "version": __version__,
            "description": "Local control API of a capa daemon; listens on 127.0.0.1 only. "
            "Send the content of the token file as `Authorization: Bearer <token>`.",
        },
        "servers": [{"url": "http://127.0.0.1"}],
        "components": {"securitySchemes": {"token": {"type": "http", "scheme": "bearer"}}},
        "paths": paths,
    }


class ApiApp:
    def __init__(self, backend: ApiBackend, token: str, metrics: Metrics) -> None:
        self._backend = backend
        self._token = token.encode()
        self._metrics = metrics
        self._routes = [(r, r.regex) for r in ROUTES]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        method, path = scope["method"], scope["path"]
        for route, regex in self._routes:
            match = regex.match(path)
            if match is None or route.method != method:
                continue
            if route.auth and not self._authorised(scope):
                await _answer(send, 401, {"error": "missing or wrong bearer token"})
                return
            query = {k: v[-1] for k, v in parse_qs(scope.get("query_string", b"").decode()).items()}
            try:
                handler = getattr(self, route.handler)
                await handler(send, receive, query=query, **match.groupdict())
            except BadRequest as exc:
                await _answer(send, 400, {"error": str(exc)})
            except NotFound as exc:
                await _answer(send, 404, {"error": str(exc)})
            return
        await _answer(send, 404, {"error": f"no route {method} {path}"})

    def _authorised(self, scope: Scope) -> bool:
        for name, value in scope.get("headers", []):
            if name == b"authorization" and value.startswith(b"Bearer "):
                return hmac.compare_digest(value[7:].strip(), self._token)
        return False

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    # ------------------------------------------------------------------ handlers

    async def _healthz(self, send: Send, receive: Receive, **_: Any) -> None:
        await _answer(send, 200, {"ok": True})

    async def _openapi(self, send: Send, receive: Receive, **_: Any) -> None:
        await _answer(send, 200, openapi_document())

    async def _prometheus(self, send: Send, receive: Receive, **_: Any) -> None:
        body = generate_latest(self._metrics.registry)
        await _raw(send, 200, body, CONTENT_TYPE_LATEST.encode())

    async def _status(self, send: Send, receive: Receive, **_: Any) -> None:
        await _answer(send, 200, self._backend.status())

    async def _table(self, send: Send, table: str, query: dict[str, str]) -> None:
        try:
            limit = int(query.get("limit", "100"))
        except ValueError as exc:
            raise BadRequest("limit: expected an integer") from exc
        where = {"status": query["status"]} if "status" in query else {}
        await _answer(
            send, 200, {table: self._backend.rows(table, where, max(1, min(limit, 1000)))}
        )

    async def _jobs(self, send: Send, receive: Receive, *, query: dict[str, str], **_: Any) -> None:
        await self._table(send, "jobs", query)

    async def _job(self, send: Send, receive: Receive, *, job_id: str, **_: Any) -> None:
        rows = self._backend.rows("jobs", {"job_id": job_id.lower()}, 1)
        if not rows:
            raise NotFound(f"no job {job_id}")
        await _answer(send, 200, rows[0])

    async def _effects(
        self, send: Send, receive: Receive, *, query: dict[str, str], **_: Any
    ) -> None:
        await self._table(send, "effects", query)

    async def _transactions(
        self, send: Send, receive: Receive, *, query: dict[str, str], **_: Any
    ) -> None:
        await self._table(send, "transactions", query)

    async def _offers(
        self, send: Send, receive: Receive, *, query: dict[str, str], **_: Any
    ) -> None:
        await self._table(send, "offers", query)

    async def _peers(
        self, send: Send, receive: Receive, *, query: dict[str, str], **_: Any
    ) -> None:
        await self._table(send, "peers", query)

    async def _approvals(
        self, send: Send, receive: Receive, *, query: dict[str, str], **_: Any
    ) -> None:
        await self._table(send, "approvals", query)

    async def _action(self, send: Send, receive: Receive, **_: Any) -> None:
        body = await _read_body(receive)
        try:
            action = json.loads(body or b"{}")
        except ValueError as exc:
            raise BadRequest("body: expected a JSON object") from exc
        if not isinstance(action, dict) or not isinstance(action.get("action"), str):
            raise BadRequest('body: expected {"action": ..., ...}')
        await _answer(send, 200, await self._backend.act(action))


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            raise BadRequest(f"body larger than {MAX_BODY} bytes")
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


async def _answer(send: Send, status: int, payload: Any) -> None:
    await _raw(send, status, json.dumps(payload, default=str).encode(), b"application/json")


async def _raw(send: Send, status: int, body: bytes, content_type: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})

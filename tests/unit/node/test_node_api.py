"""The API app, called in-process through httpx's ASGI transport with a fake backend."""

from __future__ import annotations

from typing import Any

import httpx
import trio

from node.api.app import ApiApp, openapi_document
from node.api.errors import BadRequest
from node.metrics import Metrics

TOKEN = "t0ken"


class FakeBackend:
    def __init__(self) -> None:
        self.actions: list[dict[str, Any]] = []

    def status(self) -> dict[str, Any]:
        return {"role": "client"}

    def rows(self, table: str, where: dict[str, str], limit: int) -> list[dict[str, Any]]:
        if table == "jobs" and where.get("job_id") == "0xabsent":
            return []
        return [{"table": table, **where, "limit": limit}]

    async def act(self, action: dict[str, Any]) -> dict[str, Any]:
        if action["action"] == "nonsense":
            raise BadRequest("unknown action 'nonsense'")
        self.actions.append(action)
        return {"seq": 1, "rejected": ""}


def _ask(method: str, path: str, *, token: str | None = TOKEN, **kwargs: Any) -> httpx.Response:
    backend = FakeBackend()
    app = ApiApp(backend, TOKEN, Metrics())

    async def go() -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            return await client.request(method, path, headers=headers, **kwargs)

    return trio.run(go)


def test_token_is_required_except_for_health_and_description() -> None:
    assert _ask("GET", "/v1/status", token=None).status_code == 401
    assert _ask("GET", "/v1/status", token="wrong").status_code == 401
    assert _ask("GET", "/metrics", token=None).status_code == 401
    assert _ask("GET", "/healthz", token=None).status_code == 200
    assert _ask("GET", "/openapi.json", token=None).status_code == 200
    assert _ask("GET", "/v1/status").json() == {"role": "client"}


def test_tables_filters_and_errors() -> None:
    assert _ask("GET", "/v1/jobs?status=running&limit=5").json()["jobs"][0] == {
        "table": "jobs",
        "status": "running",
        "limit": 5,
    }
    assert _ask("GET", "/v1/jobs/0xABSENT").status_code == 404
    assert _ask("GET", "/v1/jobs?limit=many").status_code == 400
    assert _ask("POST", "/v1/actions", content=b"not json").status_code == 400
    assert _ask("POST", "/v1/actions", json={"action": "nonsense"}).status_code == 400
    assert _ask("POST", "/v1/actions", json={"action": "withdraw", "amount": 1}).json()["seq"] == 1
    assert _ask("GET", "/nowhere").status_code == 404


def test_metrics_are_prometheus_text() -> None:
    answer = _ask("GET", "/metrics")
    assert answer.headers["content-type"].startswith("text/plain")
    assert "capa_effects_pending" in answer.text


def test_openapi_lists_every_route_with_its_security() -> None:
    document = openapi_document()
    assert document["openapi"].startswith("3.")
    assert document["paths"]["/v1/status"]["get"]["security"] == [{"token": []}]
    assert document["paths"]["/healthz"]["get"]["security"] == []
    assert "requestBody" in document["paths"]["/v1/actions"]["post"]

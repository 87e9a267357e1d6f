"""JSON-RPC over httpx with several endpoints: failover, retries with backoff, a timeout per request.

Native async (httpx runs on trio), so no worker thread is needed for the daemon's chain traffic.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
import trio

from node.chain.errors import RpcRequestError, RpcUnavailable
from node.metrics import Metrics

log = logging.getLogger(__name__)


class JsonRpc(Protocol):
    async def call(self, method: str, params: Sequence[Any]) -> Any: ...


@dataclass
class _Endpoint:
    url: str
    down_until: float = 0.0
    failures: int = 0


class FailoverRpc:
    """Sends each request to the first healthy endpoint; a transport failure moves to the next.

    A failing endpoint is skipped for a growing pause; when every endpoint fails the call
    waits and retries until `retry_for` seconds have passed, then raises RpcUnavailable.
    JSON-RPC error answers are not failures of the endpoint and raise RpcRequestError at once.
    """

    def __init__(
        self,
        urls: Sequence[str],
        *,
        timeout: float = 10.0,
        retry_for: float = 30.0,
        max_pause: float = 5.0,
        metrics: Metrics | None = None,
    ) -> None:
        if not urls:
            raise ValueError("at least one RPC URL is needed")
        self._endpoints = [_Endpoint(u) for u in urls]
        self._timeout = timeout
        self._retry_for = retry_for
        self._max_pause = max_pause
        self._metrics = metrics
        self._ids = itertools.count(1)
        self._http = httpx.AsyncClient(timeout=timeout, trust_env=False)
        self._current = 0

    @property
    def active_url(self) -> str:
        return self._endpoints[self._current].url

    async def aclose(self) -> None:
        with trio.CancelScope(shield=True):
            await self._http.aclose()

    async def call(self, method: str, params: Sequence[Any]) -> Any:
        deadline = trio.current_time() + self._retry_for
        pause = 0.05
        last_error = "no endpoint tried"
        while True:
            for index in self._order():
                endpoint = self._endpoints[index]
                try:
                    result = await self._request(endpoint.url, method, params)
                except _TransportFailure as exc:
                    last_error = f"{endpoint.url}: {exc}"
                    self._mark_down(index, str(exc))
                    continue
                self._mark_up(index)
                return result
            now = trio.current_time()
            if now >= deadline:
                raise RpcUnavailable(
                    f"no RPC endpoint answered {method} for {self._retry_for:.0f}s ({last_error})"
                )
            await trio.sleep(min(pause, deadline - now))
            pause = min(pause * 2, self._max_pause)

    def _order(self) -> list[int]:
        """Healthy endpoints first, in configured order, starting from the one in use."""
        now = trio.current_time()
        count = len(self._endpoints)
        rotated = [(self._current + i) % count for i in range(count)]
        healthy = [i for i in rotated if self._endpoints[i].down_until <= now]
        resting = sorted(
            (i for i in rotated if self._endpoints[i].down_until > now),
            key=lambda i: self._endpoints[i].down_until,
        )
        # Prefer the configured order among the healthy (the first URL is the preferred one).
        return sorted(healthy) + resting

    def _mark_down(self, index: int, reason: str) -> None:
        endpoint = self._endpoints[index]
        endpoint.failures += 1
        endpoint.down_until = trio.current_time() + min(0.25 * 2**endpoint.failures, 30.0)
        if self._metrics is not None:
            self._metrics.rpc_failures.labels(endpoint.url).inc()
        if endpoint.failures == 1:
            log.warning("RPC endpoint %s failed: %s", endpoint.url, reason)

    def _mark_up(self, index: int) -> None:
        endpoint = self._endpoints[index]
        if endpoint.failures:
            log.info("RPC endpoint %s answers again", endpoint.url)
        endpoint.failures = 0
        endpoint.down_until = 0.0
        if index != self._current:
            if self._metrics is not None:
                self._metrics.rpc_failovers.inc()
            log.info("RPC now through %s", endpoint.url)
            self._current = index

    async def _request(self, url: str, method: str, params: Sequence[Any]) -> Any:
        payload = {
            "jsonrpc": "2.0",
            "id": next(self._ids),
            "method": method,
            "params": list(params),
        }
        try:
            with trio.fail_after(self._timeout):
                response = await self._http.post(url, json=payload)
        except trio.TooSlowError as exc:
            raise _TransportFailure(f"no answer in {self._timeout}s") from exc
        except httpx.HTTPError as exc:
            raise _TransportFailure(f"{type(exc).__name__}: {exc}") from exc
        if response.status_code >= 500 or response.status_code in (408, 429):
            raise _TransportFailure(f"HTTP {response.status_code}")
        try:
            body = response.json()
        except ValueError as exc:
            raise _TransportFailure(f"HTTP {response.status_code}, not JSON") from exc
        if not isinstance(body, dict):
            raise _TransportFailure("answer is not a JSON-RPC object")
        error = body.get("error")
        if error is not None:
            data = error.get("data") if isinstance(error, dict) else None
            raw = None
            if isinstance(data, str) and data.startswith("0x"):
                try:
                    raw = bytes.fromhex(data[2:])
                except ValueError:
                    raw = None
            code = int(error.get("code", 0)) if isinstance(error, dict) else 0
            message = str(error.get("message", error)) if isinstance(error, dict) else str(error)
            raise RpcRequestError(method, code, message, raw)
        if "result" not in body:
            raise _TransportFailure("answer has neither result nor error")
        return body["result"]


class _TransportFailure(Exception):
    """The endpoint, not the request, is at fault: try another."""

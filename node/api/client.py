"""The CLI's side of the API: find the daemon through its URL and token files, ask, decode."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from node.api.errors import ApiError, DaemonUnreachable
from node.api.server import url_file_for


class ApiClient:
    def __init__(self, url: str, token: str, *, timeout: float = 10.0) -> None:
        self._http = httpx.Client(
            base_url=url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout,
            trust_env=False,
        )

    @classmethod
    def from_token_file(cls, token_file: Path) -> ApiClient:
        try:
            token = token_file.read_text().strip()
            url = url_file_for(token_file).read_text().strip()
        except FileNotFoundError as exc:
            raise DaemonUnreachable(
                f"no running daemon found ({exc.filename} missing): start it with `capa node run`"
            ) from exc
        return cls(url, token)

    def get(self, path: str, **params: str) -> Any:
        return self._request("GET", path, params=params)

    def act(self, action: dict[str, Any]) -> Any:
        return self._request("POST", "/v1/actions", json=action)

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise DaemonUnreachable(
                f"daemon at {self._http.base_url} does not answer: {exc}"
            ) from exc
        if response.status_code != 200:
            try:
                detail = response.json().get("error", response.text)
            except ValueError:
                detail = response.text
            raise ApiError(f"{method} {path}: HTTP {response.status_code}: {detail}")
        if response.headers.get("content-type", "").startswith("application/json"):
            return response.json()
        return response.text

"""The CLI's side of the API: find the daemon through its URL and token files, ask, decode.

Requests are built from, and answers parsed into, the models the daemon's app serves.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, TypeAdapter, ValidationError

from node.api import paths
from node.api.discovery import url_file_for
from node.api.errors import ApiError, DaemonRefused, DaemonUnreachable
from node.api.models import (
    AcceptJob,
    Action,
    ActionOutcome,
    CancelJob,
    ClaimTimeout,
    ErrorBody,
    JobIdText,
    JobList,
    JobView,
    NodeStatus,
    OfferList,
    OfferView,
    StagedInput,
    SubmitJob,
    SubmittedJob,
    Withdraw,
)
from node.state.model import JobStatus

Answer = TypeVar("Answer", bound=BaseModel)

_JOB_ID: TypeAdapter[str] = TypeAdapter(JobIdText)


class ApiClient:
    def __init__(
        self,
        url: str,
        token: str,
        *,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._http = httpx.Client(
            base_url=url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout,
            trust_env=False,
            transport=transport,
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

    def close(self) -> None:
        self._http.close()

    # ------------------------------------------------------------------ reads

    def status(self) -> NodeStatus:
        return self._request("GET", paths.STATUS, NodeStatus)

    def jobs(self, status: JobStatus | None = None, *, limit: int = 100) -> list[JobView]:
        params: dict[str, str | int] = {"limit": limit}
        if status is not None:
            params["status"] = status.value
        return self._request("GET", paths.JOBS, JobList, params=params).jobs

    def job(self, job_id: str) -> JobView:
        return self._request("GET", _job_path(paths.JOB, job_id), JobView)

    def offers(self, *, limit: int = 100) -> list[OfferView]:
        return self._request("GET", paths.OFFERS, OfferList, params={"limit": limit}).offers

    # ------------------------------------------------------------------ actions

    def stage_input(self, data: bytes) -> StagedInput:
        return self._request(
            "POST",
            paths.INPUTS,
            StagedInput,
            content=data,
            headers={"content-type": "application/octet-stream"},
        )

    def submit(self, action: SubmitJob) -> SubmittedJob:
        body = action.model_dump(mode="json", exclude_none=True)
        return self._request("POST", paths.JOBS, SubmittedJob, json=body)

    def output(self, job_id: str) -> bytes:
        return self._send("GET", _job_path(paths.JOB_OUTPUT, job_id)).content

    def accept_job(self, job_id: str, action: AcceptJob) -> ActionOutcome:
        return self._act(_job_path(paths.ACCEPT_JOB, job_id), action)

    def claim_timeout(self, job_id: str, action: ClaimTimeout | None = None) -> ActionOutcome:
        return self._act(_job_path(paths.CLAIM_TIMEOUT, job_id), action or ClaimTimeout())

    def cancel_job(self, job_id: str, action: CancelJob | None = None) -> ActionOutcome:
        return self._act(_job_path(paths.CANCEL_JOB, job_id), action or CancelJob())

    def withdraw(self, action: Withdraw) -> ActionOutcome:
        return self._act(paths.WITHDRAWALS, action)

    # ------------------------------------------------------------------ transport

    def _act(self, path: str, action: Action) -> ActionOutcome:
        body = action.model_dump(mode="json", exclude_none=True)
        return self._request("POST", path, ActionOutcome, json=body)

    def _request(self, method: str, path: str, answer: type[Answer], **kwargs: Any) -> Answer:
        response = self._send(method, path, **kwargs)
        try:
            return answer.model_validate_json(response.content)
        except ValidationError as exc:
            raise ApiError(
                f"{method} {path}: the daemon's answer is not a {answer.__name__}: {exc}"
            ) from exc

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise DaemonUnreachable(
                f"daemon at {self._http.base_url} does not answer: {exc}"
            ) from exc
        if response.status_code != 200:
            try:
                detail = ErrorBody.model_validate_json(response.content).error
            except ValidationError:
                detail = response.text
            raise DaemonRefused(
                f"{method} {path}: HTTP {response.status_code}: {detail}",
                status=response.status_code,
                detail=detail,
            )
        return response


def _job_path(template: str, job_id: str) -> str:
    """The path for `job_id`, checked first: a job id goes into the URL as it is."""
    try:
        checked = _JOB_ID.validate_python(job_id)
    except ValidationError as exc:
        raise ApiError(f"not a job id (0x and 64 hex digits): {job_id!r}") from exc
    return template.format(job_id=checked.lower())

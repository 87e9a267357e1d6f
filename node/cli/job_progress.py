"""How `capa job submit` and `capa job watch` show a job on its way.

Everything shown is read from the daemon's view of the job (GET /v1/jobs/{id}): its status
and the detail the client's state machine keeps (candidates, the one being tried, the
chain transactions, sizes). `describe` turns one view into the stage a person reads;
`Follower` polls and hands each change of stage to a display: a live line on a terminal,
plain lines (one per change of stage) anywhere else, nothing with `--json`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from time import monotonic, sleep
from typing import Any, Protocol

import typer

from node.amounts import format_amount
from node.api.client import ApiClient
from node.api.models import JobView
from node.state.model import JobStatus
from node.times import format_timestamp
from proofs.claims import TeeKind

# Where a job may still move; any other status is an end.
GOING = frozenset(
    {
        JobStatus.SUBMITTED,
        JobStatus.CHECKING,
        JobStatus.SEALING,
        JobStatus.QUOTING,
        JobStatus.REQUESTED,
        JobStatus.OPEN,
        JobStatus.ASSIGNED,
        JobStatus.DELIVERED,
        JobStatus.RUNNING,
        JobStatus.READY,
        JobStatus.SUBMITTING,
        JobStatus.SETTLED,
    }
)
POLL_S = 0.25


def kind_name(value: object) -> str | None:
    """A TEE kind code as its name; sim always says it is not hardware."""
    if not isinstance(value, int) or value == 0:
        return None
    try:
        kind = TeeKind(value)
    except ValueError:
        return str(value)
    name = kind.name.lower().replace("_", "-")
    return f"{name} (INSECURE: not hardware)" if kind is TeeKind.SIM else name


def detail_of(job: JobView) -> dict[str, Any]:
    try:
        detail = json.loads(job.detail or "{}")
    except ValueError:
        return {}
    return detail if isinstance(detail, dict) else {}


def _size(count: object) -> str:
    if not isinstance(count, int):
        return "? B"
    if count >= 1 << 20:
        return f"{count / (1 << 20):.1f} MiB"
    if count >= 1 << 10:
        return f"{count / (1 << 10):.1f} KiB"
    return f"{count} B"


def _candidates(detail: dict[str, Any]) -> int:
    try:
        found = json.loads(detail.get("candidates") or "[]")
    except ValueError:
        return 0
    return len(found) if isinstance(found, list) else 0


@dataclass(frozen=True)
class Stage:
    """One step of a job as shown: `name` for scripts and plain lines, `text` for people."""

    name: str
    text: str
    key: tuple[object, ...]  # a new key is a new stage (a next candidate, a new error)


def describe(job: JobView, *, upload_rate: float | None = None) -> Stage:
    """The stage a job is at, in words; `upload_rate` (B/s) when the follower measured it."""
    detail = detail_of(job)
    status = job.status
    index = detail.get("candidate", -1)
    count = _candidates(detail)
    nth = f"{index + 1}/{count}" if isinstance(index, int) and index >= 0 and count else "?"
    kind = kind_name(detail.get("tee_kind"))
    who = job.provider or "?"
    key: tuple[object, ...] = (status, index, job.provider, job.error)
    if status is JobStatus.SUBMITTED:
        return Stage("offers", "finding offers that match the job", key)
    if status is JobStatus.CHECKING:
        text = f"offers found: {count} candidates; checking evidence {nth} ({who})"
        return Stage("evidence", text, key)
    if status is JobStatus.SEALING:
        text = f"evidence verified {nth}: {who}, {kind or 'unknown kind'}; sealing the input"
        return Stage("evidence", text, key)
    if status is JobStatus.QUOTING:
        return Stage("quote", f"input sealed; asking {who} for a quote", key)
    if status is JobStatus.REQUESTED:
        text = f"quote: {format_amount(int(job.price))}; escrow transaction (matchJob) sent"
        return Stage("escrow", text, key)
    if status is JobStatus.ASSIGNED:
        tx = detail.get("match_tx") or "?"
        size = _size(detail.get("input_size"))
        note = f" ({job.error})" if job.error else ""
        text = (
            f"escrow: matched on chain (tx {tx}), deadline {format_timestamp(job.deadline)}; "
            f"uploading {size}{note}"
        )
        return Stage("upload", text, key)
    if status is JobStatus.DELIVERED:
        rate = f" at {_size(int(upload_rate))}/s" if upload_rate else ""
        size = _size(detail.get("input_size"))
        note = f" ({job.error})" if job.error else ""
        text = f"uploaded {size}{rate}; running in the enclave{note}"
        return Stage("running", text, key)
    if status is JobStatus.SETTLED:
        tx = detail.get("settle_tx") or "?"
        return Stage("download", f"settled on chain (tx {tx}); downloading the output", key)
    if status is JobStatus.VERIFIED:
        size = _size(detail.get("output_size"))
        digest = detail.get("output_sha256") or "?"
        insecure = " [INSECURE sim enclave]" if detail.get("insecure") else ""
        text = f"output checked and decrypted: {size}, sha256 {digest}{insecure}"
        return Stage("verified", text, key)
    reason = f": {job.error}" if job.error else ""
    return Stage(status.value, f"{status.value}{reason}", key)


class Display(Protocol):
    def show(self, job: JobView, stage: Stage, changed: bool) -> None: ...

    def close(self) -> None: ...


class PlainLines:
    """One line per change of stage (for logs and pipes)."""

    def show(self, job: JobView, stage: Stage, changed: bool) -> None:
        if changed:
            typer.echo(f"  {stage.name}: {stage.text}")

    def close(self) -> None:
        pass


class Quiet:
    """Nothing while following (`--json` prints one object at the end)."""

    def show(self, job: JobView, stage: Stage, changed: bool) -> None:
        pass

    def close(self) -> None:
        pass


class LiveLine:
    """At a terminal: each finished stage stays as a line; the current one is a live line
    with a spinner and the time spent in it."""

    def __init__(self) -> None:
        from rich.console import Console

        self._console = Console(highlight=False)
        self._status: Any = None
        self._since = monotonic()
        self._last: Stage | None = None

    def show(self, job: JobView, stage: Stage, changed: bool) -> None:
        if changed:
            if self._last is not None:
                self._console.print(f"  [green]✓[/green] {self._last.name}: {self._last.text}")
            self._last = stage
            self._since = monotonic()
        spent = int(monotonic() - self._since)
        text = f"{stage.name}: {stage.text}  [dim]{spent}s[/dim]"
        if self._status is None:
            self._status = self._console.status(text)
            self._status.start()
        else:
            self._status.update(text)

    def close(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None
        if self._last is not None:
            self._console.print(f"  {self._last.name}: {self._last.text}")
            self._last = None


def display_for(*, as_json: bool, terminal: bool) -> Display:
    if as_json:
        return Quiet()
    return LiveLine() if terminal else PlainLines()


class Follower:
    """Polls a job until it ends (or `give_up()` says stop), showing each change of stage."""

    def __init__(self, api: ApiClient, display: Display, *, clock: Callable[[], float]) -> None:
        self._api = api
        self._display = display
        self._clock = clock

    def follow(self, job_id: str, *, give_up: Callable[[JobView], bool]) -> JobView:
        last_key: tuple[object, ...] | None = None
        upload_started: float | None = None
        rate: float | None = None
        try:
            while True:
                job = self._api.job(job_id)
                if job.status is JobStatus.ASSIGNED and upload_started is None:
                    upload_started = self._clock()
                if job.status is JobStatus.DELIVERED and upload_started is not None and not rate:
                    size = detail_of(job).get("input_size")
                    spent = max(self._clock() - upload_started, POLL_S)
                    rate = size / spent if isinstance(size, int) and size else None
                stage = describe(job, upload_rate=rate)
                self._display.show(job, stage, stage.key != last_key)
                last_key = stage.key
                if job.status not in GOING or give_up(job):
                    return job
                sleep(POLL_S)
        finally:
            self._display.close()

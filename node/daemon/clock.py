"""The clock: turns the passing of chain time into state changes.

Chain time is the newer of the last block's timestamp and this machine's clock: a chain
that mines only on demand (a devnet) does not stop time, and a chain ahead of the local
clock is believed. The clock only observes: it reports a deadline passed or a key near its
expiry, and the transitions decide what to do about it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import trio

from node.config.model import Role
from node.daemon.state_service import StateService
from node.state import changes as sc
from node.state.model import JobStatus, KeyStatus
from node.state.values import Address, effect_id

if TYPE_CHECKING:
    from trio_typing import TaskStatus

log = logging.getLogger(__name__)

_CLAIMABLE = frozenset({JobStatus.ASSIGNED, JobStatus.DELIVERED})


class Clock:
    def __init__(
        self,
        service: StateService,
        chain_time: Callable[[], int],
        *,
        interval: float = 2.0,
        rekey_margin_s: int = 3600,
        batch_max_wait_s: int = 30,
    ) -> None:
        self._service = service
        self._chain_time = chain_time
        self._interval = interval
        self._rekey_margin = rekey_margin_s
        self._batch_wait = batch_max_wait_s

    def now(self) -> int:
        return max(self._chain_time(), int(time.time()))

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            changes = self.due(self.now())
            if changes:
                await self._service.submit(changes)
            await trio.sleep(self._interval)

    def due(self, now: int) -> list[sc.StateChange]:
        """What the passing of time to `now` makes known; nothing twice while it is handled."""
        state = self._service.state
        out: list[sc.StateChange] = []
        role = self._service.me.role
        if role is Role.CLIENT:
            for job in state.jobs.values():
                claim = effect_id("claimTimeout", job.job_id)
                if (
                    job.status in _CLAIMABLE
                    and 0 < job.deadline < now
                    and claim not in state.pending
                ):
                    out.append(sc.DeadlinePassed(job.job_id, now))
        if role is Role.PROVIDER:
            boot = state.facts.boot_id
            for key in state.keys.values():
                if (
                    key.status is KeyStatus.REGISTERED
                    and key.boot_id == boot
                    and 0 < key.expires_at - self._rekey_margin <= now
                ):
                    out.append(sc.KeyExpiring(key.enclave_key, now))
            oldest: dict[str, int] = {}
            for job in state.jobs.values():
                if job.status is JobStatus.READY and job.enclave_key is not None:
                    oldest[job.enclave_key] = min(
                        oldest.get(job.enclave_key, job.ready_at), job.ready_at
                    )
            for enclave_key, ready_at in oldest.items():
                if ready_at + self._batch_wait <= now:
                    out.append(sc.BatchDue(Address(enclave_key), now))
        return out

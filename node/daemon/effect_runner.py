"""Runs pending effects through their handlers; each handler's answer is a state change.

An effect leaves the pending set only when a committed change settles it, so a handler that
fails is retried after a pause, and one that succeeded is not run again while its settling
change is on its way. Effects without a handler in this build stay pending and visible.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

import trio

from node.daemon.state_service import StateService
from node.metrics import Metrics
from node.state.changes import StateChange
from node.state.effects import Effect
from node.state.values import EffectId

if TYPE_CHECKING:
    # trio-typing's stale trio-stubs (pulled in by libp2p) hide trio.TaskStatus from mypy.
    from trio_typing import TaskStatus

log = logging.getLogger(__name__)


class EffectHandler(Protocol):
    async def execute(self, effect: Effect) -> StateChange | None: ...


class EffectRunner:
    def __init__(
        self,
        service: StateService,
        handlers: Mapping[type[Effect], EffectHandler],
        metrics: Metrics,
        *,
        concurrency: int = 8,
        retry_pause: float = 2.0,
    ) -> None:
        self._service = service
        self._handlers = dict(handlers)
        self._metrics = metrics
        self._limiter = trio.CapacityLimiter(concurrency)
        self._retry_pause = retry_pause
        self._busy: set[EffectId] = set()
        self._reported_unhandled: set[str] = set()

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            task_status.started()
            seen = -1
            while True:
                pending = self._service.state.pending
                self._busy &= set(pending)
                for effect in list(pending.values()):
                    if effect.effect_id in self._busy:
                        continue
                    handler = self._handlers.get(type(effect))
                    if handler is None:
                        self._report_unhandled(effect)
                        continue
                    self._busy.add(effect.effect_id)
                    nursery.start_soon(self._execute, handler, effect)
                seen = await self._service.wait_for_change(seen)

    async def _execute(self, handler: EffectHandler, effect: Effect) -> None:
        async with self._limiter:
            try:
                change = await handler.execute(effect)
            except Exception as exc:
                self._metrics.effect_failures.labels(type(effect).__name__).inc()
                log.warning(
                    "effect %s failed, retrying in %.0fs: %s",
                    effect.effect_id,
                    self._retry_pause,
                    exc,
                )
                await trio.sleep(self._retry_pause)
                self._busy.discard(effect.effect_id)
                # Wake the loop so the effect is picked up again.
                await self._service.submit([])
                return
        if change is not None:
            await self._service.submit([change])

    def _report_unhandled(self, effect: Effect) -> None:
        kind = type(effect).__name__
        if kind not in self._reported_unhandled:
            self._reported_unhandled.add(kind)
            log.info("%s effects wait for a component this node does not run yet", kind)

"""The state service: the only writer of state. Changes in, transitions, one commit per batch.

Inputs arrive on one bounded channel (chain batches with their cursor, executor results,
CLI actions). Each batch is one SQLite transaction holding the changes, the effects they
produced, the settlements and the chain cursor; the in-memory state follows the commit.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import trio

from node.daemon.alerts import warn_about
from node.daemon.errors import StateDiverged
from node.metrics import Metrics
from node.state.changes import StateChange
from node.state.machine import transition
from node.state.model import Identity, NodeState, StateView
from node.store.errors import StoreError
from node.store.records import ChainCursor
from node.store.store import Store

if TYPE_CHECKING:
    # trio-typing's stale trio-stubs (pulled in by libp2p) hide trio.TaskStatus from mypy.
    from trio_typing import TaskStatus

log = logging.getLogger(__name__)

_MAX_BATCH = 256


@dataclass(frozen=True)
class Outcome:
    origin: str
    seq: int | None  # None: already recorded, nothing done
    rejected: str = ""
    reply: str = ""  # what the transition answers a peer's request with (JSON)


@dataclass
class _Inbound:
    changes: Sequence[StateChange]
    cursor: ChainCursor | None
    done: trio.Event | None = None
    outcomes: list[Outcome] = field(default_factory=list)


def rebuild_state(store: Store, me: Identity) -> NodeState:
    """The latest snapshot plus every change after it, through the same pure transitions.

    Pending effects are then taken from the store: what was recorded is what may have been
    executed, whatever today's transitions would produce.
    """
    state = store.latest_snapshot() or NodeState()
    view = StateView(state)
    for stored in store.changes_after(state.last_seq):
        state.absorb(transition(me, view, stored.change), stored.seq)
    state.pending = {e.effect_id: e for e in store.pending_effects()}
    return state


class StateService:
    def __init__(
        self,
        store: Store,
        me: Identity,
        state: NodeState,
        metrics: Metrics,
        *,
        snapshot_every: int = 10_000,
        capacity: int = 64,
    ) -> None:
        self.store = store
        self.me = me
        self.state = state
        self._view = StateView(state)
        self._metrics = metrics
        self._snapshot_every = snapshot_every
        self._last_snapshot = state.last_seq
        self._send, self._receive = trio.open_memory_channel[_Inbound](capacity)
        self._changed = trio.Event()
        self.version = 0  # grows at every commit; waiters compare against it
        self.finished = trio.Event()  # set when `run` has drained its queue and returned
        metrics.effects_pending.set(len(state.pending))

    # ------------------------------------------------------------------ inputs

    async def submit(
        self, changes: Sequence[StateChange], cursor: ChainCursor | None = None
    ) -> None:
        """Queue changes (waits while the queue is full: back-pressure on the producer)."""
        await self._send.send(_Inbound(changes, cursor))

    async def request(self, change: StateChange, *, timeout: float = 10.0) -> Outcome:
        """Queue one change and wait for its commit (the API's actions)."""
        item = _Inbound((change,), None, trio.Event())
        with trio.fail_after(timeout):
            await self._send.send(item)
            assert item.done is not None
            await item.done.wait()
        return item.outcomes[0]

    def close_inputs(self) -> None:
        """No more inputs: `run` returns once the queue is drained."""
        self._send.close()

    async def wait_for_change(self, seen: int) -> int:
        """Wait until a commit newer than version `seen`; returns the new version."""
        while self.version <= seen:
            await self._changed.wait()
        return self.version

    # ------------------------------------------------------------------ the loop

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        try:
            async with self._receive:
                async for item in self._receive:
                    batch = [item]
                    while len(batch) < _MAX_BATCH:
                        try:
                            batch.append(self._receive.receive_nowait())
                        except (trio.WouldBlock, trio.EndOfChannel):
                            break
                    self.apply(batch)
        finally:
            self.finished.set()

    def apply(self, batch: list[_Inbound]) -> None:
        started = time.perf_counter()
        kinds: list[str] = []
        try:
            with self.store.transaction() as conn:
                for item in batch:
                    for change in item.changes:
                        seq = self.store.append_change(conn, change)
                        if seq is None:
                            item.outcomes.append(Outcome(change.origin, None))
                            self._metrics.duplicate_changes.inc()
                            continue
                        warn_about(self.me, self._view, change)
                        step = transition(self.me, self._view, change)
                        applied = self.state.absorb(step, seq)
                        self.store.save_step(conn, step, seq, applied)
                        item.outcomes.append(Outcome(change.origin, seq, step.rejected, step.reply))
                        kinds.append(type(change).__name__)
                    if item.cursor is not None:
                        self.store.set_cursor(conn, item.cursor)
        except StoreError as exc:
            # The in-memory state already moved past what the store holds.
            raise StateDiverged(f"state not recorded, restart to replay: {exc}") from exc
        self._metrics.commit_seconds.observe(time.perf_counter() - started)
        for kind in kinds:
            self._metrics.state_changes.labels(kind).inc()
        self._metrics.effects_pending.set(len(self.state.pending))
        for item in batch:
            if item.done is not None:
                item.done.set()
        self.version += 1
        self._changed.set()
        self._changed = trio.Event()
        if self.state.last_seq - self._last_snapshot >= self._snapshot_every:
            self.store.save_snapshot(self.state)
            self._last_snapshot = self.state.last_seq
            log.info("snapshot at state change #%d", self.state.last_seq)

    def apply_now(
        self, changes: Sequence[StateChange], cursor: ChainCursor | None = None
    ) -> list[Outcome]:
        """Commit synchronously (benchmarks, tools): the same path as the loop."""
        item = _Inbound(changes, cursor)
        self.apply([item])
        return item.outcomes

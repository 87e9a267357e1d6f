"""The event watcher: confirmed market events become state changes; shallower ones a view.

Each poll: check that the newest block we remember is still on the chain (else walk back
to the fork point and roll back what we knew above it), turn logs of blocks at least
`confirmations` deep into state changes committed together with the new cursor, and
rebuild the unconfirmed view of the blocks above.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import trio
from eth_abi.abi import decode
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from node.chain.artifacts import load_artifact
from node.chain.rpc import JsonRpc
from node.metrics import Metrics
from node.state import changes as sc
from node.state.values import Address, BlockNumber, Hash32, TxHash, to_hash32, to_job_id
from node.store.records import ChainCursor, SeenBlock, ViewEvent
from node.store.store import Store

if TYPE_CHECKING:
    # trio-typing's stale trio-stubs (pulled in by libp2p) hide trio.TaskStatus from mypy.
    from trio_typing import TaskStatus

log = logging.getLogger(__name__)

ChangeSink = Callable[[Sequence[sc.StateChange], ChainCursor | None], Awaitable[None]]


@dataclass(frozen=True)
class DecodedLog:
    name: str
    fields: dict[str, Any]
    block_number: BlockNumber
    block_hash: Hash32
    tx_hash: TxHash
    log_index: int
    log_key: str


class MarketEvents:
    """Decodes JobMarket logs from the committed ABI."""

    def __init__(self) -> None:
        self._by_topic: dict[str, tuple[str, list[dict[str, Any]]]] = {}
        for item in load_artifact("JobMarket").abi:
            if item["type"] != "event":
                continue
            types = ",".join(i["type"] for i in item["inputs"])
            topic = "0x" + keccak(text=f"{item['name']}({types})").hex()
            self._by_topic[topic] = (item["name"], item["inputs"])

    def decode(self, entry: dict[str, Any]) -> DecodedLog | None:
        topics = entry.get("topics") or []
        known = self._by_topic.get(topics[0].lower()) if topics else None
        if known is None:
            return None
        name, inputs = known
        indexed = [i for i in inputs if i["indexed"]]
        plain = [i for i in inputs if not i["indexed"]]
        values: dict[str, Any] = {}
        for item, topic in zip(indexed, topics[1:], strict=False):
            (values[item["name"]],) = decode([item["type"]], bytes.fromhex(topic[2:]))
        data = bytes.fromhex(entry["data"][2:])
        for item, value in zip(plain, decode([i["type"] for i in plain], data), strict=True):
            values[item["name"]] = value
        for item in inputs:
            value = values[item["name"]]
            if item["type"] == "address":
                values[item["name"]] = to_checksum_address(value)
            elif isinstance(value, bytes):
                values[item["name"]] = "0x" + value.hex()
        key_material = "".join(topics).encode() + data
        return DecodedLog(
            name=name,
            fields=values,
            block_number=BlockNumber(int(entry["blockNumber"], 16)),
            block_hash=to_hash32(entry["blockHash"]),
            tx_hash=TxHash(entry["transactionHash"].lower()),
            log_index=int(entry["logIndex"], 16),
            log_key=keccak(key_material).hex()[:16],
        )


def to_state_change(entry: DecodedLog) -> sc.StateChange | None:
    """The state change a confirmed market event makes, if the node cares about it."""
    f = entry.fields
    base = (entry.block_number, entry.block_hash, entry.tx_hash, entry.log_key)
    match entry.name:
        case "JobMatched":
            return sc.JobMatched(
                *base,
                job_id=to_job_id(f["jobId"]),
                client=Address(f["client"]),
                provider=Address(f["provider"]),
                price=f["price"],
                deadline=f["deadline"],
                spec_hash=to_hash32(f["specHash"]),
                input_hash=to_hash32(f["inputHash"]),
            )
        case "JobPosted":
            return sc.JobPosted(
                *base,
                job_id=to_job_id(f["jobId"]),
                client=Address(f["client"]),
                max_price=f["maxPrice"],
                deadline=f["deadline"],
                tee_kinds=f["teeKinds"],
                spec_hash=to_hash32(f["specHash"]),
                input_hash=to_hash32(f["inputHash"]),
            )
        case "JobAccepted":
            return sc.JobAccepted(
                *base, job_id=to_job_id(f["jobId"]), provider=Address(f["provider"])
            )
        case "JobSettled":
            return sc.JobSettled(
                *base,
                job_id=to_job_id(f["jobId"]),
                provider=Address(f["provider"]),
                output_hash=to_hash32(f["outputHash"]),
                payout=f["payout"],
            )
        case "JobRefunded":
            return sc.JobRefunded(
                *base,
                job_id=to_job_id(f["jobId"]),
                client=Address(f["client"]),
                refund=f["refund"],
                slashed=f["slashed"],
            )
        case "JobReleased":
            return sc.JobReleased(
                *base,
                job_id=to_job_id(f["jobId"]),
                client=Address(f["client"]),
                provider=Address(f["provider"]),
                refund=f["refund"],
            )
        case "JobCancelled":
            return sc.JobCancelled(
                *base, job_id=to_job_id(f["jobId"]), client=Address(f["client"]), refund=f["refund"]
            )
    return None


class ChainWatcher:
    def __init__(
        self,
        rpc: JsonRpc,
        store: Store,
        sink: ChangeSink,
        *,
        market: Address,
        confirmations: int,
        poll_interval: float,
        start_block: int,
        log_range: int,
        metrics: Metrics,
        on_reorg: Callable[[BlockNumber], Awaitable[object]] | None = None,
    ) -> None:
        self._rpc = rpc
        # Told the fork point of each reorganisation before the watcher moves past it (the
        # sender resends what the lost blocks held); if it fails, the next poll tries again.
        self._on_reorg = on_reorg
        self._store = store
        self._sink = sink
        self._market = market
        self._depth = confirmations
        self._poll_interval = poll_interval
        self._log_range = log_range
        self._metrics = metrics
        self._events = MarketEvents()
        stored = store.cursor()
        self.cursor: ChainCursor | None = stored
        self._next_block = stored.number + 1 if stored else start_block
        self._known: dict[int, Hash32] = {b.number: b.block_hash for b in store.seen_blocks()}
        self._last_head: int | None = None
        self.head_time = 0  # the newest block's timestamp: the chain's clock
        self.polled = trio.Event()  # set after each completed poll; replaced for the next

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            try:
                await self.poll_once()
            except Exception as exc:  # an RPC outage must not stop the watcher
                log.warning("chain poll failed, retrying: %s: %s", type(exc).__name__, exc)
            await trio.sleep(self._poll_interval)

    async def poll_once(self) -> None:
        head = int(await self._rpc.call("eth_blockNumber", []), 16)
        self._metrics.chain_head.set(head)
        reorged = await self._check_reorg()
        if head == self._last_head and not reorged:
            self._announce_poll()
            return
        self.head_time = max(self.head_time, int((await self._block(head))["timestamp"], 16))
        target = head - self._depth
        while self._next_block <= target:
            end = min(target, self._next_block + self._log_range - 1)
            await self._confirm_range(self._next_block, end)
        await self._refresh_view(max(target, self._next_block - 1), head)
        self._last_head = head
        self._announce_poll()

    def _announce_poll(self) -> None:
        self.polled.set()
        self.polled = trio.Event()

    async def _confirm_range(self, start: int, end: int) -> None:
        logs = await self._logs(start, end)
        block = await self._block(end)
        changes = [c for c in (to_state_change(e) for e in logs) if c is not None]
        cursor = ChainCursor(BlockNumber(end), to_hash32(block["hash"]))
        await self._sink(changes, cursor)
        self.cursor = cursor
        self._next_block = end + 1
        # Only the newest confirmed block is needed to detect a reorganisation below it.
        self._known = {n: h for n, h in self._known.items() if n > end}
        self._known[end] = cursor.block_hash
        self._metrics.chain_confirmed.set(end)

    async def _refresh_view(self, confirmed: int, head: int) -> None:
        if head <= confirmed:
            self._store.replace_view(BlockNumber(confirmed), [], [])
            return
        blocks = []
        for number in range(confirmed + 1, head + 1):
            block = await self._block(number)
            blocks.append(SeenBlock(BlockNumber(number), to_hash32(block["hash"]), False))
        logs = await self._logs(confirmed + 1, head)
        # The logs must come from the blocks we just hashed: a reorg in between shows up here.
        hashes: dict[int, Hash32] = {b.number: b.block_hash for b in blocks}
        consistent = [e for e in logs if hashes.get(e.block_number) == e.block_hash]
        events = [
            ViewEvent(
                e.block_number,
                e.log_index,
                e.block_hash,
                e.tx_hash,
                e.name,
                json.dumps(e.fields, default=str),
            )
            for e in consistent
        ]
        self._store.replace_view(BlockNumber(confirmed), blocks, events)
        self._known = {n: h for n, h in self._known.items() if n <= confirmed}
        self._known.update(hashes)

    async def _check_reorg(self) -> bool:
        """Compare remembered block hashes with the chain; roll back above the fork point."""
        if not self._known:
            return False
        numbers = sorted(self._known, reverse=True)
        top = numbers[0]
        if await self._hash_at(top) == self._known[top]:
            return False
        # The fork is the highest block whose hash is still ours: looked for among the blocks
        # held in memory, then among the confirmed ones the store keeps below them.
        remembered: dict[int, Hash32] = {b.number: b.block_hash for b in self._store.seen_blocks()}
        remembered.update(self._known)
        below = sorted((n for n in remembered if n < top), reverse=True)
        fork = min(remembered) - 1
        for number in below:
            if await self._hash_at(number) == remembered[number]:
                fork = number
                break
        if self._on_reorg is not None:
            await self._on_reorg(BlockNumber(fork))
        self._metrics.reorgs.inc()
        log.warning("chain reorganised above block %d (we knew up to %d)", fork, top)
        self._store.forget_blocks_above(BlockNumber(fork))
        self._known = {n: h for n, h in self._known.items() if n <= fork}
        if self.cursor is not None and fork < self.cursor.number:
            # A block we had treated as confirmed is gone: the confirmation depth was too
            # shallow. Rescan from the fork; events of transactions mined again are refused
            # as duplicates by their origin, new ones are applied.
            self._metrics.deep_reorgs.inc()
            log.error(
                "confirmed block %d was reorganised (depth %d too shallow); rescanning from %d",
                self.cursor.number,
                self._depth,
                fork + 1,
            )
            fork_block = await self._block(fork)
            self.cursor = ChainCursor(BlockNumber(fork), to_hash32(fork_block["hash"]))
            self._known[fork] = self.cursor.block_hash
            await self._sink([], self.cursor)
            self._next_block = fork + 1
        self._last_head = None
        return True

    async def _hash_at(self, number: int) -> Hash32 | None:
        block = await self._rpc.call("eth_getBlockByNumber", [hex(number), False])
        return None if block is None else to_hash32(block["hash"])

    async def _block(self, number: int) -> dict[str, Any]:
        block = await self._rpc.call("eth_getBlockByNumber", [hex(number), False])
        if block is None:
            raise LookupError(f"block {number} is not available yet")
        return dict(block)

    async def _logs(self, start: int, end: int) -> list[DecodedLog]:
        raw = await self._rpc.call(
            "eth_getLogs",
            [{"address": self._market, "fromBlock": hex(start), "toBlock": hex(end)}],
        )
        decoded = [self._events.decode(entry) for entry in raw if not entry.get("removed")]
        return sorted(
            (d for d in decoded if d is not None), key=lambda d: (d.block_number, d.log_index)
        )

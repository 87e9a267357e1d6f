"""Plain rows the store hands out to the chain watcher, the sender and the API."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from node.state.values import Address, BlockNumber, EffectId, Hash32, TxHash


@dataclass(frozen=True)
class ChainCursor:
    """The last confirmed block whose events were turned into state changes."""

    number: BlockNumber
    block_hash: Hash32


@dataclass(frozen=True)
class SeenBlock:
    number: BlockNumber
    block_hash: Hash32
    confirmed: bool


@dataclass(frozen=True)
class ViewEvent:
    """An event in a block not yet deep enough to drive state (the unconfirmed view)."""

    block_number: BlockNumber
    log_index: int
    block_hash: Hash32
    tx_hash: TxHash
    kind: str
    body: str


class TxStatus(StrEnum):
    SIGNED = "signed"  # recorded, perhaps broadcast: resend these exact bytes
    CONFIRMED = "confirmed"
    REVERTED = "reverted"
    FAILED = "failed"  # nonce taken by something else: nothing of ours was mined


@dataclass(frozen=True)
class TxAttempt:
    tx_hash: TxHash
    raw: bytes
    max_fee: int
    priority_fee: int
    gas: int
    created_at: float


@dataclass(frozen=True)
class TxRecord:
    effect_id: EffectId
    sender: Address
    nonce: int
    status: TxStatus
    attempts: tuple[TxAttempt, ...]  # oldest first; the last one carries the highest fees
    mined_hash: TxHash | None
    block_number: BlockNumber | None
    reason: str

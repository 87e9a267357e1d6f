"""Effects: what a transition asks the outside world to do. Each has a unique, stable id.

An effect is recorded in the same SQLite transaction as the change that produced it and stays
pending until a later change settles it (a confirmed event, a transaction outcome, an
executor result); the id makes executing it again after a restart a no-op or a resume.
"""

from __future__ import annotations

from dataclasses import dataclass

from node.state.values import Address, EffectId, Hash32, JobId


@dataclass(frozen=True)
class Effect:
    effect_id: EffectId


@dataclass(frozen=True)
class SendTransaction(Effect):
    function: str  # a JobMarket function
    args: str  # ABI arguments as canonical JSON (bytes as 0x hex)
    value: int


@dataclass(frozen=True)
class StartJob(Effect):
    job_id: JobId
    input_hash: Hash32
    deadline: int


@dataclass(frozen=True)
class SendInput(Effect):
    job_id: JobId
    provider: Address


@dataclass(frozen=True)
class FetchOutput(Effect):
    job_id: JobId
    provider: Address
    output_hash: Hash32


@dataclass(frozen=True)
class Publish(Effect):
    topic: str
    payload: str


@dataclass(frozen=True)
class CheckEvidence(Effect):
    request_id: str
    evidence_hash: Hash32


@dataclass(frozen=True)
class Settlement:
    effect_id: EffectId
    ok: bool
    reason: str = ""

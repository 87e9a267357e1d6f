"""Shared builders for p2p integration tests: loopback nodes, signed offers, fake providers.

The attack tests' helpers (attack_harness.py, and the adversary.py and target_node.py
processes it starts) live next to this file; pytest runs with --import-mode=importlib,
so this directory is put on sys.path for them.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
import trio
from eth_account import Account

from node.chain.typed_data import JobRequest, Offer, Result, job_market_domain, sign_message
from node.p2p.config import GossipParams, P2PConfig
from node.p2p.errors import RemoteRefused
from node.p2p.evidence_protocol import EvidenceBundle
from node.p2p.identity import Multiaddr, NodeIdentity, PeerAddress, PeerId
from node.p2p.input_store import MemoryInputStore
from node.p2p.node import P2PNode, ProviderServices
from node.p2p.offers import ListingDetails, SignedOffer
from node.p2p.transfer import SealedResult
from scheduler.models import TcbStatus

sys.path.insert(0, str(Path(__file__).resolve().parent))

CHAIN_ID = 31337
MARKET = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
LOOPBACK = Multiaddr("/ip4/127.0.0.1/tcp/0")
ENCLAVE = "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512"


def make_config(**overrides: Any) -> P2PConfig:
    base = P2PConfig(
        chain_id=CHAIN_ID,
        market_address=MARKET,
        listen_addrs=(LOOPBACK,),
        dial_timeout_s=5.0,
        gossip=GossipParams(republish_interval_s=30.0),
    )
    return replace(base, **overrides)


def make_offer(provider: str, nonce: int = 1, valid_for_s: int = 3600, price: int = 10**9) -> Offer:
    return Offer(
        provider=provider,
        enclave_key=ENCLAVE,
        tee_kind=5,
        measurement=hashlib.sha256(b"workload").digest(),
        price=price,
        min_duration=60,
        max_duration=3600,
        valid_until=int(time.time()) + valid_for_s,
        request_hash=bytes(32),
        nonce=nonce,
    )


DETAILS = ListingDetails(cpu_cores=8, memory_mib=16384, tcb_status=TcbStatus.UP_TO_DATE)


@dataclass
class FakeProvider:
    """Provider-side services backed by memory, signing with a throwaway EVM key."""

    key: bytes = field(default_factory=lambda: os.urandom(32))
    inputs: MemoryInputStore = field(default_factory=MemoryInputStore)
    results: dict[bytes, SealedResult] = field(default_factory=dict)
    refuse_quotes: bool = False

    @property
    def address(self) -> str:
        return str(Account.from_key(self.key).address)

    async def current_evidence(self, enclave_key: str | None = None) -> EvidenceBundle | None:
        return EvidenceBundle(5, b'{"format":"capacloud-sim-evidence"}', "sim://none", 1700000000)

    async def quote(self, peer: PeerId, request: JobRequest, client: str) -> SignedOffer:
        if self.refuse_quotes:
            raise RemoteRefused("busy")
        offer = replace(
            make_offer(self.address, nonce=7), request_hash=request.request_hash(client)
        )
        return SignedOffer.sign(offer, CHAIN_ID, MARKET, self.key)

    async def result(self, peer: PeerId, job_id: bytes) -> SealedResult | None:
        return self.results.get(job_id)

    def put_result(self, job_id: bytes, output: bytes) -> SealedResult:
        receipt = Result(
            job_id, self.address, bytes(32), bytes(32), hashlib.sha256(output).digest()
        )
        signature = sign_message(job_market_domain(CHAIN_ID, MARKET), receipt, self.key)
        sealed = SealedResult(output, receipt, signature)
        self.results[job_id] = sealed
        return sealed

    def services(self) -> ProviderServices:
        return ProviderServices(self, self, self.inputs, self)


@asynccontextmanager
async def running(*nodes: P2PNode) -> AsyncIterator[trio.Nursery]:
    """Start nodes in order; on exit cancel them all (a clean stop raises nothing)."""
    async with trio.open_nursery() as nursery:
        for node in nodes:
            await nursery.start(node.run)
        yield nursery
        nursery.cancel_scope.cancel()


def address_of(node: P2PNode) -> PeerAddress:
    return node.host.listen_addresses()[0]


class P2PKit:
    """Everything tests share, handed out as one fixture (importlib mode forbids importing
    conftest)."""

    CHAIN_ID = CHAIN_ID
    MARKET = MARKET
    DETAILS = DETAILS
    FakeProvider = FakeProvider
    make_config = staticmethod(make_config)
    make_offer = staticmethod(make_offer)
    running = staticmethod(running)
    address_of = staticmethod(address_of)

    @staticmethod
    def node(provider: FakeProvider | None = None, **config: Any) -> P2PNode:
        return P2PNode(
            NodeIdentity.generate(),
            make_config(**config),
            provider.services() if provider is not None else None,
        )


@pytest.fixture
def kit() -> P2PKit:
    return P2PKit()

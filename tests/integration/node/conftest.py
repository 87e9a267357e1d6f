"""Fixtures: anvil per module, a fresh market per test, a staked provider.

Helpers shared by the tests live in node_harness.py next to this file (pytest runs with
--import-mode=importlib, so this directory is put on sys.path for them).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_account import Account

sys.path.insert(0, str(Path(__file__).resolve().parent))

from node_harness import MEASUREMENT, STAKE, TDX, Actors, rpc

from node.chain.anvil import DEV_PRIVATE_KEYS, AnvilNode, run_anvil
from node.chain.client import ChainClient
from node.chain.deploy import MarketConfig, deploy_market
from node.chain.devnet import SeededProvider, seed_provider
from node.chain.market import Market


@pytest.fixture(scope="module")
def anvil() -> Iterator[AnvilNode]:
    with run_anvil() as node:
        yield node


@pytest.fixture
def actors() -> Actors:
    keys = [Account.from_key(k) for k in DEV_PRIVATE_KEYS]
    return Actors(keys[0], keys[1], keys[2], [keys[5], keys[6], keys[7]])


@pytest.fixture
def market(anvil: AnvilNode, actors: Actors) -> Market:
    chain = ChainClient(anvil.rpc_url, expected_chain_id=anvil.chain_id)
    rpc(anvil.rpc_url, "evm_setAutomine", [True])
    return Market(chain, deploy_market(chain, actors.governance, MarketConfig()))


@pytest.fixture
def seeded(market: Market, actors: Actors) -> SeededProvider:
    return seed_provider(
        market,
        actors.governance,
        actors.committee,
        actors.provider,
        tee_kind=TDX,
        measurement=MEASUREMENT,
        stake=STAKE,
    )

"""A fresh anvil per module and a fresh deployment per test (cheap: three contracts)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount

from node.chain.anvil import DEV_PRIVATE_KEYS, AnvilNode, run_anvil
from node.chain.client import ChainClient
from node.chain.deploy import MarketConfig, deploy_market
from node.chain.market import Market


@dataclass(frozen=True)
class Actors:
    governance: LocalAccount
    provider: LocalAccount
    client: LocalAccount
    other_provider: LocalAccount
    relayer: LocalAccount
    committee: list[LocalAccount]


@pytest.fixture(scope="module")
def anvil() -> Iterator[AnvilNode]:
    with run_anvil() as node:
        yield node


@pytest.fixture
def chain(anvil: AnvilNode) -> ChainClient:
    return ChainClient(anvil.rpc_url, expected_chain_id=anvil.chain_id)


@pytest.fixture
def actors() -> Actors:
    keys = [Account.from_key(k) for k in DEV_PRIVATE_KEYS]
    return Actors(
        governance=keys[0],
        provider=keys[1],
        client=keys[2],
        other_provider=keys[3],
        relayer=keys[4],
        committee=[keys[5], keys[6], keys[7]],
    )


@pytest.fixture
def market(chain: ChainClient, actors: Actors) -> Market:
    deployment = deploy_market(chain, actors.governance, MarketConfig(fee_bps=250))
    return Market(chain, deployment)

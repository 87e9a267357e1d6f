"""A fresh anvil per module and a fresh deployment per test (cheap: three contracts)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from typer.testing import CliRunner, Result

from node.chain.anvil import DEV_PRIVATE_KEYS, AnvilNode, run_anvil
from node.chain.client import ChainClient
from node.chain.deploy import MarketConfig, deploy_market
from node.chain.market import Market
from node.cli.init import init_node
from node.cli.main import app
from node.config.loader import load_config
from node.config.model import Backend, Role
from node.keys.account import load_account


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


# ---------------------------------------------------------------- the CLI on a real chain

PASSWORD = "node password"
CLI_ENV = {"CAPA_KEYSTORE_PASSWORD": PASSWORD, "COLUMNS": "200", "CAPA_CONFIG": ""}


@dataclass(frozen=True)
class CliNode:
    """A node directory made by `capa init` against the test's deployment, its account funded."""

    config: Path
    address: str
    account: LocalAccount

    def run(self, *args: str, env: dict[str, str] | None = None) -> Result:
        """`capa ARGS` with this node's config (unless ARGS name another)."""
        config = [] if "--config" in args else ["--config", str(self.config)]
        return CliRunner().invoke(app, [*args, *config], env={**CLI_ENV, **(env or {})})


def fund(chain: ChainClient, address: str, wei: int) -> None:
    """Send `wei` from anvil's last dev account (no role in the tests' actors)."""
    sender = Account.from_key(DEV_PRIVATE_KEYS[9])
    tx = {
        "to": address,
        "value": wei,
        "gas": 21_000,
        "maxFeePerGas": 10**11,
        "maxPriorityFeePerGas": 10**9,
        "nonce": chain.w3.eth.get_transaction_count(sender.address, "pending"),
        "chainId": chain.chain_id,
    }
    chain.w3.eth.wait_for_transaction_receipt(
        chain.w3.eth.send_raw_transaction(sender.sign_transaction(tx).raw_transaction)
    )


def make_node(
    directory: Path, anvil: AnvilNode, market: Market, role: Role, *, funds: int = 10**20
) -> CliNode:
    result = init_node(
        directory,
        role,
        PASSWORD,
        rpc_urls=[anvil.rpc_url],
        chain_id=anvil.chain_id,
        market=market.deployment.market,
        api_port=0,
        scrypt_n=16,
        backend=Backend.SIM if role is Role.PROVIDER else None,
    )
    if funds:
        fund(market.client, result.address, funds)
    config = load_config(result.config_path, env={})
    account = load_account(config.keys.keystore, PASSWORD)
    return CliNode(result.config_path, result.address, account)


def advance_time(chain: ChainClient, seconds: int) -> None:
    chain.w3.provider.make_request("evm_increaseTime", [seconds])  # type: ignore[arg-type]
    chain.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]


@pytest.fixture
def provider_node(tmp_path: Path, anvil: AnvilNode, market: Market) -> CliNode:
    return make_node(tmp_path / "provider", anvil, market, Role.PROVIDER)


@pytest.fixture
def client_node(tmp_path: Path, anvil: AnvilNode, market: Market) -> CliNode:
    return make_node(tmp_path / "client", anvil, market, Role.CLIENT)

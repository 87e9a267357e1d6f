"""Deploy and wire ProviderRegistry, AttestationVerifier and JobMarket."""

from __future__ import annotations

from dataclasses import dataclass

from eth_account.signers.local import LocalAccount
from web3.types import Nonce
from web3.utils import get_create_address

from node.amounts import format_amount
from node.chain.artifacts import load_artifact
from node.chain.client import ChainClient
from node.chain.errors import ChainError, InsufficientFunds

NATIVE_TOKEN = "0x0000000000000000000000000000000000000000"


@dataclass(frozen=True)
class MarketConfig:
    """Deployment parameters; defaults suit a devnet (SIM allowed only where asked)."""

    token: str = NATIVE_TOKEN
    min_stake: int = 10**18
    max_job_duration: int = 24 * 3600
    dispute_window: int = 24 * 3600
    unbonding_delay: int = 3 * 24 * 3600
    fee_bps: int = 100
    slash_bps: int = 10_000  # stake reserved per job and slashed on a proven timeout, of the price
    slash_client_bps: int = 5_000  # the let-down client's share of a slash
    sim_allowed: bool = False


@dataclass(frozen=True)
class Deployment:
    chain_id: int
    registry: str
    verifier: str
    market: str
    governance: str
    treasury: str
    block_number: int


def deploy_market(
    client: ChainClient,
    deployer: LocalAccount,
    config: MarketConfig,
    *,
    governance: str | None = None,
    treasury: str | None = None,
) -> Deployment:
    """Deploy the three contracts, the registry wired to the market at deployment.

    The registry names its market in its constructor: the address the deployer's next
    contract creation will get. The market's constructor refuses a registry that names
    another address, so a deployment either wires the two to each other or fails.
    """
    gov = governance or deployer.address
    fees_to = treasury or gov
    verifier, _ = client.deploy("AttestationVerifier", deployer, gov, config.sim_allowed)
    nonce = client.w3.eth.get_transaction_count(deployer.address, "pending")
    predicted_market = get_create_address(deployer.address, Nonce(nonce + 1))
    registry, _ = client.deploy(
        "ProviderRegistry",
        deployer,
        config.token,
        gov,
        predicted_market,
        config.min_stake,
        config.max_job_duration,
        config.dispute_window,
        config.unbonding_delay,
    )
    market, receipt = client.deploy(
        "JobMarket",
        deployer,
        config.token,
        registry,
        verifier,
        fees_to,
        config.fee_bps,
        config.slash_bps,
        config.slash_client_bps,
    )
    if market.lower() != predicted_market.lower():
        # The market's constructor checks this; a mismatch here means it did not run as ours.
        raise ChainError(f"market deployed at {market}, registry expects {predicted_market}")
    return Deployment(
        chain_id=client.chain_id,
        registry=registry,
        verifier=verifier,
        market=market,
        governance=gov,
        treasury=fees_to,
        block_number=int(receipt["blockNumber"]),
    )


def _creation_gas_bound(name: str) -> int:
    """An upper bound of a contract creation's gas from its code sizes alone: the base
    transaction and creation costs, every byte of init code at the non-zero calldata price,
    200 gas per byte of deployed code, and room for the constructor's few storage writes."""
    artifact = load_artifact(name)
    return 53_000 + 16 * len(artifact.bytecode) + 200 * len(artifact.deployed_bytecode) + 100_000


def deployment_gas(
    client: ChainClient, deployer: LocalAccount, config: MarketConfig, governance: str
) -> int:
    """Gas the three deployments will take: the verifier and the registry estimated by the
    node, the market bounded from its code (its constructor reads the registry, which does
    not exist before the deployment)."""
    verifier = client.estimate_deploy(
        "AttestationVerifier", deployer, governance, config.sim_allowed
    )
    registry = client.estimate_deploy(
        "ProviderRegistry",
        deployer,
        config.token,
        governance,
        deployer.address,  # any non-zero market: the constructor only stores it
        config.min_stake,
        config.max_job_duration,
        config.dispute_window,
        config.unbonding_delay,
    )
    return verifier + registry + _creation_gas_bound("JobMarket")


def check_deployment_funds(
    client: ChainClient, deployer: LocalAccount, config: MarketConfig, governance: str
) -> int:
    """The deployment's cost at the current fees; InsufficientFunds before anything is sent
    when the deployer cannot pay it (a deployment that stops half way leaves contracts that
    nobody can use)."""
    cost = deployment_gas(client, deployer, config, governance) * client.max_fee_per_gas()
    balance = client.balance(deployer.address)
    if balance < cost:
        raise InsufficientFunds(
            deployer.address,
            f"it holds {format_amount(balance)}, deploying takes up to {format_amount(cost)} "
            "at the current gas price",
        )
    return cost

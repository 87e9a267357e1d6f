"""Deploy and wire ProviderRegistry, AttestationVerifier and JobMarket."""

from __future__ import annotations

from dataclasses import dataclass

from eth_account.signers.local import LocalAccount

from node.chain.client import ChainClient

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
    slash_bps: int = 10_000
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
    """Deploy the three contracts and give the registry its market.

    The deployer must be the registry's governance for the wiring step; pass another
    `governance` only when it will call `setMarket` itself.
    """
    gov = governance or deployer.address
    fees_to = treasury or gov
    registry, _ = client.deploy(
        "ProviderRegistry",
        deployer,
        config.token,
        gov,
        config.min_stake,
        config.max_job_duration,
        config.dispute_window,
        config.unbonding_delay,
    )
    verifier, _ = client.deploy("AttestationVerifier", deployer, gov, config.sim_allowed)
    market, receipt = client.deploy(
        "JobMarket",
        deployer,
        config.token,
        registry,
        verifier,
        fees_to,
        config.fee_bps,
        config.slash_bps,
    )
    if gov == deployer.address:
        client.transact(
            "ProviderRegistry",
            client.contract("ProviderRegistry", registry).functions.setMarket(market),
            deployer,
        )
    return Deployment(
        chain_id=client.chain_id,
        registry=registry,
        verifier=verifier,
        market=market,
        governance=gov,
        treasury=fees_to,
        block_number=int(receipt["blockNumber"]),
    )

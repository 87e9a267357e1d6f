"""Devnet tools: seed a provider (stake, an allowed kind and measurement, a registered key),
quote and match; `python -m node.chain.devnet` deploys the contracts to a fresh anvil and
prints them. The committee here signs without evidence: tests, benches and devnets only.
"""

from __future__ import annotations

import argparse
import contextlib
from dataclasses import dataclass

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak
from rich.console import Console
from rich.table import Table
from web3.types import TxReceipt

from node.chain.anvil import DEV_PRIVATE_KEYS, run_anvil
from node.chain.client import ChainClient
from node.chain.deploy import Deployment, MarketConfig, deploy_market
from node.chain.market import Market
from node.chain.typed_data import JobRequest, KeyAttestation, Offer

TCB_OUT_OF_DATE = 1
TCB_UP_TO_DATE = 6

console = Console()


def devnet_peer_id(address: str) -> bytes:
    """A well-formed libp2p peer id (identity multihash of an Ed25519 key) derived from `address`.

    Real providers register their own identity; devnets only need distinct, parseable ones.
    """
    ed25519_public_key_protobuf = b"\x08\x01\x12\x20" + keccak(text=address)
    return b"\x00" + bytes([len(ed25519_public_key_protobuf)]) + ed25519_public_key_protobuf


@dataclass(frozen=True)
class SeededProvider:
    """A staked provider with one registered enclave key, ready to take jobs."""

    account: LocalAccount
    enclave: LocalAccount
    tee_kind: int
    measurement: bytes


def seed_provider(
    market: Market,
    governance: LocalAccount,
    committee: list[LocalAccount],
    provider: LocalAccount,
    *,
    tee_kind: int,
    measurement: bytes,
    stake: int,
    enclave: LocalAccount | None = None,
    tcb_status: int = TCB_UP_TO_DATE,
    key_lifetime: int = 7 * 24 * 3600,
) -> SeededProvider:
    """Allow the kind and measurement, stake the provider and register an enclave key.

    The committee here signs without looking at evidence: that is the devnet shortcut.
    Real verifiers sign only after proofs/ accepted the provider's evidence.
    """
    now = market.latest_timestamp()
    if int(market.client.call("AttestationVerifier", market.verifier.functions.threshold())) == 0:
        market.set_committee(governance, [m.address for m in committee], [], len(committee))
    market.set_kind_policy(governance, tee_kind, True, TCB_OUT_OF_DATE)
    market.approve_measurement(governance, tee_kind, measurement, now + 365 * 24 * 3600)
    market.register_provider(provider, devnet_peer_id(provider.address), stake)
    key = enclave or Account.create()
    attestation = KeyAttestation(
        provider=provider.address,
        enclave_key=key.address,
        tee_kind=tee_kind,
        measurement=measurement,
        tcb_status=tcb_status,
        evidence_hash=keccak(b"devnet evidence for " + key.address.encode()),
        expires_at=now + key_lifetime,
    )
    market.register_key(provider, attestation, market.committee_signatures(attestation, committee))
    return SeededProvider(provider, key, tee_kind, measurement)


def quote(
    market: Market,
    seeded: SeededProvider,
    *,
    price: int,
    request_hash: bytes,
    nonce: int,
    min_duration: int = 60,
    max_duration: int = 1800,
    valid_for: int = 600,
) -> tuple[Offer, bytes]:
    """The provider's signed offer for its registered key, kind and measurement.

    `request_hash` binds it to one client's request (JobRequest.request_hash); zero bytes
    make it a standing offer."""
    offer = Offer(
        provider=seeded.account.address,
        enclave_key=seeded.enclave.address,
        tee_kind=seeded.tee_kind,
        measurement=seeded.measurement,
        price=price,
        min_duration=min_duration,
        max_duration=max_duration,
        valid_until=market.latest_timestamp() + valid_for,
        request_hash=request_hash,
        nonce=nonce,
    )
    return offer, offer.sign(market.market_domain, seeded.account.key)


def match_quoted(
    market: Market,
    client: LocalAccount,
    seeded: SeededProvider,
    request: JobRequest,
    *,
    price: int,
    min_duration: int = 60,
    max_duration: int = 1800,
) -> TxReceipt:
    """The provider quotes exactly this request of this client, and the client pays."""
    offer, signature = quote(
        market,
        seeded,
        price=price,
        request_hash=request.request_hash(client.address),
        nonce=request.nonce,
        min_duration=min_duration,
        max_duration=max_duration,
    )
    return market.match_job(client, request, offer, signature)


def print_deployment(deployment: Deployment, rpc_url: str) -> None:
    table = Table(title=f"CapaCloud contracts on chain {deployment.chain_id} ({rpc_url})")
    table.add_column("contract")
    table.add_column("address")
    table.add_row("ProviderRegistry", deployment.registry)
    table.add_row("AttestationVerifier", deployment.verifier)
    table.add_row("JobMarket", deployment.market)
    table.add_row("governance", deployment.governance)
    console.print(table)


def deploy_and_print(rpc_url: str, *, sim_allowed: bool = False) -> Deployment:
    client = ChainClient(rpc_url)
    deployer = Account.from_key(DEV_PRIVATE_KEYS[0])
    deployment = deploy_market(client, deployer, MarketConfig(sim_allowed=sim_allowed))
    print_deployment(deployment, rpc_url)
    return deployment


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--keep", action="store_true", help="keep anvil running until Ctrl-C after deploying"
    )
    args = parser.parse_args()
    with run_anvil() as anvil:
        console.print(f"anvil listening at {anvil.rpc_url} (chain id {anvil.chain_id})")
        # A devnet may enable SIM; the verifier still refuses it until a policy enables it.
        deploy_and_print(anvil.rpc_url, sim_allowed=True)
        if args.keep:
            console.print("anvil keeps running; Ctrl-C stops it")
            with contextlib.suppress(KeyboardInterrupt):
                anvil.process.wait()


if __name__ == "__main__":
    main()

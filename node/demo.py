"""`make demo`: one confidential job end to end on a local chain, every part real but the TEE.

anvil runs the chain; the three contracts are deployed; a provider stakes; a `sim` enclave
(a real wasmtime sandbox, no hardware: INSECURE) makes its keys and evidence; a verifier
checks that evidence with proofs/ and registers the key with its committee signature; a
client checks the same evidence itself, seals its input to the enclave's HPKE key, pays into
escrow with `matchJob` against the provider's signed quote (which reserves part of the
provider's stake for the job); the provider acknowledges the sealed input with a signed input
receipt, the client's proof for a slash should the provider then miss the deadline; the
enclave runs the job and signs the result over the spec it ran and the input it read;
`submitResult` pays the provider only against that signature and frees the reserved stake;
the client opens the sealed output and checks it against the receipt; the provider withdraws.

The peers talk through function calls here: the p2p protocols and the daemon carry the
same messages between processes.
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from eth_account import Account
from eth_account.signers.local import LocalAccount
from rich.console import Console
from rich.table import Table

from node.chain.anvil import DEV_PRIVATE_KEYS, run_anvil
from node.chain.client import ChainClient
from node.chain.deploy import MarketConfig, deploy_market
from node.chain.devnet import devnet_peer_id, print_deployment
from node.chain.market import JobState, Market
from node.chain.typed_data import JobRequest, KeyAttestation, Offer, job_id_for
from node.enclave.backend import BindingRequest, EnclaveInstance, sim_backend
from node.enclave.envelope import seal_job_input_bytes
from node.enclave.errors import SandboxUnavailable
from node.enclave.jobs import JobId, JobLimits, JobSpec
from node.enclave.native_sandbox import detect_native_sandbox
from node.enclave.sealing import Direction, open_stream, public_key_bytes
from node.enclave.workloads import WasmWorkload
from proofs.claims import TcbStatus, TeeKind
from proofs.collateral_source import NoCollateral
from proofs.evidence import verify_evidence
from proofs.policy import Policy, Verdict, evaluate
from proofs.receipts import (
    InputReceipt,
    input_receipt_digest,
    result_digest,
    verify_signed_by,
    workload_spec_hash,
)

WORKLOAD = Path(__file__).resolve().parents[1] / "workloads" / "wasm" / "upper.wasm"
SIM = int(TeeKind.SIM)
SIM_TCB_FLOOR = int(TcbStatus.REVOKED)  # sim evidence has no TCB: the policy cannot ask for one
PRICE = 10**16
STAKE = 10**18
INSECURE = "[bold red]INSECURE[/bold red]"

console = Console()


@dataclass(frozen=True)
class Parties:
    governance: LocalAccount
    verifier: LocalAccount
    provider: LocalAccount
    client: LocalAccount


def _check_evidence(
    instance: EnclaveInstance, market: Market, provider: str, who: str, expires_at: int
) -> Verdict:
    """What both the verifier and the client do before trusting an enclave key."""
    evidence = instance.evidence(
        BindingRequest(
            chain_id=market.deployment.chain_id,
            verifier=market.deployment.verifier,
            provider=provider,
            nonce=os.urandom(32),
            expires_at=expires_at,
        )
    )
    verified = verify_evidence(evidence.cpu.evidence, NoCollateral(), datetime.now(UTC))
    # Devnet policy: sim accepted because this deployment allows it, and only this image.
    policy = Policy(allow_sim=True, measurement_allowlist=frozenset({instance.measurement}))
    verdict = evaluate(policy, verified.claims, datetime.now(UTC), evidence.binding)
    label = INSECURE + " sim evidence" if verified.claims.insecure else "hardware evidence"
    status = "accepted" if verdict.accepted else "rejected: " + "; ".join(verdict.reasons)
    console.print(f"  {who}: {label} for enclave {instance.enclave_address}: {status}")
    if not verdict.accepted:
        raise SystemExit(f"{who} refused the provider's evidence")
    return verdict


def run_demo(rpc_url: str, parties: Parties) -> None:
    chain = ChainClient(rpc_url)
    market = Market(chain, deploy_market(chain, parties.governance, MarketConfig(sim_allowed=True)))
    print_deployment(market.deployment, rpc_url)

    console.rule("provider boots: sim enclave " + INSECURE)
    try:
        sandbox = detect_native_sandbox()
    except SandboxUnavailable as exc:
        raise SystemExit(f"the provider cannot run jobs on this machine: {exc}") from exc
    console.print(f"  jobs run sandboxed as host {sandbox.identity.label}, never as root")
    backend = sim_backend(bytes(Account.create().key), sandbox)
    instance = backend.create_instance(WasmWorkload(WORKLOAD.read_bytes(), WORKLOAD.name))
    measurement = instance.measurement
    console.print(f"  workload {WORKLOAD.name}, measurement sha256 {measurement.hex()}")
    market.register_provider(parties.provider, devnet_peer_id(parties.provider.address), STAKE)
    console.print(f"  provider {parties.provider.address} staked {STAKE / 1e18} ETH")

    console.rule("verifier: check evidence, register the enclave key")
    gov = parties.governance
    market.set_committee(gov, [parties.verifier.address], [], 1)
    market.set_kind_policy(gov, SIM, True, SIM_TCB_FLOOR)
    market.approve_measurement(gov, SIM, measurement, market.latest_timestamp() + 30 * 86400)
    expires_at = market.latest_timestamp() + 7 * 86400
    provider = parties.provider.address
    verdict = _check_evidence(instance, market, provider, "verifier", expires_at)
    attestation = KeyAttestation(
        provider=parties.provider.address,
        enclave_key=instance.enclave_address,
        tee_kind=SIM,
        measurement=measurement,
        tcb_status=SIM_TCB_FLOOR,
        evidence_hash=verdict.claims.evidence_hash,
        expires_at=expires_at,
    )
    signatures = market.committee_signatures(attestation, [parties.verifier])
    receipt = market.register_key(parties.provider, attestation, signatures)
    console.print(f"  registerKey: {receipt['gasUsed']:,} gas")

    console.rule("client: verify, seal, pay")
    _check_evidence(instance, market, provider, "client", expires_at)
    client_key = X25519PrivateKey.generate()
    request_nonce = int.from_bytes(os.urandom(8))
    # The job id depends only on the client and its nonce, so the input can be sealed to the
    # enclave (job id as HPKE info) before the request that carries its hash exists.
    job_id = job_id_for(parties.client.address, request_nonce)
    plaintext = b"confidential input: the launch codes are 0000\n"
    sealed_input = seal_job_input_bytes(
        instance.hpke_public_key, job_id, public_key_bytes(client_key), plaintext
    )
    request = JobRequest(
        # What to run: the workload's measurement and its arguments (none here); the enclave
        # signs the hash of what it ran, so only this workload can settle the job.
        spec_hash=workload_spec_hash(measurement, ()),
        input_hash=hashlib.sha256(sealed_input).digest(),
        tee_kinds=1 << SIM,
        measurement=measurement,
        min_tcb_status=SIM_TCB_FLOOR,
        max_price=PRICE,
        deadline=market.latest_timestamp() + 3600,
        nonce=request_nonce,
    )
    assert request.job_id(parties.client.address) == job_id
    quote = Offer(
        provider=parties.provider.address,
        enclave_key=instance.enclave_address,
        tee_kind=SIM,
        measurement=measurement,
        price=PRICE,
        min_duration=60,
        max_duration=1800,
        valid_until=market.latest_timestamp() + 300,
        request_hash=request.request_hash(parties.client.address),
        nonce=int.from_bytes(os.urandom(8)),
    )
    quote_signature = quote.sign(market.market_domain, parties.provider.key)
    receipt = market.match_job(parties.client, request, quote, quote_signature)
    console.print(f"  matchJob {job_id.hex()[:16]}..: {receipt['gasUsed']:,} gas, escrow {PRICE}")
    reserved = market.locked_stake_of(parties.provider.address)
    console.print(f"  provider stake reserved for the job: {reserved:,} wei")
    console.print(f"  sealed input {len(sealed_input)} bytes; plaintext never left the client")

    console.rule("provider acknowledges the sealed input")
    input_hash = hashlib.sha256(sealed_input).digest()
    assert input_hash == request.input_hash, "the input that arrived is not the one paid for"
    input_receipt = market.sign_input_receipt(
        parties.provider, job_id, request.spec_hash, request.input_hash
    )
    verify_signed_by(
        input_receipt_digest(
            market.market_domain, InputReceipt(job_id, request.spec_hash, request.input_hash)
        ),
        input_receipt,
        parties.provider.address,
    )
    console.print("  client holds the provider's input receipt: its proof for a slash on a timeout")

    console.rule("enclave runs the job " + INSECURE)
    spec = JobSpec(
        job_id=JobId(job_id),
        provider=parties.provider.address,
        receipt_domain=market.market_domain,
        limits=JobLimits(wall_seconds=10, memory_bytes=64 << 20, output_bytes=1 << 20),
    )
    sealed_output = io.BytesIO()
    outcome = instance.run_job(spec, io.BytesIO(sealed_input), sealed_output)
    if outcome.receipt is None or outcome.output_hash is None:
        raise SystemExit(f"job failed: {outcome.failure}")
    console.print(f"  fuel used {outcome.usage.fuel_consumed}, output sealed to the client")
    signature = outcome.receipt.signature
    receipt = market.submit_result(parties.provider, job_id, outcome.output_hash, signature)
    console.print(f"  submitResult: {receipt['gasUsed']:,} gas")
    assert market.locked_stake_of(parties.provider.address) == 0
    console.print("  reserved stake released with the payout")

    console.rule("client: check the receipt, open the output")
    job = market.job(job_id)
    assert job.state is JobState.SETTLED
    verify_signed_by(
        result_digest(market.market_domain, outcome.receipt.result),
        signature,
        instance.enclave_address,
    )
    blob = sealed_output.getvalue()
    assert hashlib.sha256(blob).digest() == outcome.output_hash
    output = b"".join(open_stream(client_key, job_id, Direction.OUTPUT, io.BytesIO(blob)))
    console.print(f"  output: {output.decode().strip()!r}")

    console.rule("provider withdraws")
    earned = market.balance_of(parties.provider.address)
    market.withdraw(parties.provider, earned)
    table = Table(title="settlement")
    table.add_column("who")
    table.add_column("wei", justify="right")
    table.add_row("provider payout", f"{earned:,}")
    table.add_row("protocol fee", f"{market.fees_accrued():,}")
    console.print(table)
    console.print(
        f"job {job_id.hex()} settled on chain {market.deployment.chain_id}; enclave was "
        + INSECURE
        + " sim: no hardware, no confidentiality"
    )


def main() -> None:
    keys = [Account.from_key(k) for k in DEV_PRIVATE_KEYS]
    parties = Parties(governance=keys[0], verifier=keys[5], provider=keys[1], client=keys[2])
    with run_anvil() as anvil:
        console.print(f"anvil listening at {anvil.rpc_url} (chain id {anvil.chain_id})")
        run_demo(anvil.rpc_url, parties)


if __name__ == "__main__":
    main()

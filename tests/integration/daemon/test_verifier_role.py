"""The verifier daemon serves /capa/approve/1 to a provider peer over real libp2p on loopback.

anvil holds a fresh deployment (sim allowed on this devnet), the verifier daemon runs in
this process with its real p2p node, state service and API; a second libp2p host plays the
provider, with evidence from the node's sim enclave backend bound to its key. What the
verifier signs is registered on chain by AttestationVerifier.registerKey.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak

from node.chain.anvil import DEV_PRIVATE_KEYS, AnvilNode, run_anvil
from node.chain.client import ChainClient
from node.chain.deploy import MarketConfig, deploy_market
from node.chain.devnet import devnet_peer_id
from node.chain.market import Market
from node.config.loader import load_config
from node.daemon.daemon import DaemonHooks, RunningDaemon, run_daemon
from node.daemon.verifier_checks import attestation_digest
from node.enclave.backend import BindingRequest, SandboxBackend, sim_backend
from node.enclave.errors import SandboxUnavailable
from node.enclave.native_sandbox import detect_native_sandbox
from node.enclave.workloads import WasmWorkload
from node.keys.identity import create_identity, load_identity
from node.p2p.approve_protocol import ApprovalAnswer, ApprovalRequest, request_approval
from node.p2p.config import P2PConfig
from node.p2p.identity import Multiaddr, NodeIdentity, PeerAddress
from node.p2p.node import P2PNode
from proofs.claims import TcbStatus, TeeKind
from proofs.receipts import KeyAttestation, recover_signer

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]
MODULE = (REPO / "workloads" / "wasm" / "upper.wasm").read_bytes()
SIM = int(TeeKind.SIM)
STAKE = 10**18
ASK_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Devnet:
    anvil: AnvilNode
    market: Market
    governance: LocalAccount
    verifier: LocalAccount  # in the committee (k = 1)
    outsider: LocalAccount  # a verifier the committee does not count
    provider: LocalAccount  # registered and staked
    stranger: LocalAccount  # never registered

    def rpc(self, method: str, params: list[Any]) -> Any:
        answer = httpx.post(
            self.anvil.rpc_url,
            json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params},
            timeout=10,
        ).json()
        assert "error" not in answer, answer
        return answer["result"]

    def fresh_block(self) -> tuple[int, bytes, int]:
        """Mine a block and return its number, hash and time: a fresh nonce."""
        self.rpc("evm_mine", [])
        block = self.rpc("eth_getBlockByNumber", ["latest", False])
        return (
            int(block["number"], 16),
            bytes.fromhex(block["hash"][2:]),
            int(block["timestamp"], 16),
        )


@pytest.fixture(scope="module")
def devnet() -> Iterator[Devnet]:
    keys = [Account.from_key(k) for k in DEV_PRIVATE_KEYS]
    governance, provider, verifier, outsider, stranger = keys[0], keys[1], keys[5], keys[6], keys[7]
    with run_anvil() as anvil:
        chain = ChainClient(anvil.rpc_url, expected_chain_id=anvil.chain_id)
        market = Market(chain, deploy_market(chain, governance, MarketConfig(sim_allowed=True)))
        market.set_committee(governance, [verifier.address], [], 1)
        market.set_kind_policy(governance, SIM, True, int(TcbStatus.REVOKED))
        measurement = WasmWorkload(MODULE).measure()
        market.approve_measurement(
            governance, SIM, measurement, market.latest_timestamp() + 365 * 86400
        )
        market.register_provider(provider, devnet_peer_id(provider.address), STAKE)
        yield Devnet(anvil, market, governance, verifier, outsider, provider, stranger)


@pytest.fixture(scope="module")
def backend() -> SandboxBackend:
    try:
        sandbox = detect_native_sandbox()
    except SandboxUnavailable as exc:
        pytest.fail(f"native sandbox unavailable on this machine: {exc}", pytrace=False)
    return sim_backend(bytes(Account.create().key), sandbox)


def verifier_config(tmp_path: Path, devnet: Devnet, **verifier: object) -> Any:
    lines = "\n".join(
        f"{k} = {json.dumps(v)}" if not isinstance(v, bool) else f"{k} = {str(v).lower()}"
        for k, v in verifier.items()
    )
    path = tmp_path / "capa.toml"
    path.write_text(
        f"""
[node]
role = "verifier"
data_dir = "."

[chain]
rpc_urls = ["{devnet.anvil.rpc_url}"]
chain_id = {devnet.anvil.chain_id}
market = "{devnet.market.deployment.market}"
confirmations = 1
poll_interval = 0.05
request_timeout = 2.0

[api]
port = 0

[p2p]
listen_addrs = ["/ip4/127.0.0.1/tcp/0"]

[verifier]
{lines}
"""
    )
    return load_config(path, env={})


def provider_node(devnet: Devnet) -> P2PNode:
    config = P2PConfig(
        chain_id=devnet.anvil.chain_id,
        market_address=devnet.market.deployment.market,
        listen_addrs=(Multiaddr("/ip4/127.0.0.1/tcp/0"),),
        dial_timeout_s=5.0,
    )
    return P2PNode(NodeIdentity.generate(), config)


@dataclass
class Session:
    """A verifier daemon and a provider's libp2p host connected to it."""

    daemon: RunningDaemon
    provider: P2PNode
    verifier_address: PeerAddress
    api: httpx.AsyncClient
    nursery: trio.Nursery

    async def ask(self, request: ApprovalRequest, node: P2PNode | None = None) -> ApprovalAnswer:
        host = (node or self.provider).host
        return await request_approval(
            host, self.verifier_address.peer_id, request, timeout_s=ASK_TIMEOUT_S
        )

    async def approvals(self) -> list[dict[str, Any]]:
        answer = await self.api.get("/v1/approvals")
        assert answer.status_code == 200, answer.text
        rows: list[dict[str, Any]] = answer.json()["approvals"]
        return rows

    async def another_provider(self, devnet: Devnet) -> P2PNode:
        node = provider_node(devnet)
        await self.nursery.start(node.run)
        await node.host.connect(self.verifier_address)
        return node


@asynccontextmanager
async def verifier_session(
    tmp_path: Path, devnet: Devnet, account: LocalAccount, **verifier: object
) -> AsyncIterator[Session]:
    config = verifier_config(tmp_path, devnet, **verifier)
    key = tmp_path / "identity.key"
    identity = load_identity(key) if key.exists() else create_identity(key)
    async with trio.open_nursery() as nursery:
        daemon: RunningDaemon = await nursery.start(
            run_daemon,
            config,
            account,
            identity,
            DaemonHooks(handle_signals=False),
        )
        assert daemon.p2p is not None
        p2p = await daemon.p2p.wait_running()
        verifier_address = p2p.host.listen_addresses()[0]
        provider = provider_node(devnet)
        await nursery.start(provider.run)
        await provider.host.connect(verifier_address)
        token = config.api.token_file.read_text()
        async with httpx.AsyncClient(
            base_url=daemon.api_url, headers={"Authorization": f"Bearer {token}"}
        ) as api:
            yield Session(daemon, provider, verifier_address, api, nursery)
        daemon.stop()
        nursery.cancel_scope.cancel()


def approval_request(
    devnet: Devnet,
    backend: SandboxBackend,
    *,
    provider: str | None = None,
    chain_id: int | None = None,
    block: tuple[int, bytes, int] | None = None,
    expires_in: int = 7 * 86400,
    tcb_status: int = int(TcbStatus.REVOKED),
) -> ApprovalRequest:
    """What a provider sends: sim evidence from a fresh enclave instance, bound to its key."""
    instance = backend.create_instance(WasmWorkload(MODULE))
    number, nonce, timestamp = block or devnet.fresh_block()
    provider = provider or devnet.provider.address
    expires_at = timestamp + expires_in
    evidence = instance.evidence(
        BindingRequest(
            chain_id=chain_id or devnet.anvil.chain_id,
            verifier=devnet.market.deployment.verifier,
            provider=provider,
            nonce=nonce,
            expires_at=expires_at,
        )
    ).cpu.evidence
    return ApprovalRequest(
        tee_kind=SIM,
        evidence=evidence,
        collateral_location="",
        hpke_public_key=instance.hpke_public_key,
        nonce_block=number,
        attestation=KeyAttestation(
            provider=provider,
            enclave_key=instance.enclave_address,
            tee_kind=SIM,
            measurement=instance.measurement,
            tcb_status=tcb_status,
            evidence_hash=keccak(evidence),
            expires_at=expires_at,
        ),
    )


def is_valid_key(devnet: Devnet, provider: str, key: str) -> bool:
    market = devnet.market
    valid, *_ = market.client.call(
        "AttestationVerifier", market.verifier.functions.isValidKey(provider, key)
    )
    return bool(valid)


def test_the_default_policy_refuses_sim_evidence_and_the_api_shows_why(
    tmp_path: Path, devnet: Devnet, backend: SandboxBackend, caplog: pytest.LogCaptureFixture
) -> None:
    request = approval_request(devnet, backend)

    async def scenario() -> None:
        async with verifier_session(tmp_path, devnet, devnet.outsider) as session:
            answer = await session.ask(request)
            assert not answer.approved and answer.signature == b""
            assert "INSECURE sim evidence" in answer.reason
            assert "refused by this policy" in answer.reason
            (row,) = await session.approvals()
            assert row["status"] == "refused"
            assert row["reason"] == answer.reason
            assert row["enclave_key"] == request.attestation.enclave_key
            assert row["provider"] == devnet.provider.address
            assert row["peer_id"] == str(session.provider.peer_id)

    with caplog.at_level(logging.INFO):
        trio.run(scenario)
    assert "sim evidence refused" in caplog.text
    assert f"verifier {devnet.outsider.address} is NOT in the committee" in caplog.text


def test_with_allow_sim_the_signature_registers_the_key_on_chain(
    tmp_path: Path, devnet: Devnet, backend: SandboxBackend, caplog: pytest.LogCaptureFixture
) -> None:
    request = approval_request(devnet, backend)
    att = request.attestation
    answers: list[ApprovalAnswer] = []

    async def scenario() -> None:
        async with verifier_session(tmp_path, devnet, devnet.verifier, allow_sim=True) as session:
            answers.append(await session.ask(request))
            (row,) = await session.approvals()
            assert row["status"] == "approved"
            # Approved, and never shown as hardware.
            assert row["reason"] == "accepted INSECURE sim evidence, not hardware"
            assert row["signature"] == "0x" + answers[0].signature.hex()
        # Restarted on the same data: the same request gets the recorded decision, no
        # second check, no second row.
        async with verifier_session(tmp_path, devnet, devnet.verifier, allow_sim=True) as session:
            answers.append(await session.ask(request))
            assert len(await session.approvals()) == 1
            assert not list((tmp_path / "approval-requests").glob("*.json"))

    with caplog.at_level(logging.INFO):
        trio.run(scenario)
    first, again = answers
    assert first.approved, first.reason
    assert again == first
    assert first.reason == "accepted INSECURE sim evidence, not hardware"
    assert "INSECURE: verifier.allow_sim = true" in caplog.text
    digest = attestation_digest(devnet.anvil.chain_id, devnet.market.deployment.verifier, att)
    assert recover_signer(digest, first.signature) == devnet.verifier.address
    assert f"verifier {devnet.verifier.address} is in the committee" in caplog.text

    assert not is_valid_key(devnet, att.provider, att.enclave_key)
    devnet.market.register_key(devnet.provider, att, [first.signature])
    assert is_valid_key(devnet, att.provider, att.enclave_key)


def test_bad_requests_are_refused_each_with_its_reason(
    tmp_path: Path, devnet: Devnet, backend: SandboxBackend
) -> None:
    wrong_chain = approval_request(devnet, backend, chain_id=1)
    unregistered = approval_request(devnet, backend, provider=devnet.stranger.address)
    too_long = approval_request(devnet, backend, expires_in=90 * 86400)
    overclaimed = approval_request(devnet, backend, tcb_status=int(TcbStatus.UP_TO_DATE))
    genuine = approval_request(devnet, backend)
    # Forged: the report data rebound to another enclave key without the host's signature.
    other = approval_request(devnet, backend)
    document = json.loads(genuine.evidence)
    document["report_data"] = json.loads(other.evidence)["report_data"]
    forged_evidence = json.dumps(document, sort_keys=True).encode()
    forged = replace(
        other,
        evidence=forged_evidence,
        attestation=replace(other.attestation, evidence_hash=keccak(forged_evidence)),
    )
    stale = approval_request(devnet, backend)
    cases = {
        "wrong chain": (wrong_chain, "report data does not bind"),
        "unregistered": (
            unregistered,
            f"provider {devnet.stranger.address} is not registered in the ProviderRegistry",
        ),
        "too long": (too_long, "more than the 2592000 s this verifier signs for"),
        "overclaimed": (overclaimed, "claims TCB status 6, the evidence supports at most 0"),
        "forged": (forged, "evidence NOT verified"),
    }

    async def scenario() -> None:
        async with verifier_session(
            tmp_path, devnet, devnet.verifier, allow_sim=True, max_nonce_age=60
        ) as session:
            for name, (request, expected) in cases.items():
                answer = await session.ask(request)
                assert not answer.approved, name
                assert expected in answer.reason, (name, answer.reason)
                assert answer.signature == b"", name
            wrong = (await session.ask(wrong_chain)).reason
            assert f"this verifier expects chain {devnet.anvil.chain_id}" in wrong
            # The stale nonce: the chain moves an hour past the request's block.
            devnet.rpc("evm_increaseTime", [3600])
            _, _, later = devnet.fresh_block()
            watcher = session.daemon.watcher
            assert watcher is not None
            with trio.fail_after(10):
                while watcher.head_time < later:
                    await trio.sleep(0.02)
            answer = await session.ask(stale)
            assert not answer.approved
            assert f"stale nonce: block {stale.nonce_block} is" in answer.reason
            assert "at most 60 s accepted" in answer.reason
            rows = {row["enclave_key"]: row for row in await session.approvals()}
            for request, _ in [*cases.values(), (stale, "")]:
                row = rows[request.attestation.enclave_key]
                assert row["status"] == "refused" and row["signature"] == ""

    trio.run(scenario)


def test_a_block_the_chain_does_not_have_is_no_nonce(
    tmp_path: Path, devnet: Devnet, backend: SandboxBackend
) -> None:
    number, nonce, timestamp = devnet.fresh_block()
    request = approval_request(devnet, backend, block=(number + 1000, nonce, timestamp))

    async def scenario() -> None:
        async with verifier_session(tmp_path, devnet, devnet.verifier, allow_sim=True) as session:
            answer = await session.ask(request)
            assert not answer.approved
            assert f"nonce block {number + 1000} is not on this verifier's chain" in answer.reason

    trio.run(scenario)


def test_each_peer_is_rate_limited_on_its_own(
    tmp_path: Path, devnet: Devnet, backend: SandboxBackend
) -> None:
    requests = [approval_request(devnet, backend) for _ in range(4)]

    async def scenario() -> None:
        async with verifier_session(
            tmp_path, devnet, devnet.verifier, allow_sim=True, requests_per_minute=2
        ) as session:
            assert (await session.ask(requests[0])).approved
            assert (await session.ask(requests[1])).approved
            limited = await session.ask(requests[2])
            assert not limited.approved
            assert "rate limited: at most 2 approval requests a minute" in limited.reason
            # Another peer is not held back by the first one's use.
            other = await session.another_provider(devnet)
            assert (await session.ask(requests[3], other)).approved
            # A limited request was not checked: no row, nothing kept.
            keys = {row["enclave_key"] for row in await session.approvals()}
            assert requests[2].attestation.enclave_key not in keys
            assert len(keys) == 3

    trio.run(scenario)


def test_real_hardware_evidence_is_verified_with_offline_collateral_and_judged(
    tmp_path: Path, devnet: Devnet
) -> None:
    """A captured SEV-SNP report (tests/data/attestation/snp-1, from google/go-sev-guest)
    with its VCEK as the offline collateral: genuine, so the refusal lists what the
    production policy and the binding find wrong with it, not a verification failure."""
    case = REPO / "tests" / "data" / "attestation" / "snp-1"
    report = (case / "report.bin").read_bytes()
    number, _, timestamp = devnet.fresh_block()
    request = ApprovalRequest(
        tee_kind=int(TeeKind.SEV_SNP),
        evidence=report,
        collateral_location="",
        hpke_public_key=bytes(32),
        nonce_block=number,
        attestation=KeyAttestation(
            provider=devnet.provider.address,
            enclave_key=Account.create().address,
            tee_kind=int(TeeKind.SEV_SNP),
            measurement=report[0x90:0xC0],  # the report's MEASUREMENT field
            tcb_status=int(TcbStatus.UP_TO_DATE),
            evidence_hash=keccak(report),
            expires_at=timestamp + 86400,
        ),
    )

    async def scenario() -> None:
        async with verifier_session(
            tmp_path, devnet, devnet.verifier, collateral_dir=str(case)
        ) as session:
            answer = await session.ask(request)
            assert not answer.approved and answer.signature == b""
            assert "NOT verified" not in answer.reason
            assert "evidence measures" not in answer.reason
            for expected in (
                "debug mode is enabled",
                "AMD certificate revocation was not checked",
                "report data does not bind",
            ):
                assert expected in answer.reason, answer.reason

    trio.run(scenario)

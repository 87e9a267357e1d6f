"""The client daemon picks, checks, pays, hands over and collects, against real parts.

A client daemon (run_daemon, role client) on anvil with deployed contracts; provider-side
peers are real libp2p nodes serving /capa/evidence/1, /capa/quote/1, /capa/input/1 and
/capa/result/1 from sim enclave instances (real sandboxes, INSECURE evidence: this devnet's
market allows sim, and so does this client's config). The test plays the provider's
operator: it registers the enclave keys on chain, runs the job in the enclave instance and
submits the result.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import trio
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak
from libp2p.peer.id import ID

from node.api.client import ApiClient
from node.api.models import SubmitJob
from node.api.models import WorkloadKindText as ApiWorkload
from node.chain.anvil import DEV_PRIVATE_KEYS, AnvilNode, run_anvil
from node.chain.client import ChainClient
from node.chain.deploy import MarketConfig, deploy_market
from node.chain.devnet import devnet_peer_id
from node.chain.market import Market
from node.chain.typed_data import JobRequest, KeyAttestation, Offer
from node.config.loader import load_config
from node.config.model import NodeConfig
from node.daemon.daemon import DaemonHooks, RunningDaemon, run_daemon
from node.daemon.job_files import JobFiles
from node.daemon.state_service import StateService
from node.enclave.attesters import SimAttester
from node.enclave.backend import BindingRequest, SandboxBackend, SandboxInstance
from node.enclave.errors import SandboxUnavailable
from node.enclave.jobs import JobId, JobLimits, JobSpec
from node.enclave.native_sandbox import NativeSandbox, detect_native_sandbox
from node.enclave.workloads import WasmWorkload
from node.keys.identity import create_identity
from node.p2p.config import GossipParams, P2PConfig
from node.p2p.evidence_protocol import EvidenceBundle, KeyBindingInputs
from node.p2p.identity import Multiaddr, NodeIdentity, PeerId, libp2p_id
from node.p2p.input_store import MemoryInputStore
from node.p2p.node import P2PNode, ProviderServices
from node.p2p.offers import ListingDetails, SignedOffer
from node.p2p.supervisor import SupervisorPolicy
from node.p2p.transfer import Announced, SealedResult
from node.state.model import Job, JobStatus
from node.state.values import JobId as StateJobId
from node.state.values import to_job_id
from proofs.receipts import workload_spec_hash
from scheduler.models import TcbStatus, WorkloadKind

REPO = Path(__file__).resolve().parents[3]
UPPER_WASM = REPO / "workloads" / "wasm" / "upper.wasm"
SIM = 5
STAKE = 5 * 10**18
TIMEOUT_S = 900
MAX_PRICE = 10**16


# ---------------------------------------------------------------- chain


@pytest.fixture(scope="module")
def anvil() -> Iterator[AnvilNode]:
    with run_anvil() as node:
        yield node


@pytest.fixture(scope="module")
def native_sandbox() -> NativeSandbox:
    try:
        return detect_native_sandbox()
    except SandboxUnavailable as exc:
        pytest.fail(f"native sandbox unavailable on this machine: {exc}", pytrace=False)


@dataclass(frozen=True)
class Actors:
    governance: LocalAccount
    client: LocalAccount
    providers: list[LocalAccount]
    committee: list[LocalAccount]


@pytest.fixture
def actors() -> Actors:
    keys = [Account.from_key(k) for k in DEV_PRIVATE_KEYS]
    return Actors(
        keys[0], keys[2], [keys[1], keys[3], keys[4], keys[8]], [keys[5], keys[6], keys[7]]
    )


@pytest.fixture
def market(anvil: AnvilNode, actors: Actors) -> Market:
    chain = ChainClient(anvil.rpc_url, expected_chain_id=anvil.chain_id)
    deployment = deploy_market(chain, actors.governance, MarketConfig(sim_allowed=True))
    market = Market(chain, deployment)
    market.set_committee(
        actors.governance, [m.address for m in actors.committee], [], len(actors.committee)
    )
    market.set_kind_policy(actors.governance, SIM, True, 1)
    return market


# ---------------------------------------------------------------- a provider's side


@dataclass
class ProviderPeer:
    """A provider as its peers see it: a libp2p node serving a sim enclave instance."""

    account: LocalAccount
    instance: SandboxInstance
    chain_id: int
    market: str
    verifier: str
    price_per_hour: int
    inputs: MemoryInputStore = field(default_factory=MemoryInputStore)
    results: dict[bytes, SealedResult] = field(default_factory=dict)
    receipts_signed: list[bytes] = field(default_factory=list)
    quotes: int = 0
    evidence: EvidenceBundle | None = None
    node: P2PNode | None = None
    on_chain: Market | None = None
    forge_receipts: bool = False
    quote_for_key: str | None = None  # quote for another enclave than the one offered

    @property
    def measurement(self) -> bytes:
        return bytes(self.instance.measurement)

    @property
    def enclave_key(self) -> str:
        return self.instance.enclave_address

    def register(self, market: Market, actors: Actors) -> None:
        """Stake, allow the measurement, bind evidence to the key and register it on chain."""
        now = market.latest_timestamp()
        market.approve_measurement(actors.governance, SIM, self.measurement, now + 86400 * 365)
        market.register_provider(self.account, devnet_peer_id(self.account.address), STAKE)
        expires_at = now + 7 * 86400
        nonce = os.urandom(32)
        evidence = self.instance.evidence(
            BindingRequest(self.chain_id, self.verifier, self.account.address, nonce, expires_at)
        )
        self.evidence = EvidenceBundle(
            SIM,
            evidence.cpu.evidence,
            "sim://none",
            now,
            KeyBindingInputs(
                self.enclave_key, self.instance.hpke_public_key, nonce, expires_at, self.measurement
            ),
        )
        attestation = KeyAttestation(
            provider=self.account.address,
            enclave_key=self.enclave_key,
            tee_kind=SIM,
            measurement=self.measurement,
            tcb_status=6,
            evidence_hash=keccak(evidence.cpu.evidence),
            expires_at=expires_at,
        )
        market.register_key(
            self.account,
            attestation,
            market.committee_signatures(attestation, actors.committee),
        )

    # --- what the p2p node serves

    async def current_evidence(self, enclave_key: str | None = None) -> EvidenceBundle | None:
        return self.evidence

    async def quote(self, peer: PeerId, request: JobRequest, client: str) -> SignedOffer:
        self.quotes += 1
        offer = Offer(
            provider=self.account.address,
            enclave_key=self.quote_for_key or self.enclave_key,
            tee_kind=SIM,
            measurement=self.measurement,
            price=self.price_per_hour * TIMEOUT_S // 3600,
            min_duration=60,
            max_duration=3600,
            valid_until=int(time.time()) + 600,
            request_hash=request.request_hash(client),
            nonce=request.nonce,
        )
        return SignedOffer.sign(offer, self.chain_id, self.market, bytes(self.account.key))

    async def admit(self, announced: Announced) -> None:
        return None

    async def complete(self, announced: Announced) -> bytes:
        self.receipts_signed.append(announced.job_id)
        spec = workload_spec_hash(self.measurement, ())
        assert self.on_chain is not None
        signer = Account.create() if self.forge_receipts else self.account
        return self.on_chain.sign_input_receipt(signer, announced.job_id, spec, announced.sha256)

    async def result(self, peer: PeerId, job_id: bytes) -> SealedResult | None:
        return self.results.get(job_id)

    def start_node(self, market: Market) -> P2PNode:
        self.on_chain = market
        config = P2PConfig(
            chain_id=self.chain_id,
            market_address=self.market,
            listen_addrs=(Multiaddr("/ip4/127.0.0.1/tcp/0"),),
            dial_timeout_s=5.0,
            gossip=GossipParams(republish_interval_s=5.0),
        )
        services = ProviderServices(self, self, self.inputs, self, input_gate=self)
        self.node = P2PNode(NodeIdentity.generate(), config, services)
        return self.node

    def advertise(self) -> None:
        assert self.node is not None
        offer = Offer(
            provider=self.account.address,
            enclave_key=self.enclave_key,
            tee_kind=SIM,
            measurement=self.measurement,
            price=self.price_per_hour,
            min_duration=60,
            max_duration=3600,
            valid_until=int(time.time()) + 3600,
            request_hash=bytes(32),
            nonce=1,
        )
        details = ListingDetails(
            cpu_cores=4,
            memory_mib=4096,
            tcb_status=TcbStatus.UP_TO_DATE,
            workloads=frozenset({WorkloadKind.WASM}),
        )
        self.node.gossip.advertise(offer, details, bytes(self.account.key))

    def run_job(self, market: Market, job_id: bytes, sealed_input: bytes) -> SealedResult:
        """What the provider's executor does: run in the enclave, keep the sealed output."""
        sink = io.BytesIO()
        spec = JobSpec(
            job_id=JobId(job_id),
            provider=self.account.address,
            receipt_domain=market.market_domain,
            limits=JobLimits(wall_seconds=30),
            args=(),
        )
        outcome = self.instance.run_job(spec, io.BytesIO(sealed_input), sink)
        assert outcome.succeeded, outcome.failure
        assert outcome.receipt is not None
        served = SealedResult(sink.getvalue(), outcome.receipt.result, outcome.receipt.signature)
        self.results[job_id] = served
        return served


def make_provider(
    account: LocalAccount,
    market: Market,
    sandbox: NativeSandbox,
    *,
    price_per_hour: int,
    evidence_issued: datetime | None = None,
) -> ProviderPeer:
    host_key = os.urandom(32)
    clock = (lambda: evidence_issued) if evidence_issued else (lambda: datetime.now(UTC))
    backend = SandboxBackend(SimAttester(host_key, clock=clock), sandbox)
    instance = backend.create_instance(WasmWorkload(UPPER_WASM.read_bytes(), "upper.wasm"))
    deployment = market.deployment
    return ProviderPeer(
        account,
        instance,
        deployment.chain_id,
        deployment.market,
        deployment.verifier,
        price_per_hour,
    )


# ---------------------------------------------------------------- the client daemon


def client_config(
    directory: Path, anvil: AnvilNode, market: Market, *, allow_sim: bool = True
) -> NodeConfig:
    # The client's own policy: sim allowed (by [client] allow_sim) but only fresh evidence.
    (directory / "policy.json").write_text(json.dumps({"max_evidence_age_s": 3600}))
    path = directory / "capa.toml"
    path.write_text(
        f"""
[node]
role = "client"
data_dir = "."

[chain]
rpc_urls = ["{anvil.rpc_url}"]
chain_id = {anvil.chain_id}
market = "{market.deployment.market}"
confirmations = 2
poll_interval = 0.05
request_timeout = 2.0

[api]
port = 0

[p2p]
listen_addrs = ["/ip4/127.0.0.1/tcp/0"]

[client]
allow_sim = {"true" if allow_sim else "false"}
policy_file = "policy.json"
"""
    )
    return load_config(path, env={})


async def keep_mining(url: str, every: float = 0.1) -> None:
    async with httpx.AsyncClient(timeout=5) as http:
        while True:
            await http.post(
                url, json={"jsonrpc": "2.0", "id": 1, "method": "evm_mine", "params": []}
            )
            await trio.sleep(every)


async def start_client(
    nursery: trio.Nursery,
    anvil: AnvilNode,
    config: NodeConfig,
    actors: Actors,
    tmp_path: Path,
    hooks: DaemonHooks | None = None,
) -> RunningDaemon:
    """The client daemon of `config`, on a chain that mines a block every 0.1 s."""
    nursery.start_soon(keep_mining, anvil.rpc_url)
    daemon: RunningDaemon = await nursery.start(
        run_daemon,
        config,
        actors.client,
        create_identity(tmp_path / "identity.key"),
        hooks or DaemonHooks(handle_signals=False),
    )
    return daemon


async def until(service: StateService, check: object, timeout: float = 60.0) -> None:
    seen = -1
    with trio.fail_after(timeout):
        while not check():  # type: ignore[operator]
            seen = await service.wait_for_change(seen)


async def listed_offers(daemon: RunningDaemon, config: NodeConfig, expected: set[str]) -> set[str]:
    token = config.api.token_file.read_text()
    async with httpx.AsyncClient(
        base_url=daemon.api_url, headers={"Authorization": f"Bearer {token}"}
    ) as api:
        with trio.fail_after(20):
            while True:
                rows = (await api.get("/v1/offers")).json()["offers"]
                listed = {row["provider"] for row in rows}
                if listed >= expected:
                    return listed
                await trio.sleep(0.05)


async def submit(
    daemon: RunningDaemon, config: NodeConfig, text: bytes, tee_kinds: int = 1 << SIM
) -> StateJobId:
    """As `capa job submit` does: stage the input, submit the job, through the API."""
    measurement = WasmWorkload(UPPER_WASM.read_bytes()).measure()
    api = ApiClient(daemon.api_url, config.api.token_file.read_text().strip())
    try:
        staged = await trio.to_thread.run_sync(api.stage_input, text)
        action = SubmitJob(
            workload=ApiWorkload.WASM,
            measurement="0x" + bytes(measurement).hex(),
            input_id=staged.input_id,
            tee_kinds=tee_kinds,
            max_price=str(MAX_PRICE),
            timeout_s=str(TIMEOUT_S),
        )
        submitted = await trio.to_thread.run_sync(api.submit, action)
    finally:
        api.close()
    assert not submitted.rejected, submitted.rejected
    return to_job_id(submitted.job_id)


async def output_of(daemon: RunningDaemon, config: NodeConfig, job_id: str) -> bytes:
    api = ApiClient(daemon.api_url, config.api.token_file.read_text().strip())
    try:
        return await trio.to_thread.run_sync(api.output, job_id)
    finally:
        api.close()


def job_of(daemon: RunningDaemon, job_id: StateJobId) -> Job:
    return daemon.service.state.jobs[job_id]


# ---------------------------------------------------------------- the test


def test_a_refused_candidate_is_skipped_and_the_output_is_checked_against_the_chain(
    tmp_path: Path, anvil: AnvilNode, market: Market, actors: Actors, native_sandbox: NativeSandbox
) -> None:
    # The cheaper provider ranks first, but its evidence is two days old: this client's
    # policy takes evidence of at most an hour.
    stale = make_provider(
        actors.providers[0],
        market,
        native_sandbox,
        price_per_hour=10**12,
        evidence_issued=datetime.now(UTC) - timedelta(days=2),
    )
    good = make_provider(actors.providers[1], market, native_sandbox, price_per_hour=10**13)
    # The cheapest one serves genuine evidence but claims another HPKE key than the one the
    # evidence binds: a host that swapped in its own key to read the input.
    swapper = make_provider(actors.providers[2], market, native_sandbox, price_per_hour=10**11)
    # The cheapest of all passes the evidence check, then quotes for another enclave key.
    switcher = make_provider(actors.providers[3], market, native_sandbox, price_per_hour=10**10)
    switcher.quote_for_key = Account.create().address
    for provider in (stale, good, swapper, switcher):
        provider.register(market, actors)
    assert swapper.evidence is not None and swapper.evidence.binding is not None
    swapper.evidence = replace(
        swapper.evidence, binding=replace(swapper.evidence.binding, hpke_public_key=os.urandom(32))
    )
    config = client_config(tmp_path, anvil, market)

    async def scenario() -> None:
        async with trio.open_nursery() as nursery:
            daemon = await start_client(nursery, anvil, config, actors, tmp_path)
            assert daemon.p2p is not None
            client_node = await daemon.p2p.wait_running()
            for provider in (stale, good, swapper, switcher):
                node = provider.start_node(market)
                await nursery.start(node.run)
                await node.host.connect(client_node.host.listen_addresses()[0])
                await node.gossip.wait_for_topic_peer(client_node.peer_id, 10.0)
                provider.advertise()
            with trio.fail_after(30):
                while len(client_node.book) < 4:
                    await trio.sleep(0.05)
            # Each listing heard is a state change, listed by the API.
            expected = {p.account.address for p in (stale, good, swapper, switcher)}
            assert await listed_offers(daemon, config, expected) == expected

            # Job 1: the stale candidate is refused and never sees the input; the good one
            # gets it sealed to its enclave and signs a receipt the client checks.
            plaintext = b"attack at dawn " + os.urandom(8).hex().encode()
            first = await submit(daemon, config, plaintext)
            await until(daemon.service, lambda: job_of(daemon, first).status is JobStatus.DELIVERED)
            job = job_of(daemon, first)
            assert job.provider == good.account.address
            assert job.enclave_key == good.enclave_key
            assert job.insecure, "a sim enclave's job is recorded as insecure"
            assert stale.account.address in job.tried and "evidence" in job.tried
            assert "older than" in job.tried, job.tried
            assert swapper.account.address in job.tried, job.tried
            assert "report data does not bind" in job.tried, job.tried
            for refused in (stale, swapper):
                assert refused.quotes == 0 and refused.inputs.held_bytes() == 0
                assert not refused.receipts_signed
            assert f"{switcher.account.address} (quote): quote names enclave" in job.tried
            assert switcher.quotes == 1 and switcher.inputs.held_bytes() == 0
            first_id = bytes.fromhex(first[2:])
            assert good.receipts_signed == [first_id]
            assert job.receipt and job.receipt != "0x"
            files = JobFiles(config.node.data_dir, first)
            assert not files.plaintext.exists(), "plaintext kept after delivery"
            sealed = await good.inputs.sealed_input(first_id)
            assert sealed is not None and plaintext not in sealed

            # The provider runs it and settles, then serves an output with another hash.
            served = await trio.to_thread.run_sync(good.run_job, market, first_id, sealed)
            good.results[first_id] = SealedResult(
                served.output[:-1] + bytes([served.output[-1] ^ 1]),
                served.receipt,
                served.receipt_signature,
            )
            await trio.to_thread.run_sync(
                lambda: market.submit_result(
                    good.account, first_id, served.receipt.output_hash, served.receipt_signature
                )
            )
            await until(daemon.service, lambda: job_of(daemon, first).status is JobStatus.FAILED)
            job = job_of(daemon, first)
            assert "output rejected" in job.error and "the chain settled" in job.error, job.error
            assert not files.output.exists()

            # Job 2: served as the enclave sealed it: checked, opened, the plaintext's upper case.
            second = await submit(daemon, config, b"hello enclave")
            await until(
                daemon.service, lambda: job_of(daemon, second).status is JobStatus.DELIVERED
            )
            second_id = bytes.fromhex(second[2:])
            sealed = await good.inputs.sealed_input(second_id)
            assert sealed is not None
            served = await trio.to_thread.run_sync(good.run_job, market, second_id, sealed)
            await trio.to_thread.run_sync(
                lambda: market.submit_result(
                    good.account, second_id, served.receipt.output_hash, served.receipt_signature
                )
            )
            await until(daemon.service, lambda: job_of(daemon, second).status is JobStatus.VERIFIED)
            job = job_of(daemon, second)
            output = JobFiles(config.node.data_dir, second).output.read_bytes()
            assert output == b"HELLO ENCLAVE"
            assert await output_of(daemon, config, second) == output
            assert job.output_sha256 == hashlib.sha256(output).hexdigest()
            assert job.output_size == len(output)

            # Job 3: a receipt the provider did not sign is no receipt: nothing claims the
            # input was delivered, and the plaintext stays until the job ends.
            good.forge_receipts = True
            third = await submit(daemon, config, b"third")
            await until(daemon.service, lambda: "receipt" in job_of(daemon, third).error)
            job = job_of(daemon, third)
            assert job.status is JobStatus.ASSIGNED and not job.receipt
            assert "not its signature" in job.error, job.error
            assert JobFiles(config.node.data_dir, third).plaintext.exists()
            daemon.stop()
            nursery.cancel_scope.cancel()

    trio.run(scenario)


def test_a_client_without_allow_sim_names_why_no_provider_can_take_the_job(
    tmp_path: Path, anvil: AnvilNode, market: Market, actors: Actors, native_sandbox: NativeSandbox
) -> None:
    sim_only = make_provider(actors.providers[0], market, native_sandbox, price_per_hour=10**12)
    sim_only.register(market, actors)
    config = client_config(tmp_path, anvil, market, allow_sim=False)

    async def scenario() -> None:
        async with trio.open_nursery() as nursery:
            daemon = await start_client(nursery, anvil, config, actors, tmp_path)
            assert daemon.p2p is not None
            client_node = await daemon.p2p.wait_running()
            node = sim_only.start_node(market)
            await nursery.start(node.run)
            await node.host.connect(client_node.host.listen_addresses()[0])
            await node.gossip.wait_for_topic_peer(client_node.peer_id, 10.0)
            sim_only.advertise()
            # An SGX provider that takes jobs of five minutes at most.
            short = _advertiser(market)
            await nursery.start(short.run)
            await short.host.connect(client_node.host.listen_addresses()[0])
            await short.gossip.wait_for_topic_peer(client_node.peer_id, 10.0)
            _advertise(short, actors.providers[1], tee_kind=1, max_duration=300)
            with trio.fail_after(30):
                while len(client_node.book) < 2:
                    await trio.sleep(0.05)
            # The job would take SGX or sim; this client takes no sim: the scheduler says so.
            job_id = await submit(daemon, config, b"input", (1 << SIM) | (1 << 1))
            await until(daemon.service, lambda: job_of(daemon, job_id).status is JobStatus.FAILED)
            error = job_of(daemon, job_id).error
            assert error.startswith("no provider can take the job: 2 offers:"), error
            assert "INSECURE SIM" in error, error
            assert f"takes jobs of 60-300 s, this one runs {TIMEOUT_S} s" in error, error
            assert sim_only.quotes == 0 and sim_only.inputs.held_bytes() == 0
            daemon.stop()
            nursery.cancel_scope.cancel()

    trio.run(scenario)


def test_a_provider_whose_input_store_is_too_small_is_passed_over_before_any_quote(
    tmp_path: Path, anvil: AnvilNode, market: Market, actors: Actors
) -> None:
    config = client_config(tmp_path, anvil, market)

    async def scenario() -> None:
        async with trio.open_nursery() as nursery:
            daemon = await start_client(nursery, anvil, config, actors, tmp_path)
            assert daemon.p2p is not None
            client_node = await daemon.p2p.wait_running()
            small = _advertiser(market)
            await nursery.start(small.run)
            await small.host.connect(client_node.host.listen_addresses()[0])
            await small.gossip.wait_for_topic_peer(client_node.peer_id, 10.0)
            # Everything this job asks for, but a store of 1 KiB.
            measurement = bytes(WasmWorkload(UPPER_WASM.read_bytes()).measure())
            _advertise(small, actors.providers[0], measurement=measurement, max_input_bytes=1024)
            with trio.fail_after(30):
                while len(client_node.book) < 1:
                    await trio.sleep(0.05)
            job_id = await submit(daemon, config, b"x" * 2048)
            await until(daemon.service, lambda: job_of(daemon, job_id).status is JobStatus.FAILED)
            job = job_of(daemon, job_id)
            assert job.error.startswith("no provider can take the job: 1 offer:"), job.error
            assert "input too large" in job.error and "1024 bytes" in job.error, job.error
            assert job.provider is None and job.price == 0  # never quoted, nothing escrowed
            daemon.stop()
            nursery.cancel_scope.cancel()

    trio.run(scenario)


def _advertiser(market: Market) -> P2PNode:
    """A peer that only gossips a standing offer (the feed checks nothing on chain)."""
    config = P2PConfig(
        chain_id=market.deployment.chain_id,
        market_address=market.deployment.market,
        listen_addrs=(Multiaddr("/ip4/127.0.0.1/tcp/0"),),
        dial_timeout_s=5.0,
    )
    return P2PNode(NodeIdentity.generate(), config)


def _advertise(
    node: P2PNode,
    account: LocalAccount,
    *,
    tee_kind: int = SIM,
    max_duration: int = 3600,
    measurement: bytes | None = None,
    max_input_bytes: int | None = None,
) -> None:
    offer = Offer(
        provider=account.address,
        enclave_key=Account.create().address,
        tee_kind=tee_kind,
        measurement=measurement or keccak(b"measurement"),
        price=10**12,
        min_duration=60,
        max_duration=max_duration,
        valid_until=int(time.time()) + 3600,
        request_hash=bytes(32),
        nonce=1,
    )
    details = ListingDetails(
        cpu_cores=1,
        memory_mib=1024,
        tcb_status=TcbStatus.UP_TO_DATE,
        max_input_bytes=max_input_bytes,
    )
    node.gossip.advertise(offer, details, bytes(account.key))


def test_offers_are_still_heard_after_the_p2p_node_restarts(
    tmp_path: Path, anvil: AnvilNode, market: Market, actors: Actors
) -> None:
    config = client_config(tmp_path, anvil, market)

    async def scenario() -> None:
        async with trio.open_nursery() as nursery:
            policy = SupervisorPolicy(restart_backoff_s=0.2, peer_poll_interval_s=0.2)
            hooks = DaemonHooks(handle_signals=False, p2p_policy=policy)
            daemon = await start_client(nursery, anvil, config, actors, tmp_path, hooks)
            supervisor = daemon.p2p
            assert supervisor is not None
            first = await supervisor.wait_running()
            before = _advertiser(market)
            await nursery.start(before.run)
            await before.host.connect(first.host.listen_addresses()[0])
            await before.gossip.wait_for_topic_peer(first.peer_id, 10.0)
            _advertise(before, actors.providers[0])
            await listed_offers(daemon, config, {actors.providers[0].address})

            # A fault inside py-libp2p takes the node down; the supervisor starts a new one.
            async def library_bug(peer_id: ID) -> None:
                raise KeyError(peer_id)

            first.host.libp2p.get_network().manager.run_task(library_bug, libp2p_id(before.peer_id))
            restarted = await supervisor.wait_running()
            while restarted is first:
                await trio.sleep(0.05)
                restarted = await supervisor.wait_running()

            after = _advertiser(market)
            await nursery.start(after.run)
            await after.host.connect(restarted.host.listen_addresses()[0])
            await after.gossip.wait_for_topic_peer(restarted.peer_id, 10.0)
            _advertise(after, actors.providers[1])
            listed = await listed_offers(daemon, config, {actors.providers[1].address})
            assert actors.providers[1].address in listed
            daemon.stop()
            nursery.cancel_scope.cancel()

    trio.run(scenario)


def test_a_job_submitted_before_any_offer_is_heard_waits_for_the_first(
    tmp_path: Path, anvil: AnvilNode, market: Market, actors: Actors
) -> None:
    config = client_config(tmp_path, anvil, market)

    async def scenario() -> None:
        async with trio.open_nursery() as nursery:
            daemon = await start_client(nursery, anvil, config, actors, tmp_path)
            assert daemon.p2p is not None
            client_node = await daemon.p2p.wait_running()
            job_id = await submit(daemon, config, b"input", 1 << 1)
            # Ranking found an empty book and is asked again, rather than failing the job.
            registry = daemon.metrics.registry
            sample = ("capa_effect_failures_total", {"kind": "FindProviders"})
            with trio.fail_after(20):
                while (registry.get_sample_value(*sample) or 0) < 1:
                    await trio.sleep(0.05)
            assert job_of(daemon, job_id).status is JobStatus.SUBMITTED
            short = _advertiser(market)
            await nursery.start(short.run)
            await short.host.connect(client_node.host.listen_addresses()[0])
            await short.gossip.wait_for_topic_peer(client_node.peer_id, 10.0)
            _advertise(short, actors.providers[1], tee_kind=1, max_duration=300)
            await until(daemon.service, lambda: job_of(daemon, job_id).status is JobStatus.FAILED)
            error = job_of(daemon, job_id).error
            assert error.startswith("no provider can take the job: 1 offer:"), error
            assert "takes jobs of 60-300 s" in error, error
            daemon.stop()
            nursery.cancel_scope.cancel()

    trio.run(scenario)

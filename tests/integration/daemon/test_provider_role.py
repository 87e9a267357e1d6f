"""The provider daemon's whole part, with real parts: anvil and the deployed contracts, the
sim enclave backend over the real wasm sandbox, libp2p on loopback.

A provider that is not registered boots with a stake in its config: it registers, its
enclave asks a committee member over /capa/approve/1 (a minimal responder here: a peer, not
our verifier role), registers its key with the approval, and publishes an offer that a
client peer receives over gossip. The client fetches the evidence, gets a quote, pays with
`matchJob`, uploads its sealed input and gets the provider's input receipt; the provider runs
the job in the enclave, submits the result, the chain settles it, and the client downloads
the sealed output and opens it. Nothing of the client's plaintext reaches the provider's
files or logs.
"""

from __future__ import annotations

import hashlib
import io
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import trio
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak

from node.chain.anvil import DEV_PRIVATE_KEYS, AnvilNode, run_anvil
from node.chain.client import ChainClient
from node.chain.deploy import MarketConfig, deploy_market
from node.chain.market import JobState, Market
from node.chain.typed_data import InputReceipt, JobRequest, Offer, job_id_for, sign_message
from node.config.loader import load_config
from node.config.model import NodeConfig
from node.daemon.daemon import DaemonHooks, RunningDaemon, run_daemon
from node.daemon.errors import DaemonError
from node.daemon.state_service import StateService
from node.enclave.envelope import seal_job_input_bytes
from node.enclave.sealing import Direction, open_stream, public_key_bytes
from node.keys.identity import create_identity, load_identity
from node.p2p.approve_protocol import ApprovalAnswer, ApprovalRequest
from node.p2p.config import P2PConfig
from node.p2p.errors import RemoteRefused
from node.p2p.evidence_protocol import fetch_evidence
from node.p2p.identity import Multiaddr, NodeIdentity, PeerId
from node.p2p.node import P2PNode
from node.p2p.quote_protocol import request_quote
from node.p2p.transfer import download_result, upload_input
from node.state.model import JobStatus, KeyStatus, NodeState
from node.state.values import JobId
from proofs.binding import KeyBinding
from proofs.claims import TcbStatus, TeeKind
from proofs.collateral_source import NoCollateral
from proofs.evidence import verify_evidence
from proofs.receipts import input_receipt_digest, recover_signer, workload_spec_hash

REPO = Path(__file__).resolve().parents[3]
UPPER = REPO / "workloads" / "wasm" / "upper.wasm"
SIM = int(TeeKind.SIM)
STAKE = 2 * 10**18
LOOPBACK = Multiaddr("/ip4/127.0.0.1/tcp/0")


@dataclass(frozen=True)
class Parties:
    governance: LocalAccount
    provider: LocalAccount
    client: LocalAccount
    verifier: LocalAccount


@pytest.fixture(scope="module")
def anvil() -> Iterator[AnvilNode]:
    with run_anvil() as node:
        yield node


@pytest.fixture
def parties() -> Parties:
    keys = [Account.from_key(k) for k in DEV_PRIVATE_KEYS]
    return Parties(keys[0], keys[1], keys[2], keys[5])


@pytest.fixture
def market(anvil: AnvilNode, parties: Parties) -> Market:
    """A fresh devnet market: sim allowed, one committee member, the upper workload approved."""
    chain = ChainClient(anvil.rpc_url, expected_chain_id=anvil.chain_id)
    market = Market(chain, deploy_market(chain, parties.governance, MarketConfig(sim_allowed=True)))
    gov = parties.governance
    market.set_committee(gov, [parties.verifier.address], [], 1)
    market.set_kind_policy(gov, SIM, True, int(TcbStatus.REVOKED))
    measurement = hashlib.sha256(UPPER.read_bytes()).digest()
    market.approve_measurement(gov, SIM, measurement, market.latest_timestamp() + 30 * 86400)
    return market


class Committee:
    """A committee member's minimal responder: checks the sim evidence binds what the
    provider proposes, then signs the KeyAttestation. `gate` holds answers back until the
    test is ready to receive the offer that follows."""

    def __init__(self, market: Market, member: LocalAccount, *, refuse: str = "") -> None:
        self._market = market
        self._member = member
        self._refuse = refuse
        self.gate = trio.Event()
        self.asked: list[ApprovalRequest] = []

    async def approve(self, peer: PeerId, request: ApprovalRequest) -> ApprovalAnswer:
        self.asked.append(request)
        await self.gate.wait()
        if self._refuse:
            raise RemoteRefused(self._refuse)
        att = request.attestation
        claims = verify_evidence(request.evidence, NoCollateral(), datetime.now(UTC)).claims
        deployment = self._market.deployment
        block = await trio.to_thread.run_sync(
            self._market.client.w3.eth.get_block, request.nonce_block
        )
        binding = KeyBinding(
            deployment.chain_id,
            deployment.verifier,
            att.provider,
            att.enclave_key,
            request.hpke_public_key,
            bytes(block["hash"]),
            att.expires_at,
        )
        assert bytes(claims.report_data) == bytes(binding.report_data())
        assert att.evidence_hash == keccak(request.evidence)
        assert bytes(claims.measurement) == att.measurement and claims.insecure
        signature = sign_message(self._market.verifier_domain, att, self._member.key)
        return ApprovalAnswer(True, "", signature)


def _p2p_config(market: Market) -> P2PConfig:
    return P2PConfig(
        chain_id=market.deployment.chain_id,
        market_address=market.deployment.market,
        listen_addrs=(LOOPBACK,),
        dial_timeout_s=5.0,
    )


def _write_config(
    directory: Path,
    anvil: AnvilNode,
    market: Market,
    *,
    verifiers: list[str],
    stake: int,
    extra: str = "",
) -> NodeConfig:
    directory.mkdir(parents=True, exist_ok=True)
    peers = ", ".join(f'"{v}"' for v in verifiers)
    path = directory / "capa.toml"
    path.write_text(
        f"""
[node]
role = "provider"
data_dir = "."

[chain]
rpc_urls = ["{anvil.rpc_url}"]
chain_id = {anvil.chain_id}
market = "{market.deployment.market}"
confirmations = 1
poll_interval = 0.05
request_timeout = 2.0
bump_after = 30.0

[api]
port = 0

[p2p]
listen_addrs = ["/ip4/127.0.0.1/tcp/0"]

[provider]
backend = "sim"
workloads = [{{ name = "upper", kind = "wasm", path = "{UPPER}", wall_seconds = 20 }}]
stake = "{stake}"
price_per_hour = "1000000000000"
cpu_cores = 2
memory_mib = 2048
verifiers = [{peers}]
{extra}
"""
    )
    return load_config(path, env={})


async def _keep_mining(url: str, every: float = 0.1) -> None:
    async with httpx.AsyncClient(timeout=5) as http:
        while True:
            await http.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "evm_mine"})
            await trio.sleep(every)


async def _until(service: StateService, predicate: Callable[[], bool], timeout: float) -> None:
    seen = -1
    with trio.fail_after(timeout):
        while not predicate():
            seen = await service.wait_for_change(seen)


def _files_under(root: Path) -> Iterator[Path]:
    for path in root.rglob("*"):
        if path.is_file():
            yield path


@dataclass
class Submitted:
    job_id: bytes
    request: JobRequest
    client_key: X25519PrivateKey
    sealed: bytes
    enclave_key: str
    receipt: bytes


class World:
    """A provider daemon, a committee member and a client peer, all on loopback."""

    def __init__(self, directory: Path, anvil: AnvilNode, market: Market, parties: Parties) -> None:
        self.directory = directory
        self.anvil = anvil
        self.market = market
        self.parties = parties
        self.client = P2PNode(NodeIdentity.generate(), _p2p_config(market))
        self.daemon: RunningDaemon | None = None
        self.provider_peer = PeerId("")

    @property
    def state(self) -> NodeState:
        assert self.daemon is not None
        return self.daemon.service.state

    async def start(self, nursery: trio.Nursery, committee: Committee, *, extra: str = "") -> None:
        await self.start_peers(nursery, committee, extra=extra)
        await self.start_daemon(nursery)

    async def start_peers(
        self, nursery: trio.Nursery, committee: Committee, *, extra: str = ""
    ) -> None:
        verifier = P2PNode(NodeIdentity.generate(), _p2p_config(self.market), approvals=committee)
        await nursery.start(verifier.run)
        await nursery.start(self.client.run)
        self.config = _write_config(
            self.directory,
            self.anvil,
            self.market,
            verifiers=[str(verifier.host.listen_addresses()[0])],
            stake=STAKE,
            extra=extra,
        )
        self.committee = committee
        nursery.start_soon(_keep_mining, self.anvil.rpc_url)

    async def start_daemon(self, nursery: trio.Nursery) -> None:
        """The provider daemon (again, after a stop: same data dir, same identity)."""
        path = self.directory / "identity.key"
        identity = load_identity(path) if path.exists() else create_identity(path)
        self.daemon = await nursery.start(
            run_daemon,
            self.config,
            self.parties.provider,
            identity,
            DaemonHooks(handle_signals=False),
        )
        self.provider_peer = PeerId(identity.peer_id)
        assert self.daemon.p2p is not None
        provider_node = await self.daemon.p2p.wait_running()
        if self.client.host.is_connected(self.provider_peer):
            # The connection to the stopped daemon's node is dead: dial the new one.
            await self.client.host.disconnect(self.provider_peer)
        await self.client.host.connect(provider_node.host.listen_addresses()[0])
        # The first offer goes out once the key is registered: let the committee answer
        # only when the client is there to receive it.
        await self.client.gossip.wait_for_topic_peer(self.provider_peer, 20)
        self.committee.gate.set()

    async def offer(self, *, other_than: str = "") -> Offer:
        """The next offer the client receives (of another enclave key than `other_than`)."""
        with trio.fail_after(60):
            while True:
                offer = (await self.client.gossip.updates.receive()).listing.offer
                if offer.enclave_key != other_than:
                    return offer

    async def until(self, predicate: Callable[[], bool], timeout: float = 60) -> None:
        assert self.daemon is not None
        await _until(self.daemon.service, predicate, timeout)

    async def submit(self, offer: Offer, plaintext: bytes, *, upload: bool = True) -> Submitted:
        """What a client does with an offer: check the evidence, seal, quote, pay, upload."""
        deployment = self.market.deployment
        parties = self.parties
        bundle = await fetch_evidence(
            self.client.host, self.provider_peer, enclave_key=offer.enclave_key
        )
        assert bundle.binding is not None
        claims = verify_evidence(bundle.evidence, NoCollateral(), datetime.now(UTC)).claims
        expected = KeyBinding(
            deployment.chain_id,
            deployment.verifier,
            parties.provider.address,
            offer.enclave_key,
            bundle.binding.hpke_public_key,
            bundle.binding.nonce,
            bundle.binding.expires_at,
        )
        assert bytes(claims.report_data) == bytes(expected.report_data())
        client_key = X25519PrivateKey.generate()
        nonce = int.from_bytes(os.urandom(8))
        job_id = job_id_for(parties.client.address, nonce)
        sealed = seal_job_input_bytes(
            bundle.binding.hpke_public_key, job_id, public_key_bytes(client_key), plaintext
        )
        now = self.market.latest_timestamp()
        request = JobRequest(
            spec_hash=workload_spec_hash(offer.measurement, ()),
            input_hash=hashlib.sha256(sealed).digest(),
            tee_kinds=1 << SIM,
            measurement=offer.measurement,
            min_tcb_status=int(TcbStatus.REVOKED),
            max_price=10**16,
            deadline=now + 3000,
            nonce=nonce,
        )
        quote = await request_quote(
            self.client.host,
            self.provider_peer,
            request,
            client=parties.client.address,
            provider=parties.provider.address,
            chain_id=deployment.chain_id,
            market=deployment.market,
            now=now,
        )
        assert quote.offer.enclave_key == offer.enclave_key
        assert quote.offer.min_duration == 60
        await trio.to_thread.run_sync(
            self.market.match_job, parties.client, request, quote.offer, quote.signature
        )
        submitted = Submitted(job_id, request, client_key, sealed, offer.enclave_key, b"")
        if upload:
            submitted.receipt = await self.upload(submitted)
        return submitted

    async def upload(self, submitted: Submitted) -> bytes:
        sent = await upload_input(
            self.client.host,
            self.provider_peer,
            submitted.job_id,
            submitted.sealed,
            enclave_key=submitted.enclave_key,
            timeout_s=45,
        )
        return sent.input_receipt

    async def output(self, submitted: Submitted) -> bytes:
        result = await download_result(self.client.host, self.provider_peer, submitted.job_id)
        return b"".join(
            open_stream(
                submitted.client_key,
                submitted.job_id,
                Direction.OUTPUT,
                io.BytesIO(result.output),
            )
        )


def test_provider_boots_attests_publishes_and_runs_a_paid_job(
    tmp_path: Path,
    anvil: AnvilNode,
    market: Market,
    parties: Parties,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("DEBUG")
    marker = os.urandom(12).hex().encode()
    plaintext = b"confidential: " + marker + b"\n"
    provider_dir = tmp_path / "provider"
    world = World(provider_dir, anvil, market, parties)
    outcome: dict[str, bytes] = {}

    async def scenario() -> None:
        committee = Committee(market, parties.verifier)
        async with trio.open_nursery() as nursery:
            await world.start(nursery, committee)
            # Registered with the configured stake, key approved and registered, offer out.
            with trio.fail_after(60):
                received = await world.client.gossip.updates.receive()
            offer = received.listing.offer
            state = world.state
            assert state.facts.registered
            key = state.keys[offer.enclave_key]
            assert key.status is KeyStatus.REGISTERED and key.tee_kind == SIM
            assert received.listing.peer_id == world.provider_peer
            assert (offer.provider, offer.tee_kind) == (parties.provider.address, SIM)
            assert received.listing.details.cpu_cores == 2
            assert len(committee.asked) == 1

            submitted = await world.submit(offer, plaintext)
            digest = input_receipt_digest(
                market.market_domain,
                InputReceipt(
                    submitted.job_id, submitted.request.spec_hash, submitted.request.input_hash
                ),
            )
            assert recover_signer(digest, submitted.receipt) == parties.provider.address

            job = JobId("0x" + submitted.job_id.hex())
            jobs = state.jobs
            await world.until(lambda: jobs[job].status is JobStatus.SETTLED, 90)
            outcome["output"] = await world.output(submitted)
            outcome["job"] = submitted.job_id
            await _hostile_requests(world, submitted, offer)
            assert world.daemon is not None
            world.daemon.stop()
            nursery.cancel_scope.cancel()

    trio.run(scenario)
    assert outcome["output"] == plaintext.upper()
    assert market.job(outcome["job"]).state is JobState.SETTLED
    # Sealed bytes only: the plaintext marker is nowhere in the provider's files or logs.
    for path in _files_under(provider_dir):
        assert marker not in path.read_bytes(), f"plaintext in {path}"
        assert marker.upper() not in path.read_bytes(), f"plaintext output in {path}"
    assert marker.decode() not in caplog.text
    assert "INSECURE" in caplog.text


async def _hostile_requests(world: World, submitted: Submitted, offer: Offer) -> None:
    """Requests the provider must refuse, each with a reason the peer can act on."""
    client, peer, parties = world.client.host, world.provider_peer, world.parties
    with pytest.raises(RemoteRefused, match="wrong_input_hash"):
        await upload_input(client, peer, submitted.job_id, b"other bytes", timeout_s=20)
    with pytest.raises(RemoteRefused, match="not_assigned"):
        await upload_input(client, peer, os.urandom(32), b"bytes for no job", timeout_s=20)
    with pytest.raises(RemoteRefused, match="unknown_enclave"):
        await upload_input(client, peer, submitted.job_id, b"x", enclave_key=parties.client.address)
    deployment = world.market.deployment
    terms = {
        "client": parties.client.address,
        "provider": parties.provider.address,
        "chain_id": deployment.chain_id,
        "market": deployment.market,
        "now": world.market.latest_timestamp(),
    }
    other = replace(submitted.request, nonce=submitted.request.nonce + 1)
    with pytest.raises(RemoteRefused, match="no registered enclave"):
        await request_quote(client, peer, replace(other, measurement=keccak(b"other")), **terms)
    with pytest.raises(RemoteRefused, match="spec hash"):
        await request_quote(client, peer, replace(other, spec_hash=keccak(b"args")), **terms)
    with pytest.raises(RemoteRefused, match="already"):
        await request_quote(client, peer, submitted.request, **terms)
    # Each quote is recorded: a peer asking without pause is cut off.
    refusals = []
    for _ in range(30):
        try:
            await request_quote(client, peer, submitted.request, **terms)
        except RemoteRefused as refused:
            refusals.append(refused.reason)
    assert "rate_limited" in refusals


def test_results_ready_together_are_signed_by_the_enclave_as_one_batch(
    tmp_path: Path, anvil: AnvilNode, market: Market, parties: Parties
) -> None:
    world = World(tmp_path / "provider", anvil, market, parties)
    outputs: list[bytes] = []
    functions: list[str] = []

    async def scenario() -> None:
        async with trio.open_nursery() as nursery:
            await world.start(
                nursery,
                Committee(market, parties.verifier),
                extra="batch_size = 2\nbatch_max_wait = 3600",
            )
            with trio.fail_after(60):
                offer = (await world.client.gossip.updates.receive()).listing.offer
            first = await world.submit(offer, b"first job\n")
            jobs = world.state.jobs
            one = JobId("0x" + first.job_id.hex())
            # One result waits for a second (batch_size 2) rather than going out alone.
            await world.until(lambda: jobs[one].status is JobStatus.READY)
            second = await world.submit(offer, b"second job\n")
            two = JobId("0x" + second.job_id.hex())
            await world.until(
                lambda: all(jobs[j].status is JobStatus.SETTLED for j in (one, two)), 90
            )
            outputs.extend([await world.output(first), await world.output(second)])
            assert world.daemon is not None
            token = world.config.api.token_file.read_text()
            async with httpx.AsyncClient(
                base_url=world.daemon.api_url, headers={"Authorization": f"Bearer {token}"}
            ) as api:
                listed = (await api.get("/v1/transactions")).json()["transactions"]
            functions.extend(t["effect_id"].split(":")[0] for t in listed)
            world.daemon.stop()
            nursery.cancel_scope.cancel()

    trio.run(scenario)
    assert outputs == [b"FIRST JOB\n", b"SECOND JOB\n"]
    assert functions.count("submitResults") == 1 and "submitResult" not in functions


def test_a_restart_gives_back_a_job_sealed_to_the_instance_that_ended(
    tmp_path: Path, anvil: AnvilNode, market: Market, parties: Parties
) -> None:
    world = World(tmp_path / "provider", anvil, market, parties)
    ended: dict[str, object] = {}

    async def scenario() -> None:
        async with trio.open_nursery() as nursery:
            await world.start_peers(nursery, Committee(market, parties.verifier))
            async with trio.open_nursery() as first_boot:
                await world.start_daemon(first_boot)
                old = await world.offer()
                paid = await world.submit(old, b"sealed to the first instance\n", upload=False)
                job = JobId("0x" + paid.job_id.hex())
                jobs = world.state.jobs
                await world.until(lambda: job in jobs and jobs[job].status is JobStatus.ASSIGNED)
                assert world.daemon is not None
                world.daemon.stop()
            # A new boot: the first instance and its keys are gone with the old process.
            async with trio.open_nursery() as second_boot:
                await world.start_daemon(second_boot)
                jobs = world.state.jobs
                await world.until(lambda: jobs[job].status is JobStatus.REFUNDED, 60)
                assert world.state.keys[old.enclave_key].status is KeyStatus.RETIRED
                with pytest.raises(RemoteRefused, match="unknown_enclave"):
                    await world.upload(paid)
                new = await world.offer(other_than=old.enclave_key)
                assert world.state.keys[new.enclave_key].status is KeyStatus.REGISTERED
                ended["job"] = paid.job_id
                assert world.daemon is not None
                world.daemon.stop()
            nursery.cancel_scope.cancel()

    trio.run(scenario)
    # Given back before the deadline: the client is refunded in full, nobody is slashed.
    assert market.job(ended["job"]).state is JobState.RELEASED  # type: ignore[arg-type]


def test_a_key_near_its_expiry_is_replaced_by_a_fresh_instance(
    tmp_path: Path,
    anvil: AnvilNode,
    market: Market,
    parties: Parties,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("INFO")
    world = World(tmp_path / "provider", anvil, market, parties)
    keys_seen: list[str] = []

    async def scenario() -> None:
        async with trio.open_nursery() as nursery:
            # A margin longer than the key's life: every key is due for replacement at once.
            await world.start(
                nursery,
                Committee(market, parties.verifier),
                extra="key_ttl = 600\nrekey_margin = 3600",
            )
            first = await world.offer()
            second = await world.offer(other_than=first.enclave_key)
            keys = world.state.keys
            await world.until(lambda: keys[first.enclave_key].status is KeyStatus.RETIRED)
            assert keys[first.enclave_key].reason.startswith("replaced by")
            keys_seen.extend([first.enclave_key, second.enclave_key])
            assert world.daemon is not None
            world.daemon.stop()
            nursery.cancel_scope.cancel()

    trio.run(scenario)
    # The replaced instance is destroyed once nothing needs it: its keys die with it.
    assert f"enclave {keys_seen[0]} destroyed" in caplog.text


def test_a_refused_key_is_not_registered_and_says_why(
    tmp_path: Path,
    anvil: AnvilNode,
    market: Market,
    parties: Parties,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("INFO")
    world = World(tmp_path / "provider", anvil, market, parties)
    refusal = "policy refuses sim evidence (INSECURE)"

    async def scenario() -> None:
        async with trio.open_nursery() as nursery:
            await world.start(nursery, Committee(market, parties.verifier, refuse=refusal))
            keys = world.state.keys
            await world.until(lambda: any(k.status is KeyStatus.REFUSED for k in keys.values()))
            (key,) = keys.values()
            assert refusal in key.reason and "0 of 1 approvals" in key.reason
            assert not world.state.pending  # nothing left to retry, nothing to publish
            assert f"enclave {key.enclave_key} destroyed" in caplog.text
            assert world.daemon is not None
            world.daemon.stop()
            nursery.cancel_scope.cancel()

    trio.run(scenario)


def test_an_unregistered_provider_without_a_stake_refuses_to_start_with_the_command(
    tmp_path: Path, anvil: AnvilNode, market: Market, parties: Parties
) -> None:
    config = _write_config(tmp_path, anvil, market, verifiers=[], stake=0)
    account = Account.create()  # never registered

    async def scenario() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(
                run_daemon,
                config,
                account,
                create_identity(tmp_path / "identity.key"),
                DaemonHooks(handle_signals=False),
            )

    started = time.monotonic()
    # The daemon's nurseries wrap it; `capa node run` prints the DaemonError inside.
    with pytest.raises(BaseExceptionGroup) as raised:
        trio.run(scenario)
    matched = raised.value.subgroup(DaemonError)
    assert matched is not None
    refusal = str(_leaves(matched)[0])
    assert "not registered" in refusal
    assert f"capa provider register -c {config.source}" in refusal
    assert "\n" not in refusal
    assert time.monotonic() - started < 30


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    out: list[BaseException] = []
    for exc in group.exceptions:
        out.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return out

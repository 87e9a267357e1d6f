"""Helpers to drive a node in-process against anvil: configs, jobs, mining, waiting."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import trio
from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak

from node.chain.devnet import SeededProvider, match_quoted
from node.chain.market import Market, ProviderStatus
from node.chain.typed_data import (
    JobRequest,
    KeyAttestation,
    Result,
    key_attestation_abi,
    sign_message,
)
from node.config.loader import load_config
from node.config.model import NodeConfig
from node.daemon.provider_boot import with_probed_capacity
from node.daemon.state_service import StateService, rebuild_state
from node.daemon.wiring import identity_for
from node.keys.account import load_account
from node.keys.identity import NodeIdentity, load_identity
from node.metrics import Metrics
from node.state import changes as sc
from node.state.changes import JobExecuted, StateChange
from node.state.effects import Effect, StartJob
from node.state.model import JobStatus, KeyStatus
from node.state.values import BlockNumber, Hash32, JobId, TxHash, effect_id, to_address
from node.store.store import Store

if TYPE_CHECKING:
    from trio_typing import TaskStatus

TDX = 2
MEASUREMENT = keccak(b"mrtd of the capa runner image")
STAKE = 5 * 10**18
PRICE = 10**17
RUN_NODE_APP = "import sys; from node.cli.node_run import node_app; node_app(sys.argv[1:])"


@dataclass(frozen=True)
class Actors:
    governance: LocalAccount
    provider: LocalAccount
    client: LocalAccount
    committee: list[LocalAccount]


SPEC = keccak(b"spec")


def rpc(url: str, method: str, params: list[object]) -> object:
    answer = httpx.post(
        url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params}, timeout=10
    ).json()
    if "error" in answer:
        raise RuntimeError(f"{method}: {answer['error']}")
    return answer["result"]


def mine(url: str, blocks: int = 1) -> None:
    rpc(url, "anvil_mine", [hex(blocks)])


def head(url: str) -> int:
    return int(str(rpc(url, "eth_blockNumber", [])), 16)


def nonce_of(url: str, address: str) -> int:
    return int(str(rpc(url, "eth_getTransactionCount", [address, "latest"])), 16)


def match_job(market: Market, actors: Actors, seeded: SeededProvider, nonce: int) -> JobRequest:
    request = JobRequest(
        spec_hash=SPEC,
        input_hash=keccak(b"sealed input %d" % nonce),
        tee_kinds=1 << TDX,
        measurement=bytes(32),
        min_tcb_status=1,
        max_price=PRICE,
        deadline=market.latest_timestamp() + 3600,
        nonce=nonce,
    )
    match_quoted(market, actors.client, seeded, request, price=PRICE)
    return request


# The boot that `seed_registered_key` records: these tests run no boot of their own
# (role_parts=False), so every run of a daemon on the seeded store continues it.
HARNESS_BOOT = "harness-boot"


def registered_key_changes(
    market: Market, seeded: SeededProvider, committee: list[LocalAccount]
) -> list[StateChange]:
    """What a provider's boot records for the `seeded` enclave key, read back from the chain.

    seed_provider registered the key with the devnet committee; these are the changes of a
    boot that did just that: booted registered, the instance started, the committee approved
    its key (signed again here, the same attestation) and the registerKey transaction,
    the one seed_provider sent, confirmed. So the key is REGISTERED for this boot and no
    transaction is ever sent for it.
    """
    enclave_key = to_address(seeded.enclave.address)
    (log,) = market.verifier.events.KeyRegistered.get_logs(
        from_block=market.deployment.block_number, argument_filters={"enclaveKey": enclave_key}
    )
    args = log["args"]
    attestation = KeyAttestation(
        provider=args["provider"],
        enclave_key=enclave_key,
        tee_kind=int(args["teeKind"]),
        measurement=bytes(args["measurement"]),
        tcb_status=int(args["tcbStatus"]),
        evidence_hash=bytes(args["evidenceHash"]),
        expires_at=int(args["expiresAt"]),
    )
    abi = [
        ("0x" + v.hex()) if isinstance(v, bytes) else v for v in key_attestation_abi(attestation)
    ]
    signatures = ["0x" + s.hex() for s in market.committee_signatures(attestation, committee)]
    provider = market.provider_info(seeded.account.address)
    return [
        sc.ProviderBooted(
            HARNESS_BOOT, True, provider.status is ProviderStatus.ACTIVE, provider.stake
        ),
        sc.EnclaveStarted(
            HARNESS_BOOT,
            "harness",
            "wasm",
            seeded.tee_kind,
            Hash32("0x" + seeded.measurement.hex()),
            enclave_key,
            # No client of these tests seals to the instance: its HPKE key is never used.
            "0x" + bytes(32).hex(),
        ),
        sc.KeyApproved(
            enclave_key,
            json.dumps({"abi": abi, "expiresAt": attestation.expires_at}),
            json.dumps(signatures),
        ),
        sc.TxConfirmed(
            effect_id("registerKey", enclave_key),
            TxHash("0x" + bytes(log["transactionHash"]).hex()),
            BlockNumber(int(log["blockNumber"])),
        ),
    ]


def boot_with_registered_key(
    service: StateService, market: Market, seeded: SeededProvider, committee: list[LocalAccount]
) -> None:
    """Record `registered_key_changes` in one commit, before the service runs."""
    outcomes = service.apply_now(registered_key_changes(market, seeded, committee))
    assert [o.rejected for o in outcomes] == [""] * len(outcomes)
    key = service.state.keys[to_address(seeded.enclave.address)]
    assert key.status is KeyStatus.REGISTERED, key


def seed_registered_key(
    config: NodeConfig,
    account: LocalAccount,
    identity: NodeIdentity,
    market: Market,
    seeded: SeededProvider,
    committee: list[LocalAccount],
) -> None:
    """`boot_with_registered_key` on the store of the provider daemon `config` describes,
    with the identity that daemon will have."""
    me = identity_for(with_probed_capacity(config), account.address, identity.peer_id)
    store = Store.open(config.store.path)
    try:
        store.bind_identity(me.role.value, me.address)
        service = StateService(store, me, rebuild_state(store, me), Metrics())
        boot_with_registered_key(service, market, seeded, committee)
    finally:
        store.close()


async def deliver_input(
    service: StateService, job_id: JobId, request: JobRequest, seeded: SeededProvider
) -> None:
    """What the p2p input gate records once the client's sealed input, the one the job
    committed to, is stored for the seeded instance (tests/integration/daemon/
    test_provider_role.py runs the real gate): the provider then starts the job."""
    jobs = service.state.jobs
    await until(service, lambda: job_id in jobs and jobs[job_id].status is JobStatus.ASSIGNED)
    received = sc.InputReceived(
        job_id,
        Hash32("0x" + request.input_hash.hex()),
        0,  # no bytes are stored here, and the transitions do not read the size
        to_address(seeded.enclave.address),
    )
    outcome = await service.request(received)
    assert outcome.rejected == "", outcome.rejected


def register_initialised_provider(market: Market, directory: Path, password: str) -> None:
    """Fund and register the provider `capa init` made in `directory`: a provider daemon
    that is not registered (and has no stake configured) refuses to start."""
    account = load_account(directory / "keys" / "account.json", password)
    rpc(market.client.rpc_url, "anvil_setBalance", [account.address, hex(10**20)])
    peer_id = load_identity(directory / "keys" / "identity.key").peer_id_bytes
    market.register_provider(account, peer_id, market.min_stake())


def write_config(
    directory: Path,
    *,
    role: str,
    rpc_urls: list[str],
    market: str,
    chain_id: int = 31337,
    **chain: object,
) -> NodeConfig:
    settings = {
        "confirmations": 2,
        "poll_interval": 0.05,
        "bump_after": 30.0,
        "request_timeout": 2.0,
        **chain,
    }
    chain_lines = "\n".join(
        f"{k} = {v!r}" if not isinstance(v, str) else f'{k} = "{v}"' for k, v in settings.items()
    )
    urls = ", ".join(f'"{u}"' for u in rpc_urls)
    path = directory / "capa.toml"
    path.write_text(
        f"""
[node]
role = "{role}"
data_dir = "."

[chain]
rpc_urls = [{urls}]
chain_id = {chain_id}
market = "{market}"
{chain_lines}

[api]
port = 0

[p2p]
# Any free port on loopback: tests run several daemons on one machine.
listen_addrs = ["/ip4/127.0.0.1/tcp/0"]

[provider]
backend = "sim"
"""
    )
    return load_config(path, env={})


class FakeExecutor:
    """Stands in for the enclave runtime: signs a Result with the registered enclave key."""

    def __init__(self, market: Market, seeded: SeededProvider) -> None:
        self._market = market
        self._seeded = seeded
        self.started: list[JobId] = []

    async def execute(self, effect: Effect) -> StateChange | None:
        assert isinstance(effect, StartJob)
        self.started.append(effect.job_id)
        output_hash = keccak(b"output of " + effect.job_id.encode())
        result = Result(
            bytes.fromhex(effect.job_id[2:]),
            self._seeded.account.address,
            SPEC,  # every job of the harness runs this spec (see match_job)
            bytes.fromhex(effect.input_hash[2:]),
            output_hash,
        )
        signature = sign_message(self._market.market_domain, result, self._seeded.enclave.key)
        # One result per submission (batch_size 1): when it was ready does not matter.
        return JobExecuted(
            effect.job_id,
            Hash32("0x" + output_hash.hex()),
            "0x" + signature.hex(),
            int(time.time()),
        )


async def until(
    service: StateService, predicate: Callable[[], bool], timeout: float = 20.0
) -> None:
    """Wait for commits until `predicate` holds; fails the test after `timeout` seconds."""
    seen = -1
    with trio.fail_after(timeout):
        while not predicate():
            seen = await service.wait_for_change(seen)


async def keep_mining(url: str, every: float = 0.05) -> None:
    """A block every `every` seconds, so confirmations accrue (automine makes blocks only for txs)."""
    async with httpx.AsyncClient(timeout=5) as http:
        while True:
            await http.post(
                url, json={"jsonrpc": "2.0", "id": 1, "method": "evm_mine", "params": []}
            )
            await trio.sleep(every)


async def eventually(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    """Wait for a condition outside the state machine (a metric, a file) with a deadline."""
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.02)


class TcpProxy:
    """A loopback TCP relay in front of anvil that a test can take down and bring back."""

    def __init__(self, target_port: int) -> None:
        self._target_port = target_port
        self.port = 0
        self._scope: trio.CancelScope | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        with trio.CancelScope() as scope:
            self._scope = scope
            listeners = await trio.open_tcp_listeners(self.port, host="127.0.0.1")
            self.port = listeners[0].socket.getsockname()[1]
            async with trio.open_nursery() as nursery:
                task_status.started()
                await trio.serve_listeners(self._relay, listeners, handler_nursery=nursery)

    def stop(self) -> None:
        """Close the listener and every relayed connection."""
        assert self._scope is not None
        self._scope.cancel()

    async def _relay(self, downstream: trio.SocketStream) -> None:
        upstream = await trio.open_tcp_stream("127.0.0.1", self._target_port)
        async with downstream, upstream, trio.open_nursery() as nursery:

            async def pump(source: trio.SocketStream, sink: trio.SocketStream) -> None:
                while data := await source.receive_some(65536):
                    await sink.send_all(data)
                nursery.cancel_scope.cancel()

            nursery.start_soon(pump, downstream, upstream)
            nursery.start_soon(pump, upstream, downstream)


def start_daemon(config: Path, password: str) -> subprocess.Popen[str]:
    """`capa node run` as its own process, logging JSON lines to its stdout."""
    env = {
        **os.environ,
        "CAPA_KEYSTORE_PASSWORD": password,
        "CAPA_CHAIN_POLL_INTERVAL": "0.2",
        # Any free port on loopback: tests run several daemons on one machine.
        "CAPA_P2P_LISTEN_ADDRS": "/ip4/127.0.0.1/tcp/0",
    }
    return subprocess.Popen(
        [sys.executable, "-c", RUN_NODE_APP, "run", "--config", str(config), "--log-json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_for_api(
    directory: Path, process: subprocess.Popen[str], timeout: float = 30.0
) -> tuple[str, str]:
    """The daemon writes its URL and a fresh token once the API listens; then it answers."""
    deadline = time.monotonic() + timeout
    url_file, token_file = directory / "api.url", directory / "api.token"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(
                f"daemon exited early:\n{process.stdout.read() if process.stdout else ''}"
            )
        if url_file.exists() and token_file.exists():
            url, token = url_file.read_text(), token_file.read_text()
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    return url, token
            except httpx.HTTPError:
                pass
        time.sleep(0.05)
    raise AssertionError("daemon did not become ready")

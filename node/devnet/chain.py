"""The devnet's chain: a detached anvil, the contracts deployed with the sim kind allowed,
governed so that sim providers can register keys, and every node's account funded.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount

from node.chain.anvil import DEV_PRIVATE_KEYS, anvil_command, listening_url
from node.chain.client import ChainClient
from node.chain.deploy import MarketConfig, check_deployment_funds, deploy_market
from node.chain.errors import ChainError
from node.chain.manifest import (
    LOCAL_CHAIN_IDS,
    DeploymentManifest,
    record_deployment,
    write_manifest,
)
from node.chain.market import Market
from node.devnet.errors import DevnetError, NodeFailed
from node.devnet.processes import (
    ProcessRecord,
    Stoppable,
    is_running,
    log_tail,
    spawn,
    stop_all,
)
from node.enclave.errors import EnclaveError
from node.enclave.workloads import OnnxWorkload, WasmWorkload, WorkloadMeasurement
from proofs.claims import TcbStatus, TeeKind

SIM = int(TeeKind.SIM)
# Sim evidence carries no TCB at all: a floor above the lowest status would refuse it.
SIM_TCB_FLOOR = int(TcbStatus.REVOKED)
MEASUREMENT_LIFETIME_S = 365 * 24 * 3600


@dataclass(frozen=True)
class Workload:
    """A workload the devnet's providers serve, as their config names it."""

    name: str
    kind: str  # wasm | onnx
    path: Path

    def measure(self) -> WorkloadMeasurement:
        """The measurement the provider's sim enclave will report: computed by the same
        code the node runs, so what governance approves is what the enclave shows."""
        try:
            data = self.path.read_bytes()
        except OSError as exc:
            raise DevnetError(f"workload {self.path} cannot be read: {exc.strerror}") from exc
        try:
            if self.kind == "wasm":
                return WasmWorkload(data, self.path.name).measure()
            if self.kind == "onnx":
                return OnnxWorkload(data).measure()
        except EnclaveError as exc:
            raise DevnetError(f"workload {self.path}: {exc}") from exc
        raise DevnetError(f"workload {self.name}: kind {self.kind!r} is not wasm or onnx")


def start_anvil(
    log: Path, env: Mapping[str, str], *, chain_id: int, block_time: float, timeout: float
) -> tuple[ProcessRecord, str]:
    """anvil in its own session; returns once its log names the URL it listens on."""
    argv = anvil_command(chain_id=chain_id, block_time=block_time)
    process, record = spawn(argv, log=log, cwd=log.parent, env={**env, "NO_COLOR": "1"})
    deadline = time.monotonic() + timeout
    while True:
        for line in log_tail(log, 200):
            url = listening_url(line)
            if url is not None:
                return record, url
        process.poll()
        if not is_running(record):
            raise NodeFailed("anvil", "exited at start", log_tail(log, 20))
        if time.monotonic() >= deadline:
            stop_all([Stoppable("anvil", record, process)], grace=5.0)
            raise NodeFailed("anvil", f"did not listen within {timeout:.0f} s", log_tail(log, 20))
        time.sleep(0.05)


def governance_account() -> LocalAccount:
    account: LocalAccount = Account.from_key(DEV_PRIVATE_KEYS[0])
    return account


def deploy_devnet(
    rpc_url: str,
    manifest_path: Path,
    *,
    workloads: Sequence[Workload],
    committee: Sequence[str],
    threshold: int,
    funded: Sequence[str],
    fund_wei: int,
) -> DeploymentManifest:
    """Deploy with the sim kind allowed, enable sim, approve every workload's measurement,
    seat the committee and fund `funded` from anvil's first dev account (governance)."""
    try:
        client = ChainClient(rpc_url)
        if client.chain_id not in LOCAL_CHAIN_IDS:
            # Sim enclaves have no hardware isolation: never on a chain that holds value.
            raise DevnetError(
                f"{rpc_url} serves chain {client.chain_id}: the devnet allows the INSECURE sim "
                f"kind and deploys only to local chains ({', '.join(map(str, LOCAL_CHAIN_IDS))})"
            )
        governance = governance_account()
        config = MarketConfig(sim_allowed=True)
        check_deployment_funds(client, governance, config, governance.address)
        deployment = deploy_market(client, governance, config)
        manifest = record_deployment(
            client,
            deployment,
            deployer=governance.address,
            config=config,
            confirmations=1,
            timeout=30.0,
        )
        write_manifest(manifest_path, manifest)
        market = Market(client, deployment)
        market.set_kind_policy(governance, SIM, True, SIM_TCB_FLOOR)
        not_after = market.latest_timestamp() + MEASUREMENT_LIFETIME_S
        for measurement in sorted({w.measure() for w in workloads}):
            market.approve_measurement(governance, SIM, measurement, not_after)
        market.set_committee(governance, list(committee), [], threshold)
        for address in funded:
            client.transfer(governance, address, fund_wei)
    except ChainError as exc:
        raise DevnetError(f"setting up the chain at {rpc_url}: {exc}") from exc
    return manifest

"""A provider's boot: what it offers, which enclave backend, its registry entry, its enclaves.

Runs once before the daemon's inputs start (`RoleParts.prepare`). The backend is the one the
config names, never a fallback: a `tdx` provider on a machine without TDX refuses to start
with the reason, and `sim` (real sandboxes, no hardware) says INSECURE in the log. A
provider that is not registered and has no stake configured to register with refuses to
start with the one command that registers it.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import replace

from eth_account import Account

from node.chain.errors import ChainError
from node.config.model import Backend, NodeConfig, Role
from node.daemon.enclave_host import EnclaveHost
from node.daemon.errors import DaemonError
from node.daemon.wiring import NodeContext
from node.enclave.backend import EnclaveBackend, SandboxBackend, hardware_attester, sim_backend
from node.enclave.errors import EnclaveError
from node.enclave.native_sandbox import detect_native_sandbox
from node.enclave.probe import probe_cpu, probe_memory
from node.keys.files import write_secret_file
from node.state import changes as sc
from proofs.claims import TeeKind

log = logging.getLogger(__name__)

_HARDWARE = {
    Backend.TDX: TeeKind.TDX,
    Backend.SEV_SNP: TeeKind.SEV_SNP,
    Backend.SGX_GRAMINE: TeeKind.SGX,
}
# ProviderRegistry.Status
_NONE, _ACTIVE, _JAILED, _EXITED = 0, 1, 2, 3


def with_probed_capacity(config: NodeConfig) -> NodeConfig:
    """The config with `[provider] cpu_cores` / `memory_mib` of 0 replaced by what this
    machine has (as `capa node probe` reports it); other roles' configs unchanged."""
    if config.node.role is not Role.PROVIDER:
        return config
    section = config.provider
    if section.cpu_cores > 0 and section.memory_mib > 0:
        return config
    cores = section.cpu_cores or probe_cpu().logical_cores
    memory = section.memory_mib or probe_memory() >> 20
    log.info("offering %d cores and %d MiB (0 in config: probed)", cores, memory)
    return replace(config, provider=replace(section, cpu_cores=cores, memory_mib=memory))


SIM_HOST_KEY_FILE = "sim-host.key"


def sim_host_key(config: NodeConfig) -> bytes:
    """This provider's sim host key (hex in `<data_dir>/sim-host.key`, 0600), made once."""
    path = config.node.data_dir / SIM_HOST_KEY_FILE
    try:
        return bytes.fromhex(path.read_text().strip())
    except FileNotFoundError:
        pass
    except ValueError as exc:
        raise DaemonError(f"{path}: not a hex sim host key: {exc}") from exc
    key = bytes(Account.create().key)
    write_secret_file(path, key.hex().encode())
    return key


def sim_host_address(config: NodeConfig) -> str | None:
    """The address of the sim host key, once there is one (what `sim_hosts` pins)."""
    path = config.node.data_dir / SIM_HOST_KEY_FILE
    try:
        return str(Account.from_key(bytes.fromhex(path.read_text().strip())).address).lower()
    except (OSError, ValueError):
        return None


def backend_for(config: NodeConfig) -> EnclaveBackend:
    """The enclave backend the config names; DaemonError saying why it cannot run here."""
    name = config.provider.backend
    if name is None:  # the loader refuses a provider config without one
        raise DaemonError("provider.backend is not set: name tdx, sev-snp, sgx-gramine or sim")
    try:
        sandbox = detect_native_sandbox()
    except EnclaveError as exc:
        raise DaemonError(
            f"the provider cannot run jobs on this machine: {exc} (`capa node probe` says more)"
        ) from exc
    if name is Backend.SIM:
        log.warning(
            "enclave backend sim: INSECURE, no hardware isolation and no real attestation "
            "(devnets only; verifiers with the default policy refuse it)"
        )
        # The sim attester signs evidence with a host key, kept across restarts as a real
        # platform's identity is: the only thing sim evidence proves is which key signed, so
        # a client may pin the simulated machines it trusts (policy `sim_hosts`).
        return sim_backend(sim_host_key(config), sandbox)
    try:
        return SandboxBackend(hardware_attester(_HARDWARE[name]), sandbox)
    except EnclaveError as exc:
        raise DaemonError(
            f"provider.backend = {name.value}, but this machine cannot attest it: {exc}"
        ) from exc


class ProviderBoot:
    def __init__(self, ctx: NodeContext, host: EnclaveHost) -> None:
        self._ctx = ctx
        self._host = host

    async def __call__(self) -> None:
        ctx = self._ctx
        me = ctx.me.address
        registered, active, stake = await self._registry_entry()
        if not registered and ctx.me.provider.stake <= 0:
            raise DaemonError(
                f"provider {me} is not registered on chain: register it with "
                f"`capa provider register -c {ctx.config.source}` "
                "(or set provider.stake to register at start)"
            )
        backend = backend_for(ctx.config)
        boot_id = uuid.uuid4().hex
        try:
            self._host.open(backend, boot_id)
        except EnclaveError as exc:
            raise DaemonError(str(exc)) from exc
        outcome = await ctx.service.request(sc.ProviderBooted(boot_id, registered, active, stake))
        if outcome.rejected:
            raise DaemonError(f"provider {me}: {outcome.rejected}")
        try:
            started = self._host.start_all()
        except EnclaveError as exc:
            raise DaemonError(f"cannot start an enclave instance: {exc}") from exc
        if not started:
            log.warning("no workloads in [provider] workloads: this provider offers nothing")
        await ctx.service.submit(started)

    async def _registry_entry(self) -> tuple[bool, bool, int]:
        ctx = self._ctx
        contracts = await ctx.contracts.get()
        registry = contracts.reader(ctx.rpc, "registry")
        try:
            ((stake, _slashed, status, _registered_at),) = await registry.call(
                "providerOf", ctx.me.address
            )
            (peer_id,) = await registry.call("peerIdOf", ctx.me.address)
        except (ChainError, ValueError) as exc:
            raise DaemonError(f"cannot read this provider's registry entry: {exc}") from exc
        status = int(status)
        if status in (_JAILED, _EXITED):
            what = "jailed" if status == _JAILED else "exited"
            raise DaemonError(
                f"provider {ctx.me.address} is {what} on chain and takes no jobs "
                f"(`capa provider status -c {ctx.config.source}` says more)"
            )
        if status == _ACTIVE and peer_id != "0x" + ctx.identity.peer_id_bytes.hex():
            log.warning(
                "the registry names another peer id for this provider than this node's "
                "identity: clients will not find it (`capa provider status` compares them)"
            )
        return status != _NONE, status == _ACTIVE, int(stake)

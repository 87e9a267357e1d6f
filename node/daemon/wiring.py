"""Who handles each effect and who produces each state change, per role.

The daemon builds one `RoleParts` for its role: the effect handlers it registers with the
effect runner, the long-running services that observe the world and submit state changes,
and what its p2p node serves (a provider's evidence, quotes, inputs and results; a
verifier's approvals). Each role module declares what it handles and produces
(`HANDLED_EFFECTS`, `PRODUCED_CHANGES`) so a test can hold every `Effect` subclass to a
handler and every `StateChange` subclass to a producer.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import trio
from eth_account.signers.local import LocalAccount

from node.chain.reader import Contracts
from node.chain.rpc import FailoverRpc
from node.config.model import NodeConfig, Role
from node.daemon.effect_runner import EffectHandler
from node.daemon.errors import DaemonError
from node.daemon.state_service import StateService
from node.keys.identity import NodeIdentity
from node.metrics import Metrics
from node.p2p.approve_protocol import ApprovalResponder
from node.p2p.node import P2PNode, ProviderServices
from node.state.effects import Effect
from node.state.model import ClientTerms, Identity, ProviderTerms
from node.state.values import to_address
from node.store.store import Store

if TYPE_CHECKING:
    from node.p2p.supervisor import P2PSupervisor


class Service(Protocol):
    """A long-running trio service, started with `nursery.start(service.run)`."""

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None: ...


class ChainContracts:
    """The market's verifier and registry, read from the market once the chain answers."""

    def __init__(self, market: str) -> None:
        self.market = market
        self._value: Contracts | None = None
        self._known = trio.Event()

    def learn(self, contracts: Contracts) -> None:
        self._value = contracts
        self._known.set()

    @property
    def known(self) -> Contracts | None:
        return self._value

    async def get(self, timeout: float = 30.0) -> Contracts:
        with trio.move_on_after(timeout):
            await self._known.wait()
        if self._value is None:
            raise DaemonError("the chain has not answered yet: contract addresses unknown")
        return self._value


class P2PAccess:
    """The running p2p node for handlers that talk to peers.

    The supervisor restarts the node after a fault, so handlers ask for it each time
    instead of keeping one; they wait (bounded) while it is coming back.
    """

    def __init__(self) -> None:
        self._supervisor: P2PSupervisor | None = None

    def attach(self, supervisor: P2PSupervisor | None) -> None:
        self._supervisor = supervisor

    @property
    def enabled(self) -> bool:
        return self._supervisor is not None

    @property
    def peer_id(self) -> str:
        if self._supervisor is None:
            raise DaemonError("p2p is off in this node's config (p2p.enabled = false)")
        return str(self._supervisor.peer_id)

    async def node(self, timeout: float = 30.0) -> P2PNode:
        if self._supervisor is None:
            raise DaemonError("p2p is off in this node's config (p2p.enabled = false)")
        with trio.move_on_after(timeout):
            return await self._supervisor.wait_running()
        raise DaemonError(f"the p2p node did not come up within {timeout:.0f} s")


@dataclass
class NodeContext:
    """Everything a role's components may use; built once by the daemon."""

    config: NodeConfig
    me: Identity
    account: LocalAccount
    identity: NodeIdentity
    service: StateService
    store: Store
    rpc: FailoverRpc
    contracts: ChainContracts
    p2p: P2PAccess
    metrics: Metrics
    chain_time: Callable[[], int]  # the clock's chain time (newer of head and wall clock)

    @property
    def data_dir(self) -> Path:
        return self.config.node.data_dir


@dataclass
class RoleParts:
    handlers: dict[type[Effect], EffectHandler] = field(default_factory=dict)
    services: list[Service] = field(default_factory=list)
    provider: ProviderServices | None = None
    approvals: ApprovalResponder | None = None
    # Run once before the inputs start (a provider's boot: probe, enclaves, registration
    # check); raising DaemonError stops the daemon with that one line.
    prepare: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    # A client's checks of enclave keys: (accepted, chain time) for a key, None if unchecked.
    evidence_of: Callable[[str], tuple[bool, int] | None] = field(default=lambda enclave_key: None)


def identity_for(config: NodeConfig, address: str, peer_id: str) -> Identity:
    """The pure terms the role's transitions decide with, from config."""
    role = config.node.role
    provider = ProviderTerms(peer_id=peer_id)
    if role is Role.PROVIDER and config.provider is not None:
        p = config.provider
        provider = ProviderTerms(
            peer_id=peer_id,
            cpu_cores=max(1, p.cpu_cores),
            memory_mib=max(1, p.memory_mib),
            floor_price_per_hour=p.price_per_hour,
            surge_permille=p.surge_percent * 10,
            min_duration_s=p.min_duration,
            max_duration_s=p.max_duration,
            quote_ttl_s=p.quote_ttl,
            batch_size=p.batch_size,
            batch_max_wait_s=p.batch_max_wait,
            withdraw_threshold=p.withdraw_threshold,
            key_ttl_s=p.key_ttl,
            rekey_margin_s=p.rekey_margin,
            stake=p.stake,
        )
    client = ClientTerms()
    if role is Role.CLIENT and config.client is not None:
        client = ClientTerms(max_candidates=config.client.max_candidates)
    return Identity(role, to_address(address), provider=provider, client=client)


def build_role_parts(ctx: NodeContext) -> RoleParts:
    role = ctx.me.role
    if role is Role.PROVIDER:
        from node.daemon import provider_role as module
    elif role is Role.VERIFIER:
        from node.daemon import verifier_role as module  # type: ignore[no-redef]
    elif role is Role.CLIENT:
        from node.daemon import client_role as module  # type: ignore[no-redef]
    else:
        raise DaemonError(f"unknown role {role!r}")
    parts: RoleParts = getattr(module, f"build_{role.value}")(ctx)
    # What the role declares is what it registers: the coverage test reads the declaration.
    if set(parts.handlers) != set(module.HANDLED_EFFECTS):
        raise DaemonError(
            f"{role.value} registers handlers for {sorted(e.__name__ for e in parts.handlers)} "
            f"but declares {sorted(e.__name__ for e in module.HANDLED_EFFECTS)}"
        )
    return parts

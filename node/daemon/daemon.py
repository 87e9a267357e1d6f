"""Assemble and run the daemon: store, replay, state service, chain watcher, sender, API,
and the p2p node under its supervisor (which restarts it without disturbing the rest).

Shutdown (SIGINT/SIGTERM or `RunningDaemon.stop`): stop the inputs (API, watcher, effect
runner), let the state service drain what was already queued, all under a deadline, then
close the store and the RPC client shielded from cancellation. A second signal cuts the
drain short.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import trio
from eth_account.signers.local import LocalAccount

from node.api.app import ApiApp
from node.api.server import ApiServer, new_token
from node.chain.errors import ChainError
from node.chain.reader import Contracts
from node.chain.rpc import FailoverRpc
from node.chain.sender import GWEI, FeePolicy, TxSender
from node.chain.watcher import ChainWatcher
from node.config.model import NodeConfig, Role
from node.daemon.api_backend import DaemonApiBackend
from node.daemon.clock import Clock
from node.daemon.effect_runner import EffectHandler, EffectRunner
from node.daemon.errors import DaemonError
from node.daemon.p2p_service import p2p_supervisor_for
from node.daemon.provider_boot import sim_host_address, with_probed_capacity
from node.daemon.state_service import StateService, rebuild_state
from node.daemon.wiring import (
    ChainContracts,
    NodeContext,
    P2PAccess,
    RoleParts,
    build_role_parts,
    identity_for,
)
from node.keys.identity import NodeIdentity
from node.metrics import Metrics
from node.p2p.supervisor import P2PSupervisor, SupervisorPolicy
from node.state.effects import Effect, SendTransaction
from node.state.model import Identity
from node.state.values import Address
from node.store.store import Store

if TYPE_CHECKING:
    # trio-typing's stale trio-stubs (pulled in by libp2p) hide trio.TaskStatus from mypy.
    from trio_typing import TaskStatus

log = logging.getLogger(__name__)

SHUTDOWN_DEADLINE = 8.0  # seconds from the signal to the store being closed (goal: < 10)


@dataclass
class DaemonHooks:
    """What a caller (tests, a future enclave/p2p wiring) adds to the standard daemon."""

    handlers: Mapping[type[Effect], EffectHandler] = field(default_factory=dict)
    handle_signals: bool = True
    rpc_retry_for: float = 30.0
    p2p_policy: SupervisorPolicy | None = None
    # False: only the chain parts (tests of the core that have no enclave or workloads)
    role_parts: bool = True


@dataclass
class RunningDaemon:
    service: StateService
    store: Store
    metrics: Metrics
    api_url: str
    watcher: ChainWatcher | None
    sender: TxSender | None
    _stop: trio.Event
    p2p: P2PSupervisor | None = None

    def stop(self) -> None:
        self._stop.set()


class _SendTransactions:
    """Adapts the sender to the effect runner's handler interface."""

    def __init__(self, sender: TxSender) -> None:
        self._sender = sender

    async def execute(self, effect: Effect) -> Any:
        assert isinstance(effect, SendTransaction)
        return await self._sender.execute(effect)


async def run_daemon(
    config: NodeConfig,
    account: LocalAccount,
    identity: NodeIdentity,
    hooks: DaemonHooks | None = None,
    *,
    task_status: TaskStatus[RunningDaemon] = trio.TASK_STATUS_IGNORED,
) -> None:
    hooks = hooks or DaemonHooks()
    config = with_probed_capacity(config)
    me = identity_for(config, account.address, identity.peer_id)
    metrics = Metrics()
    store = Store.open(config.store.path)
    rpc: FailoverRpc | None = None
    try:
        store.bind_identity(me.role.value, me.address)
        state = rebuild_state(store, me)
        log.info(
            "%s %s (peer %s): replayed to state change #%d, %d effects pending",
            me.role.value,
            me.address,
            identity.peer_id,
            state.last_seq,
            len(state.pending),
        )
        service = StateService(
            store, me, state, metrics, snapshot_every=config.store.snapshot_every
        )
        rpc = FailoverRpc(
            config.chain.rpc_urls,
            timeout=config.chain.request_timeout,
            retry_for=hooks.rpc_retry_for,
            metrics=metrics,
        )
        chain_checked = await _check_chain(rpc, config.chain.chain_id)
        watcher, sender = _chain_services(config, me, account, rpc, store, service, metrics)
        contracts = ChainContracts(config.chain.market or "")
        clock = Clock(
            service,
            (lambda: watcher.head_time) if watcher is not None else (lambda: 0),
            rekey_margin_s=me.provider.rekey_margin_s,
            batch_max_wait_s=me.provider.batch_max_wait_s,
        )
        p2p_access = P2PAccess()
        ctx = NodeContext(
            config,
            me,
            account,
            identity,
            service,
            store,
            rpc,
            contracts,
            p2p_access,
            metrics,
            clock.now,
        )
        parts = build_role_parts(ctx) if hooks.role_parts else RoleParts()
        handlers: dict[type[Effect], EffectHandler] = dict(parts.handlers)
        if sender is not None:
            handlers[SendTransaction] = _SendTransactions(sender)
        handlers.update(hooks.handlers)
        runner = EffectRunner(service, handlers, metrics)
        token = new_token()
        api = ApiServer(
            ApiApp(
                DaemonApiBackend(
                    service,
                    store,
                    identity,
                    rpc,
                    watcher,
                    data_dir=config.node.data_dir,
                    max_input=config.client.max_input_bytes,
                    backend=config.provider.backend.value if config.provider.backend else "",
                    sim_host=lambda: sim_host_address(config),
                    evidence_of=parts.evidence_of,
                ),
                token,
                metrics,
                max_input=config.client.max_input_bytes if me.role is Role.CLIENT else 0,
            ),
            host=config.api.host,
            port=config.api.port,
            token=token,
            token_file=config.api.token_file,
        )
        p2p = p2p_supervisor_for(
            config, identity, service, hooks.p2p_policy, parts.provider, parts.approvals
        )
        p2p_access.attach(p2p)
        stop = trio.Event()
        async with trio.open_nursery() as core:
            await core.start(service.run)
            if hooks.handle_signals:
                # In the core nursery: a second signal must still be heard while draining.
                core.start_soon(_watch_signals, stop, core.cancel_scope)
            async with trio.open_nursery() as inputs:
                if chain_checked and config.chain.market is not None:
                    await _learn_contracts(rpc, contracts, sender)
                elif config.chain.market is not None:
                    inputs.start_soon(
                        _check_chain_when_reachable,
                        rpc,
                        config.chain.chain_id,
                        contracts,
                        sender,
                    )
                for prepare in parts.prepare:
                    await prepare()
                url = await inputs.start(api.run)
                if watcher is not None:
                    await inputs.start(watcher.run)
                    await inputs.start(clock.run)
                await inputs.start(runner.run)
                if p2p is not None:
                    await inputs.start(p2p.run)
                for part in parts.services:
                    await inputs.start(part.run)
                task_status.started(
                    RunningDaemon(service, store, metrics, url, watcher, sender, stop, p2p)
                )
                log.info("daemon ready")
                await stop.wait()
                log.info("stopping: inputs first, then draining the state queue")
                core.cancel_scope.deadline = trio.current_time() + SHUTDOWN_DEADLINE
                inputs.cancel_scope.cancel()
            service.close_inputs()
            await service.finished.wait()
            core.cancel_scope.cancel()  # only the signal watcher is left
    finally:
        with trio.CancelScope(shield=True):
            if rpc is not None:
                await rpc.aclose()
            store.close()
            log.info("stopped")


async def _learn_contracts(
    rpc: FailoverRpc, contracts: ChainContracts, sender: TxSender | None
) -> None:
    try:
        found = await Contracts.discover(rpc, contracts.market)
    except ChainError as exc:
        raise DaemonError(
            f"chain.market {contracts.market} does not answer as a JobMarket: {exc}"
        ) from exc
    contracts.learn(found)
    if sender is not None:
        sender.learn_targets(
            {"verifier": Address(found.verifier), "registry": Address(found.registry)}
        )


async def _watch_signals(stop: trio.Event, core: trio.CancelScope) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for received in signals:
            if not stop.is_set():
                log.info("received %s", signal.Signals(received).name)
                stop.set()
            else:
                log.warning("second signal: stopping now")
                core.cancel()


async def _check_chain(rpc: FailoverRpc, expected: int) -> bool:
    """False when no endpoint answered (the check is then repeated in the background)."""
    try:
        actual = int(await rpc.call("eth_chainId", []), 16)
    except ChainError as exc:
        log.warning("chain not reachable at start, starting anyway: %s", exc)
        return False
    if actual != expected:
        raise DaemonError(
            f"chain.chain_id is {expected} but {rpc.active_url} serves chain {actual}"
        )
    return True


async def _check_chain_when_reachable(
    rpc: FailoverRpc, expected: int, contracts: ChainContracts, sender: TxSender | None
) -> None:
    while not await _check_chain(rpc, expected):
        pass  # each failed check already waited out the RPC's retry window
    await _learn_contracts(rpc, contracts, sender)


def _chain_services(
    config: NodeConfig,
    me: Identity,
    account: LocalAccount,
    rpc: FailoverRpc,
    store: Store,
    service: StateService,
    metrics: Metrics,
) -> tuple[ChainWatcher | None, TxSender | None]:
    if me.role is Role.VERIFIER and config.chain.market is None:
        return None, None
    market = config.require_market()
    chain = config.chain
    sender = TxSender(
        rpc,
        store,
        account,
        market=market,
        chain_id=chain.chain_id,
        confirmations=chain.confirmations,
        fees=FeePolicy(
            max_fee_cap=int(chain.max_fee_gwei * GWEI),
            priority_fee=int(chain.priority_fee_gwei * GWEI),
            bump_after=chain.bump_after,
            bump_percent=chain.bump_percent,
        ),
        poll_interval=min(chain.poll_interval, 1.0),
        metrics=metrics,
    )
    watcher = ChainWatcher(
        rpc,
        store,
        service.submit,
        market=market,
        confirmations=chain.confirmations,
        poll_interval=chain.poll_interval,
        start_block=chain.start_block,
        log_range=chain.log_range,
        metrics=metrics,
        # What a reorganisation took off the chain of ours goes out again, as it was signed.
        on_reorg=sender.resend_dropped,
    )
    return watcher, sender

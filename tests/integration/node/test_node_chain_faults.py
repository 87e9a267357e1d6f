"""Reorganisations and RPC outages, against anvil."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

import trio
from node_harness import (
    PRICE,
    Actors,
    FakeExecutor,
    TcpProxy,
    boot_with_registered_key,
    deliver_input,
    eventually,
    head,
    keep_mining,
    match_job,
    mine,
    rpc,
    seed_registered_key,
    until,
    write_config,
)

from node.chain.anvil import AnvilNode
from node.chain.devnet import SeededProvider, match_quoted
from node.chain.market import Market
from node.chain.rpc import FailoverRpc
from node.chain.typed_data import JobRequest
from node.chain.watcher import ChainWatcher
from node.config.model import Role
from node.daemon.daemon import DaemonHooks, RunningDaemon, run_daemon
from node.daemon.state_service import StateService, rebuild_state
from node.keys.identity import create_identity
from node.metrics import Metrics
from node.state.changes import JobMatched
from node.state.effects import StartJob
from node.state.model import Identity, JobStatus
from node.state.values import Address, JobId
from node.store.store import Store


def _job_id(request: JobRequest, actors: Actors) -> JobId:
    return JobId("0x" + request.job_id(actors.client.address).hex())


def test_a_reorg_rolls_back_the_unconfirmed_view_and_never_applies_the_lost_event(
    tmp_path: Path, anvil: AnvilNode, market: Market, actors: Actors, seeded: SeededProvider
) -> None:
    url = anvil.rpc_url
    store = Store.open(tmp_path / "node.sqlite")
    me = Identity(Role.PROVIDER, Address(actors.provider.address))
    metrics = Metrics()
    service = StateService(store, me, rebuild_state(store, me), metrics)
    kept = _job_id(match_job(market, actors, seeded, nonce=1), actors)

    async def scenario() -> None:
        client = FailoverRpc([url], retry_for=5)
        watcher = ChainWatcher(
            client,
            store,
            service.submit,
            market=Address(market.deployment.market),
            confirmations=3,
            poll_interval=0.05,
            start_block=market.deployment.block_number,
            log_range=1000,
            metrics=metrics,
        )

        async def polls(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
            with trio.fail_after(timeout):
                while not predicate():
                    await watcher.polled.wait()

        async with trio.open_nursery() as nursery:
            await nursery.start(service.run)
            await nursery.start(watcher.run)
            mine(url, 3)
            await until(service, lambda: kept in service.state.jobs)

            snapshot = rpc(url, "evm_snapshot", [])
            lost = _job_id(match_job(market, actors, seeded, nonce=2), actors)
            mine(url, 1)  # JobMatched of `lost` is 2 deep: seen, not confirmed
            await polls(lambda: any(lost[2:] in e.body for e in store.view_events()))

            assert rpc(url, "evm_revert", [snapshot]) is True
            mine(url, 6)  # another history, without `lost`, now deeper than the old one
            target = watcher.cursor.number + 4 if watcher.cursor else 0
            await polls(lambda: watcher.cursor is not None and watcher.cursor.number >= target)

            assert metrics.reorgs._value.get() >= 1
            assert metrics.deep_reorgs._value.get() == 0
            assert lost not in service.state.jobs
            assert not any(lost[2:] in e.body for e in store.view_events())
            recorded = [c.change for c in store.changes_after(0)]
            assert all(getattr(c, "job_id", None) != lost for c in recorded)
            assert service.state.jobs[kept].status is JobStatus.ASSIGNED  # waits for its input
            nursery.cancel_scope.cancel()
        await client.aclose()

    trio.run(scenario)


def test_rpc_failover_outage_and_recovery(
    tmp_path: Path, anvil: AnvilNode, market: Market, actors: Actors, seeded: SeededProvider
) -> None:
    port = int(anvil.rpc_url.rsplit(":", 1)[1])
    primary, backup = TcpProxy(port), TcpProxy(port)

    async def scenario() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(primary.run)
            await nursery.start(backup.run)
            config = write_config(
                tmp_path,
                role="provider",
                rpc_urls=[primary.url, backup.url],
                market=market.deployment.market,
                request_timeout=1.0,
            )
            hooks = DaemonHooks(
                handlers={StartJob: FakeExecutor(market, seeded)},
                handle_signals=False,
                role_parts=False,
            )
            identity = create_identity(tmp_path / "identity.key")
            await trio.to_thread.run_sync(
                seed_registered_key,
                config,
                actors.provider,
                identity,
                market,
                seeded,
                actors.committee,
            )
            daemon: RunningDaemon = await nursery.start(
                run_daemon, config, actors.provider, identity, hooks
            )
            nursery.start_soon(keep_mining, anvil.rpc_url)
            jobs = daemon.service.state.jobs

            def settled(job: JobId) -> bool:
                return job in jobs and jobs[job].status is JobStatus.SETTLED

            async def matched(nonce: int) -> tuple[JobRequest, JobId]:
                request = await trio.to_thread.run_sync(match_job, market, actors, seeded, nonce)
                return request, _job_id(request, actors)

            request, first = await matched(1)
            await deliver_input(daemon.service, first, request, seeded)
            await until(daemon.service, lambda: settled(first))

            primary.stop()  # the preferred endpoint goes away: traffic moves to the backup
            request, second = await matched(2)
            await deliver_input(daemon.service, second, request, seeded)
            await until(daemon.service, lambda: settled(second))
            assert daemon.metrics.rpc_failovers._value.get() >= 1
            assert daemon.metrics.rpc_failures.labels(primary.url)._value.get() >= 1

            backup.stop()  # now nothing answers: requests retry with backoff
            failures = daemon.metrics.rpc_failures.labels(backup.url)
            await eventually(lambda: failures._value.get() >= 2)
            request, third = await matched(3)
            assert third not in jobs

            await nursery.start(primary.run)  # the primary comes back on its port
            await deliver_input(daemon.service, third, request, seeded)
            await until(daemon.service, lambda: settled(third), timeout=30)
            daemon.stop()
            nursery.cancel_scope.cancel()

    trio.run(scenario)


def test_a_reorg_below_the_confirmation_depth_is_detected_and_rescanned_without_double_acting(
    tmp_path: Path, anvil: AnvilNode, market: Market, actors: Actors, seeded: SeededProvider
) -> None:
    url = anvil.rpc_url
    store = Store.open(tmp_path / "node.sqlite")
    me = Identity(Role.PROVIDER, Address(actors.provider.address))
    metrics = Metrics()
    service = StateService(store, me, rebuild_state(store, me), metrics)
    boot_with_registered_key(service, market, seeded, actors.committee)

    async def scenario() -> None:
        client = FailoverRpc([url], retry_for=5)
        watcher = ChainWatcher(
            client,
            store,
            service.submit,
            market=Address(market.deployment.market),
            confirmations=1,  # deliberately shallow
            poll_interval=0.05,
            start_block=market.deployment.block_number,
            log_range=1000,
            metrics=metrics,
        )
        async with trio.open_nursery() as nursery:
            await nursery.start(service.run)
            await nursery.start(watcher.run)
            snapshot = rpc(url, "evm_snapshot", [])
            request = await trio.to_thread.run_sync(match_job, market, actors, seeded, 1)
            job = _job_id(request, actors)
            mine(url, 2)
            await deliver_input(service, job, request, seeded)
            assert service.state.jobs[job].status is JobStatus.RUNNING
            (first_start,) = store.query("effects", where={"kind": "StartJob"})
            confirmed_before = watcher.cursor.number if watcher.cursor else 0

            assert rpc(url, "evm_revert", [snapshot]) is True  # the confirmed match is gone
            # It is mined again, in the new history's block `confirmed_before`: below the old
            # cursor, so only a rescan finds it. (The watcher walks back through the block
            # hashes it remembers, those the store keeps below the cursor included, to the
            # highest still on the chain, and rescans from the block above it.)
            mine(url, confirmed_before - head(url) - 1)
            await trio.to_thread.run_sync(
                partial(match_quoted, market, actors.client, seeded, request, price=PRICE)
            )
            assert head(url) == confirmed_before
            mine(url, 4)
            with trio.fail_after(20):
                while not (
                    metrics.deep_reorgs._value.get() >= 1
                    and watcher.cursor is not None
                    and watcher.cursor.number > confirmed_before
                ):
                    await watcher.polled.wait()
            # The rescanned blocks' changes are committed with the cursor that passed them.
            rescanned = watcher.cursor.number
            await until(
                service, lambda: (c := store.cursor()) is not None and c.number >= rescanned
            )
            # The rescan met the match again: a duplicate of the recorded log, or (another
            # transaction hash in the new history) a new one. Either way it is not acted on.
            matches = [
                c.change
                for c in store.changes_after(0)
                if isinstance(c.change, JobMatched) and c.change.job_id == job
            ]
            assert len(matches) - 1 + metrics.duplicate_changes._value.get() >= 1
            assert service.state.jobs[job].status is JobStatus.RUNNING
            # Effects are upserted by id, so counting them proves nothing: a second start
            # would re-record the effect at a later change and reopen it.
            (start,) = store.query("effects", where={"kind": "StartJob"})
            assert start["created_seq"] == first_start["created_seq"]
            assert start["status"] == first_start["status"]
            nursery.cancel_scope.cancel()
        await client.aclose()

    trio.run(scenario)

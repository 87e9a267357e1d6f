"""A provider daemon on anvil: a matched job is run, settled, and a restart sends nothing twice."""

from __future__ import annotations

from pathlib import Path

import trio
from node_harness import (
    Actors,
    FakeExecutor,
    deliver_input,
    eventually,
    keep_mining,
    match_job,
    mine,
    nonce_of,
    seed_registered_key,
    until,
    write_config,
)

from node.chain.anvil import AnvilNode
from node.chain.devnet import SeededProvider
from node.chain.market import JobState, Market
from node.daemon.daemon import DaemonHooks, RunningDaemon, run_daemon
from node.keys.identity import create_identity
from node.state.effects import StartJob
from node.state.model import JobStatus
from node.state.values import EffectId, JobId
from node.store.records import TxStatus


def test_restart_mid_flow_sends_nothing_twice(
    tmp_path: Path, anvil: AnvilNode, market: Market, actors: Actors, seeded: SeededProvider
) -> None:
    config = write_config(
        tmp_path, role="provider", rpc_urls=[anvil.rpc_url], market=market.deployment.market
    )
    identity = create_identity(tmp_path / "identity.key")
    seed_registered_key(config, actors.provider, identity, market, seeded, actors.committee)
    executor = FakeExecutor(market, seeded)
    hooks = DaemonHooks(handlers={StartJob: executor}, handle_signals=False, role_parts=False)
    request = match_job(market, actors, seeded, nonce=1)
    job_id = JobId("0x" + request.job_id(actors.client.address).hex())
    submit = EffectId(f"submitResult:{job_id}")
    nonce_before = nonce_of(anvil.rpc_url, actors.provider.address)

    async def first_run() -> None:
        async with trio.open_nursery() as nursery:
            daemon: RunningDaemon = await nursery.start(
                run_daemon, config, actors.provider, identity, hooks
            )
            mine(anvil.rpc_url, 2)  # JobMatched is now 2 deep: confirmed
            await deliver_input(daemon.service, job_id, request, seeded)
            # The submitResult transaction is signed, recorded and mined (automine) but,
            # with no further blocks, never confirmed: stop right there.
            await until(daemon.service, lambda: daemon.store.transaction_for(submit) is not None)
            assert daemon.service.state.jobs[job_id].status is JobStatus.SUBMITTING
            # Recorded comes before broadcast: stop once it is mined, not in between.
            await eventually(
                lambda: nonce_of(anvil.rpc_url, actors.provider.address) == nonce_before + 1
            )
            daemon.stop()

    trio.run(first_run)
    assert nonce_of(anvil.rpc_url, actors.provider.address) == nonce_before + 1

    async def second_run() -> None:
        async with trio.open_nursery() as nursery:
            daemon: RunningDaemon = await nursery.start(
                run_daemon, config, actors.provider, identity, hooks
            )
            assert submit in daemon.service.state.pending  # replayed, still unsettled
            assert daemon.watcher is not None and daemon.watcher.cursor is not None
            resumed_from = daemon.watcher.cursor.number
            nursery.start_soon(keep_mining, anvil.rpc_url)
            await until(
                daemon.service,
                lambda: (
                    daemon.service.state.jobs[job_id].status is JobStatus.SETTLED
                    and submit not in daemon.service.state.pending
                ),
            )
            record = daemon.store.transaction_for(submit)
            assert record is not None and record.status is TxStatus.CONFIRMED
            assert len(record.attempts) == 1
            assert record.mined_hash == record.attempts[0].tx_hash
            # The watcher went on from its stored cursor: no block was scanned twice.
            assert resumed_from > 0
            assert daemon.metrics.duplicate_changes._value.get() == 0
            daemon.stop()
            nursery.cancel_scope.cancel()

    trio.run(second_run)
    assert executor.started == [job_id]  # the job ran once across both runs
    assert nonce_of(anvil.rpc_url, actors.provider.address) == nonce_before + 1
    assert market.job(bytes.fromhex(job_id[2:])).state is JobState.SETTLED

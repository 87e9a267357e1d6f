"""Each role's daemon runs; a client pays for a job through the API and sees it assigned."""

from __future__ import annotations

from pathlib import Path

import httpx
import trio
from eth_utils.crypto import keccak
from node_harness import (
    PRICE,
    TDX,
    Actors,
    FakeExecutor,
    deliver_input,
    keep_mining,
    seed_registered_key,
    until,
    write_config,
)

from node.chain.anvil import AnvilNode
from node.chain.devnet import SeededProvider
from node.chain.market import JobState, Market
from node.chain.typed_data import JobRequest
from node.daemon.daemon import DaemonHooks, RunningDaemon, run_daemon
from node.keys.identity import create_identity
from node.state.effects import StartJob
from node.state.model import JobStatus
from node.state.values import JobId


async def _api(daemon: RunningDaemon, token_file: Path) -> httpx.AsyncClient:
    token = token_file.read_text()
    return httpx.AsyncClient(base_url=daemon.api_url, headers={"Authorization": f"Bearer {token}"})


def test_a_verifier_daemon_runs_without_a_market(
    tmp_path: Path, anvil: AnvilNode, actors: Actors
) -> None:
    config = write_config(tmp_path, role="verifier", rpc_urls=[anvil.rpc_url], market="")

    async def scenario() -> None:
        async with trio.open_nursery() as nursery:
            daemon: RunningDaemon = await nursery.start(
                run_daemon,
                config,
                actors.committee[0],
                create_identity(tmp_path / "identity.key"),
                DaemonHooks(handle_signals=False, role_parts=False),
            )
            assert daemon.watcher is None and daemon.sender is None
            async with await _api(daemon, config.api.token_file) as api:
                status = (await api.get("/v1/status")).json()
            assert status["role"] == "verifier"
            assert status["address"] == actors.committee[0].address
            daemon.stop()

    trio.run(scenario)


def test_a_provider_accepts_a_posted_job_through_the_api_and_settles_it(
    tmp_path: Path, anvil: AnvilNode, market: Market, actors: Actors, seeded: SeededProvider
) -> None:
    config = write_config(
        tmp_path, role="provider", rpc_urls=[anvil.rpc_url], market=market.deployment.market
    )
    now = market.latest_timestamp()
    request = JobRequest(
        keccak(b"spec"), keccak(b"posted"), 1 << TDX, bytes(32), 1, PRICE, now + 3600, 9
    )
    job = JobId("0x" + request.job_id(actors.client.address).hex())
    executor = FakeExecutor(market, seeded)
    identity = create_identity(tmp_path / "identity.key")
    seed_registered_key(config, actors.provider, identity, market, seeded, actors.committee)

    async def scenario() -> None:
        async with trio.open_nursery() as nursery:
            daemon: RunningDaemon = await nursery.start(
                run_daemon,
                config,
                actors.provider,
                identity,
                DaemonHooks(handlers={StartJob: executor}, handle_signals=False, role_parts=False),
            )
            nursery.start_soon(keep_mining, anvil.rpc_url)
            await trio.to_thread.run_sync(market.post_job, actors.client, request)
            jobs = daemon.service.state.jobs
            await until(daemon.service, lambda: job in jobs and jobs[job].status is JobStatus.OPEN)
            async with await _api(daemon, config.api.token_file) as api:
                path = f"/v1/jobs/{job}/accept"
                accept = {"enclave_key": seeded.enclave.address}
                refused = await api.post(path, json={**accept, "min_duration": "-1"})
                assert refused.status_code == 422 and "min_duration" in refused.text
                answer = await api.post(path, json={**accept, "min_duration": "1800"})
                assert answer.json()["rejected"] == ""
                await deliver_input(daemon.service, job, request, seeded)
                await until(daemon.service, lambda: jobs[job].status is JobStatus.SETTLED)
                transactions = (await api.get("/v1/transactions")).json()["transactions"]
            assert sorted(t["effect_id"].split(":")[0] for t in transactions) == [
                "acceptJob",
                "submitResult",
            ]
            assert all(t["status"] == "confirmed" for t in transactions)
            daemon.stop()
            nursery.cancel_scope.cancel()

    trio.run(scenario)
    assert executor.started == [job]
    assert market.job(bytes.fromhex(job[2:])).state is JobState.SETTLED

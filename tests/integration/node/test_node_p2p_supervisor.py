"""The daemon runs its p2p node under a supervisor: a fault inside py-libp2p takes the p2p
node down, the supervisor names and bans the peer behind it and restarts the node, and
the chain watcher and the API carry on throughout."""

from __future__ import annotations

from pathlib import Path

import httpx
import trio
from libp2p.peer.id import ID
from node_harness import Actors, keep_mining, write_config

from node.chain.anvil import AnvilNode
from node.chain.devnet import SeededProvider
from node.chain.market import Market
from node.daemon.daemon import DaemonHooks, RunningDaemon, run_daemon
from node.keys.identity import create_identity
from node.p2p.config import P2PConfig
from node.p2p.errors import P2PError
from node.p2p.identity import Multiaddr, NodeIdentity, PeerAddress, libp2p_id
from node.p2p.node import P2PNode
from node.p2p.supervisor import SupervisorPolicy

POLICY = SupervisorPolicy(restart_backoff_s=0.5, peer_poll_interval_s=0.2)


def client_node(market: str) -> P2PNode:
    config = P2PConfig(
        chain_id=31337,
        market_address=market,
        listen_addrs=(Multiaddr("/ip4/127.0.0.1/tcp/0"),),
        dial_timeout_s=5.0,
    )
    return P2PNode(NodeIdentity.generate(), config)


async def peers_listed(api: httpx.AsyncClient) -> set[str]:
    return {row["peer_id"] for row in (await api.get("/v1/peers")).json()["peers"]}


async def confirmed_block(api: httpx.AsyncClient) -> int:
    block = (await api.get("/v1/status")).json()["chain"]["confirmed_block"]
    return int(block) if block is not None else -1


async def until_true(check: object, timeout_s: float = 20.0) -> None:
    with trio.fail_after(timeout_s):
        while not await check():  # type: ignore[operator]
            await trio.sleep(0.05)


def test_a_fault_inside_libp2p_restarts_p2p_while_the_daemon_carries_on(
    tmp_path: Path, anvil: AnvilNode, market: Market, actors: Actors, seeded: SeededProvider
) -> None:
    # `seeded`: a provider daemon starts only once its account is registered.
    config = write_config(
        tmp_path, role="provider", rpc_urls=[anvil.rpc_url], market=market.deployment.market
    )

    async def scenario() -> None:
        async with trio.open_nursery() as nursery:
            daemon: RunningDaemon = await nursery.start(
                run_daemon,
                config,
                actors.provider,
                create_identity(tmp_path / "identity.key"),
                DaemonHooks(handle_signals=False, p2p_policy=POLICY, role_parts=False),
            )
            nursery.start_soon(keep_mining, anvil.rpc_url)
            supervisor = daemon.p2p
            assert supervisor is not None
            token = config.api.token_file.read_text()
            async with httpx.AsyncClient(
                base_url=daemon.api_url, headers={"Authorization": f"Bearer {token}"}
            ) as api:
                p2p = await supervisor.wait_running()
                culprit = client_node(market.deployment.market)
                await nursery.start(culprit.run)
                await culprit.host.connect(p2p.host.listen_addresses()[0])
                # A connected peer becomes a PeerSeen state change, listed by the API.
                await until_true(lambda: _has(api, culprit.peer_id))

                # A py-libp2p task fails inside the swarm, in a frame naming the peer,
                # as pubsub's `del self.peers[peer_id]` did on a ban race.
                async def library_bug(peer_id: ID) -> None:
                    raise KeyError(peer_id)

                before = await confirmed_block(api)
                p2p.host.libp2p.get_network().manager.run_task(
                    library_bug, libp2p_id(culprit.peer_id)
                )
                restarted = await supervisor.wait_running()
                while restarted is p2p:
                    await trio.sleep(0.05)
                    restarted = await supervisor.wait_running()
                assert supervisor.restarts == 1
                assert supervisor.penalties.is_banned(culprit.peer_id)

                # The chain watcher and the API never stopped.
                assert (await api.get("/healthz")).status_code == 200
                await until_true(lambda: _advanced(api, before))

                # The new node serves a new peer and refuses the one that brought it down.
                address = restarted.host.listen_addresses()[0]
                newcomer = client_node(market.deployment.market)
                await nursery.start(newcomer.run)
                await newcomer.host.connect(address)
                assert await newcomer.host.ping(restarted.peer_id) < 1.0
                await until_true(lambda: _has(api, newcomer.peer_id))
                try:
                    await culprit.host.connect(PeerAddress(address.peer_id, address.addr))
                    await culprit.host.ping(restarted.peer_id, 2.0)
                except P2PError:  # refused at the handshake, or a dead old connection
                    pass
                else:
                    raise AssertionError("the banned peer was served after the restart")
            daemon.stop()
            nursery.cancel_scope.cancel()

    trio.run(scenario)


async def _has(api: httpx.AsyncClient, peer: str) -> bool:
    return peer in await peers_listed(api)


async def _advanced(api: httpx.AsyncClient, before: int) -> bool:
    return await confirmed_block(api) > before

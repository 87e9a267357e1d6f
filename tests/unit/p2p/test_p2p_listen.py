"""A second daemon on one machine: a taken p2p port is one line naming the key to change.

py-libp2p only logs a listener it could not start and runs on, deaf; the host refuses to
start instead, and the supervisor logs that in one line, without a traceback, and retries.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator

import pytest
import trio

from node.exception_groups import first_of
from node.p2p.config import P2PConfig
from node.p2p.errors import ListenFailed
from node.p2p.identity import Multiaddr, NodeIdentity
from node.p2p.node import P2PNode
from node.p2p.supervisor import P2PSupervisor, SupervisorPolicy

MARKET = "0x5FbDB2315678afecb367f032d93F642f64180aa3"


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield taken.getsockname()[1]


def _config(port: int) -> P2PConfig:
    return P2PConfig(
        chain_id=31337,
        market_address=MARKET,
        listen_addrs=(Multiaddr(f"/ip4/127.0.0.1/tcp/{port}"),),
    )


def test_a_node_that_cannot_listen_refuses_to_start(taken_port: int) -> None:
    node = P2PNode(NodeIdentity.generate(), _config(taken_port))

    async def start() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(node.run)
            nursery.cancel_scope.cancel()

    with pytest.raises(BaseException) as raised:
        trio.run(start)
    found = first_of(raised.value, ListenFailed)
    assert found is not None, raised.value
    assert str(found) == (
        f"p2p.listen_addrs: cannot listen on /ip4/127.0.0.1/tcp/{taken_port} (the port "
        "already in use by another daemon on this machine?): set p2p.listen_addrs (or "
        "CAPA_P2P_LISTEN_ADDRS) to a free port"
    )


def test_the_supervisor_says_it_in_one_line_and_retries(
    taken_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    supervisor = P2PSupervisor(
        NodeIdentity.generate(),
        _config(taken_port),
        policy=SupervisorPolicy(restart_backoff_s=0.05, max_restart_backoff_s=0.05),
    )

    async def run_until_retried() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(supervisor.run)
            with trio.fail_after(20):
                while supervisor.restarts < 1:
                    await trio.sleep(0.01)
            nursery.cancel_scope.cancel()

    with caplog.at_level(logging.ERROR, logger="node.p2p.supervisor"):
        trio.run(run_until_retried)
    failures = [r for r in caplog.records if r.name == "node.p2p.supervisor"]
    assert failures, "the supervisor logged nothing"
    assert all(
        r.getMessage().startswith("p2p node cannot start: p2p.listen_addrs") for r in failures
    )
    assert all(r.exc_info is None for r in failures)

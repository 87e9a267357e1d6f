"""Finding peers: the bootstrap list and remembered peers, then rendezvous on bootstrap nodes.

Bootstrap nodes serve the rendezvous protocol; every other node registers itself under the
market's namespace there and dials who else is registered. The Kademlia DHT is left out:
on py-libp2p 0.8.1 its value and provider lookups were unreliable in our loopback tests.
"""

from __future__ import annotations

import logging
import random
from typing import TYPE_CHECKING

import trio
from libp2p.discovery.rendezvous import RendezvousClient, RendezvousError, RendezvousService
from libp2p.exceptions import BaseLibp2pError

from node.p2p.config import P2PConfig
from node.p2p.errors import P2PError
from node.p2p.host import P2PHost
from node.p2p.identity import Multiaddr, PeerAddress, PeerId, libp2p_id, peer_id_of

if TYPE_CHECKING:
    from trio_typing import TaskStatus

logger = logging.getLogger(__name__)


class Discovery:
    def __init__(self, host: P2PHost, config: P2PConfig) -> None:
        self._host = host
        self._config = config
        self._server = RendezvousService(host.libp2p) if config.rendezvous_server else None
        self.rounds = 0

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """One round before `started`, so a started node has already met its network."""
        await self.discover_now()
        task_status.started()
        while True:
            await trio.sleep(self._config.rendezvous_interval_s)
            await self.discover_now()

    async def discover_now(self) -> list[PeerId]:
        """Dial bootstrap and remembered peers, register and look up at rendezvous points;
        returns the peers newly connected in this round."""
        newly: list[PeerId] = []
        seeds = list(self._config.bootstrap_peers) + self._host.known_peers()
        for address in seeds:
            if await self._dial(address):
                newly.append(address.peer_id)
        for point in self._config.bootstrap_peers:
            if point.peer_id == self._host.peer_id or not self._host.is_connected(point.peer_id):
                continue
            found_peers = await self._rendezvous(point.peer_id)
            # Registrations come back oldest first; dialling them in order would make the
            # first few nodes hubs of everyone, and hubs prune most peers from their mesh.
            random.shuffle(found_peers)
            for found in found_peers:
                if len(self._host.connected_peers()) >= self._config.target_connections:
                    break
                if await self._dial(found):
                    newly.append(found.peer_id)
        self.rounds += 1
        return newly

    async def _dial(self, address: PeerAddress) -> bool:
        if address.peer_id == self._host.peer_id or self._host.is_connected(address.peer_id):
            return False
        try:
            await self._host.connect(address)
        except P2PError as exc:
            logger.info("could not reach %s: %s", address, exc)
            return False
        return True

    async def _rendezvous(self, point: PeerId) -> list[PeerAddress]:
        client = RendezvousClient(self._host.libp2p, libp2p_id(point), enable_refresh=False)
        namespace = self._config.rendezvous_namespace
        try:
            with trio.fail_after(self._config.dial_timeout_s):
                await client.register(namespace, self._config.rendezvous_ttl_s)
                infos, _cookie = await client.discover(namespace)
        except (trio.TooSlowError, RendezvousError, BaseLibp2pError, ValueError, OSError) as exc:
            logger.info("rendezvous at %s failed: %r", point, exc)
            return []
        found = []
        for info in infos:
            peer = peer_id_of(info.peer_id)
            for addr in info.addrs:
                found.append(PeerAddress(peer, Multiaddr(str(addr).split("/p2p/")[0])))
                break
        return found

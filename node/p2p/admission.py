"""Connection admission: who may start a handshake, who may finish one, and for how long
a connection holds its place.

py-libp2p 0.8.1's `Swarm._handle_inbound_connection` takes a slot of its inbound limiter
and gives it back only when the swarm stops (`_do_handle_inbound_connection` waits for
`manager.wait_finished()` while holding it): 254 short connections lock a node out for
good. It also upgrades a banned peer all the way to a muxed connection, which then
answers ping and opens streams. We replace that one method on our own swarm with
`ConnectionGater.handle_inbound`, which

- limits handshakes in flight, in total and per remote IP, and how fast one IP may start
  them (a token bucket), before any cryptography is done;
- refuses a banned peer id right after the Noise handshake, before the muxer exists;
- counts an inbound connection against the cap until that connection closes.

Outbound connections pass `add_conn`, which we wrap to refuse banned peers as well (the
auto-connector and pubsub's peer exchange dial peers we did not choose).

An upstream fix would release the limiter slot when the connection closes and accept a
gater callback after the security handshake (go-libp2p's `InterceptSecured`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import trio
from libp2p.abc import IMuxedConn, INetConn
from libp2p.io.abc import ReadWriteCloser
from libp2p.network.connection.raw_connection import RawConnection
from libp2p.network.exceptions import SwarmException
from libp2p.network.swarm import Swarm
from libp2p.peer.id import ID
from multiaddr import Multiaddr

from node.p2p.config import AdmissionLimits
from node.p2p.penalties import Clock, TokenBuckets
from node.p2p.teardown import close_quietly

logger = logging.getLogger(__name__)

IsBanned = Callable[[ID], bool]


class ConnectionGater:
    def __init__(
        self, limits: AdmissionLimits, max_inbound: int, is_banned: IsBanned, clock: Clock
    ) -> None:
        self._limits = limits
        self._max_inbound = max_inbound
        self._is_banned = is_banned
        self._handshakes = trio.CapacityLimiter(limits.max_pending_handshakes)
        self._handshakes_by_ip: dict[str, int] = {}
        self._established_by_ip: dict[str, int] = {}
        self._established = 0
        self._rate = TokenBuckets(
            limits.handshake_burst_per_ip, limits.handshake_rate_per_ip, clock
        )
        self.refused: dict[str, int] = {}

    @property
    def established_inbound(self) -> int:
        return self._established

    def install(self, swarm: Swarm) -> None:
        """Take over the swarm's inbound path and guard its `add_conn`."""
        inner_add_conn = swarm.add_conn

        async def add_conn(muxed_conn: IMuxedConn, direction: str = "unknown") -> INetConn:
            if self._is_banned(muxed_conn.peer_id):
                self._count("banned")
                await close_quietly(muxed_conn.close)
                raise SwarmException(f"peer {muxed_conn.peer_id} is banned")
            return await inner_add_conn(muxed_conn, direction)

        async def handle_inbound(read_write_closer: ReadWriteCloser, maddr: Multiaddr) -> None:
            await self.handle_inbound(swarm, read_write_closer, maddr)

        # Instance attributes shadow the methods: the listener's callback looks
        # `_handle_inbound_connection` up on the swarm at each accept.
        setattr(swarm, "add_conn", add_conn)  # noqa: B010
        setattr(swarm, "_handle_inbound_connection", handle_inbound)  # noqa: B010

    async def handle_inbound(
        self, swarm: Swarm, read_write_closer: ReadWriteCloser, maddr: Multiaddr
    ) -> None:
        ip = _remote_ip(read_write_closer)
        refusal = self._refuse_handshake(ip)
        if refusal is not None:
            self._count(refusal)
            logger.debug("inbound connection from %s refused: %s", ip, refusal)
            await close_quietly(read_write_closer.close)
            return
        self._handshakes_by_ip[ip] = self._handshakes_by_ip.get(ip, 0) + 1
        self._handshakes.acquire_on_behalf_of_nowait(read_write_closer)
        muxed: IMuxedConn | None = None
        try:
            muxed = await self._upgrade(swarm, read_write_closer, ip)
        finally:
            self._handshakes.release_on_behalf_of(read_write_closer)
            _decrement(self._handshakes_by_ip, ip)
        if muxed is None:
            return
        # Holding this task until the connection closes is what frees the slot then.
        closed: trio.Event = getattr(muxed, "event_closed")  # noqa: B009 (Yamux has it)
        try:
            await closed.wait()
        finally:
            self._established -= 1
            _decrement(self._established_by_ip, ip)

    def _refuse_handshake(self, ip: str) -> str | None:
        limits = self._limits
        if self._handshakes.available_tokens < 1:
            return "handshakes_full"
        if self._handshakes_by_ip.get(ip, 0) >= limits.max_pending_handshakes_per_ip:
            return "handshakes_per_ip"
        if self._established >= self._max_inbound:
            return "connections_full"
        if self._established_by_ip.get(ip, 0) >= limits.max_inbound_connections_per_ip:
            return "connections_per_ip"
        if not self._rate.take(ip):
            return "handshake_rate"
        return None

    async def _upgrade(
        self, swarm: Swarm, read_write_closer: ReadWriteCloser, ip: str
    ) -> IMuxedConn | None:
        """Noise, the ban check, Yamux, then registration; None when refused or failed."""
        raw_conn = RawConnection(read_write_closer, False)
        secured: Any = None
        muxed: IMuxedConn | None = None
        try:
            with trio.fail_after(self._limits.handshake_timeout_s):
                secured = await swarm.upgrader.upgrade_security(raw_conn, False)
                peer = secured.get_remote_peer()
                if self._is_banned(peer):
                    self._count("banned")
                    logger.info("refused banned peer %s from %s after the handshake", peer, ip)
                    await close_quietly(secured.close)
                    return None
                if self._established >= self._max_inbound:
                    self._count("connections_full")
                    await close_quietly(secured.close)
                    return None
                muxed = await swarm.upgrader.upgrade_connection(secured, peer)
                # Counted before add_conn, whose awaits let other handshakes finish.
                self._established += 1
                self._established_by_ip[ip] = self._established_by_ip.get(ip, 0) + 1
                try:
                    await swarm.add_conn(muxed, direction="inbound")
                except BaseException:
                    self._established -= 1
                    _decrement(self._established_by_ip, ip)
                    raise
        except (Exception, trio.TooSlowError) as exc:
            # Whatever a remote sends during the handshake is contained here: failed
            # handshakes are ordinary churn on a public node.
            logger.debug("inbound handshake from %s failed: %r", ip, exc)
            for closer in (
                muxed.close if muxed is not None else None,
                secured.close if secured is not None else None,
                raw_conn.close,
            ):
                if closer is not None:
                    await close_quietly(closer)
            return None
        return muxed

    def _count(self, reason: str) -> None:
        self.refused[reason] = self.refused.get(reason, 0) + 1


def _remote_ip(read_write_closer: ReadWriteCloser) -> str:
    try:
        remote = read_write_closer.get_remote_address()
    except Exception:
        remote = None
    return str(remote[0]) if remote else "unknown"


def _decrement(counts: dict[str, int], key: str) -> None:
    left = counts.get(key, 0) - 1
    if left > 0:
        counts[key] = left
    else:
        counts.pop(key, None)

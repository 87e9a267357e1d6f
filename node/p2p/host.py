"""The libp2p host: Ed25519 identity, TCP + Noise + Yamux only, identify and ping.

`new_host()` without options also accepts plaintext, secio and mplex; we pass the security
and muxer tables explicitly so a dialer can negotiate nothing but Noise and Yamux.

Nothing a peer sends may end the process. Every place where py-libp2p 0.8.1 runs code on
a peer's behalf is entered through one of our guards: connection admission
(`admission`), the muxer (`yamux_guard`), the peerstore and identify/push
(`identify_guard`), pubsub (`pubsub_guard`) and, here, every stream handler. A guard
contains what goes wrong to that stream or connection, logs it with the peer that caused
it and reports the peer (`report_violation`); penalties that reach the ban threshold
disconnect the peer, and the gater refuses it until the ban ends.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import TYPE_CHECKING

import trio
from libp2p import new_host
from libp2p.abc import IHost, INetStream
from libp2p.crypto.x25519 import create_new_key_pair as create_x25519_key_pair
from libp2p.custom_types import TProtocol
from libp2p.exceptions import BaseLibp2pError
from libp2p.host.ping import PingService
from libp2p.identity.identify_push.identify_push import ID_PUSH
from libp2p.network.config import ConnectionConfig
from libp2p.network.swarm import Swarm
from libp2p.peer.id import ID
from libp2p.peer.peerstore import PeerStoreError
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
from libp2p.stream_muxer.yamux.yamux import Yamux

from node.p2p.admission import ConnectionGater
from node.p2p.config import P2PConfig, StreamLimits
from node.p2p.errors import (
    DialError,
    ListenFailed,
    P2PError,
    PeerTimeoutError,
    ProtocolViolation,
)
from node.p2p.framing import FramedStream
from node.p2p.identify_guard import BoundedPeerStore, identify_push_handler
from node.p2p.identity import (
    Multiaddr,
    NodeIdentity,
    PeerAddress,
    PeerId,
    libp2p_id,
    parse_multiaddr,
    peer_id_of,
)
from node.p2p.peer_store import load_known_peers, save_known_peers
from node.p2p.penalties import Clock, PeerPenalties
from node.p2p.teardown import close_quietly, is_stream_end
from node.p2p.yamux_guard import MuxerGuard

if TYPE_CHECKING:
    # trio-typing's stale trio-stubs (pulled in by libp2p) hide trio.TaskStatus from mypy.
    from trio_typing import TaskStatus

logger = logging.getLogger(__name__)

StreamHandler = Callable[[PeerId, FramedStream], Awaitable[None]]
LibraryHandler = Callable[[INetStream], Awaitable[None]]
BanListener = Callable[[PeerId], None]

_PEER_ADDR_TTL_S = 3600
_PENDING_BANS = 1024


@contextmanager
def translate_libp2p_errors(what: str, timeout_s: float) -> Iterator[None]:
    """Bound a libp2p call by a deadline and turn its exceptions into P2PError."""
    try:
        with trio.fail_after(timeout_s):
            yield
    except trio.TooSlowError as exc:
        raise PeerTimeoutError(f"{what}: no answer within {timeout_s:.1f} s") from exc
    except (BaseLibp2pError, OSError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
        raise DialError(f"{what}: {exc!r}") from exc


class P2PHost:
    def __init__(
        self,
        identity: NodeIdentity,
        config: P2PConfig,
        penalties: PeerPenalties,
        clock: Clock = time.monotonic,
    ) -> None:
        self._identity = identity
        self._config = config
        self._penalties = penalties
        self._ban_listeners: list[BanListener] = []
        self._bans_send, self._bans = trio.open_memory_channel[tuple[PeerId, bool]](_PENDING_BANS)
        self._guarded: set[LibraryHandler] = set()
        key_pair = identity.key_pair
        self._listen = [parse_multiaddr(a) for a in config.listen_addrs]
        self._muxers = MuxerGuard(config.peer_limits, self.report_violation)
        self._host: IHost = new_host(
            key_pair=key_pair,
            sec_opt={
                TProtocol(NOISE_PROTOCOL_ID): NoiseTransport(
                    key_pair, noise_privkey=create_x25519_key_pair().private_key
                )
            },
            muxer_opt={TProtocol(YAMUX_PROTOCOL_ID): Yamux},
            peerstore_opt=BoundedPeerStore(config.peer_limits),
            listen_addrs=self._listen,
            connection_config=ConnectionConfig(
                max_connections=config.max_connections,
                # The swarm's auto-connector dials known peers towards (low + high) / 2 and
                # its pruner trims above high; left at their defaults (300-500) every node
                # would dial every peer it has heard of.
                min_connections=2,
                low_watermark=config.target_connections,
                high_watermark=2 * config.target_connections,
                dial_timeout=config.dial_timeout_s,
            ),
        )
        network = self._host.get_network()
        assert isinstance(network, Swarm)
        self.gater = ConnectionGater(
            config.admission, config.max_inbound_connections, self.is_banned_id, clock
        )
        self.gater.install(network)
        self._muxers.install(network.upgrader)
        # Every inbound stream starts with multistream-select, which in 0.8.1 raises
        # UnicodeDecodeError on a protocol id that is not UTF-8 (found by our fuzzing);
        # it escapes the connection's stream nursery and stops the swarm. Upstream fix:
        # MultiselectCommunicator.read should raise MultiselectCommunicatorError there.
        network.set_stream_handler(
            self._guard_library_handler("stream negotiation", self._host._swarm_stream_handler)  # type: ignore[attr-defined]
        )
        self._host.set_stream_handler(
            ID_PUSH, identify_push_handler(self._host, config.peer_limits, self.report_violation)
        )
        self._ping = PingService(self._host)
        self._started = trio.Event()

    @property
    def peer_id(self) -> PeerId:
        return self._identity.peer_id

    @property
    def libp2p(self) -> IHost:
        """The wrapped host, for the pubsub and rendezvous wiring inside this package."""
        return self._host

    @property
    def penalties(self) -> PeerPenalties:
        return self._penalties

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self.guard_library_handlers()
        async with self._host.run(self._listen), trio.open_nursery() as nursery:
            if self._listen and not self._host.get_transport_addrs():
                listen = ", ".join(str(a) for a in self._listen)
                raise ListenFailed(
                    f"p2p.listen_addrs: cannot listen on {listen} (the port already in use by "
                    "another daemon on this machine?): set p2p.listen_addrs (or "
                    "CAPA_P2P_LISTEN_ADDRS) to a free port"
                )
            nursery.start_soon(self._enforce_bans)
            self._started.set()
            logger.info("p2p host %s listening on %s", self.peer_id, self.listen_addresses())
            task_status.started()
            try:
                await trio.sleep_forever()
            finally:
                with trio.CancelScope(shield=True):
                    self._save_peer_store()

    def listen_addresses(self) -> list[PeerAddress]:
        """Where we actually listen (port 0 in the config resolved to the bound port)."""
        out = []
        for addr in self._host.get_transport_addrs():
            text = str(addr).split("/p2p/")[0]
            out.append(PeerAddress(self.peer_id, Multiaddr(text)))
        return out

    def known_peers(self) -> list[PeerAddress]:
        path = self._config.peer_store_path
        return load_known_peers(path) if path is not None else []

    def connected_peers(self) -> list[PeerId]:
        return [peer_id_of(p) for p in self._host.get_connected_peers()]

    def is_connected(self, peer: PeerId) -> bool:
        return libp2p_id(peer) in self._host.get_connected_peers()

    async def connect(self, address: PeerAddress) -> None:
        if self._penalties.is_banned(address.peer_id):
            raise DialError(f"{address.peer_id} is banned")
        with translate_libp2p_errors(f"dial {address}", self._config.dial_timeout_s):
            await self._host.connect(address.to_peer_info())

    async def disconnect(self, peer: PeerId) -> None:
        try:
            with trio.move_on_after(self._config.dial_timeout_s):
                await self._host.disconnect(libp2p_id(peer))
        except Exception as exc:  # closing a connection that is already failing
            logger.debug("disconnect %s: %r", peer, exc)

    async def ping(self, peer: PeerId, timeout_s: float = 5.0) -> float:
        """Round-trip time in seconds over /ipfs/ping/1.0.0."""
        with translate_libp2p_errors(f"ping {peer}", timeout_s):
            start = trio.current_time()
            await self._ping.ping(libp2p_id(peer))
            return trio.current_time() - start

    def protocols_of(self, peer: PeerId) -> list[str]:
        """What identify told us the peer speaks (empty until identify has run)."""
        try:
            return list(self._host.get_peerstore().get_protocols(libp2p_id(peer)))
        except (BaseLibp2pError, PeerStoreError):  # the latter a KeyError: unknown or expired
            return []

    def addresses_of(self, peer: PeerId) -> list[PeerAddress]:
        try:
            addrs = self._host.get_peerstore().addrs(libp2p_id(peer))
        except (BaseLibp2pError, PeerStoreError):  # a peer gone between two calls
            return []
        return [PeerAddress(peer, Multiaddr(str(a).split("/p2p/")[0])) for a in addrs]

    def remember(self, address: PeerAddress) -> None:
        self._host.get_peerstore().add_addrs(
            libp2p_id(address.peer_id), [parse_multiaddr(address.addr)], _PEER_ADDR_TTL_S
        )

    async def open_stream(self, peer: PeerId, protocol: str, timeout_s: float) -> FramedStream:
        with translate_libp2p_errors(f"open {protocol} to {peer}", timeout_s):
            stream = await self._host.new_stream(libp2p_id(peer), [TProtocol(protocol)])
        return FramedStream(stream, self._config.streams.read_timeout_s)

    @asynccontextmanager
    async def exchange(
        self, peer: PeerId, protocol: str, timeout_s: float
    ) -> AsyncIterator[FramedStream]:
        """A client stream: closed when the block ends, reset if it raises."""
        stream = await self.open_stream(peer, protocol, timeout_s)
        try:
            yield stream
        except BaseException:
            with trio.CancelScope(shield=True):
                await stream.reset()
            raise
        await stream.close()

    @property
    def stream_limits(self) -> StreamLimits:
        return self._config.streams

    def on_ban(self, listener: BanListener) -> None:
        self._ban_listeners.append(listener)

    async def penalise(self, peer: PeerId, reason: str, detail: str = "") -> None:
        if self._penalties.penalise(peer, reason, detail):
            await self._ban(peer)

    def report_violation(
        self, peer: ID, reason: str, detail: str = "", *, disconnect: bool = False
    ) -> None:
        """Penalise a peer from inside a library callback (which may not await); a ban,
        or a disconnect asked for, is carried out by the host's own task."""
        if peer == self._host.get_id():
            return
        offender = peer_id_of(peer)
        banned = self._penalties.penalise(offender, reason, detail)
        if banned or disconnect:
            try:
                self._bans_send.send_nowait((offender, banned))
            except trio.WouldBlock:
                # The gater and every guard already refuse a banned peer; only the
                # disconnect of an existing connection waits for the next one.
                logger.warning("disconnect queue full; %s stays connected for now", peer)

    async def _enforce_bans(self) -> None:
        async for peer, banned in self._bans:
            if banned:
                await self._ban(peer)
            else:
                await self.disconnect(peer)

    async def _ban(self, peer: PeerId) -> None:
        for listener in self._ban_listeners:
            try:
                listener(peer)
            except Exception as exc:  # e.g. pubsub already stopped while we shut down
                logger.warning("ban listener failed for %s: %r", peer, exc)
        # Forget where it listens, so no auto-connector or peer exchange dials it.
        with contextlib.suppress(BaseLibp2pError, KeyError):
            self._host.get_peerstore().clear_addrs(libp2p_id(peer))
        await self.disconnect(peer)

    def is_banned_id(self, peer: ID) -> bool:
        return self._penalties.is_banned(peer_id_of(peer))

    def guard_library_handlers(self) -> None:
        """Wrap every stream handler registered so far (identify, ping, pubsub,
        rendezvous...) so that an exception in one ends that stream, not the swarm."""
        handlers = self._host.get_mux().handlers
        for protocol, handler in list(handlers.items()):
            if handler is None or handler in self._guarded:
                continue
            guarded = self._guard_library_handler(str(protocol), handler)
            self._guarded.add(guarded)
            handlers[protocol] = guarded

    def _guard_library_handler(self, protocol: str, handler: LibraryHandler) -> LibraryHandler:
        async def guarded(stream: INetStream) -> None:
            peer = stream.muxed_conn.peer_id
            if self.is_banned_id(peer):
                await close_quietly(stream.reset)
                return
            try:
                await handler(stream)
            except Exception as exc:
                if not is_stream_end(exc):
                    logger.error("%s from %s failed: %r", protocol, peer, exc)
                    self.report_violation(
                        peer, "internal_error", f"{protocol}: {exc!r}", disconnect=True
                    )
                await close_quietly(stream.reset)

        return guarded

    def set_stream_handler(
        self, protocol: str, handler: StreamHandler, deadline_s: float | None
    ) -> None:
        """Serve `protocol`; the handler gets a framed stream, and the wrapper guarantees
        the stream is closed (or reset on error), bans are honoured and violations penalised.

        `deadline_s` bounds the whole exchange; bulk transfers pass None and rely on the
        per-frame read deadline, which still cuts off a peer that stalls.
        """
        limits = self._config.streams
        whole_exchange_s = deadline_s if deadline_s is not None else float("inf")

        async def serve(stream: INetStream) -> None:
            peer = peer_id_of(stream.muxed_conn.peer_id)
            framed = FramedStream(stream, limits.read_timeout_s)
            if self._penalties.is_banned(peer):
                await framed.reset()
                return
            try:
                with trio.fail_after(whole_exchange_s):
                    await handler(peer, framed)
            except trio.TooSlowError:
                logger.warning("%s from %s: exchange over deadline, reset", protocol, peer)
                await framed.reset()
                await self.penalise(peer, "timeout", protocol)
            except PeerTimeoutError as exc:
                logger.warning("%s from %s: %s, reset", protocol, peer, exc)
                await framed.reset()
                await self.penalise(peer, "timeout", protocol)
            except ProtocolViolation as exc:
                logger.warning("%s from %s: protocol violation: %s", protocol, peer, exc)
                await framed.reset()
                await self.penalise(peer, "protocol_violation", str(exc))
            except P2PError as exc:
                logger.info("%s from %s ended: %s", protocol, peer, exc)
                await framed.reset()
            except Exception as exc:
                # Not a P2PError: our own code failed on this peer's input. The stream
                # goes, the process stays, and the peer pays for what it sent.
                logger.error("%s from %s: internal error %r, reset", protocol, peer, exc)
                await framed.reset()
                await self.penalise(peer, "internal_error", f"{protocol}: {exc!r}")
                await self.disconnect(peer)
            else:
                await framed.close()

        self._guarded.add(serve)
        self._host.set_stream_handler(TProtocol(protocol), serve)

    def _save_peer_store(self) -> None:
        path = self._config.peer_store_path
        if path is None:
            return
        peers = [a for p in self.connected_peers() for a in self.addresses_of(p)[:2]]
        merged = peers + self.known_peers()
        try:
            save_known_peers(path, merged)
        except OSError as exc:
            logger.warning("could not save the peer store to %s: %s", path, exc)

"""Yamux with the per-peer limits py-libp2p 0.8.1 lacks.

The library's Yamux logs a peer that sends past the receive window it was granted, then
keeps buffering (3.1 GiB on one stream in the red-team run); it accepts any number of
streams per connection (100 k streams held 348 MiB, 12 k held pubsub streams starved
everyone else); and an exception escaping its reader task ends the whole swarm.

`GuardedYamux` reads its secured connection through `_FrameInspector`, which parses the
same frame headers the library is about to act on and refuses, by closing the connection
and reporting the peer:

- a DATA frame longer than what is left of the stream's receive window (plus slack),
  or one that would take the connection's unread bytes over a cap;
- a new stream beyond the per-connection or per-peer cap of open inbound streams;
- a new stream whose id has the parity of our own streams (ids would collide).

An upstream fix would close the session with GO_AWAY(protocol error) on a window
overrun, as go-yamux does, and take a per-connection stream limit in its config.
"""

from __future__ import annotations

import logging
import struct
from typing import Any

from libp2p.abc import IMuxedConn, ISecureConn
from libp2p.peer.id import ID
from libp2p.stream_muxer.yamux.yamux import (
    DEFAULT_WINDOW_SIZE,
    FLAG_SYN,
    HEADER_SIZE,
    TYPE_DATA,
    TYPE_WINDOW_UPDATE,
    YAMUX_HEADER_FORMAT,
    Yamux,
)
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
from libp2p.transport.exceptions import MuxerUpgradeFailure
from libp2p.transport.upgrader import TransportUpgrader

from node.p2p.config import PeerLimits
from node.p2p.penalties import ReportViolation

logger = logging.getLogger(__name__)


class MuxerViolation(Exception):
    """Raised into Yamux's reader: the library then tears the connection down."""


class MuxerGuard:
    """Limits and the live muxers of each peer, shared by every connection of one host."""

    def __init__(self, limits: PeerLimits, report: ReportViolation) -> None:
        self.limits = limits
        self.report = report
        self._by_peer: dict[ID, set[GuardedYamux]] = {}

    def install(self, upgrader: TransportUpgrader) -> None:
        """Make the upgrader build GuardedYamux for /yamux/1.0.0, in and out.

        py-libp2p 0.8.1's `MuxerMultistream.new_conn` constructs `Yamux` by name for that
        protocol and ignores the class registered in `muxer_opt` (upstream fix: use the
        registered class), so the one method is replaced on our upgrader's instance.
        """
        multistream = upgrader.muxer_multistream
        selector = multistream._selector

        async def new_conn(conn: ISecureConn, peer_id: ID) -> IMuxedConn:
            protocol, _transport_class = await selector.select(
                conn, conn.is_initiator, multistream.negotiate_timeout
            )
            if protocol != YAMUX_PROTOCOL_ID:
                raise MuxerUpgradeFailure(f"muxer {protocol} is not offered")
            muxed = GuardedYamux(conn, peer_id, is_initiator=conn.is_initiator, guard=self)
            return multistream._annotate_connection(muxed, conn, protocol)

        setattr(multistream, "new_conn", new_conn)  # noqa: B010

    def register(self, muxer: GuardedYamux) -> None:
        self._by_peer.setdefault(muxer.peer_id, set()).add(muxer)

    def unregister(self, muxer: GuardedYamux) -> None:
        muxers = self._by_peer.get(muxer.peer_id)
        if muxers is not None:
            muxers.discard(muxer)
            if not muxers:
                del self._by_peer[muxer.peer_id]

    def inbound_streams_of(self, peer: ID) -> int:
        return sum(m.open_inbound_streams() for m in self._by_peer.get(peer, ()))


class GuardedYamux(Yamux):
    def __init__(
        self, secured_conn: ISecureConn, peer_id: ID, *args: Any, guard: MuxerGuard, **kwargs: Any
    ) -> None:
        super().__init__(secured_conn, peer_id, *args, **kwargs)
        self._guard = guard
        self._overruns: dict[int, int] = {}
        self.secured_conn = _FrameInspector(secured_conn, self)  # type: ignore[assignment]

    def open_inbound_streams(self) -> int:
        remote_parity = 0 if self.is_initiator_value else 1
        return sum(
            1
            for stream_id, stream in self.streams.items()
            if stream_id % 2 == remote_parity and not stream.closed
        )

    async def start(self) -> None:
        self._guard.register(self)
        try:
            await super().start()
        except Exception as exc:
            # The reader task runs in the swarm's service manager, where an escaping
            # exception stops the swarm: one connection's fault stays with it.
            logger.error("yamux with %s failed: %r; closing the connection", self.peer_id, exc)
            self._guard.report(self.peer_id, "internal_error", f"yamux: {exc!r}")
            try:
                await self._cleanup_on_error()
            except Exception as cleanup_exc:
                logger.debug("yamux cleanup for %s: %r", self.peer_id, cleanup_exc)
        finally:
            self._guard.unregister(self)

    def check_header(self, header: bytes) -> None:
        """Called with each frame header before the library handles it."""
        _version, typ, flags, stream_id, length = struct.unpack(YAMUX_HEADER_FORMAT, header)
        limits = self._guard.limits
        if typ not in (TYPE_DATA, TYPE_WINDOW_UPDATE):
            return
        stream = self.streams.get(stream_id)
        if flags & FLAG_SYN and stream is None:
            remote_parity = 0 if self.is_initiator_value else 1
            if stream_id == 0 or stream_id % 2 != remote_parity:
                self._violation("protocol_violation", f"stream id {stream_id} has our parity")
            if self.open_inbound_streams() >= limits.max_inbound_streams_per_conn:
                self._violation("stream_flood", "inbound streams per connection over the cap")
            if self._guard.inbound_streams_of(self.peer_id) >= limits.max_inbound_streams_per_peer:
                self._violation("stream_flood", "inbound streams per peer over the cap")
        if stream is not None and stream.target_recv_window > limits.max_stream_window:
            # Auto-tuning doubles the target on quick reads, towards 16 MiB per stream;
            # every stream could then hold that much unread. (Upstream: a configurable
            # maximum window.) The next doubling can still grant twice this.
            stream.target_recv_window = limits.max_stream_window
        if typ == TYPE_DATA and length > 0:
            buffered = sum(len(b) for b in self.stream_buffers.values())
            if buffered + length > limits.max_buffered_per_conn:
                self._violation("window_overrun", f"{buffered + length} bytes buffered unread")
            window = stream.recv_window if stream is not None else DEFAULT_WINDOW_SIZE
            if length > window:
                # The library clamps the window to zero after an overrun, so what was
                # sent past it is summed here.
                overrun = self._overruns.get(stream_id, 0) + length - window
                self._overruns[stream_id] = overrun
                if overrun > limits.window_slack_bytes:
                    self._violation(
                        "window_overrun", f"{overrun} bytes past the window on stream {stream_id}"
                    )

    def _violation(self, reason: str, detail: str) -> None:
        logger.warning(
            "yamux: %s from %s (%s); closing the connection", reason, self.peer_id, detail
        )
        self._guard.report(self.peer_id, reason, detail)
        raise MuxerViolation(f"{reason}: {detail}")


class _FrameInspector:
    """The secured connection as Yamux's reader sees it, with each header checked.

    Yamux reads a 12-byte header, then a DATA frame's body, strictly in turn; following
    the byte count tells which bytes are headers.
    """

    def __init__(self, inner: ISecureConn, muxer: GuardedYamux) -> None:
        self._inner = inner
        self._muxer = muxer
        self._header = bytearray()
        self._body_left = 0

    async def read(self, n: int | None = None) -> bytes:
        data = await self._inner.read(n)
        view = memoryview(data)
        while view:
            if self._body_left:
                taken = min(self._body_left, len(view))
                self._body_left -= taken
                view = view[taken:]
                continue
            taken = min(HEADER_SIZE - len(self._header), len(view))
            self._header += view[:taken]
            view = view[taken:]
            if len(self._header) == HEADER_SIZE:
                header = bytes(self._header)
                self._header.clear()
                self._muxer.check_header(header)
                _version, typ, _flags, _sid, length = struct.unpack(YAMUX_HEADER_FORMAT, header)
                if typ == TYPE_DATA:
                    self._body_left = length
        return data

    async def write(self, data: bytes) -> None:
        await self._inner.write(data)

    async def close(self) -> None:
        await self._inner.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

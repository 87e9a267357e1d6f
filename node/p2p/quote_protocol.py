"""/capa/quote/1: a client's job request in, a provider-signed offer for that job out.

The returned offer binds the client's exact request (`requestHash = keccak(client,
hashStruct(request))`), so the client can pass it straight to `JobMarket.matchJob`. The client checks everything the
contract will check before paying gas for it.
"""

from __future__ import annotations

from typing import Protocol

from eth_utils.address import to_canonical_address

from node.chain.typed_data import JobRequest
from node.p2p.errors import ProtocolViolation, RemoteRefused
from node.p2p.framing import FramedStream
from node.p2p.host import P2PHost
from node.p2p.identity import PeerId
from node.p2p.offers import SignedOffer
from node.p2p.wire import (
    decode_object,
    encode_object,
    read_address,
    read_bool,
    read_object,
    read_str,
    typed_message_from_json,
    typed_message_to_json,
)

QUOTE_PROTOCOL = "/capa/quote/1"
MAX_QUOTE_FRAME = 4096


class QuoteResponder(Protocol):
    """The provider's bidding logic; raise RemoteRefused(reason) to decline."""

    async def quote(self, peer: PeerId, request: JobRequest, client: str) -> SignedOffer: ...


def serve_quotes(host: P2PHost, responder: QuoteResponder) -> None:
    async def handle(peer: PeerId, stream: FramedStream) -> None:
        message = decode_object(await stream.read_frame(MAX_QUOTE_FRAME))
        request = typed_message_from_json(JobRequest, read_object(message, "request"))
        client = read_address(message, "client")
        try:
            signed = await responder.quote(peer, request, client)
        except RemoteRefused as refusal:
            await stream.write_frame(encode_object({"ok": False, "reason": refusal.reason}))
            return
        await stream.write_frame(encode_object({"ok": True, **signed.to_json()}))

    host.set_stream_handler(
        QUOTE_PROTOCOL, handle, deadline_s=host.stream_limits.exchange_timeout_s
    )


async def request_quote(
    host: P2PHost,
    peer: PeerId,
    request: JobRequest,
    *,
    client: str,
    provider: str,
    chain_id: int,
    market: str,
    now: int,
    timeout_s: float = 10.0,
) -> SignedOffer:
    """Ask `peer` for an offer on `request`; returns it only if matchJob would accept it."""
    async with host.exchange(peer, QUOTE_PROTOCOL, timeout_s) as stream:
        await stream.write_frame(
            encode_object({"request": typed_message_to_json(request), "client": client})
        )
        reply = decode_object(await stream.read_frame(MAX_QUOTE_FRAME, timeout_s))
        if not read_bool(reply, "ok"):
            raise RemoteRefused(read_str(reply, "reason"))
        signed = SignedOffer.from_json(reply)
    offer = signed.offer
    if to_canonical_address(offer.provider) != to_canonical_address(provider):
        raise ProtocolViolation(f"quote names provider {offer.provider}, expected {provider}")
    if offer.request_hash != request.request_hash(client):
        raise ProtocolViolation("quote is for another request")
    if not signed.signed_by_provider(chain_id, market):
        raise ProtocolViolation("quote signature is not the provider's")
    if offer.valid_until <= now:
        raise ProtocolViolation("quote already expired")
    if offer.price > request.max_price:
        raise ProtocolViolation(f"quote price {offer.price} exceeds max {request.max_price}")
    return signed

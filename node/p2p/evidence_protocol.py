"""/capa/evidence/1: a provider's current attestation evidence and where its collateral lives.

One request frame, one response frame. The client verifies the bytes with `proofs` before it
sends the provider anything; this module only moves them, within caps and deadlines.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from node.p2p.errors import RemoteRefused
from node.p2p.framing import FramedStream
from node.p2p.host import P2PHost
from node.p2p.identity import PeerId
from node.p2p.wire import (
    JsonObject,
    decode_object,
    encode_object,
    hex_of,
    read_address,
    read_bool,
    read_hex,
    read_int,
    read_object,
    read_str,
)
from proofs.evidence import MAX_EVIDENCE_SIZE

EVIDENCE_PROTOCOL = "/capa/evidence/1"
MAX_REQUEST_FRAME = 1024
# Hex doubles the evidence; the rest of the response is a few short fields.
MAX_EVIDENCE_FRAME = 2 * MAX_EVIDENCE_SIZE + 4096


@dataclass(frozen=True)
class KeyBindingInputs:
    """What the evidence's report data binds, besides the chain and the provider: a client
    recomputes the binding from these and checks the evidence commits to exactly them."""

    enclave_key: str
    hpke_public_key: bytes
    nonce: bytes
    expires_at: int
    measurement: bytes

    def to_json(self) -> JsonObject:
        return {
            "enclave": self.enclave_key,
            "hpke": hex_of(self.hpke_public_key),
            "nonce": hex_of(self.nonce),
            "expires_at": self.expires_at,
            "measurement": hex_of(self.measurement),
        }

    @classmethod
    def from_json(cls, obj: JsonObject) -> KeyBindingInputs:
        return cls(
            enclave_key=read_address(obj, "enclave"),
            hpke_public_key=read_hex(obj, "hpke", 32),
            nonce=read_hex(obj, "nonce", 32),
            expires_at=read_int(obj, "expires_at", 0, 2**64 - 1),
            measurement=read_hex(obj, "measurement", max_size=64),
        )


@dataclass(frozen=True)
class EvidenceBundle:
    tee_kind: int
    evidence: bytes
    # Where a verifier fetches collateral for this evidence (a PCCS URL, a KDS path...).
    collateral_location: str
    issued_at: int
    binding: KeyBindingInputs | None = None


class EvidenceSource(Protocol):
    """The provider's side: the evidence of one enclave key (None: the provider's choice)."""

    async def current_evidence(self, enclave_key: str | None = None) -> EvidenceBundle | None: ...


def serve_evidence(host: P2PHost, source: EvidenceSource) -> None:
    async def handle(peer: PeerId, stream: FramedStream) -> None:
        request = decode_object(await stream.read_frame(MAX_REQUEST_FRAME))
        enclave_key = read_address(request, "enclave") if "enclave" in request else None
        bundle = await source.current_evidence(enclave_key)
        if bundle is None:
            await stream.write_frame(encode_object({"ok": False, "reason": "no_evidence"}))
            return
        reply: dict[str, object] = {
            "ok": True,
            "kind": bundle.tee_kind,
            "evidence": hex_of(bundle.evidence),
            "collateral": bundle.collateral_location,
            "issued_at": bundle.issued_at,
        }
        if bundle.binding is not None:
            reply["binding"] = bundle.binding.to_json()
        await stream.write_frame(encode_object(reply))

    host.set_stream_handler(
        EVIDENCE_PROTOCOL, handle, deadline_s=host.stream_limits.exchange_timeout_s
    )


async def fetch_evidence(
    host: P2PHost, peer: PeerId, timeout_s: float = 10.0, *, enclave_key: str | None = None
) -> EvidenceBundle:
    async with host.exchange(peer, EVIDENCE_PROTOCOL, timeout_s) as stream:
        request: dict[str, object] = {"v": 1}
        if enclave_key is not None:
            request["enclave"] = enclave_key
        await stream.write_frame(encode_object(request))
        reply = decode_object(await stream.read_frame(MAX_EVIDENCE_FRAME, timeout_s))
        if not read_bool(reply, "ok"):
            raise RemoteRefused(read_str(reply, "reason"))
        return EvidenceBundle(
            tee_kind=read_int(reply, "kind", 0, 255),
            evidence=read_hex(reply, "evidence", max_size=MAX_EVIDENCE_SIZE),
            collateral_location=read_str(reply, "collateral", 2048),
            issued_at=read_int(reply, "issued_at", 0, 2**64 - 1),
            binding=(
                KeyBindingInputs.from_json(read_object(reply, "binding"))
                if "binding" in reply
                else None
            ),
        )

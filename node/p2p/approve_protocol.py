"""/capa/approve/1: a provider asks a verifier of the committee to sign its key's attestation.

One request frame, one answer frame. The request carries the evidence, the inputs of its
report-data binding (keys, nonce, expiry) and the KeyAttestation the provider proposes; every
committee member must sign the same struct for `registerKey`, so the provider proposes it and
each verifier signs only if it derives exactly that from the evidence. The nonce is the hash
of a recent block: one value every verifier can check for freshness on its own.

This module only moves and bounds the bytes; judging them is the verifier daemon's job.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from node.p2p.errors import ProtocolViolation, RemoteRefused
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
from proofs.receipts import KeyAttestation

APPROVE_PROTOCOL = "/capa/approve/1"
MAX_REQUEST_FRAME = 2 * MAX_EVIDENCE_SIZE + 8192
MAX_ANSWER_FRAME = 4096


@dataclass(frozen=True)
class ApprovalRequest:
    tee_kind: int
    evidence: bytes
    collateral_location: str
    hpke_public_key: bytes
    nonce_block: int  # the block whose hash is the binding's nonce
    attestation: KeyAttestation

    def to_json(self) -> JsonObject:
        att = self.attestation
        return {
            "kind": self.tee_kind,
            "evidence": hex_of(self.evidence),
            "collateral": self.collateral_location,
            "hpke": hex_of(self.hpke_public_key),
            "block": self.nonce_block,
            "attestation": {
                "provider": att.provider,
                "enclaveKey": att.enclave_key,
                "teeKind": att.tee_kind,
                "measurement": hex_of(att.measurement),
                "tcbStatus": att.tcb_status,
                "evidenceHash": hex_of(att.evidence_hash),
                "expiresAt": att.expires_at,
            },
        }

    @classmethod
    def from_json(cls, obj: JsonObject) -> ApprovalRequest:
        att = read_object(obj, "attestation")
        return cls(
            tee_kind=read_int(obj, "kind", 0, 255),
            evidence=read_hex(obj, "evidence", max_size=MAX_EVIDENCE_SIZE),
            collateral_location=read_str(obj, "collateral", 512),
            hpke_public_key=read_hex(obj, "hpke", 32),
            nonce_block=read_int(obj, "block", 0, 2**63 - 1),
            attestation=KeyAttestation(
                provider=read_address(att, "provider"),
                enclave_key=read_address(att, "enclaveKey"),
                tee_kind=read_int(att, "teeKind", 0, 255),
                measurement=read_hex(att, "measurement", max_size=64),
                tcb_status=read_int(att, "tcbStatus", 0, 255),
                evidence_hash=read_hex(att, "evidenceHash", 32),
                expires_at=read_int(att, "expiresAt", 0, 2**64 - 1),
            ),
        )


@dataclass(frozen=True)
class ApprovalAnswer:
    approved: bool
    reason: str
    signature: bytes  # the verifier's EIP-712 KeyAttestation signature; empty when refused


class ApprovalResponder(Protocol):
    """The verifier's side: judge the request and answer (raise RemoteRefused to refuse)."""

    async def approve(self, peer: PeerId, request: ApprovalRequest) -> ApprovalAnswer: ...


def serve_approvals(host: P2PHost, responder: ApprovalResponder, *, deadline_s: float) -> None:
    async def handle(peer: PeerId, stream: FramedStream) -> None:
        request = ApprovalRequest.from_json(
            decode_object(await stream.read_frame(MAX_REQUEST_FRAME))
        )
        try:
            answer = await responder.approve(peer, request)
        except RemoteRefused as refusal:
            answer = ApprovalAnswer(False, refusal.reason, b"")
        await stream.write_frame(
            encode_object(
                {
                    "approved": answer.approved,
                    "reason": answer.reason[:1024],
                    "signature": hex_of(answer.signature),
                }
            )
        )

    host.set_stream_handler(APPROVE_PROTOCOL, handle, deadline_s=deadline_s)


async def request_approval(
    host: P2PHost, peer: PeerId, request: ApprovalRequest, *, timeout_s: float
) -> ApprovalAnswer:
    async with host.exchange(peer, APPROVE_PROTOCOL, timeout_s) as stream:
        await stream.write_frame(encode_object(request.to_json()))
        reply = decode_object(await stream.read_frame(MAX_ANSWER_FRAME, timeout_s))
    approved = read_bool(reply, "approved")
    signature = read_hex(reply, "signature", max_size=65)
    if approved and len(signature) != 65:
        raise ProtocolViolation("an approval without a 65-byte signature")
    return ApprovalAnswer(approved, read_str(reply, "reason", 1024), signature)

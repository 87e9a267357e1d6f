"""Offer listings: what a provider gossips, signed so that no relay can alter any of it.

A listing carries the provider's EIP-712 `Offer` with its signature, exactly what
`JobMarket.matchJob` checks (the enclave key that will run the job, its kind and measurement,
the price and the least and most time the provider takes), plus what the contract does not
need but a client matches on
(cores, memory, GPU, TCB status, region) and the provider's libp2p peer id. A second
signature by the same provider key covers all of that, tagged and scoped to one chain and
market, so a relay can neither swap the peer id (to intercept evidence and quotes) nor
change the resources, and a listing from another market is useless here.
"""

from __future__ import annotations

from dataclasses import dataclass

from eth_utils.address import to_canonical_address
from eth_utils.crypto import keccak

from node.chain.typed_data import Offer, job_market_domain
from node.p2p.config import OfferPolicy
from node.p2p.errors import OfferRejected, ProtocolViolation
from node.p2p.identity import PeerId
from node.p2p.wire import (
    JsonObject,
    decode_object,
    encode_object,
    hex_of,
    read_bool,
    read_hex,
    read_int,
    read_object,
    read_str,
    read_str_list,
    typed_message_from_json,
    typed_message_to_json,
)
from proofs.errors import SignatureInvalid
from proofs.receipts import recover_signer, sign_digest
from scheduler.models import (
    GpuModel,
    GpuOffer,
    Measurement,
    ProviderAddress,
    Region,
    ResourceOffer,
    TcbStatus,
    TeeKind,
    Timestamp,
    Wei,
    WorkloadKind,
    provider_address,
)

LISTING_VERSION = 1
UNKNOWN_REGION = Region("unknown")
_LISTING_TAG = keccak(text="CapaCloud.OfferListing.v1")
_UINT64_MAX = 2**64 - 1


# `published_at` is the provider's wall clock; a client ranks by the chain's time as its
# watcher last saw it, which lags a busy node by seconds. An offer gossip accepted (its stamp
# within the skew bound) is not refused as "not valid yet" for a lag within that bound.
RANKING_SKEW_S = OfferPolicy.max_clock_skew_s


@dataclass(frozen=True)
class ListingDetails:
    """Matching inputs beyond the EIP-712 offer; bound to it by the listing signature."""

    cpu_cores: int
    memory_mib: int
    tcb_status: TcbStatus
    gpu: GpuOffer | None = None
    workloads: frozenset[WorkloadKind] = frozenset(WorkloadKind)
    region: Region = UNKNOWN_REGION
    load_permille: int = 0
    # The largest sealed input the provider's store takes (its input_store_bytes); None:
    # not said (a listing from before the field), so a client learns it only at the upload.
    max_input_bytes: int | None = None

    def to_json(self) -> dict[str, object]:
        gpu = self.gpu
        fields: dict[str, object] = {
            "cpu": self.cpu_cores,
            "mem": self.memory_mib,
            "tcb": int(self.tcb_status),
            "gpu": None
            if gpu is None
            else {"model": gpu.model, "vram": gpu.vram_mib, "count": gpu.count, "cc": gpu.cc_mode},
            "workloads": sorted(w.value for w in self.workloads),
            "region": self.region,
            "load": self.load_permille,
        }
        if self.max_input_bytes is not None:
            # Only when said: a listing without it signs and reads as before the field.
            fields["input"] = self.max_input_bytes
        return fields

    @classmethod
    def from_json(cls, obj: JsonObject) -> ListingDetails:
        gpu_obj = obj.get("gpu")
        gpu = None
        if gpu_obj is not None:
            g = read_object(obj, "gpu")
            gpu = GpuOffer(
                model=GpuModel(read_str(g, "model", 64)),
                vram_mib=read_int(g, "vram", 0, 1 << 24),
                count=read_int(g, "count", 1, 1024),
                cc_mode=read_bool(g, "cc"),
            )
        try:
            workloads = frozenset(WorkloadKind(w) for w in read_str_list(obj, "workloads"))
            tcb = TcbStatus(read_int(obj, "tcb", 0, 255))
        except ValueError as exc:
            raise ProtocolViolation(f"unknown enum value: {exc}") from exc
        return cls(
            cpu_cores=read_int(obj, "cpu", 0, 1 << 20),
            memory_mib=read_int(obj, "mem", 0, 1 << 40),
            tcb_status=tcb,
            gpu=gpu,
            workloads=workloads,
            region=Region(read_str(obj, "region", 64)),
            load_permille=read_int(obj, "load", 0, 1000),
            max_input_bytes=read_int(obj, "input", 0, _UINT64_MAX) if "input" in obj else None,
        )


@dataclass(frozen=True)
class SignedOffer:
    """An EIP-712 Offer and the provider's signature: the pair `matchJob` takes."""

    offer: Offer
    signature: bytes

    @classmethod
    def sign(cls, offer: Offer, chain_id: int, market: str, provider_key: bytes) -> SignedOffer:
        return cls(offer, offer.sign(job_market_domain(chain_id, market), provider_key))

    def digest(self, chain_id: int, market: str) -> bytes:
        return self.offer.digest(job_market_domain(chain_id, market))

    def signed_by_provider(self, chain_id: int, market: str) -> bool:
        try:
            signer = recover_signer(self.digest(chain_id, market), self.signature)
        except SignatureInvalid:
            return False
        return to_canonical_address(signer) == to_canonical_address(self.offer.provider)

    def to_json(self) -> dict[str, object]:
        return {"offer": typed_message_to_json(self.offer), "sig": hex_of(self.signature)}

    @classmethod
    def from_json(cls, obj: JsonObject) -> SignedOffer:
        return cls(
            typed_message_from_json(Offer, read_object(obj, "offer")), read_hex(obj, "sig", 65)
        )


@dataclass(frozen=True)
class OfferListing:
    chain_id: int
    market: str
    peer_id: PeerId
    published_at: int
    signed_offer: SignedOffer
    details: ListingDetails
    listing_signature: bytes

    @property
    def offer(self) -> Offer:
        return self.signed_offer.offer

    @property
    def provider(self) -> ProviderAddress:
        return provider_address(self.offer.provider)

    @property
    def book_key(self) -> tuple[ProviderAddress, str]:
        """One offer per provider and enclave key: newer listings of it replace older ones."""
        return (self.provider, self.offer.enclave_key.lower())

    @property
    def freshness(self) -> tuple[int, int]:
        """Order of listings from one provider: a higher nonce, then a later publication."""
        return (self.offer.nonce, self.published_at)

    @classmethod
    def create(
        cls,
        *,
        offer: Offer,
        details: ListingDetails,
        chain_id: int,
        market: str,
        peer_id: PeerId,
        published_at: int,
        provider_key: bytes,
    ) -> OfferListing:
        signed = SignedOffer.sign(offer, chain_id, market, provider_key)
        unsigned = cls(chain_id, market, peer_id, published_at, signed, details, b"")
        return cls(
            chain_id,
            market,
            peer_id,
            published_at,
            signed,
            details,
            sign_digest(provider_key, unsigned.listing_digest()),
        )

    def listing_digest(self) -> bytes:
        return keccak(
            _LISTING_TAG
            + self.chain_id.to_bytes(32, "big")
            + to_canonical_address(self.market)
            + keccak(text=self.peer_id)
            + self.published_at.to_bytes(8, "big")
            + self.signed_offer.digest(self.chain_id, self.market)
            + keccak(encode_object(self.details.to_json()))
        )

    def encode(self) -> bytes:
        return encode_object(
            {
                "v": LISTING_VERSION,
                "chain": self.chain_id,
                "market": self.market,
                "peer": self.peer_id,
                "at": self.published_at,
                "signed": self.signed_offer.to_json(),
                "details": self.details.to_json(),
                "lsig": hex_of(self.listing_signature),
            }
        )

    @classmethod
    def decode(cls, data: bytes, max_size: int) -> OfferListing:
        """Parse a gossiped listing; raises OfferRejected ('oversized' or 'malformed')."""
        if len(data) > max_size:
            raise OfferRejected("oversized", f"{len(data)} bytes > {max_size}")
        try:
            obj = decode_object(data)
            if read_int(obj, "v", 0, 255) != LISTING_VERSION:
                raise ProtocolViolation("unknown listing version")
            market = read_str(obj, "market", 42)
            to_canonical_address(market)
            return cls(
                chain_id=read_int(obj, "chain", 1, _UINT64_MAX),
                market=market,
                peer_id=PeerId(read_str(obj, "peer", 128)),
                published_at=read_int(obj, "at", 0, _UINT64_MAX),
                signed_offer=SignedOffer.from_json(read_object(obj, "signed")),
                details=ListingDetails.from_json(read_object(obj, "details")),
                listing_signature=read_hex(obj, "lsig", 65),
            )
        except (ProtocolViolation, ValueError) as exc:
            raise OfferRejected("malformed", str(exc)) from exc

    def verify(
        self, *, chain_id: int, market: str, now: int, max_skew_s: int, max_age_s: int
    ) -> None:
        """Stateless checks; raises OfferRejected with the first reason that applies."""
        if self.chain_id != chain_id:
            raise OfferRejected("wrong_chain", f"chain {self.chain_id}, expected {chain_id}")
        if to_canonical_address(self.market) != to_canonical_address(market):
            raise OfferRejected("wrong_market", self.market)
        if not self.offer.is_standing:
            raise OfferRejected("not_standing", "a gossiped offer must not name a request")
        if self.offer.tee_kind not in TeeKind.__members__.values():
            raise OfferRejected("malformed", f"unknown TEE kind {self.offer.tee_kind}")
        if self.offer.min_duration > self.offer.max_duration:
            raise OfferRejected(
                "malformed",
                f"minimum duration {self.offer.min_duration} s exceeds the maximum "
                f"{self.offer.max_duration} s: no job could be matched to it",
            )
        if not self.signed_offer.signed_by_provider(chain_id, market):
            raise OfferRejected("bad_signature", "EIP-712 offer signature is not the provider's")
        try:
            signer = recover_signer(self.listing_digest(), self.listing_signature)
        except SignatureInvalid as exc:
            raise OfferRejected("bad_signature", f"listing signature: {exc}") from exc
        if to_canonical_address(signer) != to_canonical_address(self.offer.provider):
            raise OfferRejected("bad_signature", "listing not signed by the offer's provider")
        if self.offer.valid_until <= now:
            raise OfferRejected("expired", f"offer valid until {self.offer.valid_until}, now {now}")
        if self.published_at > now + max_skew_s:
            raise OfferRejected("future", f"published at {self.published_at}, now {now}")
        if self.published_at < now - max_age_s:
            raise OfferRejected("stale", f"published at {self.published_at}, now {now}")

    def to_resource_offer(self) -> ResourceOffer:
        """The scheduler's view; the offer's price is wei per hour of compute."""
        d = self.details
        return ResourceOffer(
            provider=self.provider,
            peer_id=self.peer_id,
            nonce=self.offer.nonce,
            price_per_hour=Wei(self.offer.price),
            cpu_cores=d.cpu_cores,
            memory_mib=d.memory_mib,
            tee_kind=TeeKind(self.offer.tee_kind),
            measurement=Measurement.from_bytes(self.offer.measurement),
            tcb_status=d.tcb_status,
            valid_from=Timestamp(
                max(0, min(self.published_at - RANKING_SKEW_S, self.offer.valid_until - 1))
            ),
            valid_until=Timestamp(self.offer.valid_until),
            gpu=d.gpu,
            workloads=d.workloads,
            region=d.region,
            load_permille=d.load_permille,
        )

"""The offers a node currently knows: latest listing per provider, dropped when it expires."""

from __future__ import annotations

from dataclasses import dataclass

from node.p2p.offers import OfferListing
from scheduler.models import ProviderAddress, ResourceOffer


@dataclass(frozen=True)
class BookEntry:
    listing: OfferListing
    received_at: int


BookKey = tuple[ProviderAddress, str]


class OfferBook:
    """The offers heard, one per provider and enclave key (a provider offers each workload
    under its own key)."""

    def __init__(self, entry_ttl_s: int, max_entries: int, max_per_provider: int = 16) -> None:
        self._entry_ttl_s = entry_ttl_s
        self._max_entries = max_entries
        self._max_per_provider = max_per_provider
        self._entries: dict[BookKey, BookEntry] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def put(self, listing: OfferListing, now: int) -> bool:
        """Keep the listing if it is fresher than what we hold; True when the book changed."""
        key = listing.book_key
        current = self._entries.get(key)
        if current is not None and listing.freshness <= current.listing.freshness:
            return False
        if current is None:
            own = [k for k in self._entries if k[0] == key[0]]
            if len(own) >= self._max_per_provider:
                # A provider's newest offers win: its oldest one makes room.
                del self._entries[min(own, key=lambda k: self._entries[k].received_at)]
            elif len(self._entries) >= self._max_entries:
                self.prune(now)
                if len(self._entries) >= self._max_entries:
                    oldest = min(self._entries, key=lambda k: self._entries[k].received_at)
                    del self._entries[oldest]
        self._entries[key] = BookEntry(listing, now)
        return True

    def get(self, provider: ProviderAddress, enclave_key: str) -> OfferListing | None:
        entry = self._entries.get((provider, enclave_key.lower()))
        return entry.listing if entry is not None else None

    def of_provider(self, provider: ProviderAddress) -> list[OfferListing]:
        return [e.listing for k, e in self._entries.items() if k[0] == provider]

    def prune(self, now: int) -> list[BookKey]:
        """Drop expired offers and listings nobody refreshed; returns who was dropped."""
        gone = [
            key
            for key, entry in self._entries.items()
            if entry.listing.offer.valid_until <= now
            or entry.received_at + self._entry_ttl_s <= now
        ]
        for key in gone:
            del self._entries[key]
        return gone

    def listings(self, now: int) -> list[OfferListing]:
        self.prune(now)
        return [entry.listing for entry in self._entries.values()]

    def resource_offers(self, now: int) -> list[ResourceOffer]:
        """What the client's matcher consumes."""
        return [listing.to_resource_offer() for listing in self.listings(now)]

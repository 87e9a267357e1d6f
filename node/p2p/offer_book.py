"""The offers a node currently knows: latest listing per provider, dropped when it expires."""

from __future__ import annotations

from dataclasses import dataclass

from node.p2p.offers import OfferListing
from scheduler.models import ProviderAddress, ResourceOffer


@dataclass(frozen=True)
class BookEntry:
    listing: OfferListing
    received_at: int


class OfferBook:
    def __init__(self, entry_ttl_s: int, max_entries: int) -> None:
        self._entry_ttl_s = entry_ttl_s
        self._max_entries = max_entries
        self._entries: dict[ProviderAddress, BookEntry] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def put(self, listing: OfferListing, now: int) -> bool:
        """Keep the listing if it is fresher than what we hold; True when the book changed."""
        current = self._entries.get(listing.provider)
        if current is not None and listing.freshness <= current.listing.freshness:
            return False
        if current is None and len(self._entries) >= self._max_entries:
            self.prune(now)
            if len(self._entries) >= self._max_entries:
                oldest = min(self._entries, key=lambda p: self._entries[p].received_at)
                del self._entries[oldest]
        self._entries[listing.provider] = BookEntry(listing, now)
        return True

    def get(self, provider: ProviderAddress) -> OfferListing | None:
        entry = self._entries.get(provider)
        return entry.listing if entry is not None else None

    def prune(self, now: int) -> list[ProviderAddress]:
        """Drop expired offers and listings nobody refreshed; returns who was dropped."""
        gone = [
            provider
            for provider, entry in self._entries.items()
            if entry.listing.offer.valid_until <= now
            or entry.received_at + self._entry_ttl_s <= now
        ]
        for provider in gone:
            del self._entries[provider]
        return gone

    def listings(self, now: int) -> list[OfferListing]:
        self.prune(now)
        return [entry.listing for entry in self._entries.values()]

    def resource_offers(self, now: int) -> list[ResourceOffer]:
        """What the client's matcher consumes."""
        return [listing.to_resource_offer() for listing in self.listings(now)]

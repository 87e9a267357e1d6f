"""Who a node is on the network (its Ed25519 identity) and where a peer can be reached."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import NewType

import multiaddr
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.keys import KeyPair
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo

from node.p2p.errors import ConfigError
from scheduler.models import PeerId

__all__ = ["Multiaddr", "NodeIdentity", "PeerAddress", "PeerId"]

Multiaddr = NewType("Multiaddr", str)
"""A multiaddr in text form without the /p2p/ part, e.g. ``/ip4/127.0.0.1/tcp/4001``."""

ED25519_SEED_SIZE = 32


def parse_multiaddr(text: str) -> multiaddr.Multiaddr:
    try:
        return multiaddr.Multiaddr(text)
    except Exception as exc:  # multiaddr raises several unrelated types on bad input
        raise ConfigError(f"not a multiaddr: {text!r} ({exc})") from exc


def peer_id_of(raw: ID) -> PeerId:
    return PeerId(raw.to_base58())


def libp2p_id(peer_id: PeerId) -> ID:
    try:
        return ID.from_base58(peer_id)
    except Exception as exc:
        raise ConfigError(f"not a peer id: {peer_id!r}") from exc


@dataclass(frozen=True)
class NodeIdentity:
    """The node's libp2p key; the daemon's key file holds the 32-byte Ed25519 seed."""

    key_pair: KeyPair

    @classmethod
    def from_private_key(cls, seed: bytes) -> NodeIdentity:
        if len(seed) != ED25519_SEED_SIZE:
            raise ConfigError(f"an Ed25519 private key is 32 bytes, got {len(seed)}")
        return cls(create_new_key_pair(seed))

    @classmethod
    def generate(cls) -> NodeIdentity:
        return cls.from_private_key(os.urandom(ED25519_SEED_SIZE))

    @property
    def peer_id(self) -> PeerId:
        return peer_id_of(ID.from_pubkey(self.key_pair.public_key))


@dataclass(frozen=True)
class PeerAddress:
    """A dialable peer: its id and one transport address."""

    peer_id: PeerId
    addr: Multiaddr

    @classmethod
    def parse(cls, text: str) -> PeerAddress:
        """Parse ``<transport multiaddr>/p2p/<peer id>``, the form bootstrap lists use."""
        transport, sep, peer = text.rpartition("/p2p/")
        if not sep or not transport or not peer or "/" in peer:
            raise ConfigError(f"a peer address ends in /p2p/<peer id>: {text!r}")
        parse_multiaddr(transport)
        libp2p_id(PeerId(peer))
        return cls(PeerId(peer), Multiaddr(transport))

    def __str__(self) -> str:
        return f"{self.addr}/p2p/{self.peer_id}"

    def to_peer_info(self) -> PeerInfo:
        return PeerInfo(libp2p_id(self.peer_id), [parse_multiaddr(self.addr)])

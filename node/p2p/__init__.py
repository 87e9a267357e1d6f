"""Peer-to-peer layer: libp2p host, signed offers over GossipSub, discovery, stream protocols.

Everything libp2p-specific stays inside this package; callers see frozen domain values
(`PeerAddress`, `OfferListing`, ...) and the errors of `node.p2p.errors`.
"""

"""The node's keys: an Ethereum account in an encrypted keystore and a libp2p Ed25519 identity."""

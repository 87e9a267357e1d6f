"""The libp2p identity: an Ed25519 key whose 32-byte seed sits alone in a 0600 file.

The peer id is computed here as libp2p does (identity multihash of the protobuf-encoded
public key, base58btc) so that the node can name itself without importing libp2p; the
p2p layer builds its key pair from `seed`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import base58
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from node.keys.errors import KeyFileInvalid, KeyFileMissing
from node.keys.files import write_secret_file

SEED_BYTES = 32
_ED25519_PUBLIC_KEY_PROTOBUF_PREFIX = b"\x08\x01\x12\x20"  # KeyType=Ed25519, Data=32 bytes
_IDENTITY_MULTIHASH = b"\x00"


@dataclass(frozen=True)
class NodeIdentity:
    seed: bytes

    def __repr__(self) -> str:  # the seed is a secret: never in logs or tracebacks
        return f"NodeIdentity(peer_id={self.peer_id})"

    @property
    def public_key(self) -> bytes:
        key = Ed25519PrivateKey.from_private_bytes(self.seed)
        return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    @property
    def peer_id_bytes(self) -> bytes:
        encoded = _ED25519_PUBLIC_KEY_PROTOBUF_PREFIX + self.public_key
        return _IDENTITY_MULTIHASH + bytes([len(encoded)]) + encoded

    @property
    def peer_id(self) -> str:
        return base58.b58encode(self.peer_id_bytes).decode()


def create_identity(path: Path) -> NodeIdentity:
    key = Ed25519PrivateKey.generate()
    from cryptography.hazmat.primitives.serialization import NoEncryption, PrivateFormat

    seed = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    write_secret_file(path, seed)
    return NodeIdentity(seed)


def load_identity(path: Path) -> NodeIdentity:
    try:
        seed = path.read_bytes()
    except FileNotFoundError as exc:
        raise KeyFileMissing(f"identity {path} not found: create it with `capa init`") from exc
    except OSError as exc:
        raise KeyFileInvalid(f"identity {path} cannot be read: {exc.strerror}") from exc
    if len(seed) != SEED_BYTES:
        raise KeyFileInvalid(
            f"identity {path} holds {len(seed)} bytes: expected a {SEED_BYTES}-byte Ed25519 seed"
        )
    return NodeIdentity(seed)

"""The keys an instance generates inside itself: a secp256k1 signing key (an Ethereum address,
signs Result receipts) and an X25519 HPKE key (opens sealed inputs).

`InstanceKeys` offers operations, never the private keys: no accessor, no repr, no pickling.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NoReturn

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from eth_account import Account

from node.enclave.errors import InstanceDestroyed, ReplayedInput
from node.enclave.sealing import (
    ByteSource,
    Direction,
    open_records,
    public_key_bytes,
    read_stream_header,
    setup_base_recipient,
)
from proofs.receipts import (
    Eip712Domain,
    Result,
    ResultBatch,
    result_digest,
    sign_digest,
    typed_data_digest,
)


class InstanceKeys:
    __slots__ = ("_destroyed", "_hpke_key", "_opened", "_signing_key", "address", "hpke_public_key")

    def __init__(self) -> None:
        account = Account.create()
        self._signing_key: bytes = bytes(account.key)
        self._hpke_key = X25519PrivateKey.generate()
        self._opened: set[bytes] = set()
        self._destroyed = False
        self.address: str = account.address
        self.hpke_public_key: bytes = public_key_bytes(self._hpke_key)

    def __repr__(self) -> str:
        return f"InstanceKeys(address={self.address}, hpke={self.hpke_public_key.hex()})"

    def __reduce__(self) -> NoReturn:
        raise TypeError("instance keys never leave the instance")

    def _check_alive(self) -> None:
        if self._destroyed:
            raise InstanceDestroyed("instance destroyed; its keys are gone")

    def open_input(self, job_id: bytes, source: ByteSource) -> Iterator[bytes]:
        """Plaintext records of a sealed input for `job_id`; each sealed input opens once."""
        self._check_alive()
        header = read_stream_header(source, Direction.INPUT)
        context = setup_base_recipient(header.enc, self._hpke_key, job_id)
        records = open_records(header, context, source)
        first = next(records)  # authenticates before the input counts as used
        if header.enc in self._opened:
            raise ReplayedInput("this sealed input was already opened by this instance")
        self._opened.add(header.enc)
        yield first
        yield from records

    def sign_result(self, domain: Eip712Domain, result: Result) -> bytes:
        self._check_alive()
        return sign_digest(self._signing_key, result_digest(domain, result))

    def sign_batch(self, domain: Eip712Domain, batch: ResultBatch) -> bytes:
        self._check_alive()
        return sign_digest(self._signing_key, typed_data_digest(domain, batch.hash_struct()))

    def destroy(self) -> None:
        self._signing_key = bytes(len(self._signing_key))
        self._hpke_key = X25519PrivateKey.generate()
        self._destroyed = True

"""What the fuzz tests feed the proofs parsers: real bytes damaged by a short list of edits
(flip bits, cut the tail, insert or delete bytes), the same edits inside the DER of one
certificate of a PEM chain (where a changed tag or length reaches the ASN.1 decoders that
damaged base64 text never gets past), and arbitrary JSON values for documents.

Edits are plain tuples, so a failure hypothesis finds is kept as a short `@example`.
"""

from __future__ import annotations

import base64

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from hypothesis import strategies as st

Edit = tuple[str, int, int]
"""(kind, position, value): the position is taken modulo the current length."""

KINDS = ("xor", "cut", "insert", "delete")


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)


def edits(max_edits: int = 3) -> st.SearchStrategy[list[Edit]]:
    return st.lists(
        st.tuples(st.sampled_from(KINDS), st.integers(0, 2**16), st.integers(1, 255)),
        min_size=1,
        max_size=max_edits,
    )


def damage(data: bytes, changes: list[Edit]) -> bytes:
    out = bytearray(data)
    for kind, position, value in changes:
        if not out:
            break
        at = position % len(out)
        if kind == "xor":
            out[at] ^= value
        elif kind == "cut":
            del out[at:]
        elif kind == "insert":
            out[at:at] = bytes([value])
        elif kind == "delete":
            del out[at : at + 1 + value % 8]
        else:
            raise ValueError(f"unknown edit {kind!r}")
    return bytes(out)


def pem_certificate(der: bytes) -> bytes:
    """PEM armour around any bytes, so damaged DER reaches the certificate decoder."""
    return (
        b"-----BEGIN CERTIFICATE-----\n" + base64.encodebytes(der) + b"-----END CERTIFICATE-----\n"
    )


def damage_pem_chain(pem: bytes, index: int, changes: list[Edit]) -> bytes:
    """The chain with the DER of its certificate `index` (modulo its length) damaged."""
    ders = [c.public_bytes(Encoding.DER) for c in x509.load_pem_x509_certificates(pem)]
    target = index % len(ders)
    ders[target] = damage(ders[target], changes)
    return b"".join(pem_certificate(der) for der in ders)

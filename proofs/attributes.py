"""Attribute words of evidence, decoded to names: the facts a policy judges by name.

A set bit without a name here reads "RESERVED_<bit>": the specification reserves it, and a
policy refuses it unless told otherwise (`Policy.allow_reserved_attributes`).

- TDX TDATTRIBUTES (u64, little-endian), Intel TDX Module ABI specification: bit 0 DEBUG,
  28 SEPT_VE_DISABLE, 29 MIGRATABLE, 30 PKS, 31 KL, 63 PERFMON. A TD 1.5 report bound to a
  service TD (MRSERVICETD not zero) also reads "SERVICE_TD", which is no bit of the word.
- SGX ATTRIBUTES.FLAGS (u64), Intel SDM: 0 INIT, 1 DEBUG, 2 MODE64BIT, 4 PROVISIONKEY,
  5 EINITTOKEN_KEY, 6 CET, 7 KSS, 10 AEXNOTIFY.
- SEV-SNP guest POLICY (u64), AMD SEV-SNP ABI specification: 16 SMT, 18 MIGRATE_MA, 19 DEBUG,
  20 SINGLE_SOCKET, 21 CXL_ALLOW, 22 MEM_AES_256_XTS, 23 RAPL_DIS, 24 CIPHERTEXT_HIDING,
  25 PAGE_SWAP_DISABLE. Bits 0-15 are the minimum ABI version and bit 17 must be one: they
  are no attributes.
"""

from __future__ import annotations

TD_ATTRIBUTE_BITS = {
    0: "DEBUG",
    28: "SEPT_VE_DISABLE",
    29: "MIGRATABLE",
    30: "PKS",
    31: "KL",
    63: "PERFMON",
}
SGX_ATTRIBUTE_BITS = {
    0: "INIT",
    1: "DEBUG",
    2: "MODE64BIT",
    4: "PROVISIONKEY",
    5: "EINITTOKEN_KEY",
    6: "CET",
    7: "KSS",
    10: "AEXNOTIFY",
}
SNP_POLICY_BITS = {
    16: "SMT",
    18: "MIGRATE_MA",
    19: "DEBUG",
    20: "SINGLE_SOCKET",
    21: "CXL_ALLOW",
    22: "MEM_AES_256_XTS",
    23: "RAPL_DIS",
    24: "CIPHERTEXT_HIDING",
    25: "PAGE_SWAP_DISABLE",
}
_SNP_NOT_ATTRIBUTES = frozenset(range(16)) | {17}
RESERVED_PREFIX = "RESERVED_"


def _names(word: int, known: dict[int, str], skip: frozenset[int] = frozenset()) -> tuple[str, ...]:
    return tuple(
        known.get(bit, f"{RESERVED_PREFIX}{bit}")
        for bit in range(64)
        if word >> bit & 1 and bit not in skip
    )


def td_attribute_names(td_attributes: bytes, mr_service_td: bytes | None) -> tuple[str, ...]:
    names = _names(int.from_bytes(td_attributes, "little"), TD_ATTRIBUTE_BITS)
    if mr_service_td is not None and any(mr_service_td):
        names += ("SERVICE_TD",)
    return names


def sgx_attribute_names(attributes: bytes) -> tuple[str, ...]:
    return _names(int.from_bytes(attributes[:8], "little"), SGX_ATTRIBUTE_BITS)


def snp_policy_names(policy: int) -> tuple[str, ...]:
    return _names(policy, SNP_POLICY_BITS, _SNP_NOT_ATTRIBUTES)

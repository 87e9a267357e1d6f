"""Arm CCA attestation tokens: a CBOR collection (tag 399) of a platform token and a realm
token, each a COSE_Sign1 (tag 18).

Verified here: the realm token's signature by the realm attestation key (RAK) it carries;
the platform token's challenge equal to a hash of that key (the binding: the platform vouches
for this realm's key); the platform token's signature by a CPAK from a trust anchor store,
looked up by implementation and instance id. Claims are decoded by name. Whether the
measurements are the expected ones is the policy's question (`proofs.policy`), as is whether
the platform's lifecycle state can be trusted.

Formats: Arm's Realm Management Monitor specification (realm claims) and the CCA Security
Model / PSA token (platform claims); COSE_Sign1 per RFC 9052.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from proofs.bounded_json import nested_too_deep
from proofs.certificates import verify_ecdsa_raw
from proofs.claims import CcaFacts, CcaSoftwareComponent
from proofs.errors import (
    BindingMismatch,
    CertificateInvalid,
    CollateralError,
    MalformedEvidence,
    SignatureInvalid,
    UnsupportedEvidence,
)
from proofs.pinned_roots import ARM_CCA_SIMULATOR_CPAKS

CCA_TOKEN_TAG = 399
COSE_SIGN1_TAG = 18
PLATFORM_TOKEN_KEY = 44234
REALM_TOKEN_KEY = 44241
# The first bytes of every token: CBOR tag 399 (0xd9 0x01 0x8f) then a map.
_TOKEN_PREFIX = b"\xd9\x01\x8f"

# Platform claims (CCA Security Model / PSA token).
_P_PROFILE = 265
_P_CHALLENGE = 10
_P_IMPLEMENTATION_ID = 2396
_P_INSTANCE_ID = 256
_P_CONFIG = 2401
_P_LIFECYCLE = 2395
_P_SW_COMPONENTS = 2399
_P_VERIFICATION_SERVICE = 2400
_P_HASH_ALGORITHM = 2402
# Realm claims (RMM specification).
_R_CHALLENGE = 10
_R_PERSONALIZATION = 44235
_R_RAK_HASH_ALGORITHM = 44236
_R_RAK = 44237
_R_RIM = 44238
_R_REMS = 44239
_R_HASH_ALGORITHM = 44240
# Software component fields.
_C_TYPE = 1
_C_MEASUREMENT = 2
_C_VERSION = 4
_C_SIGNER_ID = 5

KNOWN_PROFILES = ("http://arm.com/CCA-SSD/1.0.0", "tag:arm.com,2023:cca_platform#1.0.0")
_COSE_ALGORITHMS: dict[int, tuple[ec.EllipticCurve, hashes.HashAlgorithm, str]] = {
    -7: (ec.SECP256R1(), hashes.SHA256(), "ES256"),
    -35: (ec.SECP384R1(), hashes.SHA384(), "ES384"),
    -36: (ec.SECP521R1(), hashes.SHA512(), "ES512"),
}
_HASHES = {"sha-256": "sha256", "sha-384": "sha384", "sha-512": "sha512"}
_HASH_BY_SIZE = {32: "sha-256", 48: "sha-384", 64: "sha-512"}
_LIFECYCLE_NAMES = {
    0x00: "unknown",
    0x10: "assembly-and-test",
    0x20: "psa-rot-provisioning",
    0x30: "secured",
    0x40: "non-psa-rot-debug",
    0x50: "recoverable-psa-rot-debug",
    0x60: "decommissioned",
}
DEBUG_LIFECYCLES = frozenset({"non-psa-rot-debug", "recoverable-psa-rot-debug"})
_JWK_CURVES: dict[str, ec.EllipticCurve] = {
    "P-256": ec.SECP256R1(),
    "P-384": ec.SECP384R1(),
    "P-521": ec.SECP521R1(),
}
MAX_JSON_DOCUMENT = 1024 * 1024


@dataclass(frozen=True)
class CcaTrustAnchor:
    """A CPAK endorsed for one platform (implementation id) and instance (instance id)."""

    public_key: ec.EllipticCurvePublicKey
    implementation_id: bytes
    instance_id: bytes

    @property
    def simulator(self) -> bool:
        numbers = self.public_key.public_numbers()
        size = (self.public_key.curve.key_size + 7) // 8
        xy = (_b64url(numbers.x.to_bytes(size, "big")), _b64url(numbers.y.to_bytes(size, "big")))
        return xy in ARM_CCA_SIMULATOR_CPAKS


@dataclass(frozen=True)
class CcaTrustAnchors:
    anchors: tuple[CcaTrustAnchor, ...]

    def find(self, implementation_id: bytes, instance_id: bytes) -> CcaTrustAnchor | None:
        for anchor in self.anchors:
            if (anchor.implementation_id, anchor.instance_id) == (implementation_id, instance_id):
                return anchor
        return None


@dataclass(frozen=True)
class CcaVerification:
    facts: CcaFacts
    realm_initial_measurement: bytes
    realm_challenge: bytes
    realm_public_key: bytes
    simulator: bool


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64url_decode(text: object, what: str) -> bytes:
    if not isinstance(text, str):
        raise CollateralError(f"trust anchor store: {what} is not a string")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise CollateralError(f"trust anchor store: {what} is not base64url") from exc


def _hex_field(entry: Mapping[str, Any], key: str) -> bytes:
    value = entry.get(key)
    try:
        if not isinstance(value, str):
            raise ValueError("not a string")
        return bytes.fromhex(value)
    except ValueError as exc:
        raise CollateralError(f"trust anchor store: {key} is not hex ({exc})") from exc


def jwk_public_key(jwk: object, what: str) -> ec.EllipticCurvePublicKey:
    if not isinstance(jwk, Mapping) or jwk.get("kty") != "EC":
        raise CollateralError(f"{what}: not an EC JWK")
    curve = _JWK_CURVES.get(str(jwk.get("crv")))
    if curve is None:
        raise CollateralError(f"{what}: curve {jwk.get('crv')!r} (supported: P-256/384/521)")
    size = (curve.key_size + 7) // 8
    x, y = _b64url_decode(jwk.get("x"), "x"), _b64url_decode(jwk.get("y"), "y")
    if len(x) != size or len(y) != size:
        raise CollateralError(f"{what}: coordinates are not {size} bytes")
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(curve, b"\x04" + x + y)
    except ValueError as exc:
        raise CollateralError(f"{what}: not a point on {jwk.get('crv')}") from exc


def parse_trust_anchor_store(data: bytes) -> CcaTrustAnchors:
    """The trust anchor store as Veraison and trustee write it: a JSON list of
    {"pkey": JWK, "implementation-id": hex, "instance-id": hex}."""
    document = _load_json(data, "trust anchor store")
    if not isinstance(document, list):
        raise CollateralError("trust anchor store is not a JSON list")
    anchors = []
    for index, entry in enumerate(document):
        if not isinstance(entry, Mapping):
            raise CollateralError(f"trust anchor store entry {index} is not an object")
        anchors.append(
            CcaTrustAnchor(
                public_key=jwk_public_key(entry.get("pkey"), f"trust anchor {index}"),
                implementation_id=_hex_field(entry, "implementation-id"),
                instance_id=_hex_field(entry, "instance-id"),
            )
        )
    return CcaTrustAnchors(tuple(anchors))


def looks_like_cca_token(data: bytes) -> bool:
    return data[:3] == _TOKEN_PREFIX


@dataclass(frozen=True)
class _Sign1:
    protected: bytes
    payload: bytes
    signature: bytes
    algorithm: int
    claims: Mapping[Any, Any]


def _decode_cbor(data: bytes, what: str) -> Any:
    try:
        return cbor2.loads(data)
    # Tag decoders (dates, bignums, sets) raise their own: OSError/OverflowError for an epoch
    # out of range, TypeError for an unhashable set member.
    except (
        cbor2.CBORDecodeError,
        ValueError,
        TypeError,
        OverflowError,
        OSError,
        RecursionError,
    ) as exc:
        raise MalformedEvidence(f"{what} is not CBOR: {exc}") from exc


def _sign1(data: object, what: str) -> _Sign1:
    if not isinstance(data, bytes):
        raise MalformedEvidence(f"{what} is not a byte string")
    tagged = _decode_cbor(data, what)
    if not isinstance(tagged, cbor2.CBORTag) or tagged.tag != COSE_SIGN1_TAG:
        raise MalformedEvidence(f"{what} is not a tagged COSE_Sign1")
    message = tagged.value
    if not isinstance(message, (list, tuple)) or len(message) != 4:
        raise MalformedEvidence(f"{what}: COSE_Sign1 is not a 4-element array")
    protected, _unprotected, payload, signature = message
    if not all(isinstance(part, bytes) for part in (protected, payload, signature)):
        raise MalformedEvidence(f"{what}: COSE_Sign1 parts are not byte strings")
    headers = _decode_cbor(protected, f"{what} protected header") if protected else {}
    if not isinstance(headers, Mapping) or not isinstance(headers.get(1), int):
        raise MalformedEvidence(f"{what}: protected header names no algorithm")
    claims = _decode_cbor(payload, f"{what} claims")
    if not isinstance(claims, Mapping):
        raise MalformedEvidence(f"{what}: claims are not a map")
    return _Sign1(protected, payload, signature, headers[1], claims)


def _check_signature(message: _Sign1, key: ec.EllipticCurvePublicKey, what: str) -> None:
    algorithm = _COSE_ALGORITHMS.get(message.algorithm)
    if algorithm is None:
        raise UnsupportedEvidence(f"{what}: COSE algorithm {message.algorithm} (ES256/384/512)")
    curve, digest, name = algorithm
    if key.curve.name != curve.name:
        raise SignatureInvalid(f"{what}: {name} signature but a {key.curve.name} key")
    if len(message.signature) != 2 * ((curve.key_size + 7) // 8):
        raise SignatureInvalid(f"{what}: {name} signature of {len(message.signature)} bytes")
    to_be_signed = cbor2.dumps(["Signature1", message.protected, b"", message.payload])
    verify_ecdsa_raw(key, message.signature, to_be_signed, digest, what)


def _claim(claims: Mapping[Any, Any], key: int, kind: type | tuple[type, ...], what: str) -> Any:
    value = claims.get(key)
    # bool is an int to Python, never a claim value CBOR meant as an integer.
    if not isinstance(value, kind) or isinstance(value, bool):
        raise MalformedEvidence(f"{what} missing or of the wrong type")
    return value


def _hash_name(value: object, what: str) -> str:
    if not isinstance(value, str) or value not in _HASHES:
        raise UnsupportedEvidence(f"{what} {value!r} (supported: {', '.join(_HASHES)})")
    return value


def _software_components(raw: object) -> tuple[CcaSoftwareComponent, ...]:
    if not isinstance(raw, (list, tuple)) or not raw:
        raise MalformedEvidence("platform software components missing or empty")
    components = []
    for index, entry in enumerate(raw):
        if not isinstance(entry, Mapping):
            raise MalformedEvidence(f"software component {index} is not a map")
        what = f"software component {index}"
        version = entry.get(_C_VERSION)
        components.append(
            CcaSoftwareComponent(
                component_type=str(entry.get(_C_TYPE, "")),
                measurement=_claim(entry, _C_MEASUREMENT, bytes, f"{what} measurement"),
                signer_id=_claim(entry, _C_SIGNER_ID, bytes, f"{what} signer id"),
                version=version if isinstance(version, str) else None,
            )
        )
    return tuple(components)


def lifecycle_name(value: int) -> str:
    return (
        _LIFECYCLE_NAMES.get((value >> 8) & 0xFF, "invalid") if 0 <= value <= 0xFFFF else "invalid"
    )


def _bind(rak: bytes, declared: str, challenge: bytes) -> str:
    """The hash under which the platform challenge names the RAK.

    The declared RAK hash algorithm first; Arm's example token declares sha-512 but binds with
    sha-256 (as its reference values say), so the challenge's length picks the algorithm when
    the declared one's output has another size. Either way the challenge must equal a
    collision-resistant hash of this very key."""
    algorithm = declared
    if hashlib.new(_HASHES[declared]).digest_size != len(challenge):
        fallback = _HASH_BY_SIZE.get(len(challenge))
        if fallback is None:
            raise BindingMismatch(f"platform challenge of {len(challenge)} bytes is no hash")
        algorithm = fallback
    if hashlib.new(_HASHES[algorithm], rak).digest() != challenge:
        raise BindingMismatch(
            "platform challenge is not the hash of the realm attestation key: "
            "the platform token does not vouch for this realm"
        )
    return algorithm


def verify_cca_token(data: bytes, anchors: CcaTrustAnchors) -> CcaVerification:
    """Genuine and bound, signed by an endorsed CPAK: or a ProofError with why."""
    collection = _decode_cbor(bytes(data), "CCA token")
    if not isinstance(collection, cbor2.CBORTag) or collection.tag != CCA_TOKEN_TAG:
        raise MalformedEvidence("not a CCA token collection (CBOR tag 399)")
    if not isinstance(collection.value, Mapping):
        raise MalformedEvidence("CCA token collection is not a map")
    platform = _sign1(collection.value.get(PLATFORM_TOKEN_KEY), "platform token")
    realm = _sign1(collection.value.get(REALM_TOKEN_KEY), "realm token")

    realm_claims = realm.claims
    rak_bytes = _claim(realm_claims, _R_RAK, bytes, "realm public key")
    rak_curve = {97: ec.SECP384R1(), 65: ec.SECP256R1(), 133: ec.SECP521R1()}.get(len(rak_bytes))
    if rak_curve is None:
        raise UnsupportedEvidence(f"realm public key of {len(rak_bytes)} bytes (not an EC point)")
    try:
        rak = ec.EllipticCurvePublicKey.from_encoded_point(rak_curve, rak_bytes)
    except ValueError as exc:
        raise SignatureInvalid("realm public key is not a valid EC point") from exc
    _check_signature(realm, rak, "realm token")

    rak_hash = _hash_name(realm_claims.get(_R_RAK_HASH_ALGORITHM), "realm key hash algorithm")
    platform_claims = platform.claims
    challenge = _claim(platform_claims, _P_CHALLENGE, bytes, "platform challenge")
    binding_hash = _bind(rak_bytes, rak_hash, challenge)

    implementation_id = _claim(platform_claims, _P_IMPLEMENTATION_ID, bytes, "implementation id")
    instance_id = _claim(platform_claims, _P_INSTANCE_ID, bytes, "instance id")
    anchor = anchors.find(implementation_id, instance_id)
    if anchor is None:
        raise CertificateInvalid(
            f"no trust anchor for CCA platform {implementation_id.hex()} "
            f"instance {instance_id.hex()}"
        )
    _check_signature(platform, anchor.public_key, "platform token")

    profile = _claim(platform_claims, _P_PROFILE, str, "platform profile")
    if profile not in KNOWN_PROFILES:
        raise UnsupportedEvidence(f"CCA platform profile {profile!r}")
    lifecycle = _claim(platform_claims, _P_LIFECYCLE, int, "security lifecycle")
    service = platform_claims.get(_P_VERIFICATION_SERVICE)
    rems = _claim(realm_claims, _R_REMS, (list, tuple), "realm extensible measurements")
    if len(rems) != 4 or not all(isinstance(rem, bytes) for rem in rems):
        raise MalformedEvidence("realm extensible measurements are not 4 byte strings")
    realm_challenge = _claim(realm_claims, _R_CHALLENGE, bytes, "realm challenge")
    if len(realm_challenge) != 64:
        raise MalformedEvidence(f"realm challenge of {len(realm_challenge)} bytes, expected 64")
    facts = CcaFacts(
        profile=profile,
        implementation_id=implementation_id,
        instance_id=instance_id,
        lifecycle=lifecycle,
        lifecycle_name=lifecycle_name(lifecycle),
        platform_config=_claim(platform_claims, _P_CONFIG, bytes, "platform config"),
        software_components=_software_components(platform_claims.get(_P_SW_COMPONENTS)),
        verification_service=service if isinstance(service, str) else None,
        personalization_value=_claim(realm_claims, _R_PERSONALIZATION, bytes, "personalization"),
        extensible_measurements=tuple(rems),
        realm_hash_algorithm=_hash_name(realm_claims.get(_R_HASH_ALGORITHM), "realm hash"),
        binding_hash_algorithm=binding_hash,
    )
    return CcaVerification(
        facts=facts,
        realm_initial_measurement=_claim(realm_claims, _R_RIM, bytes, "realm initial measurement"),
        realm_challenge=realm_challenge,
        realm_public_key=rak_bytes,
        simulator=anchor.simulator,
    )


@dataclass(frozen=True)
class CcaReferenceValues:
    """Reference values in the shape of Veraison's / trustee's rvstore: per implementation id
    the expected platform software components, and the accepted realm measurements."""

    platform: Mapping[bytes, tuple[tuple[str, bytes, bytes], ...]]
    """implementation id -> (component type, measurement, signer id) for every component."""
    realms: tuple[tuple[bytes, tuple[bytes, ...], bytes], ...]
    """(initial measurement, extensible measurements, personalization value) accepted."""


def parse_reference_values(document: object, error: type[Exception]) -> CcaReferenceValues:
    """From the rvstore JSON already decoded; `error` is raised on a malformed document."""
    if not isinstance(document, Mapping):
        raise error("CCA reference values are a JSON object with platform and realm lists")

    def entries(key: str) -> Sequence[Mapping[str, Any]]:
        value = document.get(key, [])
        if not isinstance(value, list) or not all(isinstance(e, Mapping) for e in value):
            raise error(f"CCA reference values: {key} must be a list of objects")
        return value

    def hex_of(entry: Mapping[str, Any], key: str) -> bytes:
        value = entry.get(key)
        if not isinstance(value, str):
            raise error(f"CCA reference values: {key} must be a hex string")
        try:
            return bytes.fromhex(value)
        except ValueError as exc:
            raise error(f"CCA reference values: {key} is not hex") from exc

    platform: dict[bytes, tuple[tuple[str, bytes, bytes], ...]] = {}
    for entry in entries("platform"):
        components = entry.get("sw-components")
        if not isinstance(components, list) or not all(isinstance(c, Mapping) for c in components):
            raise error("CCA reference values: sw-components must be a list of objects")
        platform[hex_of(entry, "implementation-id")] = tuple(
            (
                str(c.get("component-type", "")),
                hex_of(c, "measurement-value"),
                hex_of(c, "signer-id"),
            )
            for c in components
        )
    realms = []
    for entry in entries("realm"):
        rems = entry.get("extensible-measurements", [])
        if not isinstance(rems, list):
            raise error("CCA reference values: extensible-measurements must be a list")
        realms.append(
            (
                hex_of(entry, "initial-measurement"),
                tuple(hex_of({"rem": r}, "rem") for r in rems),
                hex_of(entry, "personalization-value"),
            )
        )
    return CcaReferenceValues(platform=platform, realms=tuple(realms))


def reference_mismatches(facts: CcaFacts, rim: bytes, values: CcaReferenceValues) -> list[str]:
    """Every way the token differs from the reference values, in words; [] when it matches."""
    reasons = []
    expected = values.platform.get(facts.implementation_id)
    if expected is None:
        reasons.append(f"no reference values for CCA platform {facts.implementation_id.hex()}")
    else:
        seen = tuple(
            (c.component_type, c.measurement, c.signer_id) for c in facts.software_components
        )
        differing = sorted(
            {c[0] for c in set(seen) ^ set(expected)}
            or ({"(order)"} if seen != expected else set())
        )
        if differing:
            reasons.append(
                f"CCA platform software differs from the reference: {', '.join(differing)}"
            )
    if not any(
        rim == ref_rim
        and facts.extensible_measurements == ref_rems
        and facts.personalization_value == ref_pv
        for ref_rim, ref_rems, ref_pv in values.realms
    ):
        reasons.append(f"CCA realm measurements (RIM {rim.hex()[:16]}...) match no reference value")
    return reasons


def load_reference_values_json(data: bytes) -> CcaReferenceValues:
    return parse_reference_values(_load_json(data, "CCA reference values"), CollateralError)


def _load_json(data: bytes, what: str) -> Any:
    if len(data) > MAX_JSON_DOCUMENT:
        raise CollateralError(f"{what} of {len(data)} bytes exceeds {MAX_JSON_DOCUMENT}")
    try:
        text = data.decode("utf-8")
        if nested_too_deep(text):
            raise ValueError("nested too deep")
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise CollateralError(f"{what} is not JSON: {exc}") from exc

"""What NVIDIA GPU verification needs from the network: OCSP status and reference manifests.

Neither is fetched here. Callers pass an `OcspResponder` (raw OCSP request in, raw response
out) and a `RimSource`; this module builds the OCSP requests and checks the responses it is
given (signer, certificate id, validity window, status) and compares measurements with the
manifests, all offline. `HttpOcspResponder` speaks NVIDIA's OCSP service through a `post`
callable the daemon wires with timeouts, as `HttpCollateralFetcher` does for Intel and AMD.

RIMs (NVIDIA's signed SWID tags) are XML with an XML-DSig signature chained to NVIDIA's RIM
root. A `RimSource` must check that signature (and, given OCSP, the RIM chain's status) before
it returns a `ReferenceManifest`: `proofs.nvidia_rim.SignedRimSource` does, over NVIDIA's RIM
service or a directory of RIM files.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID

from proofs.certificates import X509_DECODE_ERRORS
from proofs.collateral_source import HttpResponse
from proofs.errors import CertificateInvalid, CollateralError, SignatureInvalid

NVIDIA_OCSP_URL = "https://ocsp.ndis.nvidia.com/"
NVIDIA_RIM_SERVICE_URL = "https://rim.attestation.nvidia.com/v1/rim/"
# A delegated OCSP signer that is damaged, not issued by the CA, or has no extended key usage.
_DELEGATE_ERRORS: tuple[type[Exception], ...] = (
    InvalidSignature,
    x509.ExtensionNotFound,
    *X509_DECODE_ERRORS,
)


class OcspResponder(Protocol):
    def ocsp_response(self, request_der: bytes) -> bytes:
        """The DER OCSP response to a DER OCSP request; raises CollateralError if unreachable."""
        ...


HttpPost = Callable[[str, bytes, Mapping[str, str]], HttpResponse]


@dataclass(frozen=True)
class HttpOcspResponder:
    post: HttpPost
    url: str = NVIDIA_OCSP_URL

    def ocsp_response(self, request_der: bytes) -> bytes:
        response = self.post(self.url, request_der, {"Content-Type": "application/ocsp-request"})
        if response.status != 200:
            raise CollateralError(f"POST {self.url}: HTTP {response.status}")
        return response.body


@dataclass(frozen=True)
class OcspStatus:
    serial_number: int
    this_update: datetime
    next_update: datetime | None


def ocsp_request_for(cert: x509.Certificate, issuer: x509.Certificate) -> bytes:
    # SHA-384 certificate ids, as NVIDIA's own verifier asks its responder.
    builder = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA384())
    return builder.build().public_bytes(serialization.Encoding.DER)


def _responder_certificate(
    response: ocsp.OCSPResponse, issuer: x509.Certificate, at: datetime, what: str
) -> x509.Certificate:
    """The issuer itself, or a delegate it certified for OCSP signing (RFC 6960 4.2.2.2)."""
    for candidate in (issuer, *response.certificates):
        by_name = response.responder_name is not None and candidate.subject == (
            response.responder_name
        )
        by_key = response.responder_key_hash is not None and (
            x509.SubjectKeyIdentifier.from_public_key(candidate.public_key()).digest
            == response.responder_key_hash
        )
        if not (by_name or by_key):
            continue
        if candidate is issuer:
            return issuer
        try:
            candidate.verify_directly_issued_by(issuer)
            usage = candidate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        except _DELEGATE_ERRORS as exc:
            raise CertificateInvalid(f"{what}: OCSP signer is not certified by the CA") from exc
        if ExtendedKeyUsageOID.OCSP_SIGNING not in usage:
            raise CertificateInvalid(f"{what}: OCSP signer lacks the OCSP signing usage")
        if not candidate.not_valid_before_utc <= at <= candidate.not_valid_after_utc:
            raise CertificateInvalid(f"{what}: OCSP signer certificate not valid at {at}")
        return candidate
    raise CertificateInvalid(f"{what}: OCSP response not signed by the CA or its delegate")


def check_ocsp_response(
    response_der: bytes,
    cert: x509.Certificate,
    issuer: x509.Certificate,
    at: datetime,
    what: str,
) -> OcspStatus:
    """A GOOD status for `cert`, signed for `issuer`, current at `at`; otherwise a reason."""
    try:
        response = ocsp.load_der_ocsp_response(response_der)
    except X509_DECODE_ERRORS as exc:
        raise CollateralError(f"{what}: not an OCSP response ({exc})") from exc
    if response.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL:
        raise CollateralError(f"{what}: OCSP responder answered {response.response_status.name}")
    try:
        hash_algorithm = response.hash_algorithm
        expected = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hash_algorithm).build()
        same_id = (
            response.serial_number == cert.serial_number
            and response.issuer_key_hash == expected.issuer_key_hash
            and response.issuer_name_hash == expected.issuer_name_hash
        )
        signer = _responder_certificate(response, issuer, at, what)
        key = signer.public_key()
        signature_hash = response.signature_hash_algorithm
        if not isinstance(key, ec.EllipticCurvePublicKey) or signature_hash is None:
            raise CertificateInvalid(f"{what}: OCSP signer key is not ECDSA")
        key.verify(response.signature, response.tbs_response_bytes, ec.ECDSA(signature_hash))
        status = response.certificate_status
        this_update = response.this_update_utc
        next_update = response.next_update_utc
        revoked_at = response.revocation_time_utc
    except InvalidSignature as exc:
        raise SignatureInvalid(f"{what}: OCSP response signature does not verify") from exc
    except X509_DECODE_ERRORS as exc:
        raise CollateralError(f"{what}: unusable OCSP response ({exc})") from exc
    if not same_id:
        raise CollateralError(f"{what}: OCSP response is about another certificate")
    if at < this_update:
        raise CollateralError(f"{what}: OCSP response not yet valid at {at.isoformat()}")
    if next_update is not None and at > next_update:
        raise CollateralError(f"{what}: OCSP response expired at {at.isoformat()}")
    if status == ocsp.OCSPCertStatus.REVOKED:
        raise CertificateInvalid(f"{what} is revoked (since {revoked_at}, per OCSP)")
    if status != ocsp.OCSPCertStatus.GOOD:
        raise CertificateInvalid(f"{what}: OCSP status is {status.name}")
    return OcspStatus(cert.serial_number, this_update, next_update)


@dataclass(frozen=True)
class GoldenMeasurement:
    """One entry of a RIM: `index` as the RIM numbers it (0-based; SPDM block = index + 1)."""

    index: int
    alternatives: tuple[bytes, ...]
    active: bool = True


@dataclass(frozen=True)
class ReferenceManifest:
    rim_id: str
    measurements: tuple[GoldenMeasurement, ...]


class RimSource(Protocol):
    def reference_manifest(self, rim_id: str, at: datetime) -> ReferenceManifest:
        """A manifest whose signature and chain the source has verified; CollateralError if
        it cannot get or verify one."""
        ...


@dataclass(frozen=True)
class ReferenceComparison:
    rim_ids: tuple[str, ...]
    mismatched_blocks: tuple[int, ...]
    """SPDM block indices whose value is none of the golden alternatives (or missing)."""


def compare_with_manifests(
    runtime: Mapping[int, bytes],
    manifests: tuple[ReferenceManifest, ...],
    *,
    skip_blocks: frozenset[int] = frozenset(),
) -> ReferenceComparison:
    """nvtrust's rule: every active golden index is covered by exactly one manifest, and the
    GPU's block at that index equals one of its alternatives."""
    golden: dict[int, GoldenMeasurement] = {}
    for manifest in manifests:
        for measurement in manifest.measurements:
            if not measurement.active:
                continue
            if measurement.index in golden:
                raise CollateralError(
                    f"RIM index {measurement.index} is defined by more than one manifest"
                )
            golden[measurement.index] = measurement
    mismatched = sorted(
        index + 1
        for index, measurement in golden.items()
        if index + 1 not in skip_blocks and runtime.get(index + 1) not in measurement.alternatives
    )
    return ReferenceComparison(tuple(m.rim_id for m in manifests), tuple(mismatched))

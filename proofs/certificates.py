"""X.509 checks shared by every chain we verify (Intel PCK/TCB, AMD VEK, NVIDIA device).

Each check names what it looked at, so a failure reads as a reason ("PCK leaf expired at ...")
rather than a library message.
"""

from __future__ import annotations

from datetime import UTC, datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from proofs.errors import (
    CertificateInvalid,
    CollateralError,
    MalformedEvidence,
    ProofError,
    SignatureInvalid,
)


def require_utc(at: datetime) -> datetime:
    """Verification time must be explicit and unambiguous: naive datetimes are refused."""
    if at.tzinfo is None:
        raise ValueError("verification time must be timezone-aware (UTC)")
    return at.astimezone(UTC)


# What `cryptography` raises on damaged DER or PEM, at load or when a lazily decoded field is
# first read: ValueError for bad encodings, TypeError for a name attribute of the wrong ASN.1
# type ("oid must be X500_UNIQUE_IDENTIFIER"), and exceptions of its own that derive from
# Exception alone (an unknown version, a repeated extension, an odd general name type).
X509_DECODE_ERRORS: tuple[type[Exception], ...] = (
    ValueError,
    TypeError,
    UnsupportedAlgorithm,
    x509.InvalidVersion,
    x509.DuplicateExtension,
    x509.UnsupportedGeneralNameType,
)


def load_pem_chain(
    pem: bytes, what: str, error: type[ProofError] = MalformedEvidence
) -> list[x509.Certificate]:
    """Certificates of a PEM chain, leaf first; `error` says whose fault damage is (evidence
    by default, `CollateralError` for collateral)."""
    # Quotes carry a NUL after the PEM chain; it is not part of any certificate.
    try:
        certs = x509.load_pem_x509_certificates(pem.rstrip(b"\x00 \r\n\t") + b"\n")
        for cert in certs:
            _parse_lazy_fields(cert)
    except X509_DECODE_ERRORS as exc:
        raise error(f"{what}: not a PEM certificate chain ({exc})") from exc
    if not certs:
        raise error(f"{what}: no certificate")
    return certs


def _parse_lazy_fields(cert: x509.Certificate) -> None:
    # cryptography decodes names, extensions and keys on first access and raises then; touch
    # everything the checks read, so damage surfaces as our error at load, not later as a
    # traceback from deep inside a check.
    _ = (cert.version, cert.serial_number, cert.subject, cert.issuer)
    _ = (cert.not_valid_before_utc, cert.not_valid_after_utc)
    _ = (cert.extensions, cert.public_key(), cert.signature_hash_algorithm)
    _ = cert.signature_algorithm_parameters


def load_der_certificate(der: bytes, what: str) -> x509.Certificate:
    try:
        cert = x509.load_der_x509_certificate(der)
        _parse_lazy_fields(cert)
        return cert
    except X509_DECODE_ERRORS as exc:
        raise CollateralError(f"{what}: not a DER certificate ({exc})") from exc


def check_valid_at(cert: x509.Certificate, at: datetime, what: str) -> None:
    if at < cert.not_valid_before_utc:
        raise CertificateInvalid(
            f"{what} not yet valid at {at.isoformat()} (notBefore {cert.not_valid_before_utc})"
        )
    if at > cert.not_valid_after_utc:
        raise CertificateInvalid(
            f"{what} expired at {at.isoformat()} (notAfter {cert.not_valid_after_utc})"
        )


def check_issued_by(cert: x509.Certificate, issuer: x509.Certificate, what: str) -> None:
    """Signature of `cert` by `issuer`'s key (ECDSA, or RSA-PSS as AMD uses), names chained."""
    if cert.issuer != issuer.subject:
        raise CertificateInvalid(f"{what}: issuer name does not match the issuing certificate")
    key = issuer.public_key()
    try:
        if isinstance(key, rsa.RSAPublicKey):
            params = cert.signature_algorithm_parameters
            pad: padding.AsymmetricPadding = (
                params if isinstance(params, padding.PSS) else padding.PKCS1v15()
            )
            hash_algorithm = cert.signature_hash_algorithm
            if hash_algorithm is None:
                raise CertificateInvalid(f"{what}: no signature hash algorithm")
            key.verify(cert.signature, cert.tbs_certificate_bytes, pad, hash_algorithm)
        else:
            cert.verify_directly_issued_by(issuer)
    except InvalidSignature as exc:
        raise CertificateInvalid(f"{what}: signature by its issuer does not verify") from exc
    except X509_DECODE_ERRORS as exc:
        raise CertificateInvalid(f"{what}: cannot check its signature ({exc})") from exc


def same_certificate(a: x509.Certificate, b: x509.Certificate) -> bool:
    return a.tbs_certificate_bytes == b.tbs_certificate_bytes and a.signature == b.signature


def verify_ecdsa_raw(
    public_key: ec.EllipticCurvePublicKey,
    signature_r_s: bytes,
    message: bytes,
    hash_algorithm: hashes.HashAlgorithm,
    what: str,
) -> None:
    """ECDSA with the signature as big-endian r || s of equal halves (Intel's encoding)."""
    half = len(signature_r_s) // 2
    r = int.from_bytes(signature_r_s[:half], "big")
    s = int.from_bytes(signature_r_s[half:], "big")
    verify_ecdsa_integers(public_key, r, s, message, hash_algorithm, what)


def verify_ecdsa_integers(
    public_key: ec.EllipticCurvePublicKey,
    r: int,
    s: int,
    message: bytes,
    hash_algorithm: hashes.HashAlgorithm,
    what: str,
) -> None:
    if r <= 0 or s <= 0:
        raise SignatureInvalid(f"{what}: signature is zero")
    try:
        public_key.verify(encode_dss_signature(r, s), message, ec.ECDSA(hash_algorithm))
    except InvalidSignature as exc:
        raise SignatureInvalid(f"{what}: signature does not verify") from exc


def p256_public_key_from_raw(xy: bytes, what: str) -> ec.EllipticCurvePublicKey:
    """Intel carries attestation keys as raw 64-byte x || y."""
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b"\x04" + xy)
    except ValueError as exc:
        raise SignatureInvalid(f"{what}: not a point on P-256") from exc


def ec_public_key(cert: x509.Certificate, what: str) -> ec.EllipticCurvePublicKey:
    key = cert.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise CertificateInvalid(f"{what}: expected an EC public key")
    return key


def check_crl(
    crl: x509.CertificateRevocationList,
    issuer: x509.Certificate,
    at: datetime,
    what: str,
) -> None:
    """The CRL is signed by `issuer` and current at `at`."""
    if crl.issuer != issuer.subject:
        raise CollateralError(f"{what}: issued by {crl.issuer.rfc4514_string()}, not its CA")
    key = issuer.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
        raise CollateralError(f"{what}: unsupported issuer key")
    try:
        signature_valid = crl.is_signature_valid(key)
    except X509_DECODE_ERRORS as exc:
        raise CollateralError(f"{what}: cannot check its signature ({exc})") from exc
    if not signature_valid:
        raise SignatureInvalid(f"{what}: signature does not verify")
    if at < crl.last_update_utc:
        raise CollateralError(f"{what} not yet valid at {at.isoformat()}")
    next_update = crl.next_update_utc
    if next_update is not None and at > next_update:
        raise CollateralError(f"{what} expired at {at.isoformat()} (nextUpdate {next_update})")


def check_not_revoked(
    crl: x509.CertificateRevocationList, cert: x509.Certificate, what: str
) -> None:
    if crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None:
        raise CertificateInvalid(f"{what} is revoked (serial {cert.serial_number:x})")


def load_crl(data: bytes, what: str) -> x509.CertificateRevocationList:
    """A CRL in DER (as PCS serves it with encoding=der) or PEM, every field it is checked by
    decoded here."""
    is_pem = data.lstrip().startswith(b"-----BEGIN")
    try:
        crl = x509.load_pem_x509_crl(data) if is_pem else x509.load_der_x509_crl(data)
    except X509_DECODE_ERRORS as exc:
        raise CollateralError(f"{what}: not a CRL ({exc})") from exc
    try:
        _ = (crl.issuer, crl.last_update_utc, crl.next_update_utc, crl.extensions)
        _ = [(r.serial_number, r.revocation_date_utc, r.extensions) for r in crl]
        _ = (crl.signature_hash_algorithm, crl.signature_algorithm_oid)
    except X509_DECODE_ERRORS as exc:
        raise CollateralError(f"{what}: malformed CRL ({exc})") from exc
    return crl

"""NVIDIA reference integrity manifests (RIMs): signed SWID tags (ISO/IEC 19770-2) with an
enveloped XML-DSig signature (ECDSA P-384, C14N 1.1) by a certificate chain to NVIDIA's RIM
root, which is pinned.

`verify_rim` checks, at the verification time: the chain the signature's KeyInfo carries, to
the pinned root (every certificate valid then, each issued by the next); the signature with
`signxml`, by the chain's leaf; that the manifest is the version its id asks for; and, given an
OCSP responder, each chain certificate's OCSP status. The golden measurements are read from
the element the signature covers (what signxml returns), never from the document as received,
so nothing outside the signature can add or change a measurement.

`SignedRimSource` is the `RimSource` GPU verification takes: it fetches raw RIMs through a
callable (NVIDIA's RIM service over HTTP with `rim_service_fetch`, or a directory) and verifies
each before handing out its measurements.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from cryptography import x509
from lxml import etree
from signxml.algorithms import DigestAlgorithm, SignatureMethod
from signxml.exceptions import InvalidCertificate, InvalidDigest, InvalidInput, InvalidSignature
from signxml.verifier import SignatureConfiguration, XMLVerifier

from proofs.certificates import (
    X509_DECODE_ERRORS,
    check_issued_by,
    check_valid_at,
    require_utc,
    same_certificate,
)
from proofs.collateral_source import HttpGet
from proofs.errors import CertificateInvalid, CollateralError, SignatureInvalid
from proofs.nvidia_collateral import (
    GoldenMeasurement,
    OcspResponder,
    ReferenceManifest,
    check_ocsp_response,
    ocsp_request_for,
)
from proofs.pinned_roots import NVIDIA_RIM_ROOT_PEM

MAX_RIM_SIZE = 2 * 1024 * 1024
_PINNED_RIM_ROOT = x509.load_pem_x509_certificate(NVIDIA_RIM_ROOT_PEM)
_DSIG = "http://www.w3.org/2000/09/xmldsig#"
_SWID = "http://standards.iso.org/iso/19770/-2/2015/schema.xsd"
_HASH_PREFIX = "Hash"
_CHAIN_DECODE_ERRORS: tuple[type[Exception], ...] = (binascii.Error, *X509_DECODE_ERRORS)
_SIGNATURE_METHODS = frozenset({SignatureMethod.ECDSA_SHA384, SignatureMethod.ECDSA_SHA512})
_DIGEST_ALGORITHMS = frozenset({DigestAlgorithm.SHA384, DigestAlgorithm.SHA512})


@dataclass(frozen=True)
class VerifiedRim:
    manifest: ReferenceManifest
    version: str
    signer: str
    revocation_checked: bool
    valid_until: datetime


def _parse(data: bytes) -> etree._Element:
    if len(data) > MAX_RIM_SIZE:
        raise CollateralError(f"RIM of {len(data)} bytes exceeds {MAX_RIM_SIZE}")
    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)
    try:
        return etree.fromstring(data, parser=parser)
    except etree.XMLSyntaxError as exc:
        raise CollateralError(f"RIM is not XML: {exc}") from exc


def _chain(document: etree._Element) -> list[x509.Certificate]:
    found = document.findall(
        f".//{{{_DSIG}}}Signature/{{{_DSIG}}}KeyInfo//{{{_DSIG}}}X509Certificate"
    )
    try:
        certs = [
            x509.load_der_x509_certificate(base64.b64decode("".join((e.text or "").split())))
            for e in found
        ]
    except _CHAIN_DECODE_ERRORS as exc:
        raise CertificateInvalid(f"RIM signing chain does not decode: {exc}") from exc
    if not certs:
        raise CertificateInvalid("RIM signature carries no certificate")
    return certs


def _check_chain(
    certs: list[x509.Certificate], at: datetime, root: x509.Certificate
) -> list[x509.Certificate]:
    """Leaf first, ending at the pinned root (carried or not)."""
    chain = certs[:-1] if same_certificate(certs[-1], root) else list(certs)
    if any(same_certificate(cert, root) for cert in chain):
        raise CertificateInvalid("RIM signing chain carries the root in the middle")
    full = [*chain, root]
    for cert, issuer in itertools.pairwise(full):
        check_issued_by(cert, issuer, f"RIM certificate {cert.subject.rfc4514_string()}")
    for cert in full:
        check_valid_at(cert, at, f"RIM certificate {cert.subject.rfc4514_string()}")
    return full


def _version_asked(rim_id: str) -> str:
    """The version part of a RIM id: NV_GPU_DRIVER_GH100_550.90.07 -> 5509007,
    NV_GPU_VBIOS_1010_0200_882_96009F0001 -> 96009F0001."""
    return rim_id.rsplit("_", 1)[-1].replace(".", "").upper()


def _golden(signed: etree._Element) -> tuple[GoldenMeasurement, ...]:
    measurements = []
    for resource in signed.iter(f"{{{_SWID}}}Resource"):
        if resource.get("type") != "Measurement":
            continue
        try:
            index = int(resource.get("index", ""))
            count = int(resource.get("alternatives", "1"))
            hashes = {
                etree.QName(name).localname: value
                for name, value in resource.attrib.items()
                if etree.QName(name).localname.startswith(_HASH_PREFIX)
            }
            alternatives = tuple(bytes.fromhex(hashes[f"{_HASH_PREFIX}{i}"]) for i in range(count))
        except (ValueError, KeyError) as exc:
            raise CollateralError(f"RIM measurement {resource.get('name')!r}: {exc}") from exc
        active = resource.get("active", "True").strip().lower() == "true"
        measurements.append(GoldenMeasurement(index, alternatives, active))
    if not measurements:
        raise CollateralError("RIM lists no measurements")
    return tuple(measurements)


def verify_rim(
    data: bytes,
    rim_id: str,
    at: datetime,
    *,
    ocsp: OcspResponder | None = None,
    trusted_root: x509.Certificate | None = None,
) -> VerifiedRim:
    """A RIM signed under NVIDIA's RIM root, for the version `rim_id` asks, at `at`."""
    at = require_utc(at)
    root = trusted_root or _PINNED_RIM_ROOT
    document = _parse(bytes(data))
    full = _check_chain(_chain(document), at, root)
    leaf = full[0]
    try:
        result = XMLVerifier().verify(
            bytes(data),
            x509_cert=leaf,
            expect_config=SignatureConfiguration(
                verification_time=at,
                signature_methods=_SIGNATURE_METHODS,
                digest_algorithms=_DIGEST_ALGORITHMS,
            ),
        )
    except (InvalidDigest, InvalidSignature) as exc:
        raise SignatureInvalid(f"RIM {rim_id}: signature does not verify ({exc})") from exc
    except InvalidCertificate as exc:
        raise CertificateInvalid(f"RIM {rim_id}: {exc}") from exc
    except (InvalidInput, etree.XMLSyntaxError, ValueError) as exc:
        raise CollateralError(f"RIM {rim_id}: {exc}") from exc
    if isinstance(result, list):
        raise CollateralError(f"RIM {rim_id}: more than one signed reference")
    signed = result.signed_xml
    if signed is None or etree.QName(signed).localname != "SoftwareIdentity":
        raise CollateralError(f"RIM {rim_id}: the signature does not cover a SWID tag")
    meta = signed.find(f"{{{_SWID}}}Meta")
    version = meta.get("colloquialVersion", "") if meta is not None else ""
    if version.replace(".", "").upper() != _version_asked(rim_id):
        raise CollateralError(f"RIM {rim_id}: it is the manifest of version {version!r}")

    expiries = [cert.not_valid_after_utc for cert in full]
    revocation_checked = False
    if ocsp is not None:
        for cert, issuer in itertools.pairwise(full):
            status = check_ocsp_response(
                ocsp.ocsp_response(ocsp_request_for(cert, issuer)),
                cert,
                issuer,
                at,
                f"RIM certificate {cert.subject.rfc4514_string()}",
            )
            if status.next_update is not None:
                expiries.append(status.next_update)
        revocation_checked = True
    return VerifiedRim(
        manifest=ReferenceManifest(rim_id, _golden(signed)),
        version=version,
        signer=leaf.subject.rfc4514_string(),
        revocation_checked=revocation_checked,
        valid_until=min(expiries),
    )


RimFetch = Callable[[str], bytes]
"""Raw RIM XML by RIM id; raises CollateralError when it cannot get one."""


def rim_service_fetch(get: HttpGet, base_url: str) -> RimFetch:
    """NVIDIA's RIM service: GET {base}{rim_id} answers JSON whose "rim" is the base64 XML."""

    def fetch(rim_id: str) -> bytes:
        url = f"{base_url.rstrip('/')}/{rim_id}"
        response = get(url)
        if response.status != 200:
            raise CollateralError(f"GET {url}: HTTP {response.status}")
        try:
            document = json.loads(response.body)
            return base64.b64decode(document["rim"], validate=True)
        except (ValueError, KeyError, TypeError, binascii.Error) as exc:
            raise CollateralError(f"GET {url}: not a RIM service answer ({exc})") from exc

    return fetch


@dataclass
class SignedRimSource:
    """The `RimSource` GPU verification uses: every manifest verified before use."""

    fetch: RimFetch
    ocsp: OcspResponder | None = None
    trusted_root: x509.Certificate | None = None
    verified: dict[str, VerifiedRim] = field(default_factory=dict)

    def reference_manifest(self, rim_id: str, at: datetime) -> ReferenceManifest:
        cached = self.verified.get(rim_id)
        if cached is not None and at <= cached.valid_until:
            return cached.manifest
        result = verify_rim(
            self.fetch(rim_id), rim_id, at, ocsp=self.ocsp, trusted_root=self.trusted_root
        )
        self.verified[rim_id] = result
        return result.manifest

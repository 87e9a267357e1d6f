"""Where collateral comes from: an interface, a cache in front of it, and a PCS/KDS fetcher.

Verification never fetches by itself; callers pass a source. The fetcher does no I/O of its
own either: it is given an `HttpGet` callable (the daemon wires one with timeouts), so this
module stays pure and tests never touch the network.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol
from urllib.parse import unquote

from proofs.errors import CollateralError
from proofs.intel_collateral import IntelCollateral
from proofs.pinned_roots import AmdProduct
from proofs.sev_snp import SnpSigner, SnpTcb
from proofs.sev_snp_verify import AmdCollateral


@dataclass(frozen=True)
class IntelCollateralRequest:
    fmspc: str
    """Lower-case hex, 6 bytes."""
    pck_ca: str
    """"platform" or "processor": which PCK CA issued the PCK certificate (its CRL)."""
    tdx: bool


@dataclass(frozen=True)
class AmdCollateralRequest:
    product: AmdProduct | None
    """None for v2 reports, which do not say; a fetcher then cannot build the KDS URL."""
    signer: SnpSigner
    chip_id: bytes
    reported_tcb: SnpTcb


class CollateralSource(Protocol):
    def intel_collateral(self, request: IntelCollateralRequest, at: datetime) -> IntelCollateral:
        """Collateral valid at `at` if the source can tell; raises CollateralError otherwise."""
        ...

    def amd_collateral(self, request: AmdCollateralRequest, at: datetime) -> AmdCollateral: ...


def intel_collateral_expiry(collateral: IntelCollateral) -> datetime:
    """The earliest nextUpdate of the TCB info and QE identity: when a cached copy goes stale."""
    return min(collateral.tcb_info.next_update, collateral.qe_identity.next_update)


@dataclass
class CachedCollateralSource:
    """Keeps collateral per FMSPC/CA/TEE (Intel) or product/chip/TCB (AMD) until it expires.

    Not thread-safe; the daemon owns one per verifier task."""

    inner: CollateralSource
    amd_expiry: Callable[[AmdCollateral], datetime] | None = None
    _intel: dict[IntelCollateralRequest, tuple[IntelCollateral, datetime]] = field(
        default_factory=dict
    )
    _amd: dict[AmdCollateralRequest, AmdCollateral] = field(default_factory=dict)

    def intel_collateral(self, request: IntelCollateralRequest, at: datetime) -> IntelCollateral:
        cached = self._intel.get(request)
        if cached is not None and at <= cached[1]:
            return cached[0]
        collateral = self.inner.intel_collateral(request, at)
        self._intel[request] = (collateral, intel_collateral_expiry(collateral))
        return collateral

    def amd_collateral(self, request: AmdCollateralRequest, at: datetime) -> AmdCollateral:
        # VCEKs live for years and are checked against `at` at verification; cache by identity.
        cached = self._amd.get(request)
        if cached is not None:
            return cached
        collateral = self.inner.amd_collateral(request, at)
        self._amd[request] = collateral
        return collateral


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: Mapping[str, str]
    body: bytes


HttpGet = Callable[[str], HttpResponse]


@dataclass(frozen=True)
class CollateralUrls:
    """From config. Intel PCS (or a PCCS speaking the same v4 API) and AMD KDS."""

    intel_pcs: str = "https://api.trustedservices.intel.com"
    intel_root_ca_crl: str = "https://certificates.trustedservices.intel.com/IntelSGXRootCA.der"
    amd_kds: str = "https://kdsintf.amd.com"


@dataclass(frozen=True)
class HttpCollateralFetcher:
    """Intel PCS v4 and AMD KDS endpoints. VLEKs are not public on KDS and are refused."""

    get: HttpGet
    urls: CollateralUrls = CollateralUrls()

    def _fetch(self, url: str) -> HttpResponse:
        response = self.get(url)
        if response.status != 200:
            raise CollateralError(f"GET {url}: HTTP {response.status}")
        return response

    def _header_chain(self, response: HttpResponse, name: str) -> bytes:
        for key, value in response.headers.items():
            if key.lower() == name.lower():
                return unquote(value).encode()
        raise CollateralError(f"response lacks the {name} header")

    def intel_collateral(self, request: IntelCollateralRequest, at: datetime) -> IntelCollateral:
        tee = "tdx" if request.tdx else "sgx"
        base = self.urls.intel_pcs.rstrip("/")
        tcb = self._fetch(f"{base}/{tee}/certification/v4/tcb?fmspc={request.fmspc}")
        qe = self._fetch(f"{base}/{tee}/certification/v4/qe/identity")
        pck_crl = self._fetch(
            f"{base}/sgx/certification/v4/pckcrl?ca={request.pck_ca}&encoding=der"
        )
        root_crl = self._fetch(self.urls.intel_root_ca_crl)
        return IntelCollateral(
            tcb_info_body=tcb.body,
            qe_identity_body=qe.body,
            tcb_signing_chain_pem=self._header_chain(tcb, "TCB-Info-Issuer-Chain"),
            root_ca_crl=root_crl.body,
            pck_crl=pck_crl.body,
            pck_crl_issuer_chain_pem=self._header_chain(pck_crl, "SGX-PCK-CRL-Issuer-Chain"),
        )

    def amd_collateral(self, request: AmdCollateralRequest, at: datetime) -> AmdCollateral:
        if request.signer != SnpSigner.VCEK:
            raise CollateralError("VLEK certificates are not public on AMD KDS")
        if request.product is None:
            raise CollateralError("report v2 does not name its AMD product; pass a VCEK")
        tcb = request.reported_tcb
        base = f"{self.urls.amd_kds.rstrip('/')}/vcek/v1/{request.product.value}"
        # Turin VCEKs are keyed by the first 8 bytes of CHIP_ID and carry an FMC SPL.
        hwid = request.chip_id[:8] if request.product == AmdProduct.TURIN else request.chip_id
        query = f"blSPL={tcb.bootloader}&teeSPL={tcb.tee}&snpSPL={tcb.snp}&ucodeSPL={tcb.microcode}"
        if tcb.fmc is not None:
            query += f"&fmcSPL={tcb.fmc}"
        vek = self._fetch(f"{base}/{hwid.hex()}?{query}")
        chain = self._fetch(f"{base}/cert_chain")
        return AmdCollateral(vek_der=vek.body, ask_ark_pem=chain.body)


class NoCollateral:
    """A source for callers that verify only evidence needing no Intel or AMD collateral
    (sim, NVIDIA): any request for collateral is refused with a clear reason."""

    def intel_collateral(self, request: IntelCollateralRequest, at: datetime) -> IntelCollateral:
        raise CollateralError("no collateral source configured for Intel evidence")

    def amd_collateral(self, request: AmdCollateralRequest, at: datetime) -> AmdCollateral:
        raise CollateralError("no collateral source configured for AMD evidence")

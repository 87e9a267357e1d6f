"""Collateral read from a directory in the testdata layout (one evidence case per directory).

The only module of `proofs` that reads files, and only those of the directory it was given.
It does not look at the request: the verifier checks that what it finds fits the evidence
(FMSPC, TEE, chip), so a directory for another platform fails verification with a reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from proofs.cca import CcaTrustAnchors, parse_trust_anchor_store
from proofs.collateral_source import AmdCollateralRequest, IntelCollateralRequest
from proofs.errors import CollateralError, CollateralUnavailable
from proofs.intel_collateral import IntelCollateral
from proofs.sev_snp_verify import AmdCollateral


@dataclass(frozen=True)
class CollateralDirectory:
    path: Path

    def _read(self, name: str) -> bytes:
        try:
            return (self.path / name).read_bytes()
        except OSError as exc:
            raise CollateralError(f"collateral {name} not readable in {self.path}: {exc}") from exc

    def _read_optional(self, name: str) -> bytes | None:
        return self._read(name) if (self.path / name).is_file() else None

    def intel_collateral(self, request: IntelCollateralRequest, at: datetime) -> IntelCollateral:
        if not any((self.path / n).is_file() for n in ("tcb_info.json", "qe_identity.json")):
            # A bare quote (or one from an RA-TLS certificate): verified crypto-only.
            raise CollateralUnavailable(f"no Intel collateral (tcb_info.json) in {self.path}")
        return IntelCollateral(
            tcb_info_body=self._read("tcb_info.json"),
            qe_identity_body=self._read("qe_identity.json"),
            tcb_signing_chain_pem=self._read("tcb_signing_chain.pem"),
            root_ca_crl=self._read("root_ca_crl.der"),
            pck_crl=self._read_optional("pck_crl.der"),
            pck_crl_issuer_chain_pem=self._read_optional("pck_crl_issuer_chain.pem"),
        )

    def amd_collateral(self, request: AmdCollateralRequest, at: datetime) -> AmdCollateral:
        vek = self._read_optional("vcek.der") or self._read_optional("vlek.der")
        if vek is None:
            raise CollateralError(f"no vcek.der or vlek.der in {self.path}")
        return AmdCollateral(
            vek_der=vek,
            ask_ark_pem=self._read_optional("ask_ark.pem"),
            crl_der=self._read_optional("crl.der"),
        )

    def rim(self, rim_id: str) -> bytes:
        """An NVIDIA RIM (signed SWID tag) named `<rim id>.swidtag`, for `SignedRimSource`."""
        if "/" in rim_id or rim_id.startswith("."):
            raise CollateralError(f"RIM id {rim_id!r} is not a file name")
        return self._read(f"{rim_id}.swidtag")

    def cca_trust_anchors(self, at: datetime) -> CcaTrustAnchors:
        store = self._read_optional("tastore.json")
        if store is None:
            raise CollateralUnavailable(f"no CCA trust anchor store (tastore.json) in {self.path}")
        return parse_trust_anchor_store(store)

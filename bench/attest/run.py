"""Benchmark: evidence verification per kind with a warm collateral cache, against dcap-qvl
called directly on the same Intel quotes in the same run.

Run from the repository root: ``.venv/bin/python bench/attest/run.py``.
Prints a table, then as its last line one JSON object with the figures.

"ours" is the whole `proofs.evidence.verify_evidence` call a verifier makes (kind detection,
parsing, collateral lookup in a warm `CachedCollateralSource`, verification, claims). "dcap-qvl"
is `dcap_qvl.verify_with_root_ca` alone, with its collateral object built once outside the
timing. It is compared only on cases dcap-qvl accepts (not debug, with a PCK CRL); the others
run our own engine and are listed without a ratio. Each Intel case is also timed crypto-only
(no collateral: quote, QE report and PCK chain), and Arm's example CCA token with its trust
anchor store. Medians of interleaved runs, so drift in machine load hits both sides alike.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import dcap_qvl
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.utils import CryptographyDeprecationWarning

from proofs.collateral_directory import CollateralDirectory
from proofs.collateral_source import CachedCollateralSource, NoCollateral
from proofs.evidence import verify_evidence
from proofs.intel_collateral import split_signed_document
from proofs.nvidia_verify import create_nvidia_evidence
from proofs.pinned_roots import INTEL_SGX_ROOT_CA_PEM
from proofs.sim import create_sim_evidence

REPOSITORY = Path(__file__).resolve().parents[2]
DEFAULT_TESTDATA = REPOSITORY / "tests" / "data" / "attestation"
NVIDIA_DATA = REPOSITORY / "tests" / "unit" / "proofs" / "data" / "nvidia"
CCA_DATA = REPOSITORY / "tests" / "data" / "attestation-cca"
GOAL_INTEL_RATIO = 1.2
GOAL_SNP_MS = 2.0


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _median_pair(
    ours: Callable[[], Any], theirs: Callable[[], Any] | None, rounds: int
) -> tuple[float, float | None]:
    ours_s: list[float] = []
    theirs_s: list[float] = []
    for _ in range(rounds):
        start = time.perf_counter()
        ours()
        ours_s.append(time.perf_counter() - start)
        if theirs is not None:
            start = time.perf_counter()
            theirs()
            theirs_s.append(time.perf_counter() - start)
    return statistics.median(ours_s), statistics.median(theirs_s) if theirs_s else None


def _direct_dcap_qvl(folder: Path, quote: bytes, at: datetime) -> Callable[[], Any] | None:
    """dcap-qvl on its own, or None where it refuses the case (debug, no PCK CRL)."""
    if not (folder / "pck_crl.der").is_file():
        return None
    tcb = split_signed_document((folder / "tcb_info.json").read_bytes(), "tcbInfo", "TCB info")
    qe = split_signed_document(
        (folder / "qe_identity.json").read_bytes(), "enclaveIdentity", "QE identity"
    )
    signing_chain = (folder / "tcb_signing_chain.pem").read_text()
    collateral = dcap_qvl.QuoteCollateralV3(
        (folder / "pck_crl_issuer_chain.pem").read_text(),
        (folder / "root_ca_crl.der").read_bytes(),
        (folder / "pck_crl.der").read_bytes(),
        signing_chain,
        tcb.signed_bytes.decode(),
        tcb.signature,
        signing_chain,
        qe.signed_bytes.decode(),
        qe.signature,
    )
    root = x509.load_pem_x509_certificate(INTEL_SGX_ROOT_CA_PEM).public_bytes(Encoding.DER)
    timestamp = int(at.timestamp())

    def call() -> Any:
        return dcap_qvl.verify_with_root_ca(quote, collateral, root, timestamp)

    try:
        call()
    except ValueError:
        return None
    return call


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--testdata", type=Path, default=DEFAULT_TESTDATA)
    parser.add_argument("--rounds", type=int, default=151)
    args = parser.parse_args()
    # A real VCEK has a non-positive serial; cryptography warns on loading it.
    warnings.filterwarnings("ignore", category=CryptographyDeprecationWarning)

    rows: list[dict[str, Any]] = []
    for folder in sorted(p for p in args.testdata.iterdir() if (p / "case.json").is_file()):
        case = json.loads((folder / "case.json").read_text())
        at = _time(case["verify_at"])
        evidence_file = folder / ("quote.bin" if (folder / "quote.bin").is_file() else "report.bin")
        data = evidence_file.read_bytes()
        cache = CachedCollateralSource(CollateralDirectory(folder))
        verified = verify_evidence(data, cache, at)  # warms the cache

        def ours(
            data: bytes = data, cache: CachedCollateralSource = cache, at: datetime = at
        ) -> Any:
            return verify_evidence(data, cache, at)

        theirs = _direct_dcap_qvl(folder, data, at) if case["kind"] != "sev-snp" else None
        ours_s, theirs_s = _median_pair(ours, theirs, args.rounds)
        engine = getattr(verified.detail, "engine", "capacloud")
        rows.append(
            {
                "case": folder.name,
                "kind": case["kind"],
                "engine": engine,
                "ours_ms": ours_s * 1e3,
                "dcap_qvl_ms": theirs_s * 1e3 if theirs_s is not None else None,
                "ratio": ours_s / theirs_s if theirs_s else None,
            }
        )

        if case["kind"] != "sev-snp":
            # Crypto-only: the same quote handed over without collateral (RA-TLS, bare quote).
            bare_s, _ = _median_pair(
                lambda data=data, at=at: verify_evidence(data, NoCollateral(), at),  # type: ignore[misc]
                None,
                args.rounds,
            )
            rows.append(
                {
                    "case": folder.name,
                    "kind": f"{case['kind']}-crypto-only",
                    "engine": "capacloud",
                    "ours_ms": bare_s * 1e3,
                    "dcap_qvl_ms": None,
                    "ratio": None,
                }
            )

    cca_source = CachedCollateralSource(CollateralDirectory(CCA_DATA))
    cca_token = (CCA_DATA / "cca-example-token.cbor").read_bytes()
    cca_at = datetime(2025, 1, 1, tzinfo=UTC)
    cca_s, _ = _median_pair(
        lambda: verify_evidence(cca_token, cca_source, cca_at), None, args.rounds
    )
    rows.append(
        {
            "case": "cca-fvp",
            "kind": "cca",
            "engine": "capacloud",
            "ours_ms": cca_s * 1e3,
            "dcap_qvl_ms": None,
            "ratio": None,
        }
    )

    gpu = create_nvidia_evidence(
        bytes.fromhex((NVIDIA_DATA / "hopperAttestationReport.txt").read_text()),
        (NVIDIA_DATA / "hopperCertChain.txt").read_bytes(),
    )
    gpu_at = datetime(2024, 1, 1, tzinfo=UTC)
    sim = create_sim_evidence(b"\x11" * 32, b"\x42" * 32, b"\x01" * 64, gpu_at)
    for name, kind, data in (("nvidia-h100", "nvidia-cc", gpu), ("sim", "sim", sim)):
        ours_s, _ = _median_pair(
            lambda data=data: verify_evidence(data, None, gpu_at),  # type: ignore[arg-type,misc]
            None,
            args.rounds,
        )
        rows.append(
            {
                "case": name,
                "kind": kind,
                "engine": "capacloud",
                "ours_ms": ours_s * 1e3,
                "dcap_qvl_ms": None,
                "ratio": None,
            }
        )

    print(
        f"attest bench: median of {args.rounds} interleaved runs, warm collateral cache, "
        f"{platform.python_implementation()} {platform.python_version()}, dcap-qvl 0.7.0"
    )
    print(f"{'case':<13}{'kind':<17}{'engine':<11}{'ours ms':>9}{'dcap-qvl ms':>13}{'ratio':>8}")
    for row in rows:
        theirs = f"{row['dcap_qvl_ms']:.3f}" if row["dcap_qvl_ms"] is not None else "-"
        ratio = f"{row['ratio']:.2f}x" if row["ratio"] is not None else "-"
        print(
            f"{row['case']:<13}{row['kind']:<17}{row['engine']:<11}"
            f"{row['ours_ms']:>9.3f}{theirs:>13}{ratio:>8}"
        )

    per_kind: dict[str, float] = {}
    for kind in dict.fromkeys(row["kind"] for row in rows):
        per_kind[kind] = statistics.median(r["ours_ms"] for r in rows if r["kind"] == kind)
    ratios = [r["ratio"] for r in rows if r["ratio"] is not None]
    worst_ratio = max(ratios) if ratios else None
    snp_worst = max((r["ours_ms"] for r in rows if r["kind"] == "sev-snp"), default=0.0)
    print(
        "per kind, median ms: " + ", ".join(f"{k} {v:.3f}" for k, v in per_kind.items()) + "; "
        f"Intel worst ratio {worst_ratio:.2f}x (goal <= {GOAL_INTEL_RATIO}x); "
        f"SEV-SNP worst {snp_worst:.3f} ms (goal <= {GOAL_SNP_MS} ms)"
    )
    figures = {
        "rounds": args.rounds,
        "per_kind_median_ms": {k: round(v, 4) for k, v in per_kind.items()},
        "cases": [
            {k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}
            for row in rows
        ],
        "intel_worst_ratio": round(worst_ratio, 3) if worst_ratio is not None else None,
        "intel_goal_met": worst_ratio is not None and worst_ratio <= GOAL_INTEL_RATIO,
        "snp_worst_ms": round(snp_worst, 4),
        "snp_goal_met": snp_worst <= GOAL_SNP_MS,
    }
    print(json.dumps(figures, sort_keys=True))


if __name__ == "__main__":
    main()

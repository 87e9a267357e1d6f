"""Collateral parsers and the verifiers that read collateral (TCB info, QE identity, signed PCS
documents, CRLs, TCB signing and PCK CRL issuer chains, AMD VEKs and ASK/ARK chains) fuzzed
with hypothesis: malformed input raises only our error types, never a library's."""

from __future__ import annotations

import contextlib
import dataclasses
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from fuzz_inputs import Edit, damage, damage_pem_chain, edits, json_values
from hypothesis import example, given
from hypothesis import strategies as st

from proofs.certificates import load_crl
from proofs.collateral_directory import CollateralDirectory
from proofs.errors import CollateralError, MalformedEvidence, ProofError
from proofs.intel_collateral import (
    parse_qe_identity,
    parse_tcb_info,
    split_signed_document,
)
from proofs.intel_verify import verify_intel_quote
from proofs.nvidia_verify import parse_nvidia_evidence
from proofs.sev_snp_verify import verify_snp_report
from proofs.sim import parse_sim_evidence

pytestmark = pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")

TESTDATA = Path(__file__).resolve().parents[2] / "data" / "attestation"
TCB_BODIES = [(TESTDATA / c / "tcb_info.json").read_bytes() for c in ("sgx-1", "tdx-4", "tdx-1")]
QE_BODIES = [(TESTDATA / c / "qe_identity.json").read_bytes() for c in ("sgx-1", "tdx-4")]
CRLS = [
    (TESTDATA / c / n).read_bytes()
    for c in ("sgx-1", "tdx-1")
    for n in ("pck_crl.der", "root_ca_crl.der")
]
INTEL_CASES = sorted(p.parent.name for p in TESTDATA.glob("*/quote.bin"))
SNP_CASES = sorted(p.parent.name for p in TESTDATA.glob("*/report.bin"))
INTEL_FIELDS = (
    "tcb_info_body",
    "qe_identity_body",
    "tcb_signing_chain_pem",
    "root_ca_crl",
    "pck_crl",
    "pck_crl_issuer_chain_pem",
)
PEM_FIELDS = ("tcb_signing_chain_pem", "pck_crl_issuer_chain_pem", "ask_ark_pem")


def _verify_at(name: str) -> datetime:
    case = json.loads((TESTDATA / name / "case.json").read_text())
    return datetime.fromisoformat(case["verify_at"].replace("Z", "+00:00"))


def _damaged_field(raw: bytes, field: str, in_der: bool, index: int, changes: list[Edit]) -> bytes:
    if field in PEM_FIELDS and in_der:
        return damage_pem_chain(raw, index, changes)
    return damage(raw, changes)


def _content(body: bytes, key: str) -> dict[str, Any]:
    content: dict[str, Any] = json.loads(body)[key]
    return content


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key / index path into a JSON value, so a fuzzer can replace any node."""
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, child in value.items():
            found += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += _paths(child, (*prefix, index))
    return found


def _replaced(document: Any, path: tuple[Any, ...], new: Any) -> Any:
    copy = json.loads(json.dumps(document))
    target = copy
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = new
    return copy


def _mutated_content(draw: st.DrawFn, bodies: list[bytes], key: str) -> dict[str, Any]:
    content = _content(draw(st.sampled_from(bodies)), key)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(content)))
        content = _replaced(content, path, draw(json_values))
    return content


@st.composite
def mutated_tcb_info(draw: st.DrawFn) -> dict[str, Any]:
    return _mutated_content(draw, TCB_BODIES, "tcbInfo")


@st.composite
def mutated_qe_identity(draw: st.DrawFn) -> dict[str, Any]:
    return _mutated_content(draw, QE_BODIES, "enclaveIdentity")


def test_real_documents_parse() -> None:
    for body in TCB_BODIES:
        parse_tcb_info(split_signed_document(body, "tcbInfo", "TCB info").content)
    for body in QE_BODIES:
        parse_qe_identity(split_signed_document(body, "enclaveIdentity", "QE").content)


@pytest.mark.fuzz
@given(mutated_tcb_info())
def test_tcb_info_parser_raises_only_collateral_errors(content: dict[str, Any]) -> None:
    with contextlib.suppress(CollateralError):
        parse_tcb_info(content)


@pytest.mark.fuzz
@given(mutated_qe_identity())
def test_qe_identity_parser_raises_only_collateral_errors(content: dict[str, Any]) -> None:
    with contextlib.suppress(CollateralError):
        parse_qe_identity(content)


@pytest.mark.fuzz
@given(st.dictionaries(st.text(max_size=15), json_values, max_size=8))
def test_parsers_on_arbitrary_objects(content: dict[str, Any]) -> None:
    for parse in (parse_tcb_info, parse_qe_identity):
        with contextlib.suppress(CollateralError):
            parse(content)


@pytest.mark.fuzz
@given(
    body=st.sampled_from(TCB_BODIES + QE_BODIES),
    cut=st.floats(0, 1),
    position=st.floats(0, 0.999),
    value=st.integers(0, 255),
)
def test_signed_document_splitter_on_damaged_bodies(
    body: bytes, cut: float, position: float, value: int
) -> None:
    damaged = bytearray(body[: int(len(body) * cut)] or body)
    damaged[int(position * len(damaged))] = value
    key = "tcbInfo" if b'"tcbInfo"' in body else "enclaveIdentity"
    with contextlib.suppress(CollateralError):
        document = split_signed_document(bytes(damaged), key, "document")
        (parse_tcb_info if key == "tcbInfo" else parse_qe_identity)(document.content)


def test_deeply_nested_json_is_a_collateral_error() -> None:
    body = b'{"tcbInfo":' + b"[" * 100_000 + b"]" * 100_000 + b', "signature": "00"}'
    with pytest.raises(CollateralError):
        split_signed_document(body, "tcbInfo", "TCB info")
    deep_evidence = b'{"format": "capacloud-nvidia-gpu-evidence", "x": ' + b"[" * 3000 + b"]" * 3000
    with pytest.raises(MalformedEvidence):
        parse_nvidia_evidence(deep_evidence + b"}")
    with pytest.raises(MalformedEvidence):
        parse_sim_evidence(b'{"format": "capacloud-sim-evidence", "x": ' + b"[" * 1000 + b"]}")


@pytest.mark.fuzz
@given(st.binary(max_size=400) | st.text(max_size=200).map(str.encode))
def test_signed_document_splitter_on_arbitrary_bytes(body: bytes) -> None:
    with contextlib.suppress(CollateralError):
        split_signed_document(body, "tcbInfo", "TCB info")


@pytest.mark.fuzz
@given(
    crl=st.sampled_from(CRLS),
    cut=st.integers(0, 600),
    position=st.floats(0, 0.999),
    value=st.integers(1, 255),
)
# Found on fresh clones: the CRL version (byte 10) set to 0, cryptography's InvalidVersion; the
# issuer's UTF8String tag (byte 34) turned BIT STRING, "oid must be X500_UNIQUE_IDENTIFIER".
@example(crl=CRLS[0], cut=0, position=10.5 / len(CRLS[0]), value=1)
@example(crl=CRLS[0], cut=0, position=34.5 / len(CRLS[0]), value=15)
def test_damaged_crls_raise_only_our_errors(
    crl: bytes, cut: int, position: float, value: int
) -> None:
    damaged = bytearray(crl[:cut] or crl)
    damaged[int(position * len(damaged))] ^= value
    with contextlib.suppress(ProofError):
        load_crl(bytes(damaged), "CRL")


@pytest.mark.fuzz
@given(
    field=st.sampled_from(["tcb_info_body", "qe_identity_body", "pck_crl", "root_ca_crl"]),
    position=st.floats(0, 0.999),
    value=st.integers(1, 255),
)
@example(field="root_ca_crl", position=0.03125, value=1)
@example(field="pck_crl", position=34.5 / len(CRLS[0]), value=15)
def test_damaged_collateral_fails_verification_with_our_errors(
    field: str, position: float, value: int
) -> None:
    at = datetime.fromisoformat("2025-08-15T05:45:00+00:00")
    collateral = CollateralDirectory(TESTDATA / "sgx-1").intel_collateral(None, at)  # type: ignore[arg-type]
    raw = bytearray(getattr(collateral, field))
    raw[int(position * len(raw))] ^= value
    damaged = dataclasses.replace(collateral, **{field: bytes(raw)})
    quote = (TESTDATA / "sgx-1" / "quote.bin").read_bytes()
    with contextlib.suppress(ProofError):
        verify_intel_quote(quote, damaged, at)


@pytest.mark.fuzz
@given(
    name=st.sampled_from(INTEL_CASES),
    field=st.sampled_from(INTEL_FIELDS),
    in_der=st.booleans(),
    index=st.integers(0, 1),
    changes=edits(),
)
@example(name="sgx-1", field="pck_crl", in_der=False, index=0, changes=[("xor", 34, 15)])
@example(name="sgx-1", field="root_ca_crl", in_der=False, index=0, changes=[("xor", 9, 1)])
def test_damaged_intel_collateral_raises_only_our_errors(
    name: str, field: str, in_der: bool, index: int, changes: list[Edit]
) -> None:
    """Every collateral file of every Intel case, damaged as bytes or inside a chain's DER."""
    at = _verify_at(name)
    collateral = CollateralDirectory(TESTDATA / name).intel_collateral(None, at)  # type: ignore[arg-type]
    raw = getattr(collateral, field)
    if raw is None:  # tdxv5-1 has no PCK CRL
        return
    damaged = dataclasses.replace(
        collateral, **{field: _damaged_field(raw, field, in_der, index, changes)}
    )
    quote = (TESTDATA / name / "quote.bin").read_bytes()
    with contextlib.suppress(ProofError):
        verify_intel_quote(quote, damaged, at)


@pytest.mark.fuzz
@given(
    name=st.sampled_from(SNP_CASES),
    field=st.sampled_from(("vek_der", "ask_ark_pem")),
    in_der=st.booleans(),
    index=st.integers(0, 1),
    changes=edits(),
)
def test_damaged_amd_collateral_raises_only_our_errors(
    name: str, field: str, in_der: bool, index: int, changes: list[Edit]
) -> None:
    at = _verify_at(name)
    collateral = CollateralDirectory(TESTDATA / name).amd_collateral(None, at)  # type: ignore[arg-type]
    raw = getattr(collateral, field)
    damaged = dataclasses.replace(
        collateral, **{field: _damaged_field(raw, field, in_der, index, changes)}
    )
    report = (TESTDATA / name / "report.bin").read_bytes()
    with contextlib.suppress(ProofError):
        verify_snp_report(report, damaged, at)

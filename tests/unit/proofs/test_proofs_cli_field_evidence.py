"""`capa attest verify` on evidence as it arrives from the field: a quote with no collateral,
collateral valid at different instants, a CCA token."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from node.cli.attest import attest_app

pytestmark = pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")

DATA = Path(__file__).resolve().parents[2] / "data"
TESTDATA = DATA / "attestation"
INTEL_CASES = sorted(p.parent.name for p in TESTDATA.glob("*/quote.bin"))

app = typer.Typer()
app.add_typer(attest_app, name="attest")


def _verify(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["attest", "verify", *args])
    return result.exit_code, result.output


@pytest.mark.parametrize("name", INTEL_CASES)
def test_a_quote_without_collateral_is_verified_crypto_only(name: str, tmp_path: Path) -> None:
    shutil.copy(TESTDATA / name / "quote.bin", tmp_path / "quote.bin")
    at = json.loads((TESTDATA / name / "case.json").read_text())["verify_at"]
    code, output = _verify(str(tmp_path), "--at", at, "--json")
    assert code == 0, output
    document = json.loads(output)
    assert document["tcb_status"] is None and document["advisory_ids"] is None
    assert not document["accepted"]
    assert "TCB status unknown: verified without collateral (crypto-only)" in document["reasons"]


def test_a_crypto_only_quote_with_a_broken_signature_is_not_verified(tmp_path: Path) -> None:
    quote = bytearray((TESTDATA / "sgx-1" / "quote.bin").read_bytes())
    quote[48 + 64] ^= 1  # MRENCLAVE
    (tmp_path / "quote.bin").write_bytes(bytes(quote))
    code, output = _verify(str(tmp_path), "--at", "2025-08-15T05:45:00Z")
    assert code == 1 and "evidence NOT verified" in output and "signature" in output


def test_collateral_without_a_common_instant_is_checked_file_by_file() -> None:
    case = DATA / "attestation-split" / "tdxv5-split"
    code, output = _verify(str(case), "--json")
    assert code == 0, output
    assert json.loads(output)["tcb_status"] == "UpToDate"
    # At one instant it cannot verify: the QE identity was issued months later.
    code, output = _verify(str(case), "--at", "2025-06-15T00:00:00Z")
    assert code == 1 and "QE identity not yet issued" in output


def test_a_cca_token_is_verified_and_judged() -> None:
    code, output = _verify(str(DATA / "attestation-cca"), "--json")
    assert code == 0, output
    document = json.loads(output)
    assert document["kind"] == "cca" and document["insecure"] and not document["accepted"]
    assert document["cca"]["lifecycle"] == "secured"
    assert "not hardware" in " ".join(document["reasons"])
    code, output = _verify(str(DATA / "attestation-cca"))
    assert code == 0 and "INSECURE" in output and "not hardware" in output

"""TEE kinds and TCB statuses are wire values: proofs/, scheduler/ and the contracts agree.

proofs/ and scheduler/ are independent pure libraries, so each names these values itself;
this test is what keeps the three spellings one vocabulary.
"""

from __future__ import annotations

import re
from pathlib import Path

import proofs.claims as proofs_claims
import scheduler.models as scheduler_models

CAPA_TYPES = Path(__file__).resolve().parents[2] / "contracts" / "src" / "CapaTypes.sol"


def _solidity_constants(library: str) -> dict[str, int]:
    source = CAPA_TYPES.read_text()
    body = re.search(rf"library {library} \{{(.*?)\n\}}", source, re.S)
    assert body is not None, f"library {library} not found in CapaTypes.sol"
    found = re.findall(r"uint8 internal constant (\w+) = (\d+);", body.group(1))
    return {name: int(value) for name, value in found if name != "MAX"}


def test_tee_kinds_agree() -> None:
    on_chain = _solidity_constants("TeeKind")
    assert {k.name: k.value for k in proofs_claims.TeeKind} == on_chain
    assert {k.name: k.value for k in scheduler_models.TeeKind} == on_chain


def test_tcb_statuses_agree() -> None:
    on_chain = _solidity_constants("TcbStatus")
    assert {s.name: s.value for s in proofs_claims.TcbStatus} == on_chain
    assert {s.name: s.value for s in scheduler_models.TcbStatus} == on_chain

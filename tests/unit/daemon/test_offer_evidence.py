"""GET /v1/offers on a client: each offer carries this daemon's own check of the enclave key
it names (what `capa offers` shows as evidence), from the verdicts its checker records."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from node.api.models import EvidenceCheck, OfferList, enclave_key_of
from node.daemon.api_backend import DaemonApiBackend
from node.daemon.client_offers import EvidenceVerdicts

KEY = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
OTHER = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"


def offer_row(enclave_key: str, nonce: int) -> dict[str, Any]:
    body = {"signed": {"offer": {"enclaveKey": enclave_key, "nonce": nonce}}}
    return {
        "offer_key": f"{KEY}:{nonce}",
        "provider": KEY,
        "nonce": str(nonce),
        "price": "1",
        "valid_until": 2,
        "tee_kind": 2,
        "peer_id": "12D3KooW",
        "body": json.dumps(body),
        "seen_seq": nonce,
    }


class OfferStore:
    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows

    def query(self, table: str, *, where: dict[str, str], limit: int) -> list[dict[str, Any]]:
        return self.rows[:limit] if table == "offers" else []


def test_offers_carry_the_clients_own_check_of_their_enclave_key(tmp_path: Path) -> None:
    verdicts = EvidenceVerdicts()
    verdicts.record(KEY, True, 1_000)  # checks are kept by lower-cased key
    verdicts.record(OTHER.lower(), False, 2_000)
    rows = [offer_row(KEY, 1), offer_row(OTHER, 2), offer_row("0x" + "11" * 20, 3)]
    rows.append({**offer_row(KEY, 4), "body": "not a listing"})
    backend = DaemonApiBackend(
        None,  # type: ignore[arg-type]  # offers are read from the store alone
        OfferStore(rows),  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        None,
        None,
        data_dir=tmp_path,
        evidence_of=verdicts.checked,
    )
    offers = OfferList.model_validate({"offers": backend.rows("offers", {}, 10)}).offers
    assert [(o.evidence, o.evidence_checked_at) for o in offers] == [
        (EvidenceCheck.VERIFIED, 1_000),
        (EvidenceCheck.REFUSED, 2_000),
        (EvidenceCheck.UNCHECKED, 0),
        (EvidenceCheck.UNCHECKED, 0),  # a body that names no key: nothing claimed for it
    ]


def test_the_enclave_key_of_a_stored_listing() -> None:
    assert enclave_key_of(offer_row(KEY, 1)["body"]) == KEY
    for body in ("", "[]", '{"signed": {}}', '{"signed": {"offer": {"enclaveKey": 5}}}'):
        assert enclave_key_of(body) is None

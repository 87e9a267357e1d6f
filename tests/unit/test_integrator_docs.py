"""docs/integrators.md stays true to the contracts: every event explained, every EIP-712 type
and domain as the contracts hash it, every state-changing function in the gas tables, and
the exit codes as the CLI defines them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from node.chain.artifacts import DEPLOYABLE_CONTRACTS, load_artifact
from node.chain.typed_data import JobRequest, Offer
from node.cli.output import ExitCode
from proofs import receipts

DOC = (Path(__file__).resolve().parents[2] / "docs" / "integrators.md").read_text()


def _section(title: str) -> str:
    start = DOC.index(f"\n## {title}")
    end = DOC.find("\n## ", start + 1)
    return DOC[start : end if end != -1 else None]


def _abi(kind: str) -> list[tuple[str, dict]]:  # type: ignore[type-arg]
    return [
        (name, item)
        for name in DEPLOYABLE_CONTRACTS
        for item in load_artifact(name).abi
        if item["type"] == kind
    ]


@pytest.mark.parametrize(
    ("contract", "event"), _abi("event"), ids=lambda v: v if isinstance(v, str) else v["name"]
)
def test_every_event_is_explained_with_its_fields(contract: str, event: dict) -> None:  # type: ignore[type-arg]
    events = _section("Events")
    table = events[events.index(f"**{contract}**") :]
    fields = ", ".join(p["name"] + ("*" if p["indexed"] else "") for p in event["inputs"])
    assert f"`{event['name']}({fields})`" in table.split("\n**", 1)[0], (
        f"{contract}.{event['name']} is not in docs/integrators.md with fields ({fields})"
    )


def test_every_type_and_domain_is_the_contracts() -> None:
    section = _section("EIP-712: domains and types")
    for encoded in (
        receipts.TASK_TYPE,
        receipts.RESULT_TYPE,
        receipts.RESULT_BATCH_TYPE,
        receipts.INPUT_RECEIPT_TYPE,
        receipts.KEY_ATTESTATION_TYPE,
        Offer.TYPE.encode(),
        JobRequest.TYPE.encode(),
    ):
        assert f"`{encoded.decode()}`" in section, encoded
    for name in (receipts.JOB_MARKET_DOMAIN_NAME, receipts.ATTESTATION_VERIFIER_DOMAIN_NAME):
        assert f"`{name}` | `{receipts.DOMAIN_VERSION}`" in section


@pytest.mark.parametrize(
    ("contract", "function"),
    [(c, f) for c, f in _abi("function") if f["stateMutability"] in ("payable", "nonpayable")],
    ids=lambda v: v if isinstance(v, str) else v["name"],
)
def test_every_state_changing_function_has_a_gas_row(contract: str, function: dict) -> None:  # type: ignore[type-arg]
    gas = _section("Gas")
    table = gas[gas.index(f"**{contract}**") :].split("\n**", 1)[0]
    assert f"| `{function['name']}` |" in table


def test_the_exit_codes_are_the_clis() -> None:
    shown = _section("Quickstart")
    for code, words in (
        (ExitCode.OK, "ok"),
        (ExitCode.FAILED, "the operation failed"),
        (ExitCode.USAGE, "usage"),
        (ExitCode.UNREACHABLE, "does not answer"),
        (ExitCode.NO_PROVIDER, "no provider matches"),
    ):
        assert re.search(rf"`{int(code)}` [^`]*{words}", shown), (code, words)


def test_the_readme_lists_every_exit_code() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    table = readme[readme.index("| status | meaning |") :].split("\n\n", 1)[0]
    listed = [int(row.split("|")[1]) for row in table.splitlines()[2:]]
    assert listed == [int(code) for code in ExitCode]

"""Every custom error of the committed ABIs reads as a sentence; times as dates, amounts with
units; a revert names the contract that declares it where the called one does."""

from __future__ import annotations

from typing import Any

import pytest
from eth_abi.abi import encode

from node.chain.artifacts import DEPLOYABLE_CONTRACTS, abi_selector, abi_type, load_artifact
from node.chain.client import decode_revert
from node.chain.errors import ContractRevert
from node.chain.reverts import WORDS, explain_revert

SPECIAL = {"InsufficientBalance"}  # two errors share it: worded by contract


def _errors() -> list[tuple[str, dict[str, Any]]]:
    return [
        (name, item)
        for name in DEPLOYABLE_CONTRACTS
        for item in load_artifact(name).abi
        if item["type"] == "error"
    ]


def _sample(abi: str) -> Any:
    if abi == "address":
        return "0x00000000000000000000000000000000000000aA"
    if abi.startswith("bytes"):
        return b"\x11" * 32
    if abi == "string":
        return "text"
    if abi == "bool":
        return True
    return 1_767_225_600  # fits every uint used, and is a date


@pytest.mark.parametrize(
    ("contract", "error"), _errors(), ids=lambda v: v if isinstance(v, str) else v["name"]
)
def test_every_error_has_words_that_take_its_arguments(
    contract: str, error: dict[str, Any]
) -> None:
    name = error["name"]
    assert name in WORDS or name in SPECIAL, (
        f"{contract}.{name} has no words in node/chain/reverts.py"
    )
    args = tuple(_sample(abi_type(p)) for p in error["inputs"])
    sentence = explain_revert(ContractRevert(contract, name, args, b""))
    assert sentence and not sentence.startswith(contract), sentence
    assert name not in sentence, f"{name}: the words repeat the error's name: {sentence}"


def _revert(contract: str, name: str, *args: Any) -> ContractRevert:
    item = next(i for c, i in _errors() if c == contract and i["name"] == name)
    types = [abi_type(p) for p in item["inputs"]]
    return decode_revert(contract, abi_selector(item) + encode(types, list(args)))


def test_times_read_as_dates_and_amounts_with_units() -> None:
    assert explain_revert(_revert("JobMarket", "DeadlinePassed", 1_767_225_600)) == (
        "the deadline passed at 2026-01-01 00:00:00 UTC"
    )
    assert explain_revert(_revert("ProviderRegistry", "InsufficientStake", 3 * 10**18, 10**18)) == (
        "asked to unbond 3 ETH but only 1 ETH of the stake is free (open jobs reserve the rest)"
    )
    assert "365d" in explain_revert(
        _revert("ProviderRegistry", "UnbondingTooLong", 400 * 86400, 365 * 86400)
    )


def test_a_shared_error_is_named_after_the_called_contract() -> None:
    # ZeroAmount is declared by the registry and the market; a market call's revert says market.
    for contract in ("JobMarket", "ProviderRegistry"):
        assert _revert(contract, "ZeroAmount").contract == contract
    market = _revert("JobMarket", "InsufficientBalance", 5, 2)
    assert market.contract == "JobMarket"
    assert explain_revert(market) == "asked for 5 wei but the free balance is 2 wei"


def test_an_error_of_another_contract_names_that_contract() -> None:
    # The market calls the verifier, whose KindDisabled bubbles up through the market's call.
    revert = _revert("AttestationVerifier", "KindDisabled", 2)
    relayed = decode_revert("JobMarket", revert.raw)
    assert relayed.contract == "AttestationVerifier"
    assert explain_revert(relayed).startswith("TEE kind tdx is disabled")


def test_unknown_and_malformed_reverts_still_say_something() -> None:
    unknown = decode_revert("JobMarket", b"\xde\xad\xbe\xef")
    assert explain_revert(unknown) == "unknown error 0xdeadbeef()"
    truncated = ContractRevert("JobMarket", "DeadlinePassed", (), b"")
    assert explain_revert(truncated) == "DeadlinePassed()"

"""`capa wallet ...` on a real chain: address, balance (market balance and compensation),
deposit, withdraw; --json parsed, exit codes asserted, refusals before anything is sent."""

from __future__ import annotations

import json

from eth_account import Account
from eth_utils.crypto import keccak

from node.chain.anvil import AnvilNode
from node.chain.devnet import match_quoted, seed_provider
from node.chain.market import Market
from node.chain.typed_data import JobRequest
from node.config.model import Role

from .conftest import Actors, CliNode, advance_time, make_node

ETH = 10**18


def _json(result) -> dict:  # type: ignore[no-untyped-def]
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_address_needs_neither_password_nor_chain(client_node: CliNode) -> None:
    result = client_node.run(
        "wallet",
        "address",
        "--json",
        env={"CAPA_KEYSTORE_PASSWORD": "", "CAPA_CHAIN_RPC_URLS": "http://127.0.0.1:1"},
    )
    assert _json(result) == {"address": client_node.address}
    assert client_node.run("wallet", "address").stdout.strip() == client_node.address


def test_deposit_withdraw_and_balance(client_node: CliNode, market: Market) -> None:
    deposited = _json(client_node.run("wallet", "deposit", "1.5eth", "--json"))
    assert deposited["market_balance"] == str(3 * ETH // 2)
    balance = _json(client_node.run("wallet", "balance", "--json"))
    assert balance["market_balance"] == balance["withdrawable"] == str(3 * ETH // 2)
    assert balance["compensation"] == "0" and int(balance["account"]) > 0

    sent = market.client.w3.eth.get_transaction_count(client_node.address)
    too_much = client_node.run("wallet", "withdraw", "2eth", "--json")
    assert too_much.exit_code == 1
    assert "asked for 2 ETH but the market holds 1.5 ETH" in too_much.stderr
    assert json.loads(too_much.stdout)["error"]["exit_code"] == 1
    assert market.client.w3.eth.get_transaction_count(client_node.address) == sent

    elsewhere = Account.create().address
    part = _json(client_node.run("wallet", "withdraw", "0.5eth", "--to", elsewhere, "--json"))
    assert part["to"] == elsewhere and part["withdrawn"] == str(ETH // 2)
    assert market.client.balance(elsewhere) == ETH // 2

    everything = _json(client_node.run("wallet", "withdraw", "all", "--json"))
    assert everything["withdrawn"] == str(ETH) and len(everything["transactions"]) == 1
    assert market.balance_of(client_node.address) == 0
    empty = client_node.run("wallet", "withdraw", "all")
    assert empty.exit_code == 1 and "has nothing to withdraw" in empty.stderr

    text = client_node.run("wallet", "balance")
    assert "0 ETH (refunds, deposits, earnings)" in text.stdout


def test_compensation_from_a_slash_is_shown_and_withdrawn(
    client_node: CliNode, market: Market, actors: Actors
) -> None:
    seeded = seed_provider(
        market,
        actors.governance,
        actors.committee[:1],
        actors.provider,
        tee_kind=2,
        measurement=keccak(b"image"),
        stake=10 * ETH,
    )
    price = ETH // 10
    request = JobRequest(
        spec_hash=keccak(b"spec"),
        input_hash=keccak(b"input"),
        tee_kinds=1 << 2,
        measurement=bytes(32),
        min_tcb_status=1,
        max_price=price,
        deadline=market.latest_timestamp() + 3600,
        nonce=1,
    )
    match_quoted(market, client_node.account, seeded, request, price=price)
    job_id = market.market.functions.jobIdFor(client_node.address, 1).call()
    receipt = market.sign_input_receipt(
        actors.provider, job_id, request.spec_hash, request.input_hash
    )
    advance_time(market.client, 3601)
    market.claim_timeout(client_node.account, job_id, receipt)

    balance = _json(client_node.run("wallet", "balance", "--json"))
    assert balance["market_balance"] == str(price)  # the refund
    assert balance["compensation"] == str(price // 2)  # half the slash (the market's default)
    assert balance["withdrawable"] == str(price + price // 2)

    short = client_node.run("wallet", "withdraw", "0.12eth")
    assert short.exit_code == 1
    assert "(hint: your compensation of 0.05 ETH comes out with `capa wallet withdraw all`)" in (
        short.stderr
    )

    before = market.client.balance(client_node.address)
    taken = _json(client_node.run("wallet", "withdraw", "all", "--json"))
    assert taken["from_market"] == str(price) and taken["compensation"] == str(price // 2)
    assert len(taken["transactions"]) == 2
    assert market.compensation_of(client_node.address) == 0
    assert market.client.balance(client_node.address) > before + price
    assert _json(client_node.run("wallet", "balance", "--json"))["withdrawable"] == "0"


def test_no_funds_and_bad_amounts(
    tmp_path,
    anvil: AnvilNode,
    market: Market,  # type: ignore[no-untyped-def]
) -> None:
    poor = make_node(tmp_path / "poor", anvil, market, Role.CLIENT, funds=0)
    broke = poor.run("wallet", "deposit", "1eth")
    assert broke.exit_code == 1
    assert broke.stderr.startswith(f"capa: wallet deposit: no funds: {poor.address} cannot pay")
    assert "hint: send the account some of the chain's currency" in broke.stderr

    for bad in ("1.5", "-1", "0.1 bitcoin", "1e-30eth"):
        result = poor.run("wallet", "deposit", bad)
        assert result.exit_code == 2, (bad, result.output)
        assert result.stderr.startswith("capa: wallet deposit: "), result.stderr
    bad_to = poor.run("wallet", "withdraw", "all", "--to", "0x1234")
    assert bad_to.exit_code == 2 and "--to '0x1234' is not an address" in bad_to.stderr

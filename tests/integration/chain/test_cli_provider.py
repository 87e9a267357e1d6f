"""`capa provider ...` on a real chain with the node's keystore: every command, its --json
output, its exit codes, and the refusals the chain would make (decoded, nothing sent)."""

from __future__ import annotations

import json
import re
import socket

from eth_utils.crypto import keccak

from node.chain.anvil import AnvilNode
from node.chain.devnet import match_quoted, seed_provider
from node.chain.market import Market
from node.chain.typed_data import JobRequest, Result, sign_message
from node.config.loader import load_config
from node.keys.identity import load_identity

from .conftest import Actors, CliNode, advance_time

DATE = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} UTC")
ETH = 10**18


def _json(result) -> dict:  # type: ignore[no-untyped-def]
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _nonce(market: Market, node: CliNode) -> int:
    return market.client.w3.eth.get_transaction_count(node.address)


def test_register_stake_and_status(provider_node: CliNode, market: Market) -> None:
    before = _json(provider_node.run("provider", "status", "--json"))
    assert before["status"] == "none" and before["eligible"] is False
    assert "not registered" in before["why_not_eligible"]

    registered = _json(provider_node.run("provider", "register", "--json"))
    assert registered["stake"] == str(ETH)  # the registry's minimum by default
    identity = load_identity(load_config(provider_node.config, env={}).keys.identity)
    assert registered["peer_id"] == identity.peer_id
    assert market.provider_info(provider_node.address).peer_id == identity.peer_id_bytes

    staked = _json(provider_node.run("provider", "stake", "0.5eth", "--json"))
    assert staked["stake"] == str(ETH + ETH // 2)

    status = _json(provider_node.run("provider", "status", "--json"))
    assert status["status"] == "active" and status["eligible"] is True
    assert status["stake"] == status["free_stake"] == str(ETH + ETH // 2)
    assert status["why_not_eligible"] is None

    text = provider_node.run("provider", "status")
    assert text.exit_code == 0
    assert "1.5 ETH (minimum 1 ETH)" in text.stdout
    assert "matches this node" in text.stdout


def test_register_again_is_refused_in_words_and_nothing_is_sent(
    provider_node: CliNode, market: Market
) -> None:
    assert provider_node.run("provider", "register").exit_code == 0
    sent = _nonce(market, provider_node)
    again = provider_node.run("provider", "register", "--json")
    assert again.exit_code == 1
    line = again.stderr.strip()
    assert line == (
        f"capa: provider register: the ProviderRegistry refuses it: {provider_node.address} "
        "is registered already (an exited provider cannot register again)"
    )
    error = json.loads(again.stdout)["error"]
    assert error["exit_code"] == 1 and error["command"] == "provider register"
    assert _nonce(market, provider_node) == sent  # estimated, refused, never sent


def test_register_below_the_minimum_warns(provider_node: CliNode) -> None:
    result = provider_node.run("provider", "register", "--stake", "0.1eth")
    assert result.exit_code == 0
    assert "below the minimum 1 ETH" in result.stderr
    assert (
        "no: stake 0.1 ETH is below the minimum" in provider_node.run("provider", "status").stdout
    )


def test_unbond_then_withdraw_after_the_delay(
    provider_node: CliNode, market: Market, anvil: AnvilNode
) -> None:
    provider_node.run("provider", "register", "--stake", "2eth")
    too_much = provider_node.run("provider", "unbond", "3eth")
    assert too_much.exit_code == 1
    assert "asked to unbond 3 ETH but only 2 ETH of the stake is free" in too_much.stderr

    unbonded = _json(provider_node.run("provider", "unbond", "0.5eth", "--json"))
    assert unbonded["unbonding"] == str(ETH // 2) and unbonded["stake"] == str(ETH + ETH // 2)
    text = provider_node.run("provider", "unbond", "0.25eth")
    assert "restarts the delay" in text.stderr  # a pending unbonding is restarted: said so
    assert DATE.search(text.stdout)

    early = provider_node.run("provider", "withdraw-stake")
    assert early.exit_code == 1
    assert re.search(r"the stake unlocks at \d{4}-\d{2}-\d{2} ", early.stderr), early.stderr

    advance_time(market.client, market.unbonding_delay() + 1)
    balance = market.client.balance(provider_node.address)
    withdrawn = _json(provider_node.run("provider", "withdraw-stake", "--json"))
    assert withdrawn["withdrawn"] == str(3 * ETH // 4)
    assert market.client.balance(provider_node.address) > balance + 3 * ETH // 4 - 10**16

    nothing = provider_node.run("provider", "withdraw-stake")
    assert nothing.exit_code == 1 and "there is nothing to withdraw" in nothing.stderr


def test_unbond_all_takes_only_the_free_stake(provider_node: CliNode, market: Market) -> None:
    provider_node.run("provider", "register", "--stake", "1eth")
    assert _json(provider_node.run("provider", "unbond", "all", "--json"))["unbonded"] == str(ETH)
    none_left = provider_node.run("provider", "unbond", "all")
    assert none_left.exit_code == 1 and "no stake is free" in none_left.stderr


def test_exit_asks_for_confirmation_then_is_final(provider_node: CliNode, market: Market) -> None:
    not_registered = provider_node.run("provider", "exit", "--yes")
    assert not_registered.exit_code == 1 and "not a registered provider" in not_registered.stderr
    provider_node.run("provider", "register")
    unconfirmed = provider_node.run("provider", "exit")
    assert unconfirmed.exit_code == 2
    assert "needs confirmation (hint: add --yes)" in unconfirmed.stderr
    assert market.provider_info(provider_node.address).status.name == "ACTIVE"

    exited = _json(provider_node.run("provider", "exit", "--yes", "--json"))
    assert exited["unbonding"] == str(ETH)
    assert _json(provider_node.run("provider", "status", "--json"))["status"] == "exited"
    again = provider_node.run("provider", "register")
    assert again.exit_code == 1 and "registered already" in again.stderr


def test_earnings_count_settled_jobs(
    provider_node: CliNode, market: Market, actors: Actors
) -> None:
    seeded = seed_provider(
        market,
        actors.governance,
        actors.committee[:1],
        provider_node.account,
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
        nonce=7,
    )
    match_quoted(market, actors.client, seeded, request, price=price)
    job_id = market.market.functions.jobIdFor(actors.client.address, 7).call()
    output = keccak(b"output")
    result = Result(job_id, provider_node.address, request.spec_hash, request.input_hash, output)
    market.submit_result(
        actors.relayer,
        job_id,
        output,
        sign_message(market.market_domain, result, seeded.enclave.key),
    )

    earnings = _json(provider_node.run("provider", "earnings", "--json"))
    payout = price - price * 250 // 10_000  # the fixture's market takes 2.5%
    assert earnings["jobs_settled"] == 1 and earnings["earned"] == str(payout)
    assert earnings["withdrawable"] == str(payout)
    assert earnings["jobs"][0]["job_id"] == "0x" + bytes(job_id).hex()
    text = provider_node.run("provider", "earnings")
    assert "0.0975 ETH after the protocol fee" in text.stdout


def test_usage_errors_and_an_unreachable_chain(provider_node: CliNode) -> None:
    bad = provider_node.run("provider", "stake", "5 bananas")
    assert bad.exit_code == 2 and "unknown unit 'bananas'" in bad.stderr
    zero = provider_node.run("provider", "stake", "0")
    assert zero.exit_code == 2

    wrong = provider_node.run("provider", "register", env={"CAPA_KEYSTORE_PASSWORD": "nope"})
    assert wrong.exit_code == 2 and "did not open with the password given" in wrong.stderr

    text = provider_node.config.read_text()
    no_market = provider_node.config.with_name("no-market.toml")
    no_market.write_text(re.sub(r'market = "0x[0-9a-fA-F]+"', 'market = ""', text))
    missing = provider_node.run("provider", "status", "--config", str(no_market))
    assert missing.exit_code == 2 and "chain.market is missing" in missing.stderr

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    down = provider_node.run(
        "provider", "status", "--json", env={"CAPA_CHAIN_RPC_URLS": f"http://127.0.0.1:{port}"}
    )
    assert down.exit_code == 3
    assert "chain unreachable" in down.stderr and "connection refused" in down.stderr
    assert json.loads(down.stdout)["error"]["exit_code"] == 3
    assert "Traceback" not in down.output

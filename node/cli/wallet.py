"""`capa wallet ...`: the node's account, its balances and its money in the market.

What a client or provider can withdraw lies in two places: the market's free balance
(refunds, deposits not yet spent, earnings) and the registry's compensation (the client's
share of slashes of providers that let it down). `balance` shows both, `withdraw all` takes
both. No daemon is needed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from node.amounts import format_amount, parse_amount
from node.cli.onchain import (
    ConfigOption,
    JsonOption,
    load_settings,
    node_market,
    node_signer,
    parse_address,
    tx_fields,
)
from node.cli.output import CommandFailed, ExitCode, print_fields, print_json, reporting
from node.keys.account import keystore_address

wallet_app = typer.Typer(
    help="The node's account: its address, balances, deposits and withdrawals. "
    "Uses the node's config and keystore; no daemon needed.",
    no_args_is_help=True,
)

CONFIG = Path("capa.toml")


@wallet_app.command("address")
def address(config: ConfigOption = CONFIG, as_json: JsonOption = False) -> None:
    """The node's account address (read from the keystore; no password, no chain)."""
    with reporting("wallet address", as_json=as_json):
        settings = load_settings(config)
        account = keystore_address(settings.keys.keystore)
        if as_json:
            print_json({"address": account})
        else:
            typer.echo(account)


@wallet_app.command("balance")
def balance(config: ConfigOption = CONFIG, as_json: JsonOption = False) -> None:
    """The account's balance for gas, and what it can withdraw from the market."""
    with reporting("wallet balance", as_json=as_json):
        settings = load_settings(config)
        market = node_market(settings)
        account = keystore_address(settings.keys.keystore)
        gas = market.client.balance(account)
        free = market.balance_of(account)
        compensation = market.compensation_of(account)
        token = None if market.native else market.token_balance(account)
        if as_json:
            print_json(
                {
                    "address": account,
                    "account": str(gas),
                    "token": market.token,
                    "token_balance": None if token is None else str(token),
                    "market_balance": str(free),
                    "compensation": str(compensation),
                    "withdrawable": str(free + compensation),
                }
            )
            return
        rows = [("address", account), ("account", f"{format_amount(gas)} (pays gas)")]
        if token is not None:
            rows.append(("token", f"{format_amount(token)} of {market.token}"))
        rows += [
            ("in the market", f"{format_amount(free)} (refunds, deposits, earnings)"),
            ("compensation", f"{format_amount(compensation)} (your share of slashes)"),
            ("withdrawable", f"{format_amount(free + compensation)} (`capa wallet withdraw all`)"),
        ]
        print_fields(rows)


@wallet_app.command("deposit")
def deposit(
    amount: Annotated[str, typer.Argument(help="Amount to deposit, e.g. 0.1eth, 5gwei or wei.")],
    config: ConfigOption = CONFIG,
    as_json: JsonOption = False,
) -> None:
    """Move funds into the market's free balance, from which jobs are paid."""
    with reporting("wallet deposit", as_json=as_json):
        value = parse_amount(amount)
        if value == 0:
            raise CommandFailed("the amount is zero", code=ExitCode.USAGE)
        settings = load_settings(config)
        market = node_market(settings)
        account = node_signer(settings)
        receipt = market.deposit(account, value)
        after = market.balance_of(account.address)
        if as_json:
            print_json(
                {
                    "address": account.address,
                    "deposited": str(value),
                    "market_balance": str(after),
                    **tx_fields(receipt),
                }
            )
        else:
            typer.echo(
                f"deposited {format_amount(value)}: {format_amount(after)} in the market now"
            )


@wallet_app.command("withdraw")
def withdraw(
    amount: Annotated[
        str,
        typer.Argument(
            help="Amount, e.g. 0.1eth, taken from the market balance; or `all`: the market "
            "balance and the compensation."
        ),
    ],
    to: Annotated[
        str | None,
        typer.Option("--to", metavar="ADDRESS", help="Recipient (default: the node's account)."),
    ] = None,
    config: ConfigOption = CONFIG,
    as_json: JsonOption = False,
) -> None:
    """Withdraw refunds, unspent deposits, earnings and compensation."""
    what = "wallet withdraw"
    with reporting(what, as_json=as_json):
        everything = amount.strip().lower() == "all"
        value = 0 if everything else parse_amount(amount)
        if not everything and value == 0:
            raise CommandFailed("the amount is zero", code=ExitCode.USAGE)
        recipient = parse_address(to, "--to") if to else None
        settings = load_settings(config)
        market = node_market(settings)
        holder = keystore_address(settings.keys.keystore)
        free = market.balance_of(holder)
        compensation = market.compensation_of(holder)
        if everything:
            value = free
            if free == 0 and compensation == 0:
                raise CommandFailed(f"{holder} has nothing to withdraw")
        elif value > free:
            hint = (
                f"your compensation of {format_amount(compensation)} comes out with "
                "`capa wallet withdraw all`"
                if compensation
                else None
            )
            raise CommandFailed(
                f"asked for {format_amount(value)} but the market holds {format_amount(free)} "
                f"for {holder}",
                hint=hint,
            )
        account = node_signer(settings)
        receipts = []
        if value:
            receipts.append(market.withdraw(account, value, recipient))
        taken_compensation = compensation if everything else 0
        if taken_compensation:
            receipts.append(market.withdraw_compensation(account, recipient))
        destination = recipient or account.address
        total = value + taken_compensation
        if as_json:
            print_json(
                {
                    "address": account.address,
                    "to": destination,
                    "from_market": str(value),
                    "compensation": str(taken_compensation),
                    "withdrawn": str(total),
                    "transactions": [tx_fields(r) for r in receipts],
                }
            )
        else:
            typer.echo(f"withdrew {format_amount(total)} to {destination}")

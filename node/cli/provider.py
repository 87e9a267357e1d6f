"""`capa provider ...`: everything a provider does on chain, with the node's own keystore.

No daemon is needed: these commands read the config for the RPC endpoints, the market and
the keystore, and send their transactions themselves (estimated first: what the chain would
refuse is not sent, and the reason is printed in words).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from node.amounts import format_amount, parse_amount
from node.chain.market import Market, ProviderInfo, ProviderStatus
from node.cli.onchain import (
    ConfigOption,
    JsonOption,
    YesOption,
    load_settings,
    node_market,
    node_signer,
    tx_fields,
)
from node.cli.output import (
    CommandFailed,
    ExitCode,
    confirm,
    print_fields,
    print_json,
    reporting,
    warn,
)
from node.keys.account import keystore_address
from node.keys.identity import load_identity
from node.times import format_duration, format_timestamp

provider_app = typer.Typer(
    help="Your provider on chain: register, stake, unbond, exit, status, earnings. "
    "Uses the node's config and keystore; no daemon needed.",
    no_args_is_help=True,
)

CONFIG = Path("capa.toml")


def _amount(text: str) -> int:
    amount = parse_amount(text)
    if amount == 0:
        raise CommandFailed("the amount is zero", code=ExitCode.USAGE)
    return amount


def _status_json(info: ProviderInfo, minimum: int, delay: int, balance: int) -> dict[str, object]:
    return {
        "provider": info.address,
        "status": info.status.name.lower(),
        "eligible": info.eligible,
        "stake": str(info.stake),
        "free_stake": str(info.free_stake),
        "locked_stake": str(info.locked_stake),
        "min_stake": str(minimum),
        "unbonding": str(info.unbonding),
        "unlock_at": info.unlock_at or None,
        "unbonding_delay": delay,
        "slashed": str(info.slashed),
        "registered_at": info.registered_at or None,
        "peer_id": "0x" + info.peer_id.hex(),
        "earnings": str(balance),
    }


def _why_not_eligible(info: ProviderInfo, minimum: int) -> str | None:
    if info.status is ProviderStatus.NONE:
        return "not registered (`capa provider register`)"
    if info.status is ProviderStatus.JAILED:
        return "jailed by governance"
    if info.status is ProviderStatus.EXITED:
        return "exited (for good)"
    if info.stake < minimum:
        return (
            f"stake {format_amount(info.stake)} is below the minimum {format_amount(minimum)} "
            "(`capa provider stake`)"
        )
    return None


@provider_app.command("register")
def register(
    config: ConfigOption = CONFIG,
    stake: Annotated[
        str | None,
        typer.Option(
            "--stake",
            metavar="AMOUNT",
            help="Stake to lock, e.g. 1eth or 500gwei (default: the registry's minimum).",
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Register this node's account as a provider, with its libp2p peer id and a stake."""
    what = "provider register"
    with reporting(what, as_json=as_json):
        settings = load_settings(config)
        identity = load_identity(settings.keys.identity)
        market = node_market(settings)
        minimum = market.min_stake()
        amount = minimum if stake is None else _amount(stake)
        if amount < minimum:
            warn(
                what,
                f"a stake of {format_amount(amount)} is below the minimum {format_amount(minimum)}: "
                "this provider takes no jobs until it stakes more",
            )
        account = node_signer(settings)
        receipt = market.register_provider(account, identity.peer_id_bytes, amount)
        result = {
            "provider": account.address,
            "stake": str(amount),
            "peer_id": identity.peer_id,
            **tx_fields(receipt),
        }
        _sent(
            as_json,
            result,
            f"registered {account.address} (peer id {identity.peer_id}) with a stake of "
            f"{format_amount(amount)} in block {result['block']}",
        )


def _sent(as_json: bool, result: dict[str, object], text: str) -> None:
    if as_json:
        print_json(result)
    else:
        typer.echo(text)


@provider_app.command("stake")
def stake(
    amount: Annotated[str, typer.Argument(help="Stake to add, e.g. 1eth, 500gwei or wei.")],
    config: ConfigOption = CONFIG,
    as_json: JsonOption = False,
) -> None:
    """Add to this provider's stake."""
    with reporting("provider stake", as_json=as_json):
        value = _amount(amount)
        settings = load_settings(config)
        market = node_market(settings)
        account = node_signer(settings)
        receipt = market.add_stake(account, value)
        total = market.provider_info(account.address).stake
        _sent(
            as_json,
            {
                "provider": account.address,
                "added": str(value),
                "stake": str(total),
                **tx_fields(receipt),
            },
            f"staked {format_amount(value)} more: the stake is now {format_amount(total)}",
        )


@provider_app.command("unbond")
def unbond(
    amount: Annotated[
        str,
        typer.Argument(
            help="Stake to unbond, e.g. 1eth, or `all` for all the stake no open job reserves."
        ),
    ],
    config: ConfigOption = CONFIG,
    as_json: JsonOption = False,
) -> None:
    """Start unbonding free stake; `capa provider withdraw-stake` takes it out once unlocked."""
    what = "provider unbond"
    with reporting(what, as_json=as_json):
        settings = load_settings(config)
        market = node_market(settings)
        account = node_signer(settings)
        before = market.provider_info(account.address)
        value = before.free_stake if amount.strip().lower() == "all" else _amount(amount)
        if value == 0:
            raise CommandFailed(
                "no stake is free to unbond (open jobs reserve it, or there is none)",
                hint="`capa provider status` shows the stake",
            )
        if before.unbonding:
            warn(
                what,
                f"{format_amount(before.unbonding)} is unbonding already: this request restarts "
                "the delay for all of it",
            )
        receipt = market.request_unbond(account, value)
        after = market.provider_info(account.address)
        _sent(
            as_json,
            {
                "provider": account.address,
                "unbonded": str(value),
                "unbonding": str(after.unbonding),
                "unlock_at": after.unlock_at,
                "stake": str(after.stake),
                **tx_fields(receipt),
            },
            f"unbonding {format_amount(after.unbonding)}: withdraw it with `capa provider "
            f"withdraw-stake` from {format_timestamp(after.unlock_at)}",
        )


@provider_app.command("withdraw-stake")
def withdraw_stake(config: ConfigOption = CONFIG, as_json: JsonOption = False) -> None:
    """Take the unbonded stake out once its unbonding delay has passed."""
    with reporting("provider withdraw-stake", as_json=as_json):
        settings = load_settings(config)
        market = node_market(settings)
        account = node_signer(settings)
        amount = market.provider_info(account.address).unbonding
        receipt = market.withdraw_unbonded(account)
        _sent(
            as_json,
            {"provider": account.address, "withdrawn": str(amount), **tx_fields(receipt)},
            f"withdrew {format_amount(amount)} of unbonded stake to {account.address}",
        )


@provider_app.command("exit")
def exit_market(
    config: ConfigOption = CONFIG, yes: YesOption = False, as_json: JsonOption = False
) -> None:
    """Leave the market for good: no new jobs; the free stake starts unbonding."""
    with reporting("provider exit", as_json=as_json):
        settings = load_settings(config)
        market = node_market(settings)
        info = market.provider_info(keystore_address(settings.keys.keystore))
        if info.status is ProviderStatus.NONE:
            raise CommandFailed(f"{info.address} is not a registered provider")
        confirm(
            f"exit {info.address} from the market for good (it cannot register again)?", yes=yes
        )
        account = node_signer(settings)
        receipt = market.exit_market(account)
        after = market.provider_info(account.address)
        text = f"exited: {account.address} takes no new jobs"
        if after.unbonding:
            text += (
                f"; {format_amount(after.unbonding)} unbonds until "
                f"{format_timestamp(after.unlock_at)}"
            )
        if after.locked_stake:
            text += (
                f"; {format_amount(after.locked_stake)} stays reserved by open jobs "
                "(`capa provider unbond all` once they end)"
            )
        _sent(
            as_json,
            {
                "provider": account.address,
                "unbonding": str(after.unbonding),
                "unlock_at": after.unlock_at or None,
                "locked_stake": str(after.locked_stake),
                **tx_fields(receipt),
            },
            text,
        )


@provider_app.command("status")
def status(config: ConfigOption = CONFIG, as_json: JsonOption = False) -> None:
    """This provider's registration, stake, unbonding and eligibility for jobs."""
    with reporting("provider status", as_json=as_json):
        settings = load_settings(config)
        market = node_market(settings)
        address = keystore_address(settings.keys.keystore)
        info = market.provider_info(address)
        minimum = market.min_stake()
        delay = market.unbonding_delay()
        balance = market.balance_of(address)
        local_peer = _local_peer_id(settings.keys.identity)
        if as_json:
            print_json(
                {
                    **_status_json(info, minimum, delay, balance),
                    "why_not_eligible": _why_not_eligible(info, minimum),
                }
            )
            return
        _print_status(market, info, minimum, delay, balance, local_peer)


def _local_peer_id(identity_path: Path) -> bytes | None:
    try:
        return load_identity(identity_path).peer_id_bytes
    except Exception:  # the status still reads without a local identity
        return None


def _print_status(
    market: Market,
    info: ProviderInfo,
    minimum: int,
    delay: int,
    balance: int,
    local_peer: bytes | None,
) -> None:
    why = _why_not_eligible(info, minimum)
    rows = [
        ("provider", info.address),
        ("status", info.status.name.lower()),
        ("takes jobs", "yes" if info.eligible else f"no: {why}"),
    ]
    if info.status is not ProviderStatus.NONE:
        rows += [
            ("stake", f"{format_amount(info.stake)} (minimum {format_amount(minimum)})"),
            ("free", format_amount(info.free_stake)),
            ("reserved", f"{format_amount(info.locked_stake)} by open jobs"),
        ]
        if info.unbonding:
            rows.append(
                (
                    "unbonding",
                    f"{format_amount(info.unbonding)}, unlocks {format_timestamp(info.unlock_at)}",
                )
            )
        if info.slashed:
            rows.append(("slashed", format_amount(info.slashed)))
        rows.append(("registered", format_timestamp(info.registered_at)))
        peer = "matches this node" if local_peer == info.peer_id else "differs from this node's"
        rows.append(("peer id", f"0x{info.peer_id.hex()[:16]}... ({peer})"))
    rows += [
        ("unbonding delay", format_duration(delay)),
        ("earnings", f"{format_amount(balance)} to withdraw (`capa wallet withdraw`)"),
        ("market", market.deployment.market),
    ]
    print_fields(rows)


@provider_app.command("earnings")
def earnings(
    config: ConfigOption = CONFIG,
    from_block: Annotated[
        int | None,
        typer.Option(
            "--from-block",
            min=0,
            metavar="BLOCK",
            help="First block to count settlements from (default: chain.start_block).",
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """What this provider earned: settled jobs, their payouts and the balance to withdraw."""
    with reporting("provider earnings", as_json=as_json):
        settings = load_settings(config)
        market = node_market(settings)
        address = keystore_address(settings.keys.keystore)
        start = settings.chain.start_block if from_block is None else from_block
        head = market.client.block_number()
        settled = market.settled_payouts(
            address, from_block=start, to_block=head, log_range=settings.chain.log_range
        )
        total = sum(payout for _, payout, _ in settled)
        balance = market.balance_of(address)
        locked = market.locked_stake_of(address)
        if as_json:
            print_json(
                {
                    "provider": address,
                    "from_block": start,
                    "to_block": head,
                    "jobs_settled": len(settled),
                    "earned": str(total),
                    "withdrawable": str(balance),
                    "locked_stake": str(locked),
                    "jobs": [
                        {"job_id": "0x" + job.hex(), "payout": str(payout), "block": block}
                        for job, payout, block in settled
                    ],
                }
            )
            return
        print_fields(
            [
                ("provider", address),
                ("jobs settled", f"{len(settled)} (blocks {start} to {head})"),
                ("earned", f"{format_amount(total)} after the protocol fee"),
                ("to withdraw", f"{format_amount(balance)} (`capa wallet withdraw`)"),
                ("stake reserved", f"{format_amount(locked)} by open jobs"),
            ]
        )

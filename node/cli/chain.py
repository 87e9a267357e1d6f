"""`capa chain ...`: deploy the contracts to any EVM chain, show a deployment, govern it.

`deploy` writes the deployment manifest (`deployments/<chain id>.json`) that `capa init
--deployment` and these commands read. The governance commands (`kind`, `measurement`,
`committee`) sign with a keystore holding the roles the deployment gave its governance;
each is estimated first, so a call the chain would refuse (a missing role, the sim kind on
a production deployment) is reported in words and never sent.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from eth_account import Account
from eth_account.signers.local import LocalAccount

from node.amounts import format_amount, parse_amount
from node.chain.anvil import DEV_PRIVATE_KEYS
from node.chain.client import ChainClient
from node.chain.deploy import MarketConfig, check_deployment_funds, deploy_market
from node.chain.manifest import LOCAL_CHAIN_IDS, record_deployment, write_manifest
from node.cli.onchain import (
    ConfigOption,
    DeploymentOption,
    JsonOption,
    KeystoreOption,
    PasswordFileOption,
    RpcUrlOption,
    Target,
    YesOption,
    keystore_signer,
    open_target,
    parse_address,
    target_signer,
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
from node.times import format_duration, format_timestamp, parse_duration, parse_time
from proofs.claims import TcbStatus, TeeKind, tee_kind_from_label
from proofs.receipts import measurement_word

chain_app = typer.Typer(
    help="The contracts: deploy them to an EVM chain, show a deployment, and govern it "
    "(TEE kind policy, measurements, verifier committee).",
    no_args_is_help=True,
)
kind_app = typer.Typer(
    help="Per-TEE-kind policy: enable a kind with its minimum TCB status, or disable it "
    "(the emergency stop for every key of that kind).",
    no_args_is_help=True,
)
measurement_app = typer.Typer(
    help="Allowlisted enclave measurements: approve (or extend), revoke (final), show.",
    no_args_is_help=True,
)
committee_app = typer.Typer(
    help="The verifier committee whose k-of-n signatures register enclave keys.",
    no_args_is_help=True,
)
chain_app.add_typer(kind_app, name="kind")
chain_app.add_typer(measurement_app, name="measurement")
chain_app.add_typer(committee_app, name="committee")

CONFIG = Path("capa.toml")
MAX_FEE_BPS = 1_000
BPS = 10_000
_TCB_NAMES = {status.name.lower().replace("_", "-"): status for status in TcbStatus}

KindArgument = Annotated[
    str, typer.Argument(metavar="KIND", help="TEE kind: sgx, tdx, sev-snp, nvidia-cc or sim.")
]
MeasurementArgument = Annotated[
    str,
    typer.Argument(
        metavar="MEASUREMENT",
        help="The enclave measurement in hex (MRENCLAVE, MRTD, SNP launch digest, ...); one "
        "longer than 32 bytes is recorded as its keccak256, as everywhere on chain.",
    ),
]


def _kind(text: str) -> int:
    try:
        return int(tee_kind_from_label(text))
    except ValueError as exc:
        raise CommandFailed(str(exc), code=ExitCode.USAGE) from None


def _tcb(text: str) -> int:
    name = text.strip().lower().replace("_", "-")
    if name in _TCB_NAMES:
        return int(_TCB_NAMES[name])
    if name.isdigit() and int(name) <= int(TcbStatus.UP_TO_DATE):
        return int(name)
    raise CommandFailed(
        f"unknown TCB status {text!r}: use one of {', '.join(_TCB_NAMES)}", code=ExitCode.USAGE
    )


def _tcb_name(value: int) -> str:
    try:
        return TcbStatus(value).name.lower().replace("_", "-")
    except ValueError:
        return str(value)


def _measurement(text: str) -> bytes:
    raw = text.strip().removeprefix("0x")
    try:
        value = bytes.fromhex(raw)
    except ValueError:
        value = b""
    if not value:
        raise CommandFailed(f"measurement {text!r} is not hex", code=ExitCode.USAGE)
    return measurement_word(value)


def _bps(value: int, flag: str, maximum: int) -> int:
    if not 0 <= value <= maximum:
        raise CommandFailed(
            f"{flag} {value}: expected 0 to {maximum} basis points", code=ExitCode.USAGE
        )
    return value


# ---------------------------------------------------------------- deploy


@chain_app.command("deploy")
def deploy(
    rpc_url: Annotated[
        str, typer.Option("--rpc-url", metavar="URL", help="JSON-RPC endpoint of the chain.")
    ] = "http://127.0.0.1:8545",
    keystore: Annotated[
        Path | None,
        typer.Option(
            "--keystore",
            metavar="FILE",
            help="Keystore of the deploying account (it pays the gas). Without it, on a local "
            "chain only, anvil's first dev account deploys.",
        ),
    ] = None,
    password_file: PasswordFileOption = None,
    chain_id: Annotated[
        int | None,
        typer.Option(
            "--chain-id", min=1, help="Refuse to deploy unless the RPC serves this chain."
        ),
    ] = None,
    governance: Annotated[
        str | None,
        typer.Option(
            "--governance",
            metavar="ADDRESS",
            help="Holds every governance role (a multisig on a real chain) [default: the deployer].",
        ),
    ] = None,
    treasury: Annotated[
        str | None,
        typer.Option(
            "--treasury", metavar="ADDRESS", help="Receives protocol fees [default: governance]."
        ),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            metavar="ADDRESS",
            help="ERC-20 the market pays and stakes in [default: the chain's native currency].",
        ),
    ] = None,
    allow_sim: Annotated[
        bool,
        typer.Option(
            "--allow-sim",
            help="Let governance enable the sim kind (no hardware, INSECURE): local chains only "
            f"({', '.join(str(c) for c in LOCAL_CHAIN_IDS)}).",
        ),
    ] = False,
    min_stake: Annotated[
        str,
        typer.Option("--min-stake", metavar="AMOUNT", help="Stake a provider needs to take jobs."),
    ] = "1eth",
    max_job_duration: Annotated[
        str, typer.Option("--max-job-duration", metavar="DURATION", help="Longest job, e.g. 24h.")
    ] = "24h",
    dispute_window: Annotated[
        str,
        typer.Option(
            "--dispute-window",
            metavar="DURATION",
            help="After a deadline, how long only the client may claim a timeout without a slash.",
        ),
    ] = "24h",
    unbonding_delay: Annotated[
        str,
        typer.Option(
            "--unbonding-delay",
            metavar="DURATION",
            help="How long unbonded stake stays slashable (at least the longest job plus the "
            "dispute window, at most 365d).",
        ),
    ] = "3d",
    fee_bps: Annotated[
        int,
        typer.Option("--fee-bps", help="Protocol fee on each payout, in basis points (max 1000)."),
    ] = 100,
    slash_bps: Annotated[
        int,
        typer.Option(
            "--slash-bps",
            help="Stake reserved per job and slashed on a proven timeout, in bps of the price.",
        ),
    ] = 10_000,
    slash_client_bps: Annotated[
        int,
        typer.Option(
            "--slash-client-bps", help="Share of a slash that goes to the client, in bps."
        ),
    ] = 5_000,
    confirmations: Annotated[
        int | None,
        typer.Option(
            "--confirmations",
            min=1,
            help="Blocks on top of the deployment before it is recorded [default: 1 on a local "
            "chain, else 2].",
        ),
    ] = None,
    timeout: Annotated[
        float,
        typer.Option(
            "--timeout", min=1, help="Seconds to wait for each receipt and the confirmations."
        ),
    ] = 300.0,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            metavar="FILE",
            help="Where to write the manifest [default: deployments/<chain id>.json].",
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace an existing manifest at the same path.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Deploy the registry, verifier and market, wired to each other; write the manifest."""
    what = "chain deploy"
    with reporting(what, as_json=as_json):
        config = MarketConfig(
            token=parse_address(token, "--token") if token else MarketConfig.token,
            min_stake=parse_amount(min_stake),
            max_job_duration=parse_duration(max_job_duration),
            dispute_window=parse_duration(dispute_window),
            unbonding_delay=parse_duration(unbonding_delay),
            fee_bps=_bps(fee_bps, "--fee-bps", MAX_FEE_BPS),
            slash_bps=_bps(slash_bps, "--slash-bps", BPS),
            slash_client_bps=_bps(slash_client_bps, "--slash-client-bps", BPS),
            sim_allowed=allow_sim,
        )
        governor = parse_address(governance, "--governance") if governance else None
        fees_to = parse_address(treasury, "--treasury") if treasury else None
        client = ChainClient(rpc_url, expected_chain_id=chain_id, receipt_timeout=timeout)
        local = client.chain_id in LOCAL_CHAIN_IDS
        if allow_sim and not local:
            raise CommandFailed(
                f"refusing --allow-sim on chain {client.chain_id}: the sim kind has no hardware "
                f"isolation (INSECURE), so only local chains ({', '.join(map(str, LOCAL_CHAIN_IDS))}) "
                "may allow it",
                code=ExitCode.USAGE,
            )
        if token and client.code_size(config.token) == 0:
            raise CommandFailed(
                f"--token {config.token}: no contract there on chain {client.chain_id}",
                code=ExitCode.USAGE,
            )
        target = out or Path("deployments") / f"{client.chain_id}.json"
        if target.exists() and not force:
            raise CommandFailed(
                f"{target} exists already: it may be the only record of a live deployment",
                hint="--out FILE for another path, or --force to replace it",
                code=ExitCode.USAGE,
            )
        deployer = _deployer(client, keystore, password_file, local, what)
        check_deployment_funds(client, deployer, config, governor or deployer.address)
        deployment = deploy_market(client, deployer, config, governance=governor, treasury=fees_to)
        depth = confirmations or (1 if local else 2)
        manifest = record_deployment(
            client,
            deployment,
            deployer=deployer.address,
            config=config,
            confirmations=depth,
            timeout=timeout,
        )
        write_manifest(target, manifest, overwrite=force)
        if as_json:
            print_json({"manifest": str(target), **manifest.to_json()})
            return
        _print_deployment(manifest.to_json(), rpc_url)
        typer.echo(f"manifest  {target}")
        if allow_sim:
            warn(what, "this deployment allows the sim kind (no hardware, INSECURE): devnets only")
        typer.echo(
            "next: enable a TEE kind and approve measurements (`capa chain kind enable KIND "
            f"--deployment {target}`), set the committee, then `capa init --deployment {target}`"
        )


def _deployer(
    client: ChainClient, keystore: Path | None, password_file: Path | None, local: bool, what: str
) -> LocalAccount:
    if keystore is not None:
        return keystore_signer(keystore, password_file)
    if not local:
        raise CommandFailed(
            f"chain {client.chain_id} is not a local chain: the deploying account is needed",
            hint="--keystore FILE",
            code=ExitCode.USAGE,
        )
    dev: LocalAccount = Account.from_key(DEV_PRIVATE_KEYS[0])
    warn(what, f"no --keystore: anvil's first dev account {dev.address} deploys")
    return dev


def _print_deployment(manifest: dict[str, object], rpc_url: str) -> None:
    from rich.console import Console
    from rich.table import Table

    contracts = manifest["contracts"]
    assert isinstance(contracts, dict)
    table = Table(title=f"CapaCloud contracts on chain {manifest['chain_id']} ({rpc_url})")
    table.add_column("contract")
    table.add_column("address")
    for name in ("ProviderRegistry", "AttestationVerifier", "JobMarket"):
        table.add_row(name, contracts[name]["address"])
    table.add_row("governance", str(manifest["governance"]))
    table.add_row("treasury", str(manifest["treasury"]))
    Console(soft_wrap=True).print(table)
    typer.echo(f"deployed in block {manifest['deploy_block']} by {manifest['deployer']}")


# ---------------------------------------------------------------- show


@chain_app.command("show")
def show(
    deployment: DeploymentOption = None,
    rpc_url: RpcUrlOption = None,
    config: ConfigOption = CONFIG,
    as_json: JsonOption = False,
) -> None:
    """A deployment as the chain has it: addresses, parameters, kind policies, committee."""
    with reporting("chain show", as_json=as_json):
        target = open_target(config, deployment, rpc_url)
        market = target.market
        found = market.deployment
        parameters = market.parameters()
        threshold, size = market.committee()
        kinds = {kind.label: market.kind_policy(int(kind)) for kind in TeeKind}
        members = market.committee_members(
            from_block=found.block_number,
            to_block=market.client.block_number(),
            log_range=target.settings.chain.log_range if target.settings else 2000,
        )
        data = {
            "chain_id": found.chain_id,
            "market": found.market,
            "registry": found.registry,
            "verifier": found.verifier,
            "governance": found.governance,
            "treasury": found.treasury,
            "token": market.token,
            "sim_allowed": market.sim_allowed(),
            "parameters": {k: (str(v) if k == "min_stake" else v) for k, v in parameters.items()},
            "committee": {"threshold": threshold, "size": size, "members": members},
            "kinds": {
                label: {
                    "enabled": policy.enabled,
                    "min_tcb_status": _tcb_name(policy.min_tcb_status),
                }
                for label, policy in kinds.items()
            },
        }
        if as_json:
            print_json(data)
            return
        enabled = [
            f"{label} (TCB >= {_tcb_name(p.min_tcb_status)})"
            for label, p in kinds.items()
            if p.enabled
        ]
        print_fields(
            [
                ("chain", str(found.chain_id)),
                ("JobMarket", found.market),
                ("ProviderRegistry", found.registry),
                ("AttestationVerifier", found.verifier),
                ("governance", found.governance),
                ("treasury", found.treasury),
                ("pays in", "native currency" if market.native else market.token),
                ("sim kind", "allowed (INSECURE devnet)" if data["sim_allowed"] else "refused"),
                ("min stake", format_amount(parameters["min_stake"])),
                ("longest job", format_duration(parameters["max_job_duration"])),
                ("dispute window", format_duration(parameters["dispute_window"])),
                ("unbonding delay", format_duration(parameters["unbonding_delay"])),
                ("fee", f"{parameters['fee_bps'] / 100:g}% of each payout"),
                (
                    "slash",
                    f"{parameters['slash_bps'] / 100:g}% of the price, "
                    f"{parameters['slash_client_bps'] / 100:g}% of it to the client",
                ),
                ("kinds enabled", ", ".join(enabled) or "none (`capa chain kind enable KIND`)"),
                (
                    "committee",
                    f"{threshold} of {size}" + (f": {', '.join(members)}" if members else "")
                    if size
                    else "not set (`capa chain committee set`)",
                ),
            ]
        )


# ---------------------------------------------------------------- governance


def _governed(
    config: Path,
    deployment: Path | None,
    rpc_url: str | None,
    keystore: Path | None,
    password_file: Path | None,
) -> tuple[Target, LocalAccount]:
    target = open_target(config, deployment, rpc_url)
    return target, target_signer(target, config, keystore, password_file)


@kind_app.command("enable")
def kind_enable(
    kind: KindArgument,
    min_tcb: Annotated[
        str,
        typer.Option(
            "--min-tcb",
            metavar="STATUS",
            help="Lowest TCB status accepted: up-to-date, sw-hardening-needed, "
            "configuration-needed, configuration-and-sw-hardening-needed, "
            "out-of-date-configuration-needed, out-of-date.",
        ),
    ] = "up-to-date",
    deployment: DeploymentOption = None,
    rpc_url: RpcUrlOption = None,
    keystore: KeystoreOption = None,
    password_file: PasswordFileOption = None,
    config: ConfigOption = CONFIG,
    as_json: JsonOption = False,
) -> None:
    """Accept enclave keys of KIND whose TCB status is at least --min-tcb."""
    _set_kind(
        "chain kind enable",
        kind,
        True,
        min_tcb,
        deployment,
        rpc_url,
        keystore,
        password_file,
        config,
        as_json,
    )


@kind_app.command("disable")
def kind_disable(
    kind: KindArgument,
    deployment: DeploymentOption = None,
    rpc_url: RpcUrlOption = None,
    keystore: KeystoreOption = None,
    password_file: PasswordFileOption = None,
    config: ConfigOption = CONFIG,
    as_json: JsonOption = False,
) -> None:
    """Stop every key of KIND at once: no match, accept or settlement under it until enabled."""
    _set_kind(
        "chain kind disable",
        kind,
        False,
        None,
        deployment,
        rpc_url,
        keystore,
        password_file,
        config,
        as_json,
    )


def _set_kind(
    what: str,
    kind_text: str,
    enabled: bool,
    min_tcb_text: str | None,
    deployment: Path | None,
    rpc_url: str | None,
    keystore: Path | None,
    password_file: Path | None,
    config: Path,
    as_json: bool,
) -> None:
    with reporting(what, as_json=as_json):
        kind = _kind(kind_text)
        target, signer = _governed(config, deployment, rpc_url, keystore, password_file)
        market = target.market
        min_tcb = _tcb(min_tcb_text) if min_tcb_text else market.kind_policy(kind).min_tcb_status
        receipt = market.set_kind_policy(signer, kind, enabled, min_tcb)
        label = TeeKind(kind).label
        if as_json:
            print_json(
                {
                    "kind": label,
                    "enabled": enabled,
                    "min_tcb_status": _tcb_name(min_tcb),
                    **tx_fields(receipt),
                }
            )
            return
        if enabled:
            typer.echo(f"{label} enabled: keys with TCB status {_tcb_name(min_tcb)} or better")
            if label == "sim":
                warn(what, "sim keys have no hardware isolation (INSECURE): devnets only")
        else:
            typer.echo(f"{label} disabled: no key of this kind matches, accepts or settles")


@measurement_app.command("approve")
def measurement_approve(
    kind: KindArgument,
    measurement: MeasurementArgument,
    until: Annotated[
        str,
        typer.Option(
            "--until",
            metavar="TIME",
            help="Approved until this date (2027-01-31), date-time, or +DURATION from now.",
        ),
    ] = "+365d",
    deployment: DeploymentOption = None,
    rpc_url: RpcUrlOption = None,
    keystore: KeystoreOption = None,
    password_file: PasswordFileOption = None,
    config: ConfigOption = CONFIG,
    as_json: JsonOption = False,
) -> None:
    """Allowlist MEASUREMENT for KIND (or move its end date)."""
    what = "chain measurement approve"
    with reporting(what, as_json=as_json):
        tee_kind, word = _kind(kind), _measurement(measurement)
        target, signer = _governed(config, deployment, rpc_url, keystore, password_file)
        market = target.market
        now = market.latest_timestamp()
        not_after = parse_time(until, now=now)
        if not_after <= now:
            raise CommandFailed(
                f"--until {until} is not in the future (the chain's time is {format_timestamp(now)})",
                code=ExitCode.USAGE,
            )
        if not_after >= 2**40:
            raise CommandFailed(f"--until {until} is too far in the future", code=ExitCode.USAGE)
        receipt = market.approve_measurement(signer, tee_kind, word, not_after)
        info = market.measurement(tee_kind, word)
        if as_json:
            print_json(
                {
                    "kind": TeeKind(tee_kind).label,
                    "measurement": "0x" + word.hex(),
                    "id": info.id,
                    "not_after": info.not_after,
                    **tx_fields(receipt),
                }
            )
            return
        typer.echo(
            f"measurement #{info.id} 0x{word.hex()} approved for {TeeKind(tee_kind).label} until "
            f"{format_timestamp(info.not_after)}"
        )


@measurement_app.command("revoke")
def measurement_revoke(
    kind: KindArgument,
    measurement: MeasurementArgument,
    yes: YesOption = False,
    deployment: DeploymentOption = None,
    rpc_url: RpcUrlOption = None,
    keystore: KeystoreOption = None,
    password_file: PasswordFileOption = None,
    config: ConfigOption = CONFIG,
    as_json: JsonOption = False,
) -> None:
    """Revoke MEASUREMENT for KIND for good: every key registered under it stops at once."""
    what = "chain measurement revoke"
    with reporting(what, as_json=as_json):
        tee_kind, word = _kind(kind), _measurement(measurement)
        target, signer = _governed(config, deployment, rpc_url, keystore, password_file)
        market = target.market
        confirm(
            f"revoke measurement 0x{word.hex()} for good (it cannot be approved again)?", yes=yes
        )
        receipt = market.revoke_measurement(signer, tee_kind, word)
        info = market.measurement(tee_kind, word)
        if as_json:
            print_json(
                {
                    "kind": TeeKind(tee_kind).label,
                    "measurement": "0x" + word.hex(),
                    "id": info.id,
                    "revoked": True,
                    **tx_fields(receipt),
                }
            )
            return
        typer.echo(f"measurement #{info.id} 0x{word.hex()} revoked: its keys stop at once")


@measurement_app.command("show")
def measurement_show(
    kind: KindArgument,
    measurement: MeasurementArgument,
    deployment: DeploymentOption = None,
    rpc_url: RpcUrlOption = None,
    config: ConfigOption = CONFIG,
    as_json: JsonOption = False,
) -> None:
    """Whether MEASUREMENT is approved for KIND, until when, or revoked."""
    with reporting("chain measurement show", as_json=as_json):
        tee_kind, word = _kind(kind), _measurement(measurement)
        market = open_target(config, deployment, rpc_url).market
        info = market.measurement(tee_kind, word)
        now = market.latest_timestamp()
        state = (
            "never approved"
            if info.id == 0
            else "revoked"
            if info.revoked
            else "expired"
            if info.not_after <= now
            else "approved"
        )
        if as_json:
            print_json(
                {
                    "kind": TeeKind(tee_kind).label,
                    "measurement": "0x" + word.hex(),
                    "id": info.id,
                    "state": state,
                    "not_after": info.not_after or None,
                }
            )
            return
        detail = f" until {format_timestamp(info.not_after)}" if state == "approved" else ""
        typer.echo(f"measurement 0x{word.hex()} for {TeeKind(tee_kind).label}: {state}{detail}")


@committee_app.command("set")
def committee_set(
    threshold: Annotated[
        int, typer.Option("--threshold", min=1, help="Signatures needed to register a key (k).")
    ],
    add: Annotated[
        list[str] | None,
        typer.Option("--add", metavar="ADDRESS", help="A member to add (repeat for several)."),
    ] = None,
    remove: Annotated[
        list[str] | None,
        typer.Option(
            "--remove", metavar="ADDRESS", help="A member to remove (repeat for several)."
        ),
    ] = None,
    deployment: DeploymentOption = None,
    rpc_url: RpcUrlOption = None,
    keystore: KeystoreOption = None,
    password_file: PasswordFileOption = None,
    config: ConfigOption = CONFIG,
    as_json: JsonOption = False,
) -> None:
    """Add and remove committee members and set the threshold, in one transaction."""
    with reporting("chain committee set", as_json=as_json):
        added = [parse_address(a, "--add") for a in add or []]
        removed = [parse_address(r, "--remove") for r in remove or []]
        target, signer = _governed(config, deployment, rpc_url, keystore, password_file)
        market = target.market
        receipt = market.set_committee(signer, added, removed, threshold)
        k, size = market.committee()
        if as_json:
            print_json(
                {
                    "threshold": k,
                    "size": size,
                    "added": added,
                    "removed": removed,
                    **tx_fields(receipt),
                }
            )
            return
        typer.echo(f"committee: {k} of {size} signatures register a key")


@committee_app.command("show")
def committee_show(
    deployment: DeploymentOption = None,
    rpc_url: RpcUrlOption = None,
    config: ConfigOption = CONFIG,
    as_json: JsonOption = False,
) -> None:
    """The committee's members (from its events since the deployment) and threshold."""
    with reporting("chain committee show", as_json=as_json):
        target = open_target(config, deployment, rpc_url)
        market = target.market
        k, size = market.committee()
        members = market.committee_members(
            from_block=market.deployment.block_number,
            to_block=market.client.block_number(),
            log_range=target.settings.chain.log_range if target.settings else 2000,
        )
        if as_json:
            print_json({"threshold": k, "size": size, "members": members})
            return
        typer.echo(f"{k} of {size} signatures register a key" if size else "no committee yet")
        for member in members:
            typer.echo(f"  {member}")

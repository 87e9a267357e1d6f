"""How `capa provider`, `capa wallet` and `capa chain` reach the chain themselves, without a
daemon: the node's config (RPC URLs, chain id, market, keystore and its password rules), or
a deployment manifest, an RPC URL and a keystore file given on the command line.

Every transaction goes through the chain client, which estimates first: a call the chain
would refuse is never sent, and its revert comes back decoded.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from eth_account.signers.local import LocalAccount
from eth_utils.address import is_address, to_checksum_address
from web3.types import TxReceipt

from node.chain.client import ChainClient
from node.chain.errors import ManifestError, RpcUnavailable
from node.chain.manifest import DeploymentManifest, read_manifest
from node.chain.market import Market
from node.cli.output import CommandFailed, ExitCode
from node.config.loader import load_config
from node.config.model import NodeConfig
from node.keys.account import PasswordSource, load_account

ConfigOption = Annotated[
    Path,
    typer.Option(
        "--config",
        "-c",
        envvar="CAPA_CONFIG",
        metavar="FILE",
        help="The node's config, as `capa init` wrote it.",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as one JSON object.")]
DeploymentOption = Annotated[
    Path | None,
    typer.Option(
        "--deployment",
        metavar="FILE",
        help="Deployment manifest (`capa chain deploy` writes it); default: the config's market.",
    ),
]
RpcUrlOption = Annotated[
    str | None,
    typer.Option("--rpc-url", metavar="URL", help="JSON-RPC endpoint; default: the config's."),
]
KeystoreOption = Annotated[
    Path | None,
    typer.Option(
        "--keystore",
        metavar="FILE",
        help="Keystore of the signing account; default: the config's.",
    ),
]
PasswordFileOption = Annotated[
    Path | None,
    typer.Option(
        "--password-file",
        metavar="FILE",
        help="File holding the --keystore password (else CAPA_KEYSTORE_PASSWORD, else a prompt).",
    ),
]
YesOption = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]


def load_settings(config: Path) -> NodeConfig:
    return load_config(config, os.environ)


def _settings_for(config: Path, instead: str) -> NodeConfig:
    """The config, when a flag that would replace it is missing."""
    if not config.exists():
        raise CommandFailed(
            f"no {instead} given and no config at {config}",
            hint=f"pass {instead}, or --config FILE",
            code=ExitCode.USAGE,
        )
    return load_settings(config)


def connect(urls: Sequence[str], chain_id: int | None) -> ChainClient:
    """The first endpoint that answers (and serves `chain_id`, when given)."""
    failures = []
    for url in urls:
        try:
            return ChainClient(url, expected_chain_id=chain_id)
        except RpcUnavailable as exc:
            failures.append(str(exc))
    raise RpcUnavailable("; ".join(failures) or "no RPC URL configured")


def node_market(settings: NodeConfig) -> Market:
    """The deployment around the config's market, over the config's endpoints."""
    market = settings.require_market()
    client = connect(settings.chain.rpc_urls, settings.chain.chain_id)
    return Market.at(client, market, start_block=settings.chain.start_block)


def node_signer(settings: NodeConfig) -> LocalAccount:
    """The node's own account, unlocked by the config's password rules."""
    keys = settings.keys
    password = PasswordSource(keys.password_env, keys.password_file).read()
    return load_account(keys.keystore, password)


def keystore_signer(keystore: Path, password_file: Path | None) -> LocalAccount:
    return load_account(keystore, PasswordSource.from_flag(password_file).read())


@dataclass(frozen=True)
class Target:
    """A deployment to act on, and where its addresses came from."""

    market: Market
    manifest: DeploymentManifest | None
    settings: NodeConfig | None


def open_target(config: Path, deployment: Path | None, rpc_url: str | None) -> Target:
    """The deployment named by --deployment (else the config's market), reached through
    --rpc-url (else the config's endpoints)."""
    if deployment is None:
        settings = _settings_for(config, "--deployment FILE")
        client = connect([rpc_url] if rpc_url else settings.chain.rpc_urls, settings.chain.chain_id)
        market = Market.at(
            client, settings.require_market(), start_block=settings.chain.start_block
        )
        return Target(market, None, settings)
    manifest = read_manifest(deployment)
    given = None if rpc_url else _settings_for(config, "--rpc-url URL")
    urls = [rpc_url] if rpc_url else given.chain.rpc_urls if given else ()
    client = connect(urls, manifest.chain_id)
    market = Market.at(client, manifest.market, start_block=manifest.deploy_block)
    found = market.deployment
    recorded = manifest.deployment()
    if (found.registry, found.verifier) != (recorded.registry, recorded.verifier):
        raise ManifestError(
            f"{deployment}: the market at {manifest.market} names another registry or verifier "
            "than the manifest"
        )
    return Target(market, manifest, given)


def target_signer(
    target: Target, config: Path, keystore: Path | None, password_file: Path | None
) -> LocalAccount:
    if keystore is not None:
        return keystore_signer(keystore, password_file)
    settings = target.settings or _settings_for(config, "--keystore FILE")
    return node_signer(settings)


def parse_address(text: str, what: str) -> str:
    if not is_address(text.strip()):
        raise CommandFailed(
            f"{what} {text!r} is not an address (0x and 40 hex digits)", code=ExitCode.USAGE
        )
    return to_checksum_address(text.strip())


def tx_fields(receipt: TxReceipt) -> dict[str, Any]:
    """What every command that sent a transaction reports about it."""
    return {
        "tx": "0x" + bytes(receipt["transactionHash"]).hex(),
        "block": int(receipt["blockNumber"]),
        "gas_used": int(receipt["gasUsed"]),
    }

"""`capa init`: write a commented config for a role and create the node's keys."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from node.config.errors import ConfigError
from node.config.loader import load_config
from node.config.model import Role
from node.config.template import render_config
from node.keys.account import PasswordSource, create_keystore
from node.keys.errors import KeysError
from node.keys.identity import create_identity
from node.state.values import Address

console = Console()
CONFIG_NAME = "capa.toml"


@dataclass(frozen=True)
class InitResult:
    config_path: Path
    address: Address
    peer_id: str


def init_node(
    directory: Path,
    role: Role,
    password: str,
    *,
    rpc_urls: list[str],
    chain_id: int,
    market: str = "",
    api_port: int = 7420,
    scrypt_n: int | None = None,
) -> InitResult:
    """Create `directory`/capa.toml and its keys; refuses to overwrite anything."""
    config_path = directory / CONFIG_NAME
    if config_path.exists():
        raise KeysError(f"{config_path} already exists: refusing to overwrite it")
    directory.mkdir(parents=True, exist_ok=True)
    text = render_config(
        role, rpc_urls=rpc_urls, chain_id=chain_id, market=market, api_port=api_port
    )
    # Write to a side file and load it first: a config we write must be one we can read.
    staged = directory / (CONFIG_NAME + ".new")
    staged.write_text(text, encoding="utf-8")
    try:
        config = load_config(staged, env={})
    except ConfigError:
        staged.unlink()
        raise
    address = create_keystore(config.keys.keystore, password, kdf_iterations=scrypt_n)
    identity = create_identity(config.keys.identity)
    os.replace(staged, config_path)
    return InitResult(config_path, address, identity.peer_id)


def init_command(
    role: Annotated[Role, typer.Option("--role", help="provider, client or verifier")],
    directory: Annotated[
        Path, typer.Option("--dir", help="Where the config, keys and store live")
    ] = Path("."),
    rpc_url: Annotated[
        list[str] | None, typer.Option("--rpc-url", help="JSON-RPC URL (repeat for failover)")
    ] = None,
    chain_id: Annotated[int, typer.Option(help="Chain id the RPC must serve")] = 31337,
    market: Annotated[str, typer.Option(help="JobMarket address (fill in later if unknown)")] = "",
    api_port: Annotated[int, typer.Option(help="Local API port (0 = any free port)")] = 7420,
    password_file: Annotated[
        Path | None, typer.Option(help="Read the new keystore's password from this file")
    ] = None,
    scrypt_n: Annotated[
        int | None,
        typer.Option(
            help="scrypt work factor of the keystore (default eth-account's; lower only for tests)"
        ),
    ] = None,
) -> None:
    """Write a commented config for ROLE and create its keys (account keystore, libp2p identity)."""
    source = PasswordSource("CAPA_KEYSTORE_PASSWORD", password_file)
    try:
        password = source.read(confirm=True)
        result = init_node(
            directory,
            role,
            password,
            rpc_urls=rpc_url or ["http://127.0.0.1:8545"],
            chain_id=chain_id,
            market=market,
            api_port=api_port,
            scrypt_n=scrypt_n,
        )
    except (ConfigError, KeysError) as exc:
        console.print(f"[red]capa init:[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    console.print(f"config   {result.config_path}", highlight=False)
    console.print(f"account  {result.address}", highlight=False)
    console.print(f"peer id  {result.peer_id}", highlight=False)
    if not market:
        console.print("set chain.market in the config before `capa node run`", highlight=False)

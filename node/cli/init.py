"""`capa init`: write a commented config for a role and create the node's keys.

All or nothing: the config is checked before anything is written, and when a later step
fails (a key file in the way, an interrupted key derivation) whatever this run created is
removed again; files that were there before are never touched.
"""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from node.chain.manifest import read_manifest
from node.cli.output import CommandFailed, ExitCode, print_fields, print_json, reporting
from node.config.errors import SettingError
from node.config.loader import parse_config
from node.config.model import Backend, Role
from node.config.template import render_config
from node.keys.account import PasswordSource, create_keystore
from node.keys.errors import KeyFileExists
from node.keys.identity import create_identity
from node.state.values import Address

CONFIG_NAME = "capa.toml"
DEFAULT_API_PORT = 7420
DEFAULT_CHAIN_ID = 31337
# Where a setting `capa init` writes comes from on its command line: errors name the flag.
_FLAGS = {
    "chain.rpc_urls": "--rpc-url",
    "chain.chain_id": "--chain-id",
    "chain.market": "--market",
    "api.port": "--api-port",
    "provider.backend": "--backend",
}


@dataclass(frozen=True)
class InitResult:
    config_path: Path
    address: Address
    peer_id: str
    api_port: int = DEFAULT_API_PORT


class _Created:
    """Paths this run created, newest first: what a failure takes back."""

    def __init__(self) -> None:
        self.paths: list[Path] = []

    def directories(self, path: Path) -> None:
        """Create `path` and its missing parents, remembering which were missing."""
        missing = []
        for parent in [path, *path.parents]:
            if parent.exists():
                break
            missing.append(parent)
        path.mkdir(parents=True, exist_ok=True)
        self.paths.extend(reversed(missing))

    @contextmanager
    def making(self, path: Path) -> Iterator[None]:
        """Around the step that creates `path`: remembered if it appeared, even half-written
        by an interrupted step; never if it was there before."""
        existed = path.exists()
        try:
            yield
        finally:
            if not existed and path.exists():
                self.paths.append(path)

    def undo(self) -> None:
        for path in reversed(self.paths):
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def choose_api_port(requested: int | None) -> tuple[int, str | None]:
    """The port the config gets: the one asked for, else 7420 if nothing listens there now,
    else the next free one (so a second node on this machine does not collide)."""
    if requested is not None:
        return requested, None
    for port in range(DEFAULT_API_PORT, DEFAULT_API_PORT + 100):
        if port_is_free(port):
            note = (
                None
                if port == DEFAULT_API_PORT
                else f"port {DEFAULT_API_PORT} is in use: the local API gets port {port}"
            )
            return port, note
    return (
        0,
        f"ports {DEFAULT_API_PORT}-{DEFAULT_API_PORT + 99} are in use: the API takes any free port",
    )


def init_node(
    directory: Path,
    role: Role,
    password: str,
    *,
    rpc_urls: list[str],
    chain_id: int,
    market: str = "",
    api_port: int = DEFAULT_API_PORT,
    start_block: int = 0,
    scrypt_n: int | None = None,
    backend: Backend | None = None,
) -> InitResult:
    """Create `directory`/capa.toml and its keys; refuses to overwrite anything and leaves
    nothing behind when it fails."""
    config_path = directory / CONFIG_NAME
    if config_path.exists():
        raise KeyFileExists(f"{config_path} already exists: refusing to overwrite it")
    text = render_config(
        role,
        rpc_urls=rpc_urls,
        chain_id=chain_id,
        market=market,
        api_port=api_port,
        start_block=start_block,
        backend=backend,
    )
    # Checked as the file it will be, before anything exists: a config we write must be one
    # we can read, and its errors name the user's file, not a staging copy.
    config = parse_config(text, config_path, env={})
    created = _Created()
    try:
        created.directories(directory)
        created.directories(config.keys.keystore.parent)
        with created.making(config.keys.keystore):
            address = create_keystore(config.keys.keystore, password, kdf_iterations=scrypt_n)
        created.directories(config.keys.identity.parent)
        with created.making(config.keys.identity):
            identity = create_identity(config.keys.identity)
        staged = config_path.with_name(f".{CONFIG_NAME}.tmp")
        with created.making(staged):
            staged.write_text(text, encoding="utf-8")
        with created.making(config_path):
            os.replace(staged, config_path)
    except BaseException:
        created.undo()
        raise
    return InitResult(config_path, address, identity.peer_id, api_port)


def _init_with_flags(directory: Path, role: Role, password: str, **settings: Any) -> InitResult:
    """init_node, its setting errors told in the flags the user typed."""
    try:
        return init_node(directory, role, password, **settings)
    except SettingError as exc:
        flag = _FLAGS.get(exc.key)
        if flag is None:
            raise
        raise CommandFailed(
            f"{flag} {exc.got!r}: expected {exc.expected}", code=ExitCode.USAGE
        ) from None


def init_command(
    role: Annotated[
        Role,
        typer.Option("--role", help="What this node does: provider, client or verifier."),
    ],
    directory: Annotated[
        Path,
        typer.Option("--dir", metavar="DIR", help="Where the config, keys and store live."),
    ] = Path("."),
    rpc_url: Annotated[
        list[str] | None,
        typer.Option(
            "--rpc-url",
            metavar="URL",
            help="JSON-RPC endpoint; repeat for failover [default: http://127.0.0.1:8545].",
        ),
    ] = None,
    deployment: Annotated[
        Path | None,
        typer.Option(
            "--deployment",
            metavar="FILE",
            help="Deployment manifest (`capa chain deploy` writes it): sets the chain id, the "
            "market and the block to start watching from.",
        ),
    ] = None,
    chain_id: Annotated[
        int | None,
        typer.Option(
            "--chain-id",
            min=1,
            help=f"Chain id the RPC must serve [default: the manifest's, else {DEFAULT_CHAIN_ID}].",
        ),
    ] = None,
    market: Annotated[
        str | None,
        typer.Option(
            "--market",
            metavar="ADDRESS",
            help="JobMarket address [default: the manifest's; else set chain.market later].",
        ),
    ] = None,
    api_port: Annotated[
        int | None,
        typer.Option(
            "--api-port",
            min=0,
            max=65535,
            help=f"Local API port, 0 for any free one [default: {DEFAULT_API_PORT}, or the next "
            "free port if it is in use].",
        ),
    ] = None,
    password_file: Annotated[
        Path | None,
        typer.Option(
            "--password-file",
            metavar="FILE",
            help="Read the new keystore's password from this file (else "
            "CAPA_KEYSTORE_PASSWORD, else a prompt).",
        ),
    ] = None,
    backend: Annotated[
        Backend | None,
        typer.Option(
            "--backend",
            help="Provider: the enclave backend (tdx, sev-snp, sgx-gramine; sim is INSECURE, "
            "devnets only). Default: the TEE `capa node probe` finds on this machine.",
        ),
    ] = None,
    scrypt_n: Annotated[
        int | None,
        typer.Option(
            "--scrypt-n",
            min=2,
            help="scrypt work factor of the keystore [default: eth-account's]; lower it only "
            "for tests.",
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print what was created as one JSON object.")
    ] = False,
) -> None:
    """Write a commented config for a role and create its keys (account keystore, libp2p identity)."""
    with reporting("init", as_json=as_json):
        start_block = 0
        if deployment is not None:
            manifest = read_manifest(deployment)
            if chain_id is not None and chain_id != manifest.chain_id:
                raise CommandFailed(
                    f"--chain-id {chain_id} contradicts {deployment} (chain {manifest.chain_id})",
                    code=ExitCode.USAGE,
                )
            if market is not None and market.lower() != manifest.market.lower():
                raise CommandFailed(
                    f"--market {market} contradicts {deployment} (market {manifest.market})",
                    code=ExitCode.USAGE,
                )
            chain_id, market, start_block = (
                manifest.chain_id,
                manifest.market,
                manifest.deploy_block,
            )
        if (directory / CONFIG_NAME).exists():  # before any prompt or probe
            raise KeyFileExists(
                f"{directory / CONFIG_NAME} already exists: refusing to overwrite it"
            )
        chosen_backend = _backend_for(role, backend)
        port, port_note = choose_api_port(api_port)
        password = PasswordSource.from_flag(password_file).read(confirm=True)
        result = _init_with_flags(
            directory,
            role,
            password,
            rpc_urls=rpc_url or ["http://127.0.0.1:8545"],
            chain_id=chain_id or DEFAULT_CHAIN_ID,
            market=market or "",
            api_port=port,
            start_block=start_block,
            scrypt_n=scrypt_n,
            backend=chosen_backend,
        )
        if as_json:
            print_json(
                {
                    "config": str(result.config_path),
                    "address": result.address,
                    "peer_id": result.peer_id,
                    "api_port": port,
                    "market": market or None,
                }
            )
            return
        if port_note:
            typer.echo(f"capa: init: {port_note}", err=True)
        print_fields(
            [
                ("config", str(result.config_path)),
                ("account", result.address),
                ("peer id", result.peer_id),
                ("api port", str(port) if port else "any free port"),
            ]
        )
        if not market:
            typer.echo(
                "no market yet: set chain.market in the config (or init with --deployment FILE) "
                "before `capa node run`"
            )


def _backend_for(role: Role, named: Backend | None) -> Backend | None:
    """The named backend, else the one hardware this machine attests; sim only by name."""
    if role is not Role.PROVIDER or named is not None:
        return named
    from node.enclave.probe import probe_attesters

    found = {c.name for c in probe_attesters() if c.available and c.name != "sim"}
    for backend, label in (
        (Backend.TDX, "tdx"),
        (Backend.SEV_SNP, "sev-snp"),
        (Backend.SGX_GRAMINE, "sgx"),
    ):
        if label in found:
            return backend
    raise CommandFailed(
        "no TEE this node can attest was found on this machine (`capa node probe` says why)",
        hint="name one with --backend; --backend sim runs an INSECURE devnet provider",
        code=ExitCode.USAGE,
    )

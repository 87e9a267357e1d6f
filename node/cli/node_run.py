"""`capa node run` and the commands that talk to a running daemon through its local API."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import trio
import typer
from rich.console import Console
from rich.table import Table

from node.api.client import ApiClient
from node.api.errors import ApiError
from node.chain.errors import ChainError
from node.cli.node import node_app
from node.config.errors import ConfigError
from node.config.loader import load_config
from node.config.model import NodeConfig
from node.daemon.errors import DaemonError
from node.keys.account import PasswordSource, load_account
from node.keys.errors import KeysError
from node.keys.identity import load_identity
from node.store.errors import StoreError

console = Console()
errors = Console(stderr=True)

ConfigOption = Annotated[
    Path, typer.Option("--config", "-c", envvar="CAPA_CONFIG", help="The node's TOML config")
]


def _fail(message: str) -> typer.Exit:
    errors.print(f"[red]capa:[/red] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(1)


def _load(config: Path) -> NodeConfig:
    try:
        return load_config(config, os.environ)
    except ConfigError as exc:
        raise _fail(f"config error: {exc}") from None


@node_app.command("run")
def run(
    config: ConfigOption = Path("capa.toml"),
    log_json: Annotated[
        bool, typer.Option("--log-json", help="One JSON object per log line")
    ] = False,
) -> None:
    """Run the daemon until SIGINT or SIGTERM."""
    from node.daemon.logs import configure_logging

    settings = _load(config)
    configure_logging(settings.log.level, as_json=log_json or settings.log.json)
    try:
        password = PasswordSource(settings.keys.password_env, settings.keys.password_file).read()
        # Imported after the prompt: the daemon pulls in web3 and libp2p, seconds that
        # would otherwise pass before the prompt and again on Ctrl-C at it.
        from node.daemon.daemon import run_daemon

        account = load_account(settings.keys.keystore, password)
        identity = load_identity(settings.keys.identity)
        trio.run(run_daemon, settings, account, identity)
    except KeyboardInterrupt:
        # Ctrl-C before the daemon installed its own signal handling (password prompt,
        # key decryption, start-up): nothing was started, so just say so.
        errors.print("capa: interrupted before the daemon was running")
        raise typer.Exit(130) from None
    except Exception as exc:
        known = _operator_error(exc)
        if known is None:
            raise
        raise _fail(str(known)) from None


_OPERATOR_ERRORS = (ConfigError, KeysError, StoreError, DaemonError, ChainError)


def _operator_error(exc: BaseException) -> BaseException | None:
    """The first error meant for the operator, also from inside trio's exception groups."""
    if isinstance(exc, _OPERATOR_ERRORS):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _operator_error(inner)
            if found is not None:
                return found
    return None


def _client(config: Path) -> ApiClient:
    try:
        return ApiClient.from_token_file(_load(config).api.token_file)
    except ApiError as exc:
        raise _fail(str(exc)) from None


def _call(config: Path, path: str, **params: str) -> Any:
    try:
        return _client(config).get(path, **params)
    except ApiError as exc:
        raise _fail(str(exc)) from None


def _act(config: Path, action: dict[str, Any]) -> None:
    try:
        answer = _client(config).act(action)
    except ApiError as exc:
        raise _fail(str(exc)) from None
    if answer.get("rejected"):
        raise _fail(f"refused: {answer['rejected']}")
    console.print(json.dumps(answer), highlight=False)


@node_app.command("status")
def status(config: ConfigOption = Path("capa.toml")) -> None:
    """Ask the running daemon where it stands."""
    console.print_json(json.dumps(_call(config, "/v1/status")))


@node_app.command("jobs")
def jobs(
    config: ConfigOption = Path("capa.toml"),
    status_filter: Annotated[
        str | None, typer.Option("--status", help="Only jobs in this status")
    ] = None,
) -> None:
    """List the jobs the running daemon knows."""
    params = {"status": status_filter} if status_filter else {}
    rows = _call(config, "/v1/jobs", **params)["jobs"]
    table = Table("job", "status", "provider", "price (wei)", "error")
    for row in rows:
        table.add_row(
            row["job_id"], row["status"], row["provider"] or "", row["price"], row["error"]
        )
    console.print(table)


@node_app.command("accept")
def accept(
    job_id: str,
    enclave_key: Annotated[str, typer.Option(help="Address of the enclave key to bind")],
    config: ConfigOption = Path("capa.toml"),
) -> None:
    """Provider: accept an open job."""
    _act(config, {"action": "accept_job", "job_id": job_id, "enclave_key": enclave_key})


@node_app.command("claim-timeout")
def claim_timeout(job_id: str, config: ConfigOption = Path("capa.toml")) -> None:
    """Client: claim the refund of a job past its deadline."""
    _act(config, {"action": "claim_timeout", "job_id": job_id})


@node_app.command("withdraw")
def withdraw(amount: int, config: ConfigOption = Path("capa.toml")) -> None:
    """Withdraw AMOUNT wei of earnings or refunds from the market."""
    _act(config, {"action": "withdraw", "amount": amount})

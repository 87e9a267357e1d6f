"""`capa node run` and the commands that talk to a running daemon through its local API."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import trio
import typer
from pydantic import BaseModel, ValidationError
from rich.console import Console
from rich.table import Table

from node.api.client import ApiClient
from node.api.errors import ApiError
from node.api.models import (
    MAX_LIMIT,
    AcceptJob,
    ActionOutcome,
    CancelJob,
    ClaimTimeout,
    Withdraw,
)
from node.chain.errors import ChainError
from node.cli.node import node_app
from node.config.errors import ConfigError
from node.config.loader import load_config
from node.config.model import NodeConfig
from node.daemon.errors import DaemonError
from node.exception_groups import first_of
from node.keys.errors import KeysError
from node.state.model import JobStatus
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
    verbose: Annotated[
        int,
        typer.Option(
            "--verbose",
            "-v",
            count=True,
            show_default=False,
            help="More log: -v the node's debug lines and the libraries' info, -vv everything",
        ),
    ] = 0,
) -> None:
    """Run the daemon until SIGINT or SIGTERM."""
    from node.daemon.logs import configure_logging

    # Here, not at the top: eth_account takes a second to import, and `capa node status`
    # and the other commands of this module never open the keystore.
    from node.keys.account import PasswordSource, load_account
    from node.keys.identity import load_identity

    settings = _load(config)
    configure_logging(settings.log.level, as_json=log_json or settings.log.json, verbosity=verbose)
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
        known = first_of(exc, OPERATOR_ERRORS)
        if known is None:
            raise
        raise _fail(str(known)) from None


OPERATOR_ERRORS = (ConfigError, KeysError, StoreError, DaemonError, ChainError)


def _client(config: Path) -> ApiClient:
    try:
        return ApiClient.from_token_file(_load(config).api.token_file)
    except ApiError as exc:
        raise _fail(str(exc)) from None


Answer = TypeVar("Answer")


def _ask(config: Path, question: Callable[[ApiClient], Answer]) -> Answer:
    client = _client(config)
    try:
        return question(client)
    except ApiError as exc:
        raise _fail(str(exc)) from None
    finally:
        client.close()


def _act(config: Path, action: Callable[[ApiClient], ActionOutcome]) -> None:
    outcome = _ask(config, action)
    if outcome.rejected:
        raise _fail(f"refused: {outcome.rejected}")
    console.print(outcome.model_dump_json(), highlight=False, soft_wrap=True)


@node_app.command("status")
def status(
    config: ConfigOption = Path("capa.toml"),
    as_json: Annotated[bool, typer.Option("--json", help="The daemon's answer as JSON")] = False,
) -> None:
    """Ask the running daemon where it stands: chain, enclave keys, and why no job comes."""
    answer = _ask(config, ApiClient.status)
    if as_json:
        console.print_json(answer.model_dump_json())
        return
    lines = [
        ("role", f"{answer.role.value} {answer.address}"),
        ("peer", answer.peer_id),
        ("version", answer.version),
    ]
    chain = answer.chain
    if chain.confirmed_block is None:
        lines.append(("chain", f"not reached yet ({chain.rpc_url or 'no RPC'})"))
    else:
        lines.append(("chain", f"block {chain.confirmed_block} confirmed via {chain.rpc_url}"))
    lines.append(("jobs", f"{answer.jobs} known, {answer.effects_pending} actions pending"))
    provider = answer.provider
    if provider is not None:
        backend = provider.backend
        if provider.insecure:
            backend += " (INSECURE: simulated enclave, no hardware protects jobs)"
        lines.append(("enclave", backend))
        lines.append(("registered", "yes" if provider.registered else "no"))
        for key in provider.keys:
            until = f", expires {_when(key.expires_at)}" if key.expires_at else ""
            why = f": {key.reason}" if key.reason else ""
            lines.append(("key", f"{key.enclave_key} {key.workload} {key.status}{until}{why}"))
        lines.append(("earned", f"{provider.unspent_earnings} wei not yet withdrawn"))
        for reason in provider.waiting_for:
            lines.append(("no jobs", reason))
    width = max(len(name) for name, _ in lines)
    for name, value in lines:
        console.print(f"{name.ljust(width)}  {value}", highlight=False, soft_wrap=True)


def _when(unix: int) -> str:
    import datetime

    return datetime.datetime.fromtimestamp(unix, datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")


@node_app.command("jobs")
def jobs(
    config: ConfigOption = Path("capa.toml"),
    status_filter: Annotated[
        JobStatus | None, typer.Option("--status", help="Only jobs in this status")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=MAX_LIMIT, help="At most this many")] = 100,
) -> None:
    """List the jobs the running daemon knows, newest first."""
    rows = _ask(config, lambda api: api.jobs(status_filter, limit=limit))
    table = Table("job", "status", "provider", "price (wei)", "error")
    for row in rows:
        table.add_row(row.job_id, row.status.value, row.provider or "", row.price, row.error)
    console.print(table)


@node_app.command("accept")
def accept(
    job_id: str,
    enclave_key: Annotated[str, typer.Option(help="Address of the enclave key to bind")],
    config: ConfigOption = Path("capa.toml"),
) -> None:
    """Provider: accept an open job."""
    action = _model(AcceptJob, enclave_key=enclave_key)
    _act(config, lambda api: api.accept_job(job_id, action))


@node_app.command("claim-timeout")
def claim_timeout(job_id: str, config: ConfigOption = Path("capa.toml")) -> None:
    """Client: claim the refund of a job past its deadline."""
    _act(config, lambda api: api.claim_timeout(job_id, ClaimTimeout()))


@node_app.command("cancel")
def cancel(job_id: str, config: ConfigOption = Path("capa.toml")) -> None:
    """Client: cancel an open job that no provider accepted yet."""
    _act(config, lambda api: api.cancel_job(job_id, CancelJob()))


@node_app.command("withdraw")
def withdraw(
    amount: int,
    to: Annotated[
        str | None, typer.Option(help="Recipient address (default: this node's account)")
    ] = None,
    config: ConfigOption = Path("capa.toml"),
) -> None:
    """Withdraw AMOUNT wei of earnings or refunds from the market."""
    action = _model(Withdraw, amount=str(amount), to=to)
    _act(config, lambda api: api.withdraw(action))


Model = TypeVar("Model", bound=BaseModel)


def _model(model: type[Model], **fields: Any) -> Model:
    """The API's request model from the command line, refused here when it would be there."""
    try:
        return model.model_validate(fields)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}" for error in exc.errors()
        )
        raise _fail(problems) from None

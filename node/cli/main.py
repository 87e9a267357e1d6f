"""Entry point of `capa`: one Typer app; each area's commands load only when one is run.

A command is a row of `COMMANDS`: its name, `module:attribute` (a Typer app or a command
function) and the one line `capa --help` shows for it, so that `capa --help`, `capa
--version` and a simple command import only what they use (tests/unit/node/test_cli_startup.py
holds each line equal to the command's own help, and bench/cli measures the start-up).
"""

from __future__ import annotations

import typer

from node import __version__
from node.cli import help as _help
from node.cli.lazy import LazyCommand, lazy_group
from node.cli.output import install_usage_errors

_help.install()
install_usage_errors()

COMMANDS = {
    "init": LazyCommand(
        "node.cli.init:init_command",
        "Write a commented config for a role and create its keys (account keystore, libp2p "
        "identity).",
    ),
    "chain": LazyCommand(
        "node.cli.chain:chain_app",
        "The contracts: deploy them to an EVM chain, show a deployment, and govern it (TEE kind "
        "policy, measurements, verifier committee).",
    ),
    "devnet": LazyCommand(
        "node.cli.devnet:devnet_app",
        "A local marketplace for development: anvil, the contracts (sim allowed: INSECURE), and "
        "verifier, provider and client daemons, each a `capa node run` process.",
    ),
    "attest": LazyCommand("node.cli.attest:attest_app", "TEE evidence: verify quotes and reports."),
    # The commands of `capa node` live beside the code they drive; importing registers them.
    "node": LazyCommand(
        "node.cli.node:node_app",
        "The node daemon: run it, probe this machine.",
        also=("node.cli.node_probe", "node.cli.node_run"),
    ),
    "job": LazyCommand(
        "node.cli.job:job_app",
        "Client: submit jobs to your daemon, follow them, fetch results, cancel or refund.",
    ),
    "offers": LazyCommand(
        "node.cli.offers:offers_command",
        "The live offers your client daemon holds, and why each would not take a job (--why).",
    ),
    "provider": LazyCommand(
        "node.cli.provider:provider_app",
        "Your provider on chain: register, stake, unbond, exit, status, earnings. Uses the "
        "node's config and keystore; no daemon needed.",
    ),
    "wallet": LazyCommand(
        "node.cli.wallet:wallet_app",
        "The node's account: its address, balances, deposits and withdrawals. Uses the node's "
        "config and keystore; no daemon needed.",
    ),
}

app = typer.Typer(
    name="capa",
    help="CapaCloud node: confidential compute marketplace (provider, client, verifier).",
    no_args_is_help=True,
    rich_markup_mode="rich",
    cls=lazy_group(COMMANDS),
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"capa {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False,
        "--version",
        callback=_print_version,
        is_eager=True,
        help="Print the version and exit.",
    ),
) -> None:
    """CapaCloud node: confidential compute marketplace."""


def main() -> None:
    app()

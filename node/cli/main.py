"""Entry point of `capa`: one Typer app; each area adds its commands as a sub-app."""

from __future__ import annotations

import typer
from rich.console import Console

from node import __version__
from node.cli import help as _help
from node.cli.attest import attest_app
from node.cli.chain import chain_app
from node.cli.devnet import devnet_app
from node.cli.init import init_command
from node.cli.job import job_app
from node.cli.node import node_app
from node.cli.offers import offers_command
from node.cli.output import install_usage_errors
from node.cli.provider import provider_app
from node.cli.wallet import wallet_app

_help.install()
install_usage_errors()

app = typer.Typer(
    name="capa",
    help="CapaCloud node: confidential compute marketplace (provider, client, verifier).",
    no_args_is_help=True,
    rich_markup_mode="rich",
)
app.add_typer(chain_app, name="chain")
app.add_typer(devnet_app, name="devnet")
app.add_typer(attest_app, name="attest")
app.add_typer(node_app, name="node")
app.add_typer(job_app, name="job")
app.add_typer(provider_app, name="provider")
app.add_typer(wallet_app, name="wallet")
app.command("init")(init_command)
app.command("offers")(offers_command)

# Commands of `capa node` live beside the code they drive; importing registers them.
import node.cli.node_probe  # noqa: E402
import node.cli.node_run  # noqa: E402, F401

console = Console()


def _print_version(value: bool) -> None:
    if value:
        console.print(f"capa {__version__}")
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

"""`capa chain ...`: contract deployment helpers for local networks."""

from __future__ import annotations

import typer
from rich.console import Console

from node.chain.errors import ChainError

chain_app = typer.Typer(
    help="On-chain market: deploy and inspect the contracts.", no_args_is_help=True
)


@chain_app.command("deploy")
def deploy(
    rpc_url: str = typer.Option(
        "http://127.0.0.1:8545", help="JSON-RPC endpoint (loopback devnet)."
    ),
) -> None:
    """Deploy ProviderRegistry, AttestationVerifier and JobMarket to a devnet."""
    from node.chain.devnet import deploy_and_print

    try:
        deploy_and_print(rpc_url)
    except ChainError as exc:
        Console(stderr=True).print(f"capa: deploy failed: {exc}", highlight=False)
        raise typer.Exit(1) from None

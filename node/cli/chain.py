"""`capa chain ...`: contract deployment helpers for local networks."""

from __future__ import annotations

import typer

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

    deploy_and_print(rpc_url)

"""`capa chain deploy` puts the three contracts on a running chain and names them."""

from __future__ import annotations

import re
import socket

from typer.testing import CliRunner

from node.chain.anvil import AnvilNode
from node.chain.client import ChainClient
from node.cli.main import app


def test_deploy_prints_three_live_contracts(anvil: AnvilNode) -> None:
    result = CliRunner().invoke(
        app, ["chain", "deploy", "--rpc-url", anvil.rpc_url], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 0, result.output
    addresses = {
        name: address
        for name, address in re.findall(
            r"(ProviderRegistry|AttestationVerifier|JobMarket)\s+\W\s+(0x[0-9a-fA-F]{40})",
            result.output,
        )
    }
    assert set(addresses) == {"ProviderRegistry", "AttestationVerifier", "JobMarket"}
    chain = ChainClient(anvil.rpc_url)
    for address in addresses.values():
        assert len(chain.w3.eth.get_code(address)) > 1000
    market = chain.contract("JobMarket", addresses["JobMarket"])
    assert market.functions.REGISTRY().call() == addresses["ProviderRegistry"]
    assert market.functions.VERIFIER().call() == addresses["AttestationVerifier"]


def test_deploy_to_nothing_fails_with_one_line() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = CliRunner().invoke(app, ["chain", "deploy", "--rpc-url", f"http://127.0.0.1:{port}"])
    assert result.exit_code == 1
    assert "deploy failed: no answer from" in result.output
    assert "Traceback" not in result.output

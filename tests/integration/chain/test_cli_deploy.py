"""`capa chain deploy`: any EVM chain, from a keystore, with a manifest; refusals in one line
(no funds, wrong chain, RPC down, --allow-sim off a local chain) before anything is sent."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak
from typer.testing import CliRunner, Result

from node.chain.anvil import AnvilNode, run_anvil
from node.chain.client import ChainClient
from node.chain.manifest import artifact_sha256, read_manifest
from node.cli.main import app

from .conftest import fund

PASSWORD = "deployer password"


def write_keystore(directory: Path, account: LocalAccount) -> tuple[Path, Path]:
    """A keystore (scrypt n=16: fast, for tests) and its password file."""
    keystore = directory / f"{account.address}.json"
    keystore.write_text(
        json.dumps(Account.encrypt(account.key, PASSWORD, kdf="scrypt", iterations=16))
    )
    password = directory / "password"
    password.write_text(PASSWORD + "\n")
    return keystore, password


def deploy(*args: str) -> Result:
    return CliRunner().invoke(app, ["chain", "deploy", *args], env={"COLUMNS": "200"})


@pytest.fixture
def deployer(tmp_path: Path, anvil: AnvilNode) -> tuple[LocalAccount, Path, Path]:
    account = Account.create()
    fund(ChainClient(anvil.rpc_url), account.address, 10**19)
    keystore, password = write_keystore(tmp_path, account)
    return account, keystore, password


def test_deploy_from_a_keystore_writes_a_manifest(
    tmp_path: Path, anvil: AnvilNode, deployer: tuple[LocalAccount, Path, Path]
) -> None:
    account, keystore, password = deployer
    governance = Account.create().address
    out = tmp_path / "deployments" / "31337.json"
    result = deploy(
        "--rpc-url",
        anvil.rpc_url,
        "--keystore",
        str(keystore),
        "--password-file",
        str(password),
        "--governance",
        governance,
        "--min-stake",
        "2eth",
        "--unbonding-delay",
        "5d",
        "--out",
        str(out),
        "--json",
    )
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    manifest = read_manifest(out)
    assert shown["manifest"] == str(out) and shown["contracts"] == manifest.to_json()["contracts"]
    assert manifest.chain_id == 31337 and manifest.deployer == account.address
    assert manifest.governance == governance == manifest.treasury
    assert manifest.sim_allowed is False
    assert manifest.parameters["min_stake"] == 2 * 10**18
    assert manifest.parameters["unbonding_delay"] == 5 * 86400
    chain = ChainClient(anvil.rpc_url)
    for name, record in manifest.contracts.items():
        code = bytes(chain.w3.eth.get_code(record.address))
        assert "0x" + keccak(code).hex() == record.code_keccak
        assert record.artifact_sha256 == artifact_sha256(name)
    receipt_block = chain.w3.eth.get_transaction_receipt(
        chain.w3.eth.get_block(manifest.deploy_block)["transactions"][0]
    )["blockNumber"]
    assert receipt_block == manifest.deploy_block
    market = chain.contract("JobMarket", manifest.market)
    assert market.functions.REGISTRY().call() == manifest.contracts["ProviderRegistry"].address

    again = deploy(
        "--rpc-url",
        anvil.rpc_url,
        "--keystore",
        str(keystore),
        "--password-file",
        str(password),
        "--out",
        str(out),
    )
    assert again.exit_code == 2
    assert "exists already" in again.stderr and "--force" in again.stderr


def test_devnet_deploy_without_a_keystore_prints_the_contracts(
    anvil: AnvilNode, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = deploy("--rpc-url", anvil.rpc_url, "--allow-sim")
    assert result.exit_code == 0, result.output
    assert "anvil's first dev account" in result.stderr and "INSECURE" in result.stderr
    addresses = dict(
        re.findall(
            r"(ProviderRegistry|AttestationVerifier|JobMarket)\s+\W\s+(0x[0-9a-fA-F]{40})",
            result.stdout,
        )
    )
    assert set(addresses) == {"ProviderRegistry", "AttestationVerifier", "JobMarket"}
    manifest = read_manifest(tmp_path / "deployments" / "31337.json")
    assert manifest.market == addresses["JobMarket"] and manifest.sim_allowed is True


@pytest.fixture(scope="module")
def public_like_chain() -> Iterator[AnvilNode]:
    """An anvil that says it is Sepolia: not a local chain id."""
    with run_anvil(chain_id=11155111) as node:
        yield node


def test_allow_sim_and_dev_keys_are_refused_off_a_local_chain(
    public_like_chain: AnvilNode, tmp_path: Path
) -> None:
    account = Account.create()
    keystore, password = write_keystore(tmp_path, account)
    sim = deploy(
        "--rpc-url",
        public_like_chain.rpc_url,
        "--keystore",
        str(keystore),
        "--password-file",
        str(password),
        "--allow-sim",
        "--out",
        str(tmp_path / "m.json"),
    )
    assert sim.exit_code == 2
    assert sim.stderr.startswith("capa: chain deploy: refusing --allow-sim on chain 11155111")
    assert len(sim.stderr.strip().splitlines()) == 1
    no_key = deploy("--rpc-url", public_like_chain.rpc_url, "--out", str(tmp_path / "m.json"))
    assert no_key.exit_code == 2 and "hint: --keystore FILE" in no_key.stderr
    assert not (tmp_path / "m.json").exists()


def test_no_funds_is_one_line_and_nothing_is_deployed(
    public_like_chain: AnvilNode, tmp_path: Path
) -> None:
    account = Account.create()
    keystore, password = write_keystore(tmp_path, account)
    result = deploy(
        "--rpc-url",
        public_like_chain.rpc_url,
        "--keystore",
        str(keystore),
        "--password-file",
        str(password),
        "--out",
        str(tmp_path / "m.json"),
        "--json",
    )
    assert result.exit_code == 1
    assert re.match(
        rf"capa: chain deploy: no funds: {account.address} cannot pay for the transaction: it "
        r"holds 0 ETH, deploying takes up to [0-9.]+ ETH at the current gas price \(hint: ",
        result.stderr,
    ), result.stderr
    assert json.loads(result.stdout)["error"]["exit_code"] == 1
    chain = ChainClient(public_like_chain.rpc_url)
    assert chain.w3.eth.get_transaction_count(account.address) == 0


def test_wrong_chain_and_rpc_down(anvil: AnvilNode, tmp_path: Path) -> None:
    wrong = deploy("--rpc-url", anvil.rpc_url, "--chain-id", "1", "--out", str(tmp_path / "m.json"))
    assert wrong.exit_code == 2
    assert "wrong chain: RPC serves chain id 31337, expected 1" in wrong.stderr
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    down = deploy("--rpc-url", f"http://127.0.0.1:{port}")
    assert down.exit_code == 3
    assert down.stderr.strip() == (
        f"capa: chain deploy: chain unreachable: no answer from http://127.0.0.1:{port}: "
        "connection refused (hint: check --rpc-url or chain.rpc_urls)"
    )


def test_bad_parameters_are_refused_before_connecting(tmp_path: Path) -> None:
    for args, message in (
        (["--fee-bps", "2000"], "--fee-bps 2000: expected 0 to 1000 basis points"),
        (["--min-stake", "1 bitcoin"], "unknown unit 'bitcoin'"),
        (["--dispute-window", "soon"], "'soon' is not a duration"),
        (["--governance", "nobody"], "--governance 'nobody' is not an address"),
    ):
        result = deploy("--rpc-url", "http://127.0.0.1:1", *args)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.stderr, result.stderr


def test_unconfirmed_deployment_times_out_naming_the_chain(
    anvil: AnvilNode, tmp_path: Path, deployer: tuple[LocalAccount, Path, Path]
) -> None:
    _, keystore, password = deployer
    # anvil mines only on transactions: a deployment never gets 5 blocks on top of it.
    result = deploy(
        "--rpc-url",
        anvil.rpc_url,
        "--keystore",
        str(keystore),
        "--password-file",
        str(password),
        "--confirmations",
        "5",
        "--timeout",
        "1",
        "--out",
        str(tmp_path / "m.json"),
    )
    assert result.exit_code == 3
    assert "did not reach 5 confirmations" in result.stderr
    assert re.search(
        r"deployed \(JobMarket 0x[0-9a-fA-F]{40}, block \d+\) but not recorded", result.stderr
    )
    assert not (tmp_path / "m.json").exists()

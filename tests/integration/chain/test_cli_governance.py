"""`capa chain show|kind|measurement|committee` against a deployment made by `capa chain
deploy`: a fresh deployment gets a kind enabled, measurements approved and revoked, a
committee; refusals (a missing role, sim on a production deployment) in words, unsent."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from typer.testing import CliRunner, Result

from node.chain.anvil import DEV_PRIVATE_KEYS, AnvilNode
from node.chain.client import ChainClient
from node.chain.market import Market

from .conftest import CliNode, fund
from .test_cli_deploy import write_keystore

MRTD = "0x" + "ab" * 48  # a TDX measurement: 48 bytes, recorded as its keccak256


class Governance:
    """The deployer's keystore and the manifest of its deployment."""

    def __init__(self, tmp_path: Path, anvil: AnvilNode, *, allow_sim: bool) -> None:
        self.account: LocalAccount = Account.create()
        fund(ChainClient(anvil.rpc_url), self.account.address, 10**19)
        self.keystore, self.password = write_keystore(tmp_path, self.account)
        self.manifest = tmp_path / "deployments" / "31337.json"
        self.rpc_url = anvil.rpc_url
        result = self.run(
            "chain",
            "deploy",
            "--out",
            str(self.manifest),
            *(["--allow-sim"] if allow_sim else []),
            signed=True,
        )
        assert result.exit_code == 0, result.output

    def run(self, *args: str, signed: bool = False, keystore: Path | None = None) -> Result:
        where = ["--rpc-url", self.rpc_url]
        if args[:2] != ("chain", "deploy"):
            where += ["--deployment", str(self.manifest)]
        if signed or keystore:
            where += [
                "--keystore",
                str(keystore or self.keystore),
                "--password-file",
                str(self.password),
            ]
        return CliRunner().invoke(app_(), [*args, *where], env={"COLUMNS": "200"})

    def json(self, *args: str, signed: bool = False) -> dict:  # type: ignore[type-arg]
        result = self.run(*args, "--json", signed=signed)
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)


def app_():  # type: ignore[no-untyped-def]
    from node.cli.main import app

    return app


@pytest.fixture
def gov(tmp_path: Path, anvil: AnvilNode) -> Governance:
    return Governance(tmp_path, anvil, allow_sim=True)


def test_a_fresh_deployment_has_no_kind_and_no_committee(gov: Governance) -> None:
    shown = gov.json("chain", "show")
    assert all(not policy["enabled"] for policy in shown["kinds"].values())
    assert shown["committee"] == {"threshold": 0, "size": 0, "members": []}
    assert shown["sim_allowed"] is True and shown["governance"] == gov.account.address
    assert shown["parameters"]["min_stake"] == str(10**18)
    text = gov.run("chain", "show")
    assert "none (`capa chain kind enable KIND`)" in text.stdout
    assert "not set (`capa chain committee set`)" in text.stdout


def test_enable_and_disable_a_kind(gov: Governance) -> None:
    enabled = gov.json(
        "chain", "kind", "enable", "tdx", "--min-tcb", "sw-hardening-needed", signed=True
    )
    assert enabled["enabled"] is True and enabled["min_tcb_status"] == "sw-hardening-needed"
    assert gov.json("chain", "show")["kinds"]["tdx"] == {
        "enabled": True,
        "min_tcb_status": "sw-hardening-needed",
    }
    sim = gov.run("chain", "kind", "enable", "sim", signed=True)
    assert sim.exit_code == 0 and "INSECURE" in sim.stderr
    disabled = gov.json("chain", "kind", "disable", "tdx", signed=True)
    assert disabled["enabled"] is False
    assert disabled["min_tcb_status"] == "sw-hardening-needed"  # kept for a later enable
    unknown = gov.run("chain", "kind", "enable", "tpm", signed=True)
    assert unknown.exit_code == 2 and "unknown TEE kind 'tpm'" in unknown.stderr
    bad_tcb = gov.run("chain", "kind", "enable", "tdx", "--min-tcb", "shiny", signed=True)
    assert bad_tcb.exit_code == 2 and "unknown TCB status 'shiny'" in bad_tcb.stderr


def test_a_stranger_is_refused_in_words_and_nothing_is_sent(
    gov: Governance, tmp_path: Path, anvil: AnvilNode
) -> None:
    stranger = Account.create()
    fund(ChainClient(anvil.rpc_url), stranger.address, 10**18)
    keystore, _ = write_keystore(tmp_path, stranger)
    result = gov.run("chain", "kind", "enable", "sgx", keystore=keystore)
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        "capa: chain kind enable: the AttestationVerifier refuses it: "
        f"{stranger.address} does not hold the approver role (it sets kind policies and "
        "approves measurements)"
    )
    assert ChainClient(anvil.rpc_url).w3.eth.get_transaction_count(stranger.address) == 0


def test_measurements_approve_show_revoke(gov: Governance) -> None:
    approved = gov.json(
        "chain", "measurement", "approve", "tdx", MRTD, "--until", "+30d", signed=True
    )
    assert approved["id"] == 1 and len(approved["measurement"]) == 66  # hashed to one word
    shown = gov.json("chain", "measurement", "show", "tdx", MRTD)
    assert shown["state"] == "approved" and shown["not_after"] == approved["not_after"]
    text = gov.run("chain", "measurement", "show", "tdx", MRTD)
    assert re.search(r": approved until \d{4}-\d{2}-\d{2} ", text.stdout)

    past = gov.run(
        "chain", "measurement", "approve", "tdx", MRTD, "--until", "2001-01-01", signed=True
    )
    assert past.exit_code == 2 and "is not in the future" in past.stderr

    unconfirmed = gov.run("chain", "measurement", "revoke", "tdx", MRTD, signed=True)
    assert unconfirmed.exit_code == 2 and "hint: add --yes" in unconfirmed.stderr
    revoked = gov.json("chain", "measurement", "revoke", "tdx", MRTD, "--yes", signed=True)
    assert revoked["revoked"] is True
    assert gov.json("chain", "measurement", "show", "tdx", MRTD)["state"] == "revoked"
    again = gov.run("chain", "measurement", "approve", "tdx", MRTD, signed=True)
    assert again.exit_code == 1
    assert "measurement #1 is revoked, and revocation is final" in again.stderr
    never = gov.json("chain", "measurement", "show", "sgx", "0x" + "cd" * 32)
    assert never["state"] == "never approved" and never["id"] == 0


def test_committee_set_and_show(gov: Governance) -> None:
    a, b = sorted((Account.create().address for _ in range(2)), key=str.lower)
    committee = gov.json(
        "chain", "committee", "set", "--add", a, "--add", b, "--threshold", "2", signed=True
    )
    assert committee["threshold"] == 2 and committee["size"] == 2
    assert set(gov.json("chain", "committee", "show")["members"]) == {a, b}
    too_high = gov.run("chain", "committee", "set", "--remove", a, "--threshold", "2", signed=True)
    assert too_high.exit_code == 1
    assert "a threshold of 2 needs between 1 and 1 committee members" in too_high.stderr
    gov.json("chain", "committee", "set", "--remove", a, "--threshold", "1", signed=True)
    shown = gov.json("chain", "committee", "show")
    assert shown == {"threshold": 1, "size": 1, "members": [b]}
    assert f"1 of 1: {b}" in gov.run("chain", "show").stdout


def test_sim_is_refused_on_a_production_deployment(tmp_path: Path, anvil: AnvilNode) -> None:
    production = Governance(tmp_path, anvil, allow_sim=False)
    result = production.run("chain", "kind", "enable", "sim", signed=True)
    assert result.exit_code == 1
    assert "this deployment refuses the sim kind (no hardware, INSECURE)" in result.stderr


def test_the_config_names_the_deployment_and_the_signer(
    provider_node: CliNode, market: Market, tmp_path: Path
) -> None:
    """Without --deployment and --keystore: the config's market and keystore (here not
    governance, so refused), and a governance keystore with the config's market."""
    shown = json.loads(provider_node.run("chain", "show", "--json").stdout)
    assert shown["market"] == market.deployment.market
    refused = provider_node.run("chain", "kind", "enable", "tdx")
    assert refused.exit_code == 1 and "does not hold the approver role" in refused.stderr
    governance = Account.from_key(DEV_PRIVATE_KEYS[0])  # the fixture's deployer
    keystore, password = write_keystore(tmp_path, governance)
    allowed = provider_node.run(
        "chain",
        "kind",
        "enable",
        "tdx",
        "--keystore",
        str(keystore),
        "--password-file",
        str(password),
    )
    assert allowed.exit_code == 0, allowed.output
    missing = CliRunner().invoke(
        app_(), ["chain", "show", "--config", str(tmp_path / "none.toml")], env={"COLUMNS": "200"}
    )
    assert missing.exit_code == 2
    assert "no --deployment FILE given and no config at" in missing.stderr

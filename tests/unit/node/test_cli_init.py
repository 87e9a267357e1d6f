"""`capa init`: errors name the user's flags and files, a failed init leaves nothing behind,
hints name the real flag, the API port avoids one in use, and a deployment manifest fills
in the chain."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

import node.cli.init as init_module
from node.chain.manifest import ContractRecord, DeploymentManifest, write_manifest
from node.cli.main import app
from node.config.loader import load_config
from node.keys.account import load_account

runner = CliRunner()
ENV = {"CAPA_KEYSTORE_PASSWORD": "pw", "COLUMNS": "200"}
FAST = ["--scrypt-n", "16"]


def _init(*args: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return runner.invoke(app, ["init", *args, *FAST], env=ENV if env is None else env)


def _tree(directory: Path) -> list[str]:
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*"))


def test_a_bad_flag_is_named_and_nothing_is_written(tmp_path: Path) -> None:
    target = tmp_path / "node"
    result = _init("--role", "client", "--dir", str(target), "--rpc-url", "ftp://example")
    assert result.exit_code == 2
    assert result.stderr.startswith("capa: init: --rpc-url ['ftp://example']: expected a list")
    assert ".new" not in result.output and ".tmp" not in result.output
    assert not target.exists()


def test_a_key_in_the_way_fails_and_takes_back_what_it_made(tmp_path: Path) -> None:
    identity = tmp_path / "keys" / "identity.key"
    identity.parent.mkdir()
    identity.write_bytes(b"\x01" * 32)
    result = _init("--role", "provider", "--backend", "sim", "--dir", str(tmp_path))
    assert result.exit_code == 1
    assert "refusing to overwrite a key" in result.stderr
    assert _tree(tmp_path) == ["keys", "keys/identity.key"]  # the keystore made first is gone
    assert identity.read_bytes() == b"\x01" * 32  # and what was there is untouched


def test_an_interrupted_init_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(path: Path) -> None:
        path.write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(init_module, "create_identity", interrupted)
    target = tmp_path / "deep" / "node"
    result = _init("--role", "verifier", "--dir", str(target))
    assert result.exit_code == 130
    assert "capa: init: interrupted" in result.stderr
    assert not (tmp_path / "deep").exists()


def test_no_password_names_the_flag(tmp_path: Path) -> None:
    result = _init("--role", "client", "--dir", str(tmp_path), env={"COLUMNS": "200"})
    assert result.exit_code == 2
    assert "--password-file FILE" in result.stderr
    assert "keys.password_file" not in result.stderr
    assert _tree(tmp_path) == []


def test_the_password_file_flag_wins_over_the_environment(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("from a file\n")
    node_dir = tmp_path / "node"
    result = _init(
        "--role",
        "client",
        "--dir",
        str(node_dir),
        "--password-file",
        str(secret),
        env={"CAPA_KEYSTORE_PASSWORD": "from the environment"},
    )
    assert result.exit_code == 0, result.output
    keystore = load_config(node_dir / "capa.toml", env={}).keys.keystore
    load_account(keystore, "from a file")  # raises WrongPassword otherwise


@pytest.fixture
def default_port_taken() -> Iterator[None]:
    with socket.socket() as holder:
        try:
            holder.bind(("127.0.0.1", init_module.DEFAULT_API_PORT))
            holder.listen()
        except OSError:
            pass  # something else holds it already: as good
        yield


@pytest.mark.usefixtures("default_port_taken")
def test_a_second_node_gets_a_free_api_port(tmp_path: Path) -> None:
    result = _init("--role", "client", "--dir", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert f"port {init_module.DEFAULT_API_PORT} is in use" in result.stderr
    port = load_config(tmp_path / "capa.toml", env={}).api.port
    assert port != init_module.DEFAULT_API_PORT and init_module.port_is_free(port)


def _manifest(path: Path, chain_id: int = 11155111) -> DeploymentManifest:
    address = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
    record = ContractRecord(address, "ab" * 32, "cd" * 32, "0x" + "ef" * 32)
    manifest = DeploymentManifest(
        chain_id=chain_id,
        deploy_block=4242,
        deployer=address,
        governance=address,
        treasury=address,
        token="0x0000000000000000000000000000000000000000",
        sim_allowed=False,
        parameters={"min_stake": 10**18},
        contracts={"ProviderRegistry": record, "AttestationVerifier": record, "JobMarket": record},
    )
    write_manifest(path, manifest)
    return manifest


def test_init_from_a_deployment_manifest(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path / "deployments" / "11155111.json")
    node_dir = tmp_path / "node"
    result = _init(
        "--role",
        "provider",
        "--backend",
        "sim",
        "--dir",
        str(node_dir),
        "--deployment",
        str(tmp_path / "deployments" / "11155111.json"),
        "--api-port",
        "0",
        "--json",
    )
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown["market"] == manifest.market and shown["api_port"] == 0
    config = load_config(node_dir / "capa.toml", env={})
    assert config.chain.chain_id == 11155111
    assert config.chain.market == manifest.market
    assert config.chain.start_block == 4242


def test_a_manifest_contradicted_or_broken_is_a_usage_error(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    _manifest(path)
    contradicted = _init(
        "--role",
        "client",
        "--dir",
        str(tmp_path / "a"),
        "--deployment",
        str(path),
        "--chain-id",
        "1",
    )
    assert contradicted.exit_code == 2
    assert "--chain-id 1 contradicts" in contradicted.stderr
    missing = _init(
        "--role",
        "client",
        "--dir",
        str(tmp_path / "b"),
        "--deployment",
        str(tmp_path / "none.json"),
    )
    assert missing.exit_code == 2 and "none.json not found" in missing.stderr
    broken = json.loads(path.read_text())
    broken["contracts"]["JobMarket"]["address"] = "0x1234"
    path.write_text(json.dumps(broken))
    bad = _init("--role", "client", "--dir", str(tmp_path / "c"), "--deployment", str(path))
    assert bad.exit_code == 2
    assert "contracts.JobMarket.address = '0x1234': expected a checksummed address" in bad.stderr
    assert not (tmp_path / "a").exists() and not (tmp_path / "c").exists()


def test_a_provider_without_a_tee_must_name_its_backend_and_sim_is_written_as_named(
    tmp_path: Path,
) -> None:
    from node.enclave.probe import probe_attesters

    if any(c.available and c.name != "sim" for c in probe_attesters()):
        pytest.skip("this machine has a TEE: init picks it")
    refused = _init("--role", "provider", "--dir", str(tmp_path / "a"))
    assert refused.exit_code == 2
    assert "no TEE this node can attest" in refused.stderr and "--backend sim" in refused.stderr
    assert not (tmp_path / "a").exists()
    named = _init("--role", "provider", "--backend", "sim", "--dir", str(tmp_path / "b"))
    assert named.exit_code == 0, named.output
    assert 'backend = "sim"' in (tmp_path / "b" / "capa.toml").read_text()

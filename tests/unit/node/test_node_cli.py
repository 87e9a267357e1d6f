"""The CLI: `capa init` per role, and one clear line for a broken config or store."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

import node.cli.node_run  # noqa: F401  (registers run, status, ... on node_app)
from node.cli.init import init_command
from node.cli.node import node_app
from node.config.loader import load_config

runner = CliRunner()
ENV = {"CAPA_KEYSTORE_PASSWORD": "pw"}


def _init_app() -> typer.Typer:
    app = typer.Typer()
    app.command("init")(init_command)

    @app.callback()
    def _group() -> None:
        """Keeps `init` a subcommand, as in the real `capa` app."""

    return app


def _init(directory: Path, role: str) -> None:
    result = runner.invoke(
        _init_app(),
        ["init", "--role", role, "--dir", str(directory), "--scrypt-n", "16", "--api-port", "0"]
        + (["--backend", "sim"] if role == "provider" else []),
        env=ENV,
    )
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("role", ["provider", "client", "verifier"])
def test_init_writes_a_loadable_config_and_keys_per_role(tmp_path: Path, role: str) -> None:
    _init(tmp_path, role)
    config = load_config(tmp_path / "capa.toml", env={})
    assert config.node.role.value == role
    assert config.keys.keystore.stat().st_mode & 0o777 == 0o600
    assert config.keys.identity.stat().st_mode & 0o777 == 0o600
    assert "# " in (tmp_path / "capa.toml").read_text()  # commented
    again = runner.invoke(
        _init_app(), ["init", "--role", role, "--dir", str(tmp_path), "--scrypt-n", "16"], env=ENV
    )
    assert again.exit_code == 1 and "refusing to overwrite" in again.output


def test_run_with_a_broken_config_prints_one_line_and_exits_1(tmp_path: Path) -> None:
    _init(tmp_path, "provider")
    config = tmp_path / "capa.toml"
    config.write_text(config.read_text().replace("confirmations = 2", "confirmations = -3"))
    result = runner.invoke(node_app, ["run", "--config", str(config)], env=ENV)
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1
    assert (
        "chain.confirmations = -3" in lines[0] and "expected an integer from 0 to 1000" in lines[0]
    )


def test_run_with_a_damaged_store_prints_one_line_and_keeps_the_file(tmp_path: Path) -> None:
    _init(tmp_path, "provider")
    config = tmp_path / "capa.toml"
    text = config.read_text().replace(
        'market = ""', 'market = "0x5FbDB2315678afecb367f032d93F642f64180aa3"'
    )
    config.write_text(text)
    store = tmp_path / "node.sqlite"
    store.write_bytes(b"SQLite format 3\x00" + b"\xff" * 4000)
    before = hashlib.sha256(store.read_bytes()).hexdigest()
    result = runner.invoke(node_app, ["run", "--config", str(config)], env=ENV)
    assert result.exit_code == 1
    assert "left untouched" in result.output
    assert hashlib.sha256(store.read_bytes()).hexdigest() == before


def test_status_without_a_daemon_says_so(tmp_path: Path) -> None:
    _init(tmp_path, "client")
    result = runner.invoke(node_app, ["status", "--config", str(tmp_path / "capa.toml")], env=ENV)
    assert result.exit_code == 1
    assert "capa node run" in result.output

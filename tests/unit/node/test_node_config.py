"""Config: the template loads, env overrides apply, every bad setting gives one clear line."""

from __future__ import annotations

from pathlib import Path

import pytest

from node.config.errors import ConfigError
from node.config.loader import load_config
from node.config.model import Role
from node.config.template import render_config

MARKET = "0x5FbDB2315678afecb367f032d93F642f64180aa3"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "capa.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("role", list(Role))
def test_the_written_template_loads_for_every_role(tmp_path: Path, role: Role) -> None:
    text = render_config(
        role, rpc_urls=["http://127.0.0.1:8545"], chain_id=31337, market=MARKET, api_port=7420
    )
    config = load_config(_write(tmp_path, text), env={})
    assert config.node.role is role
    assert config.chain.market == MARKET
    assert config.chain.confirmations == 2
    assert config.keys.keystore == tmp_path / "keys" / "account.json"
    assert config.api.host == "127.0.0.1"


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    text = render_config(
        Role.CLIENT, rpc_urls=["http://127.0.0.1:8545"], chain_id=1, market="", api_port=0
    )
    config = load_config(
        _write(tmp_path, text),
        env={
            "CAPA_CHAIN_RPC_URLS": "http://127.0.0.1:1, http://127.0.0.1:2",
            "CAPA_CHAIN_CONFIRMATIONS": "5",
            "CAPA_LOG_JSON": "true",
            "CAPA_KEYSTORE_PASSWORD": "not a setting: the default password variable",
        },
    )
    assert config.chain.rpc_urls == ("http://127.0.0.1:1", "http://127.0.0.1:2")
    assert config.chain.confirmations == 5
    assert config.log.json is True
    assert config.chain.market is None


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        ('[node]\nrole = "miner"\n', {}, "node.role = 'miner'"),
        ("[node]\n", {}, "node.role is missing"),
        ('[node]\nrole = "client"\n', {}, "chain.rpc_urls is missing"),
        (
            '[node]\nrole = "client"\n[chain]\nrpc_urls = ["http://x"]\nchain_id = 1\nconfirmations = "two"\n',
            {},
            "chain.confirmations = 'two'",
        ),
        (
            '[node]\nrole = "client"\n[chain]\nrpc_urls = ["http://x"]\nchain_id = 1\nmarket = "0x12"\n',
            {},
            "chain.market = '0x12'",
        ),
        (
            '[node]\nrole = "client"\n[chain]\nrpc_urls = ["http://x"]\nchain_id = 1\n[api]\nhost = "0.0.0.0"\n',
            {},
            "api.host = '0.0.0.0'",
        ),
        (
            '[node]\nrole = "client"\n[chain]\nrpc_urls = ["http://x"]\nchain_id = 1\n',
            {"CAPA_CHAIN_POLL_INTERVAL": "often"},
            "chain.poll_interval = 'often' (from CAPA_CHAIN_POLL_INTERVAL)",
        ),
        ('[node]\nrole = "client"\ncolour = "blue"\n', {}, "node.colour"),
        ("[node\nrole = client", {}, "is not valid TOML"),
    ],
)
def test_a_bad_setting_gives_one_line_naming_the_key_and_the_form(
    tmp_path: Path, text: str, env: dict[str, str], expected: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(_write(tmp_path, text), env=env)
    message = str(caught.value)
    assert expected in message
    assert "\n" not in message
    assert "expected" in message or "TOML" in message


def test_a_missing_file_says_how_to_create_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="capa init"):
        load_config(tmp_path / "absent.toml", env={})


def test_run_requires_the_market(tmp_path: Path) -> None:
    text = render_config(
        Role.PROVIDER, rpc_urls=["http://127.0.0.1:8545"], chain_id=1, market="", api_port=0
    )
    config = load_config(_write(tmp_path, text), env={})
    with pytest.raises(ConfigError, match=r"chain.market is missing.*0x followed by 40 hex digits"):
        config.require_market()

"""Config: the template loads, env overrides apply, every bad setting gives one clear line."""

from __future__ import annotations

from pathlib import Path

import pytest

from node.config.errors import ConfigError
from node.config.loader import load_config
from node.config.model import Backend, Role
from node.config.template import render_config

MARKET = "0x5FbDB2315678afecb367f032d93F642f64180aa3"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "capa.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("role", list(Role))
def test_the_written_template_loads_for_every_role(tmp_path: Path, role: Role) -> None:
    text = render_config(
        role,
        rpc_urls=["http://127.0.0.1:8545"],
        chain_id=31337,
        market=MARKET,
        api_port=7420,
        backend=Backend.SIM if role is Role.PROVIDER else None,
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
        Role.PROVIDER,
        rpc_urls=["http://127.0.0.1:8545"],
        chain_id=1,
        market="",
        api_port=0,
        backend=Backend.SIM,
    )
    config = load_config(_write(tmp_path, text), env={})
    with pytest.raises(ConfigError, match=r"chain.market is missing.*0x followed by 40 hex digits"):
        config.require_market()


def test_the_p2p_section_defaults_overrides_and_daemon_settings(tmp_path: Path) -> None:
    from node.daemon.p2p_service import p2p_config_for
    from node.p2p.identity import NodeIdentity

    text = render_config(
        Role.PROVIDER,
        rpc_urls=["http://127.0.0.1:8545"],
        chain_id=31337,
        market=MARKET,
        api_port=0,
        backend=Backend.SIM,
    )
    config = load_config(_write(tmp_path, text), env={})
    assert config.p2p.enabled and config.p2p.listen_addrs == ("/ip4/0.0.0.0/tcp/4001",)
    seed = NodeIdentity.generate().peer_id
    bootstrap = f"/ip4/203.0.113.7/tcp/4001/p2p/{seed}"
    config = load_config(
        _write(tmp_path, text),
        env={
            "CAPA_P2P_LISTEN_ADDRS": "/ip4/127.0.0.1/tcp/0",
            "CAPA_P2P_BOOTSTRAP_PEERS": bootstrap,
            "CAPA_P2P_MAX_STREAMS_PER_PEER": "32",
            "CAPA_P2P_BAN_DURATION": "60",
        },
    )
    p2p = p2p_config_for(config)
    assert p2p.listen_addrs == ("/ip4/127.0.0.1/tcp/0",)
    assert [str(peer) for peer in p2p.bootstrap_peers] == [bootstrap]
    assert p2p.peer_limits.max_inbound_streams_per_peer == 32
    assert p2p.penalties.ban_duration_s == 60.0
    assert p2p.chain_id == 31337 and p2p.market_address == MARKET
    assert p2p.peer_store_path == tmp_path / "peers.json"


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ('listen_addrs = ["tcp://0.0.0.0:4001"]', "p2p.listen_addrs = ['tcp://0.0.0.0:4001']"),
        ("listen_addrs = []", "p2p.listen_addrs = []"),
        ('bootstrap_peers = ["/ip4/1.2.3.4/tcp/4001"]', "p2p.bootstrap_peers"),
        ("max_connections = 2", "p2p.max_connections = 2"),
    ],
)
def test_a_bad_p2p_setting_names_the_key(tmp_path: Path, setting: str, expected: str) -> None:
    text = (
        '[node]\nrole = "client"\n[chain]\nrpc_urls = ["http://x"]\nchain_id = 1\n'
        f"[p2p]\n{setting}\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_config(_write(tmp_path, text), env={})
    assert expected in str(caught.value) and "expected" in str(caught.value)


def test_a_p2p_setting_the_p2p_layer_refuses_stops_the_daemon_with_one_line(
    tmp_path: Path,
) -> None:
    from node.daemon.errors import DaemonError
    from node.daemon.p2p_service import p2p_config_for

    text = render_config(
        Role.PROVIDER,
        rpc_urls=["http://127.0.0.1:8545"],
        chain_id=1,
        market=MARKET,
        api_port=0,
        backend=Backend.SIM,
    )
    # Well-formed to the loader, which only checks the shape: the p2p layer parses it fully.
    config = load_config(
        _write(tmp_path, text), env={"CAPA_P2P_LISTEN_ADDRS": "/ip4/999.0.0.1/tcp/4001"}
    )
    with pytest.raises(DaemonError, match=r"\[p2p\] in .*not a multiaddr"):
        p2p_config_for(config)


def test_a_provider_config_must_name_its_backend(tmp_path: Path) -> None:
    text = render_config(
        Role.PROVIDER, rpc_urls=["http://127.0.0.1:8545"], chain_id=1, market="", api_port=0
    )
    assert 'backend = ""' in text
    with pytest.raises(
        ConfigError, match=r"provider.backend is missing.*names its enclave backend"
    ):
        load_config(_write(tmp_path, text), env={})
    text = render_config(
        Role.CLIENT, rpc_urls=["http://127.0.0.1:8545"], chain_id=1, market="", api_port=0
    )
    assert load_config(_write(tmp_path, text), env={}).provider.backend is None

"""Each devnet node's directory: keys, password file and the config `capa node run` reads.

`capa init` writes the commented template for a person to edit; a devnet needs settings
the template leaves to that person (loopback listen ports, bootstrap peers, the provider's
workloads and stake, sim allowed), so the config is written here in full from the same
keys the loader knows, and checked by that loader before any node starts.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from node.config.errors import ConfigError
from node.config.loader import parse_config
from node.config.model import Role
from node.devnet.errors import DevnetError
from node.keys.account import create_keystore
from node.keys.errors import KeysError
from node.keys.files import write_secret_file
from node.keys.identity import create_identity

CONFIG_NAME = "capa.toml"
LOG_NAME = "node.log"
PASSWORD_NAME = "password"

Settings = dict[str, dict[str, Any]]


@dataclass(frozen=True)
class NodeKeys:
    address: str
    peer_id: str


def create_node_keys(directory: Path, *, scrypt_n: int) -> NodeKeys:
    """A fresh account keystore (its password in a file beside it) and libp2p identity."""
    password = secrets.token_hex(16)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        write_secret_file(directory / PASSWORD_NAME, password.encode())
        (directory / "keys").mkdir(exist_ok=True)
        address = create_keystore(
            directory / "keys" / "account.json", password, kdf_iterations=scrypt_n
        )
        identity = create_identity(directory / "keys" / "identity.key")
    except (KeysError, OSError) as exc:
        raise DevnetError(f"creating the keys in {directory}: {exc}") from exc
    return NodeKeys(str(address), identity.peer_id)


def peer_address(port: int, peer_id: str) -> str:
    return f"/ip4/127.0.0.1/tcp/{port}/p2p/{peer_id}"


def base_settings(
    role: Role,
    *,
    rpc_url: str,
    chain_id: int,
    market: str,
    start_block: int,
    p2p_port: int,
    bootstrap_peers: list[str],
    rendezvous_server: bool,
    confirmations: int,
    poll_interval: float,
    log_level: str,
) -> Settings:
    return {
        "node": {"role": role.value, "data_dir": "."},
        "keys": {
            "keystore": "keys/account.json",
            "identity": "keys/identity.key",
            # A variable nobody sets: the password file wins even when the user's shell
            # exports CAPA_KEYSTORE_PASSWORD for a node of their own.
            "password_env": "CAPA_DEVNET_UNUSED_PASSWORD",
            "password_file": PASSWORD_NAME,
        },
        "chain": {
            "rpc_urls": [rpc_url],
            "chain_id": chain_id,
            "market": market,
            "start_block": start_block,
            "confirmations": confirmations,
            "poll_interval": poll_interval,
            "request_timeout": 5.0,
            "bump_after": 15.0,
        },
        "api": {"host": "127.0.0.1", "port": 0},
        "log": {"level": log_level, "json": False},
        "p2p": {
            "enabled": True,
            "listen_addrs": [f"/ip4/127.0.0.1/tcp/{p2p_port}"],
            "bootstrap_peers": bootstrap_peers,
            "rendezvous_server": rendezvous_server,
        },
    }


def merge_settings(base: Settings, extra: Mapping[str, Mapping[str, Any]]) -> Settings:
    merged = {section: dict(values) for section, values in base.items()}
    for section, values in extra.items():
        merged.setdefault(section, {}).update(values)
    return merged


def write_config(directory: Path, settings: Settings) -> Path:
    """Write the TOML and read it back through the node's own loader: a setting the node
    would refuse stops the devnet here, naming the file and the key."""
    path = directory / CONFIG_NAME
    text = render_toml(settings)
    try:
        parse_config(text, path, env={})
    except ConfigError as exc:
        raise DevnetError(f"the devnet wrote a config the node refuses: {exc}") from exc
    path.write_text(text, encoding="utf-8")
    return path


def render_toml(settings: Settings) -> str:
    """TOML for the value types a node config holds: strings, numbers, booleans, lists of
    those, and lists of tables (the provider's workloads)."""
    lines = ["# Written by `capa devnet up|prepare` for a local devnet (sim allowed: INSECURE)."]
    for section, values in settings.items():
        tables = {k: v for k, v in values.items() if _is_table_list(v)}
        lines.append("")
        lines.append(f"[{section}]")
        for key, value in values.items():
            if key not in tables:
                lines.append(f"{key} = {_value(value)}")
        for key, rows in tables.items():
            for row in rows:
                lines.append("")
                lines.append(f"[[{section}.{key}]]")
                lines.extend(f"{k} = {_value(v)}" for k, v in row.items())
    return "\n".join(lines) + "\n"


def _is_table_list(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        # A JSON string is a valid TOML basic string for the text a config holds.
        return json.dumps(str(value), ensure_ascii=False)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    raise DevnetError(f"cannot write {value!r} into a node config")

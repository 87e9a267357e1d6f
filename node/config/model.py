"""The node's configuration as frozen values; `loader` builds them from TOML and the environment."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from node.state.values import Address


class Role(StrEnum):
    PROVIDER = "provider"
    CLIENT = "client"
    VERIFIER = "verifier"


@dataclass(frozen=True)
class NodeSection:
    role: Role
    data_dir: Path


@dataclass(frozen=True)
class KeysSection:
    keystore: Path
    identity: Path
    password_env: str
    password_file: Path | None


@dataclass(frozen=True)
class ChainSection:
    rpc_urls: tuple[str, ...]
    chain_id: int
    market: Address | None
    confirmations: int
    poll_interval: float
    start_block: int
    request_timeout: float
    max_fee_gwei: float
    priority_fee_gwei: float
    bump_after: float
    bump_percent: int
    log_range: int


@dataclass(frozen=True)
class ApiSection:
    host: str
    port: int
    token_file: Path


@dataclass(frozen=True)
class StoreSection:
    path: Path
    snapshot_every: int


@dataclass(frozen=True)
class LogSection:
    level: str
    json: bool


@dataclass(frozen=True)
class P2PSection:
    enabled: bool
    listen_addrs: tuple[str, ...]
    bootstrap_peers: tuple[str, ...]
    rendezvous_server: bool
    target_connections: int
    max_connections: int
    max_connections_per_ip: int
    max_pending_handshakes: int
    max_streams_per_peer: int
    ban_duration: float


@dataclass(frozen=True)
class NodeConfig:
    source: Path
    node: NodeSection
    keys: KeysSection
    chain: ChainSection
    api: ApiSection
    store: StoreSection
    log: LogSection
    p2p: P2PSection

    def require_market(self) -> Address:
        from node.config.errors import SettingError

        if self.chain.market is None:
            raise SettingError(
                "chain.market",
                "the JobMarket contract address (0x followed by 40 hex digits)",
                source=str(self.source),
            )
        return self.chain.market

"""The node's configuration as frozen values; `loader` builds them from TOML and the environment."""

from __future__ import annotations

from dataclasses import dataclass, field
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


class Backend(StrEnum):
    SIM = "sim"  # real sandboxes, no hardware: INSECURE
    TDX = "tdx"
    SEV_SNP = "sev-snp"
    SGX_GRAMINE = "sgx-gramine"


@dataclass(frozen=True)
class WorkloadConfig:
    """A workload this provider serves: what it runs and how much one job may use."""

    name: str = field(
        metadata={
            "about": "The workload's name, as clients ask for it (1-64 of A-Z a-z 0-9 . _ -)."
        }
    )
    kind: str = field(metadata={"about": '"wasm", "onnx" or "exec": how the enclave runs it.'})
    path: Path = field(
        metadata={
            "about": "The WebAssembly module, the ONNX model, or the root filesystem of an exec "
            "workload; relative to node.data_dir."
        }
    )
    argv: tuple[str, ...] = field(
        default=(),
        metadata={"about": "The command line of an exec workload (exec only, required there)."},
    )
    memory_mib: int = field(default=256, metadata={"about": "Memory one job may use, MiB (>= 16)."})
    wall_seconds: int = field(
        default=60, metadata={"about": "Wall-clock time one job may run, seconds (>= 1)."}
    )
    cpu_cores: int = field(default=1, metadata={"about": "CPU cores one job may use (>= 1)."})


@dataclass(frozen=True)
class ProviderSection:
    backend: Backend | None  # None only for other roles: a provider must name one
    workloads: tuple[WorkloadConfig, ...]
    stake: int  # wei; 0: never register by itself
    price_per_hour: int  # wei
    surge_percent: int
    cpu_cores: int  # 0: what `capa node probe` finds
    memory_mib: int  # 0: what `capa node probe` finds
    min_duration: int
    max_duration: int
    quote_ttl: int
    batch_size: int
    batch_max_wait: int
    withdraw_threshold: int  # wei; 0: never withdraw by itself
    key_ttl: int
    rekey_margin: int
    verifiers: tuple[str, ...]  # multiaddrs with /p2p/<peer id>
    input_store_bytes: int


@dataclass(frozen=True)
class ClientSection:
    policy_file: Path | None  # None: the default production policy (no sim, no debug)
    allow_sim: bool  # accept INSECURE sim enclaves (devnets only)
    max_candidates: int
    max_input_bytes: int
    output_dir: Path


@dataclass(frozen=True)
class VerifierSection:
    policy_file: Path | None
    allow_sim: bool
    collateral_dir: Path | None  # offline PCS/KDS collateral; None: the live services below
    pcs_url: str  # Intel PCS, or a PCCS speaking its v4 API
    kds_url: str  # AMD KDS
    collateral_cache_dir: Path  # what the live services answered, kept until it expires
    max_key_ttl: int
    max_nonce_age: int  # seconds a binding's block may be old
    requests_per_minute: int  # per peer


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
    provider: ProviderSection
    client: ClientSection
    verifier: VerifierSection

    def require_market(self) -> Address:
        from node.config.errors import SettingError

        if self.chain.market is None:
            raise SettingError(
                "chain.market",
                "the JobMarket contract address (0x followed by 40 hex digits)",
                source=str(self.source),
            )
        return self.chain.market

"""Read the TOML config, apply `CAPA_<SECTION>_<KEY>` environment overrides, validate every key.

Each setting is described once (its parser, default and the form it expects), so that every
error names the key, where the value came from and what would have been accepted.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from node.amounts import AmountError, parse_amount
from node.config.errors import ConfigFileError, SettingError
from node.config.model import (
    ApiSection,
    Backend,
    ChainSection,
    ClientSection,
    KeysSection,
    LogSection,
    NodeConfig,
    NodeSection,
    P2PSection,
    ProviderSection,
    Role,
    StoreSection,
    VerifierSection,
    WorkloadConfig,
)
from node.state.values import Address, to_address

ENV_PREFIX = "CAPA_"
_REQUIRED = object()
_ADDRESS_RE = re.compile(r"^0x[0-9a-fA-F]{40}$")
_LOG_LEVELS = ("debug", "info", "warning", "error")


class _Invalid(ValueError):
    """A parser refused a value; the caller turns it into a SettingError."""


@dataclass(frozen=True)
class _Setting:
    parse: Callable[[Any, bool], Any]  # (value, from_env) -> parsed
    expected: str
    default: Any = _REQUIRED
    about: str = ""  # what the setting means, for the configuration reference


def _int(minimum: int, maximum: int | None = None) -> Callable[[Any, bool], int]:
    def parse(value: Any, from_env: bool) -> int:
        if from_env and isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Invalid
        if value < minimum or (maximum is not None and value > maximum):
            raise _Invalid
        return value

    return parse


def _float(minimum: float) -> Callable[[Any, bool], float]:
    def parse(value: Any, from_env: bool) -> float:
        if from_env and isinstance(value, str):
            try:
                value = float(value)
            except ValueError as exc:
                raise _Invalid from exc
        if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum:
            raise _Invalid
        return float(value)

    return parse


def _bool(value: Any, from_env: bool) -> bool:
    if from_env and isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
    if not isinstance(value, bool):
        raise _Invalid
    return value


def _text(value: Any, from_env: bool) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _Invalid
    return value.strip()


def _optional_path(value: Any, from_env: bool) -> str | None:
    if not isinstance(value, str):
        raise _Invalid
    return value.strip() or None


def _role(value: Any, from_env: bool) -> Role:
    try:
        return Role(str(value).strip().lower())
    except ValueError as exc:
        raise _Invalid from exc


def _log_level(value: Any, from_env: bool) -> str:
    if not isinstance(value, str) or value.lower() not in _LOG_LEVELS:
        raise _Invalid
    return value.lower()


def _optional_address(value: Any, from_env: bool) -> Address | None:
    if not isinstance(value, str):
        raise _Invalid
    if not value.strip():
        return None
    if not _ADDRESS_RE.match(value.strip()):
        raise _Invalid
    return to_address(value.strip())


def _http_url(value: Any, from_env: bool) -> str:
    if not isinstance(value, str) or not re.match(r"^https?://[^\s/]+[^\s]*$", value.strip()):
        raise _Invalid
    return value.strip().rstrip("/")


def _rpc_urls(value: Any, from_env: bool) -> tuple[str, ...]:
    if from_env and isinstance(value, str):
        value = [part for part in value.split(",") if part.strip()]
    if not isinstance(value, list) or not value:
        raise _Invalid
    urls = []
    for item in value:
        if not isinstance(item, str) or not re.match(r"^https?://[^\s/]+", item.strip()):
            raise _Invalid
        urls.append(item.strip())
    return tuple(urls)


# Light checks only: the p2p layer parses multiaddrs fully when the daemon starts, and
# importing it here would slow every CLI command by the cost of loading libp2p.
_TRANSPORT_ADDR_RE = re.compile(r"^/(ip4|ip6|dns|dns4|dns6)/[^/\s]+/tcp/\d{1,5}$")
_PEER_ADDR_RE = re.compile(
    r"^/(ip4|ip6|dns|dns4|dns6)/[^/\s]+/tcp/\d{1,5}/p2p/[1-9A-HJ-NP-Za-km-z]+$"
)


def _addr_list(
    pattern: re.Pattern[str], allow_empty: bool
) -> Callable[[Any, bool], tuple[str, ...]]:
    def parse(value: Any, from_env: bool) -> tuple[str, ...]:
        if from_env and isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if not isinstance(value, list) or (not value and not allow_empty):
            raise _Invalid
        if not all(isinstance(item, str) and pattern.match(item.strip()) for item in value):
            raise _Invalid
        return tuple(item.strip() for item in value)

    return parse


def _loopback_host(value: Any, from_env: bool) -> str:
    # The API grants control over the node's keys: it never listens beyond this machine.
    if value not in ("127.0.0.1", "localhost", "::1"):
        raise _Invalid
    return str(value)


def _amount(value: Any, from_env: bool) -> int:
    try:
        return parse_amount(value)
    except AmountError as exc:
        raise _Invalid from exc


def _backend(value: Any, from_env: bool) -> Backend | None:
    if value is None or str(value).strip() == "":
        return None  # a provider must name one (checked with the role): sim is never implied
    try:
        return Backend(str(value).strip().lower())
    except ValueError as exc:
        raise _Invalid from exc


def _strings(value: Any, from_env: bool) -> tuple[str, ...]:
    if from_env and isinstance(value, str):
        value = [part for part in value.split(",") if part.strip()]
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise _Invalid
    return tuple(v.strip() for v in value)


_WORKLOAD_KINDS = ("wasm", "onnx", "exec")
_WORKLOAD_KEYS = {"name", "kind", "path", "argv", "memory_mib", "wall_seconds", "cpu_cores"}


def _workloads(value: Any, from_env: bool) -> tuple[dict[str, Any], ...]:
    """A list of tables; paths stay text here and resolve against the data dir later."""
    if from_env and isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise _Invalid from exc
    if not isinstance(value, list):
        raise _Invalid
    seen: set[str] = set()
    out = []
    for item in value:
        if not isinstance(item, dict) or not set(item) <= _WORKLOAD_KEYS:
            raise _Invalid
        name, kind, path = item.get("name"), item.get("kind"), item.get("path")
        if not (isinstance(name, str) and re.fullmatch(r"[A-Za-z0-9._-]{1,64}", name)):
            raise _Invalid
        if kind not in _WORKLOAD_KINDS or not isinstance(path, str) or not path.strip():
            raise _Invalid
        argv = item.get("argv", [])
        if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
            raise _Invalid
        if (kind == "exec") != bool(argv) or name in seen:
            raise _Invalid
        limits = {}
        for key, low in (("memory_mib", 16), ("wall_seconds", 1), ("cpu_cores", 1)):
            if key in item:
                number = item[key]
                if isinstance(number, bool) or not isinstance(number, int) or number < low:
                    raise _Invalid
                limits[key] = number
        seen.add(name)
        out.append(
            {"name": name, "kind": kind, "path": path.strip(), "argv": tuple(argv), **limits}
        )
    return tuple(out)


SCHEMA: dict[str, dict[str, _Setting]] = {
    "node": {
        "role": _Setting(
            _role,
            '"provider", "client" or "verifier"',
            about="What this daemon does: runs jobs (provider), buys them (client), or checks "
            "attestation evidence and signs key approvals (verifier).",
        ),
        "data_dir": _Setting(
            _text,
            "a directory path",
            ".",
            about="The directory every other relative path resolves against; itself relative "
            "to the config file.",
        ),
    },
    "keys": {
        "keystore": _Setting(
            _text,
            "a file path",
            "keys/account.json",
            about="The encrypted keystore of the node's Ethereum account (pays gas, stakes, "
            "escrows, signs approvals).",
        ),
        "identity": _Setting(
            _text,
            "a file path",
            "keys/identity.key",
            about="The libp2p Ed25519 identity: the node's peer id.",
        ),
        "password_env": _Setting(
            _text,
            "the name of an environment variable",
            "CAPA_KEYSTORE_PASSWORD",
            about="The environment variable holding the keystore password; tried first.",
        ),
        "password_file": _Setting(
            _optional_path,
            'a file path or ""',
            "",
            about="A file holding the keystore password, read when the variable is unset; "
            '"" prompts on the terminal instead.',
        ),
    },
    "chain": {
        "rpc_urls": _Setting(
            _rpc_urls,
            'a list of http(s) URLs, e.g. ["http://127.0.0.1:8545"]',
            about="JSON-RPC endpoints of the chain; the first that answers is used until it "
            "stops answering (failover).",
        ),
        "chain_id": _Setting(
            _int(1),
            "a positive integer chain id",
            about="The chain id the RPC must report; the daemon refuses to act on another chain.",
        ),
        "market": _Setting(
            _optional_address,
            'the JobMarket address (0x + 40 hex digits) or ""',
            "",
            about="The JobMarket contract. Required to run a provider or a client; a verifier "
            "without one only answers approval requests.",
        ),
        "confirmations": _Setting(
            _int(0, 1000),
            "an integer from 0 to 1000",
            2,
            about="Blocks a log must be below the head before it drives state; shallower "
            "blocks form the unconfirmed view.",
        ),
        "poll_interval": _Setting(
            _float(0.01),
            "a number of seconds >= 0.01",
            2.0,
            about="Seconds between polls for new blocks and receipts.",
        ),
        "start_block": _Setting(
            _int(0),
            "a block number >= 0",
            0,
            about="The first block scanned when the store is empty (the market's deployment "
            "block is enough).",
        ),
        "request_timeout": _Setting(
            _float(0.1),
            "a number of seconds >= 0.1",
            10.0,
            about="Seconds before one JSON-RPC request is abandoned and the next URL tried.",
        ),
        "max_fee_gwei": _Setting(
            _float(0.0),
            "a number of gwei >= 0",
            500.0,
            about="EIP-1559 fee cap of every transaction the node sends, in gwei.",
        ),
        "priority_fee_gwei": _Setting(
            _float(0.0),
            "a number of gwei >= 0",
            1.0,
            about="EIP-1559 priority fee (tip), in gwei.",
        ),
        "bump_after": _Setting(
            _float(0.1),
            "a number of seconds >= 0.1",
            60.0,
            about="Seconds without a receipt before a transaction is resent with the same "
            "nonce and higher fees.",
        ),
        "bump_percent": _Setting(
            _int(10, 1000),
            "an integer percentage from 10 to 1000",
            20,
            about="How much a resent transaction raises its fees (nodes require at least 10).",
        ),
        "log_range": _Setting(
            _int(1, 100_000),
            "a number of blocks from 1 to 100000",
            2000,
            about="The most blocks asked for in one eth_getLogs.",
        ),
    },
    "api": {
        "host": _Setting(
            _loopback_host,
            '"127.0.0.1" (the API listens on loopback only)',
            "127.0.0.1",
            about="Where the local API the CLI talks to listens; loopback only, since it "
            "controls the node's keys.",
        ),
        "port": _Setting(
            _int(0, 65535),
            "a TCP port from 0 to 65535 (0 = any free port)",
            7420,
            about="The local API's TCP port; give each daemon on one machine its own.",
        ),
        "token_file": _Setting(
            _text,
            "a file path",
            "api.token",
            about="Where the daemon writes a fresh random API token at each start (readable "
            "by this user only); the CLI reads it.",
        ),
    },
    "store": {
        "path": _Setting(
            _text,
            "a file path",
            "node.sqlite",
            about="The SQLite database of the node's state changes and snapshots.",
        ),
        "snapshot_every": _Setting(
            _int(100),
            "an integer >= 100",
            10_000,
            about="A snapshot of the state every this many state changes, to shorten replay "
            "at start.",
        ),
    },
    "log": {
        "level": _Setting(
            _log_level,
            '"debug", "info", "warning" or "error"',
            "info",
            about="The daemon's own log level; libraries log warnings only (`-v`/`-vv` on "
            "`capa node run` raise both).",
        ),
        "json": _Setting(
            _bool,
            "true or false",
            False,
            about="One JSON object per log line instead of text (also `capa node run --log-json`).",
        ),
    },
    "provider": {
        "backend": _Setting(
            _backend,
            '"tdx", "sev-snp", "sgx-gramine" or "sim" (no hardware: INSECURE)',
            "",
            about="The enclave backend jobs run in; a provider must name one (sim is never "
            "implied, and the default policies refuse it).",
        ),
        "workloads": _Setting(
            _workloads,
            "a list of tables with name, kind (wasm|onnx|exec), path, and argv for exec",
            [],
            about="The workloads served, one `[[provider.workloads]]` table each (keys below).",
        ),
        "stake": _Setting(
            _amount,
            'an amount, e.g. "1eth" ("0": do not register by itself)',
            0,
            about="Register and stake this much at start when not registered yet; 0 leaves "
            "it to `capa provider register`.",
        ),
        "price_per_hour": _Setting(
            _amount,
            'an amount per hour, e.g. "0.001eth"',
            0,
            about="The floor price of an hour of this machine, offered to clients.",
        ),
        "surge_percent": _Setting(
            _int(0, 1000),
            "a percentage from 0 to 1000",
            50,
            about="How far above the floor a quote may rise when the machine is busy.",
        ),
        "cpu_cores": _Setting(
            _int(0),
            "a number of cores (0: all this machine has)",
            0,
            about="CPU cores offered; 0: what `capa node probe` finds.",
        ),
        "memory_mib": _Setting(
            _int(0),
            "a number of MiB (0: all this machine has)",
            0,
            about="Memory offered, MiB; 0: what `capa node probe` finds.",
        ),
        "min_duration": _Setting(
            _int(1),
            "a number of seconds >= 1",
            60,
            about="The shortest job duration this provider takes, seconds.",
        ),
        "max_duration": _Setting(
            _int(1),
            "a number of seconds >= 1",
            3600,
            about="The longest job duration this provider takes, seconds.",
        ),
        "quote_ttl": _Setting(
            _int(5),
            "a number of seconds >= 5",
            120,
            about="Seconds a signed quote stays valid for the client to accept on chain.",
        ),
        "batch_size": _Setting(
            _int(1, 1000),
            "a number of results from 1 to 1000",
            1,
            about="Enclave-signed results submitted one by one (1) or in submitResults "
            "batches of up to this many.",
        ),
        "batch_max_wait": _Setting(
            _int(1),
            "a number of seconds >= 1",
            30,
            about="The longest a result waits for its batch to fill, seconds.",
        ),
        "withdraw_threshold": _Setting(
            _amount,
            'an amount ("0": leave earnings in the market)',
            0,
            about="Withdraw earnings by itself once they exceed this amount.",
        ),
        "key_ttl": _Setting(
            _int(600),
            "a number of seconds >= 600",
            7 * 86400,
            about="How long an enclave key is registered for, seconds.",
        ),
        "rekey_margin": _Setting(
            _int(60),
            "a number of seconds >= 60",
            3600,
            about="How long before its key expires a fresh one is attested and registered.",
        ),
        "verifiers": _Setting(
            _strings,
            "a list of verifier multiaddrs ending in /p2p/<peer id>",
            [],
            about="The verifiers asked to approve this provider's enclave keys.",
        ),
        "input_store_bytes": _Setting(
            _int(1 << 20),
            "a number of bytes >= 1048576",
            1 << 30,
            about="The most sealed job input held on disk for clients, in total and per peer.",
        ),
    },
    "client": {
        "policy_file": _Setting(
            _optional_path,
            'a policy file path or "" (default policy)',
            "",
            about="The attestation policy offers' evidence must meet (JSON, as `capa attest "
            'verify --policy`); "": hardware kinds only, no debug, TCB up to date enough, '
            "revocation checked.",
        ),
        "allow_sim": _Setting(
            _bool,
            "true or false (true accepts INSECURE sim enclaves)",
            False,
            about="Accept providers on the sim backend: no hardware, INSECURE; devnets only.",
        ),
        "max_candidates": _Setting(
            _int(1, 100),
            "a number of providers from 1 to 100",
            5,
            about="Providers tried per job before it fails with the reason each was dropped.",
        ),
        "max_input_bytes": _Setting(
            _int(1),
            "a number of bytes",
            16 << 20,
            about="The largest job input the local API accepts from `capa job submit`.",
        ),
        "output_dir": _Setting(
            _text,
            "a directory path",
            "outputs",
            about="Read and checked, but no command uses it yet: results go where "
            "`capa job` is told.",
        ),
    },
    "verifier": {
        "policy_file": _Setting(
            _optional_path,
            'a policy file path or "" (default policy)',
            "",
            about="The attestation policy a provider's evidence must meet before its key is "
            'approved; "": the production policy (hardware kinds only, no debug).',
        ),
        "allow_sim": _Setting(
            _bool,
            "true or false (true approves INSECURE sim enclaves)",
            False,
            about="Approve keys of sim enclaves: no hardware, INSECURE; devnets only.",
        ),
        "collateral_dir": _Setting(
            _optional_path,
            'a collateral directory or ""',
            "",
            about="Offline PCS/KDS collateral (TCB info, CRLs, certificates); "
            '"": fetch it from the live services below.',
        ),
        "pcs_url": _Setting(
            _http_url,
            "an http(s) URL of Intel PCS or a PCCS",
            "https://api.trustedservices.intel.com",
            about="Intel's Provisioning Certification Service (or a PCCS with its v4 API) "
            "for SGX and TDX collateral.",
        ),
        "kds_url": _Setting(
            _http_url,
            "an http(s) URL of AMD KDS",
            "https://kdsintf.amd.com",
            about="AMD's Key Distribution Service for SEV-SNP certificates and CRLs.",
        ),
        "collateral_cache_dir": _Setting(
            _text,
            "a directory path",
            "collateral-cache",
            about="Where answers of the live collateral services are kept until they expire.",
        ),
        "max_key_ttl": _Setting(
            _int(600),
            "a number of seconds >= 600",
            30 * 86400,
            about="The longest an approved key may stay registered from now, seconds.",
        ),
        "max_nonce_age": _Setting(
            _int(10),
            "a number of seconds >= 10",
            900,
            about="How old the block a key binding names as its nonce may be, seconds.",
        ),
        "requests_per_minute": _Setting(
            _int(1),
            "a number >= 1",
            30,
            about="Approval requests one peer may make a minute.",
        ),
    },
    "p2p": {
        "enabled": _Setting(
            _bool,
            "true or false",
            True,
            about="Run the libp2p node (offers, evidence, quotes, inputs, approvals); "
            "false only for a daemon that needs no peers.",
        ),
        "listen_addrs": _Setting(
            _addr_list(_TRANSPORT_ADDR_RE, allow_empty=False),
            'a list of TCP multiaddrs, e.g. ["/ip4/0.0.0.0/tcp/4001"]',
            ["/ip4/0.0.0.0/tcp/4001"],
            about="Where the libp2p node listens; give each daemon on one machine its own port.",
        ),
        "bootstrap_peers": _Setting(
            _addr_list(_PEER_ADDR_RE, allow_empty=True),
            'a list of peer addresses, e.g. ["/ip4/203.0.113.7/tcp/4001/p2p/12D3KooW..."]',
            [],
            about="Peers dialled at start to join the network.",
        ),
        "rendezvous_server": _Setting(
            _bool,
            "true or false",
            False,
            about="Serve peer discovery (rendezvous) to others: for bootstrap nodes.",
        ),
        "target_connections": _Setting(
            _int(2, 1000),
            "an integer from 2 to 1000",
            6,
            about="Connections the node aims to keep.",
        ),
        "max_connections": _Setting(
            _int(4, 100_000),
            "an integer from 4 to 100000",
            256,
            about="The most connections kept, inbound and outbound together.",
        ),
        "max_connections_per_ip": _Setting(
            _int(1, 100_000),
            "an integer >= 1",
            64,
            about="The most inbound connections from one IP address.",
        ),
        "max_pending_handshakes": _Setting(
            _int(1, 10_000),
            "an integer from 1 to 10000",
            64,
            about="The most handshakes in flight at once, in total.",
        ),
        "max_streams_per_peer": _Setting(
            _int(8, 100_000),
            "an integer >= 8",
            128,
            about="The most streams one peer may hold open.",
        ),
        "ban_duration": _Setting(
            _float(1.0),
            "a number of seconds >= 1",
            600.0,
            about="Seconds a misbehaving peer stays banned once its penalties reach the threshold.",
        ),
    },
}

# What each section is for and which roles read it; the configuration reference
# (docs/configuration.md, `make config-reference`) is written from these and SCHEMA.
SECTIONS: dict[str, tuple[str, tuple[Role, ...]]] = {
    "node": ("The daemon's role and where its files live.", tuple(Role)),
    "keys": ("The node's Ethereum account and libp2p identity.", tuple(Role)),
    "chain": ("The EVM chain, the market contract, and how transactions are sent.", tuple(Role)),
    "api": ("The local HTTP API the `capa` commands talk to.", tuple(Role)),
    "store": ("The node's SQLite store.", tuple(Role)),
    "log": ("What the daemon logs.", tuple(Role)),
    "provider": ("What a provider offers, at what price, and how it runs jobs.", (Role.PROVIDER,)),
    "client": ("How a client chooses providers and what it accepts.", (Role.CLIENT,)),
    "verifier": (
        "How a verifier judges evidence before approving an enclave key.",
        (Role.VERIFIER,),
    ),
    "p2p": (
        "The libp2p node: listening, peers, and limits on what one peer may take.",
        tuple(Role),
    ),
}


def load_config(path: Path, env: Mapping[str, str] | None = None) -> NodeConfig:
    """Load and validate `path`; raises ConfigError with a single line on any problem."""
    return _build(_read_toml(path), path, env)


def parse_config(text: str, path: Path, env: Mapping[str, str] | None = None) -> NodeConfig:
    """Validate `text` as the config that will live at `path` (relative paths resolve
    against it, errors name it) before anything is written there."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigFileError(f"config file {path} is not valid TOML: {exc}") from exc
    return _build(raw, path, env)


def _build(raw: dict[str, Any], path: Path, env: Mapping[str, str] | None) -> NodeConfig:
    values = _resolve(raw, dict(env) if env is not None else {}, str(path))
    base = path.resolve().parent

    def resolve_path(text: str, root: Path) -> Path:
        candidate = Path(text).expanduser()
        return candidate if candidate.is_absolute() else root / candidate

    data_dir = resolve_path(values["node"]["data_dir"], base)
    password_file = values["keys"]["password_file"]
    if values["node"]["role"] is Role.PROVIDER and values["provider"]["backend"] is None:
        raise SettingError(
            "provider.backend",
            SCHEMA["provider"]["backend"].expected + ": a provider names its enclave backend",
            source=str(path),
        )
    return NodeConfig(
        source=path,
        node=NodeSection(role=values["node"]["role"], data_dir=data_dir),
        keys=KeysSection(
            keystore=resolve_path(values["keys"]["keystore"], data_dir),
            identity=resolve_path(values["keys"]["identity"], data_dir),
            password_env=values["keys"]["password_env"],
            password_file=resolve_path(password_file, data_dir) if password_file else None,
        ),
        chain=ChainSection(**values["chain"]),
        api=ApiSection(
            host=values["api"]["host"],
            port=values["api"]["port"],
            token_file=resolve_path(values["api"]["token_file"], data_dir),
        ),
        store=StoreSection(
            path=resolve_path(values["store"]["path"], data_dir),
            snapshot_every=values["store"]["snapshot_every"],
        ),
        log=LogSection(**values["log"]),
        provider=_provider(values["provider"], data_dir),
        client=_client(values["client"], data_dir),
        verifier=_verifier(values["verifier"], data_dir),
        p2p=P2PSection(**values["p2p"]),
    )


def _resolve_path(text: str, root: Path) -> Path:
    candidate = Path(text).expanduser()
    return candidate if candidate.is_absolute() else root / candidate


def _provider(values: dict[str, Any], data_dir: Path) -> ProviderSection:
    workloads = tuple(
        WorkloadConfig(**{**w, "path": _resolve_path(w["path"], data_dir)})
        for w in values["workloads"]
    )
    return ProviderSection(**{**values, "workloads": workloads})


def _client(values: dict[str, Any], data_dir: Path) -> ClientSection:
    policy = values["policy_file"]
    return ClientSection(
        policy_file=_resolve_path(policy, data_dir) if policy else None,
        allow_sim=values["allow_sim"],
        max_candidates=values["max_candidates"],
        max_input_bytes=values["max_input_bytes"],
        output_dir=_resolve_path(values["output_dir"], data_dir),
    )


def _verifier(values: dict[str, Any], data_dir: Path) -> VerifierSection:
    policy, collateral = values["policy_file"], values["collateral_dir"]
    return VerifierSection(
        policy_file=_resolve_path(policy, data_dir) if policy else None,
        allow_sim=values["allow_sim"],
        collateral_dir=_resolve_path(collateral, data_dir) if collateral else None,
        pcs_url=values["pcs_url"],
        kds_url=values["kds_url"],
        collateral_cache_dir=_resolve_path(values["collateral_cache_dir"], data_dir),
        max_key_ttl=values["max_key_ttl"],
        max_nonce_age=values["max_nonce_age"],
        requests_per_minute=values["requests_per_minute"],
    )


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigFileError(
            f"config file {path} not found: create one with `capa init --role provider|client|verifier`"
        ) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigFileError(f"config file {path} cannot be read: {exc}") from exc
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigFileError(f"config file {path} is not valid TOML: {exc}") from exc


def _resolve(raw: dict[str, Any], env: dict[str, str], source: str) -> dict[str, dict[str, Any]]:
    for section, content in raw.items():
        if section not in SCHEMA:
            raise SettingError(
                section, f"one of the sections {', '.join(SCHEMA)}", got="[section]", source=source
            )
        if not isinstance(content, dict):
            raise SettingError(section, "a [section] table", got=content, source=source)
        for key in content:
            if key not in SCHEMA[section]:
                raise SettingError(
                    f"{section}.{key}",
                    f"one of the keys {', '.join(SCHEMA[section])}",
                    got=content[key],
                    source=source,
                )
    for name in env:
        if name.startswith(ENV_PREFIX) and _env_target(name) is None and name.count("_") >= 2:
            section = name[len(ENV_PREFIX) :].split("_", 1)[0].lower()
            if section in SCHEMA:
                raise SettingError(
                    name,
                    f"one of CAPA_{section.upper()}_<{'|'.join(SCHEMA[section]).upper()}>",
                    got=env[name],
                    source="the environment",
                )
    resolved: dict[str, dict[str, Any]] = {}
    for section, settings in SCHEMA.items():
        resolved[section] = {}
        for key, setting in settings.items():
            env_name = f"{ENV_PREFIX}{section.upper()}_{key.upper()}"
            if env_name in env:
                value, from_env, where = env[env_name], True, env_name
            elif key in raw.get(section, {}):
                value, from_env, where = raw[section][key], False, source
            elif setting.default is not _REQUIRED:
                value, from_env, where = setting.default, False, "default"
            else:
                raise SettingError(f"{section}.{key}", setting.expected, source=source)
            try:
                resolved[section][key] = setting.parse(value, from_env)
            except _Invalid:
                raise SettingError(
                    f"{section}.{key}", setting.expected, got=value, source=where
                ) from None
    return resolved


def _env_target(name: str) -> tuple[str, str] | None:
    rest = name[len(ENV_PREFIX) :].lower()
    for section, settings in SCHEMA.items():
        for key in settings:
            if rest == f"{section}_{key}":
                return section, key
    return None

"""The commented config `capa init` writes; every key the loader knows, with its default."""

from __future__ import annotations

from node.config.model import Backend, Role

_ROLE_NOTES = {
    Role.PROVIDER: "runs jobs in its enclave backend and settles them on-chain",
    Role.CLIENT: "matches offers, pays into escrow, fetches results, claims refunds",
    Role.VERIFIER: "checks attestation evidence and signs key-registration approvals",
}


def _toml_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_config(
    role: Role,
    *,
    rpc_urls: list[str],
    chain_id: int,
    market: str,
    api_port: int,
    data_dir: str = ".",
    start_block: int = 0,
    backend: Backend | None = None,
) -> str:
    urls = ", ".join(_toml_string(u) for u in rpc_urls)
    role_section = {
        Role.VERIFIER: _VERIFIER_SECTION,
        Role.PROVIDER: _provider_section(backend),
        Role.CLIENT: _CLIENT_SECTION,
    }[role]
    return (
        _common_sections(role, urls, chain_id, market, api_port, data_dir, start_block)
        + role_section
    )


def _provider_section(backend: Backend | None) -> str:
    named = backend.value if backend is not None else ""
    return f"""
[provider]
# The enclave backend: "tdx", "sev-snp", "sgx-gramine", or "sim" (no hardware, INSECURE:
# devnets only; verifiers with the default policy refuse it). Never implied: name one.
backend = {_toml_string(named)}
# Register (and stake this much) at start when not registered yet; "0": register yourself
# with `capa provider register`.
stake = "0"
# The floor price of an hour of this machine; quotes add up to surge_percent when busy.
price_per_hour = "0.001eth"
surge_percent = 50
# What is offered; 0: what `capa node probe` finds on this machine.
cpu_cores = 0
memory_mib = 0
# Jobs' durations this provider takes, seconds.
min_duration = 60
max_duration = 3600
# The verifiers to ask for key approvals: multiaddrs ending in /p2p/<peer id>.
verifiers = []
# Bytes of sealed inputs held at once; offers say it, so a client with a larger input goes
# to another provider before paying.
input_store_bytes = 1073741824
# Results signed by the enclave go out one by one (1) or in submitResults batches.
batch_size = 1
batch_max_wait = 30
# Withdraw earnings by itself above this amount; "0": leave them in the market.
withdraw_threshold = "0"
# How long an enclave key stays registered, and how early a fresh one is attested.
key_ttl = 604800
rekey_margin = 3600
# The workloads served, one table each: kind wasm | onnx | exec, path, and argv for exec.
# [[provider.workloads]]
# name = "upper"
# kind = "wasm"
# path = "workloads/upper.wasm"
"""


_CLIENT_SECTION = """
[client]
# A policy file (JSON, as `capa attest verify --policy`); "" is the production policy:
# hardware kinds only, no debug, TCB SWHardeningNeeded or better, revocation checked.
policy_file = ""
# true accepts INSECURE sim enclaves (not hardware): devnets only.
allow_sim = false
# Candidates tried per job before it fails with the reasons each was dropped.
max_candidates = 5
"""


_VERIFIER_SECTION = """
[verifier]
# Judges providers' evidence before signing their keys' KeyAttestation (/capa/approve/1).
# A policy file (JSON, as `capa attest verify --policy`); "" is the production policy:
# hardware kinds only, no debug, TCB SWHardeningNeeded or better, revocation checked.
policy_file = ""
# true approves INSECURE sim enclaves (not hardware): devnets only.
allow_sim = false
# Offline collateral (a directory of PCS/KDS files) instead of the live services below.
collateral_dir = ""
# Intel PCS (or your PCCS, same v4 API) and AMD KDS; their answers are cached here.
pcs_url = "https://api.trustedservices.intel.com"
kds_url = "https://kdsintf.amd.com"
collateral_cache_dir = "collateral-cache"
# The longest a key may live from now, and the oldest block a binding's nonce may be.
max_key_ttl = 2592000
max_nonce_age = 900
# Approval requests one peer may make a minute.
requests_per_minute = 30
"""


def _common_sections(
    role: Role,
    urls: str,
    chain_id: int,
    market: str,
    api_port: int,
    data_dir: str,
    start_block: int,
) -> str:
    return f"""\
# CapaCloud node configuration, written by `capa init`.
# Every key can be overridden from the environment as CAPA_<SECTION>_<KEY>,
# e.g. CAPA_CHAIN_RPC_URLS="http://127.0.0.1:8545,http://127.0.0.1:8546".
# Relative paths resolve against node.data_dir, itself relative to this file.

[node]
# This daemon's role: {role.value} ({_ROLE_NOTES[role]}).
role = {_toml_string(role.value)}
data_dir = {_toml_string(data_dir)}

[keys]
# eth-account encrypted keystore (the node's Ethereum account) and libp2p Ed25519 identity.
keystore = "keys/account.json"
identity = "keys/identity.key"
# The keystore password comes from this environment variable, else from password_file,
# else from an interactive prompt.
password_env = "CAPA_KEYSTORE_PASSWORD"
password_file = ""

[chain]
# Several URLs give failover: the first that answers is used until it stops answering.
rpc_urls = [{urls}]
chain_id = {chain_id}
# The JobMarket contract address (required by `capa node run`).
market = {_toml_string(market)}
# Only blocks this deep below the head drive state; shallower ones form the unconfirmed view.
confirmations = 2
# Seconds between polls for new blocks.
poll_interval = 2.0
# First block to scan when the store is empty (the market's deployment block is enough).
start_block = {start_block}
# Seconds before one JSON-RPC request is abandoned and the next URL tried.
request_timeout = 10.0
# EIP-1559 fee cap and tip, in gwei.
max_fee_gwei = 500.0
priority_fee_gwei = 1.0
# A transaction without a receipt after bump_after seconds is resent with the same nonce
# and fees raised by bump_percent (at least 10, which nodes require for a replacement).
bump_after = 60.0
bump_percent = 20
# Most blocks asked for in one eth_getLogs.
log_range = 2000

[api]
# The local API the CLI talks to; it only ever listens on loopback.
host = "127.0.0.1"
port = {api_port}
# Rewritten with a fresh random token at each start, readable by this user only.
token_file = "api.token"

[store]
path = "node.sqlite"
# A snapshot of the state every this many state changes shortens replay at start.
snapshot_every = 10000

[log]
level = "info"
# One JSON object per line instead of text (also `capa node run --log-json`).
json = false

[p2p]
# The libp2p node (TCP, Noise, Yamux): offers over GossipSub, evidence, quotes, inputs.
enabled = true
listen_addrs = ["/ip4/0.0.0.0/tcp/4001"]
# Peers dialled at start, as /ip4/<ip>/tcp/<port>/p2p/<peer id>.
bootstrap_peers = []
# Serve peer discovery (rendezvous) to others: for bootstrap nodes.
rendezvous_server = false
# Connections the node aims for, and the most it keeps (inbound and outbound).
target_connections = 6
max_connections = 256
# Limits on what one remote may take: inbound connections per IP address, handshakes in
# flight in total, and streams one peer may hold open.
max_connections_per_ip = 64
max_pending_handshakes = 64
max_streams_per_peer = 128
# Seconds a misbehaving peer stays banned once its penalties reach the threshold.
ban_duration = 600.0
"""

"""Bring a devnet up, look at it, restart or kill one node, bring it down.

    with Devnet.up(tmp_path, DevnetOptions(providers=2, verifiers=1)) as net:
        net.client.config            # for `capa job submit -c ...`
        net.node("provider-1").kill()     # kill -9
        net.node("provider-1").restart()  # same config, keys and store; waits until ready

`capa devnet` drives the same class across commands through the state file.
`Devnet.prepare(dir, rpc_url)` does the set-up alone (keys, contracts, configs) on a chain
that runs already and starts nothing: docker-compose.yml's deployer, before a container
per node.

Order of start: anvil; keys for every node (their addresses are needed on chain, their
peer ids in each other's configs); the contracts, governed and funded; the first verifier,
which is also the bootstrap and rendezvous point; the other verifiers; then providers
and the client together (providers ask the verifiers for approvals while they boot).
Each stage waits for its nodes to be ready: the local API answers /v1/status as the node
it should be, and the p2p port accepts connections.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from node.api.client import ApiClient
from node.api.discovery import url_file_for
from node.api.errors import ApiError
from node.api.models import NodeStatus, enclave_key_of
from node.config.errors import ConfigError
from node.config.loader import load_config
from node.config.model import Role
from node.devnet.chain import SIM_TCB_FLOOR, Workload, deploy_devnet, start_anvil
from node.devnet.errors import DevnetError, DevnetMissing, DevnetRunning, NodeFailed
from node.devnet.health import not_ready
from node.devnet.node_files import (
    base_settings,
    create_node_keys,
    merge_settings,
    write_config,
)
from node.devnet.processes import (
    ProcessRecord,
    Stoppable,
    is_running,
    log_tail,
    spawn,
    stop_all,
)
from node.devnet.state import STATE_NAME, DevnetState, NodeRecord, load_state

REPO_ROOT = Path(__file__).resolve().parents[2]
WASM_DIR = REPO_ROOT / "workloads" / "wasm"
# hostile.wasm attacks its own sandbox on purpose (the isolation tests): nobody serves it.
NOT_SERVED = frozenset({"hostile.wasm"})
LOCK_NAME = ".devnet.lock"
LOG_TAIL_LINES = 25
ETH = 10**18
INSECURE_NOTE = (
    "INSECURE: this devnet allows the sim kind (no hardware isolation, no confidentiality); "
    "its providers run sim enclaves"
)


def default_workloads() -> tuple[Workload, ...]:
    """The committed wasm modules (workloads/wasm), named after their files."""
    return tuple(
        Workload(path.stem, "wasm", path)
        for path in sorted(WASM_DIR.glob("*.wasm"))
        if path.name not in NOT_SERVED
    )


@dataclass(frozen=True)
class DevnetOptions:
    providers: int = 2
    verifiers: int = 1
    threshold: int | None = None  # signatures a key needs; None: every verifier's
    workloads: tuple[Workload, ...] | None = None  # None: the committed wasm modules
    onnx_models: tuple[Path, ...] = ()  # served besides the workloads
    stake_wei: int = 2 * ETH
    price_per_hour_wei: int = ETH // 100
    fund_wei: int = 100 * ETH
    block_time: float = 1.0
    confirmations: int = 1
    poll_interval: float = 0.25
    ready_timeout: float = 180.0
    # `up` returns once the client's offer book holds an offer of every provider.
    wait_offers: bool = True
    stop_grace: float = 10.0
    scrypt_n: int = 2**10  # the password sits beside the keystore: strength buys nothing
    log_level: str = "info"
    verifier_allow_sim: bool = True
    client_allow_sim: bool = True
    # Extra config per role ("provider") or per node ("provider-2"), as {section: {key: value}}.
    settings: Mapping[str, Mapping[str, Mapping[str, Any]]] = field(default_factory=dict)

    def served(self) -> tuple[Workload, ...]:
        wasm = default_workloads() if self.workloads is None else self.workloads
        onnx = tuple(Workload(p.stem, "onnx", p.resolve()) for p in self.onnx_models)
        return wasm + onnx

    def check(self) -> None:
        known = {role.value for role in Role} | {name for name, _ in node_names(self)}
        unknown = sorted(set(self.settings) - known)
        if unknown:
            raise DevnetError(
                f"settings for {', '.join(unknown)}: no such role or node in this devnet "
                f"({', '.join(sorted(known))})"
            )
        if self.block_time <= 0 or self.ready_timeout <= 0 or self.stop_grace < 0:
            raise DevnetError("block_time and ready_timeout must be > 0, stop_grace >= 0")
        if self.verifiers < 1:
            raise DevnetError("a devnet needs at least one verifier (the committee and bootstrap)")
        if self.providers < 0:
            raise DevnetError("the number of providers cannot be negative")
        threshold = self.committee_threshold
        if not 1 <= threshold <= self.verifiers:
            raise DevnetError(f"threshold {threshold}: expected 1 to {self.verifiers} (verifiers)")
        names = [w.name for w in self.served()]
        if len(set(names)) != len(names):
            raise DevnetError(f"two workloads share a name: {', '.join(sorted(names))}")

    @property
    def committee_threshold(self) -> int:
        return self.verifiers if self.threshold is None else self.threshold


def node_names(options: DevnetOptions) -> list[tuple[str, Role]]:
    names = [(f"verifier-{i}", Role.VERIFIER) for i in range(1, options.verifiers + 1)]
    names += [(f"provider-{i}", Role.PROVIDER) for i in range(1, options.providers + 1)]
    return [*names, ("client", Role.CLIENT)]


def node_environment() -> dict[str, str]:
    """The user's environment without CAPA_* overrides: a variable meant for the user's own
    node (a password, a market address) must not reconfigure every devnet node."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAPA_")}
    env["NO_COLOR"] = "1"
    return env


def capa_command() -> list[str]:
    """`capa` of this installation (the script beside this Python), else the module."""
    script = Path(sys.executable).with_name("capa")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from node.cli.main import main; main()"]


def free_ports(count: int) -> list[int]:
    """Ports free on 127.0.0.1 now, all different (held open together while chosen)."""
    sockets = []
    try:
        for _ in range(count):
            probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            probe.bind(("127.0.0.1", 0))
            sockets.append(probe)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for probe in sockets:
            probe.close()


class NodeHandle:
    """One node of a devnet: where its files are, how to reach its API, its process."""

    def __init__(self, devnet: Devnet, name: str) -> None:
        self._devnet = devnet
        self.name = name

    @property
    def record(self) -> NodeRecord:
        found = self._devnet.state.node(self.name)
        assert found is not None
        return found

    @property
    def role(self) -> Role:
        return self.record.role

    @property
    def config(self) -> Path:
        return self.record.config

    @property
    def directory(self) -> Path:
        return self.record.directory

    @property
    def log(self) -> Path:
        return self.record.log

    @property
    def address(self) -> str:
        return self.record.address

    @property
    def peer_id(self) -> str:
        return self.record.peer_id

    @property
    def multiaddr(self) -> str:
        return self.record.multiaddr

    @property
    def api_url(self) -> str | None:
        return self.record.api_url

    @property
    def token(self) -> str:
        """The API token of the running process (each start writes a new one)."""
        return self.record.token_file.read_text().strip()

    @property
    def pid(self) -> int | None:
        process = self.record.process
        return process.pid if process else None

    @property
    def running(self) -> bool:
        process = self.record.process
        return process is not None and is_running(process)

    def api(self) -> ApiClient:
        return ApiClient.from_token_file(self.record.token_file)

    def get(self, path: str) -> Any:
        """GET a path of the node's API with its current token; the JSON answer."""
        if self.api_url is None:
            raise DevnetError(f"{self.name} has not published its API yet")
        try:
            answer = httpx.get(
                self.api_url + path,
                headers={"Authorization": f"Bearer {self.token}"},
                timeout=5.0,
            )
            answer.raise_for_status()
            return answer.json()
        except (httpx.HTTPError, OSError, ValueError) as exc:
            raise DevnetError(f"{self.name}: GET {path}: {exc}") from exc

    def status(self) -> NodeStatus:
        client = self.api()
        try:
            return client.status()
        finally:
            client.close()

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> list[str]:
        return log_tail(self.log, lines)

    def kill(self) -> None:
        """kill -9, as a crash would: no shutdown, whatever it was doing cut short."""
        self._stop(signal.SIGKILL)

    def stop(self) -> str:
        """SIGTERM and the daemon's own shutdown; SIGKILL after the grace period."""
        return self._stop(signal.SIGTERM)

    def _stop(self, sig: signal.Signals) -> str:
        process = self.record.process
        if process is None:
            return "not running"
        target = Stoppable(self.name, process, self._devnet.children.get(self.name))
        [(_, outcome)] = stop_all([target], grace=self._devnet.options.stop_grace, sig=sig)
        return outcome

    def restart(self, timeout: float | None = None) -> None:
        """Start the node again with its config, keys and store; returns once it is ready."""
        if self.running:
            raise DevnetError(f"{self.name} is running (pid {self.pid}): stop or kill it first")
        self._devnet.start_nodes([self.name], timeout)


class Devnet:
    def __init__(self, state: DevnetState, options: DevnetOptions | None = None) -> None:
        self.state = state
        self.options = options or DevnetOptions()
        self.children: dict[str, Any] = {}  # name -> Popen of processes this object started

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    def up(
        cls,
        directory: Path,
        options: DevnetOptions | None = None,
        *,
        progress: Callable[[str], None] | None = None,
    ) -> Devnet:
        """Start a devnet in `directory`; returns once every node is ready. On a failure
        everything started so far is stopped again (the logs stay) and DevnetError says why.
        `progress` hears one line per step."""
        options = options or DevnetOptions()
        options.check()
        directory = directory.resolve()
        directory.mkdir(parents=True, exist_ok=True)
        with devnet_lock(directory):
            _claim(directory)
            devnet = cls(DevnetState(directory, chain_id=31337), options)
            try:
                devnet._start(progress or (lambda line: None))
            except BaseException:
                devnet.down()
                raise
        return devnet

    @classmethod
    def prepare(
        cls,
        directory: Path,
        rpc_url: str,
        options: DevnetOptions | None = None,
        *,
        progress: Callable[[str], None] | None = None,
    ) -> Devnet:
        """What `up` does before it starts a process, against a chain someone else runs: keys,
        contracts deployed and governed, accounts funded, and every node's config written.
        The nodes are then started elsewhere, `capa node run -c DIR/<node>/capa.toml` each
        (docker-compose.yml does so, one container per node), bootstrap verifier first."""
        options = options or DevnetOptions()
        options.check()
        directory = directory.resolve()
        directory.mkdir(parents=True, exist_ok=True)
        with devnet_lock(directory):
            _claim(directory)
            devnet = cls(DevnetState(directory, chain_id=31337, rpc_url=rpc_url), options)
            devnet._save(devnet.state)
            devnet._prepare(progress or (lambda line: None))
        return devnet

    @classmethod
    def attach(cls, directory: Path) -> Devnet:
        """The devnet recorded in `directory` (for status, logs and down)."""
        return cls(load_state(directory.resolve()))

    def __enter__(self) -> Devnet:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.down()

    def down(self) -> list[tuple[str, str]]:
        """Stop every process this devnet started, nodes before anvil; what happened to each."""
        grace = self.options.stop_grace
        nodes = [
            Stoppable(name, process, self.children.get(name))
            for name, process in self.state.processes()
            if name != "anvil"
        ]
        outcomes = stop_all(nodes, grace=grace)
        if self.state.anvil is not None:
            anvil = Stoppable("anvil", self.state.anvil, self.children.get("anvil"))
            outcomes += stop_all([anvil], grace=grace)
        return outcomes

    def _start(self, progress: Callable[[str], None]) -> None:
        options, directory = self.options, self.state.directory
        progress(f"starting a devnet in {directory}")
        env = node_environment()
        anvil, rpc_url = start_anvil(
            self.state.anvil_log,
            env,
            chain_id=self.state.chain_id,
            block_time=options.block_time,
            timeout=30.0,
        )
        self._save(replace(self.state, anvil=anvil, rpc_url=rpc_url))
        progress(f"anvil listening at {rpc_url} (pid {anvil.pid})")
        self._prepare(progress)
        verifiers = [n for n in self.state.nodes if n.role is Role.VERIFIER]
        stages = [
            [verifiers[0].name],
            [v.name for v in verifiers[1:]],
            [n.name for n in self.state.nodes if n.role is not Role.VERIFIER],
        ]
        for stage in filter(None, stages):
            progress(f"starting {', '.join(stage)}")
            self.start_nodes(stage)
            progress(f"ready: {', '.join(stage)}")
        if options.wait_offers and self.providers:
            progress("waiting until the client sees an offer of every provider")
            self.wait_for_offers()
            progress("the client sees an offer of every provider")

    def _prepare(self, progress: Callable[[str], None]) -> None:
        """Keys, contracts and every node's config, against the chain at `state.rpc_url`."""
        options, directory, rpc_url = self.options, self.state.directory, self.state.rpc_url
        names = node_names(options)
        for name, role in names:
            keys = create_node_keys(directory / name, scrypt_n=options.scrypt_n)
            self._save(
                self.state.with_node(
                    NodeRecord(name, role, directory / name, keys.address, keys.peer_id, 0)
                )
            )
        served = options.served()
        progress(f"keys made for {len(names)} nodes; deploying and governing the contracts")
        manifest = deploy_devnet(
            rpc_url,
            self.state.manifest,
            workloads=served,
            committee=[n.address for n in self.state.nodes if n.role is Role.VERIFIER],
            threshold=options.committee_threshold,
            funded=[n.address for n in self.state.nodes],
            fund_wei=options.fund_wei,
        )
        self._save(
            replace(
                self.state,
                contracts={name: record.address for name, record in manifest.contracts.items()},
            )
        )
        # Chosen as late as possible: a port is only free until someone else takes it.
        ports = free_ports(len(self.state.nodes))
        for node, port in zip(self.state.nodes, ports, strict=True):
            self._save(self.state.with_node(replace(node, p2p_port=port)))
        verifiers = [n for n in self.state.nodes if n.role is Role.VERIFIER]
        bootstrap = verifiers[0]
        for node in self.state.nodes:
            settings = base_settings(
                node.role,
                rpc_url=rpc_url,
                chain_id=manifest.chain_id,
                market=manifest.market,
                start_block=manifest.deploy_block,
                p2p_port=node.p2p_port,
                bootstrap_peers=[] if node is bootstrap else [bootstrap.multiaddr],
                rendezvous_server=node is bootstrap,
                confirmations=options.confirmations,
                poll_interval=options.poll_interval,
                log_level=options.log_level,
            )
            settings = merge_settings(settings, self._role_settings(node.role, served, verifiers))
            for extra in (options.settings.get(node.role.value), options.settings.get(node.name)):
                settings = merge_settings(settings, extra or {})
            write_config(node.directory, settings)
        progress(
            f"JobMarket {manifest.market}: sim enabled (INSECURE), {len(served)} workload "
            f"measurements approved, committee {options.committee_threshold} of {len(verifiers)}"
        )

    def _role_settings(
        self, role: Role, served: Sequence[Workload], verifiers: Sequence[NodeRecord]
    ) -> dict[str, dict[str, Any]]:
        options = self.options
        if role is Role.PROVIDER:
            return {
                "provider": {
                    "backend": "sim",
                    "workloads": [
                        {"name": w.name, "kind": w.kind, "path": str(w.path)} for w in served
                    ],
                    "stake": str(options.stake_wei),
                    "price_per_hour": str(options.price_per_hour_wei),
                    "verifiers": [v.multiaddr for v in verifiers],
                }
            }
        if role is Role.VERIFIER:
            return {"verifier": {"allow_sim": options.verifier_allow_sim}}
        return {"client": {"allow_sim": options.client_allow_sim}}

    def start_nodes(self, names: Sequence[str], timeout: float | None = None) -> None:
        """Start these nodes and wait until every one is ready (or one fails: NodeFailed)."""
        env = node_environment()
        for name in names:
            record = self._record(name)
            # The daemon writes both at start; an old URL would be asked in the meantime.
            url_file_for(record.token_file).unlink(missing_ok=True)
            record.token_file.unlink(missing_ok=True)
            process, started = spawn(
                [*capa_command(), "node", "run", "-c", str(record.config)],
                log=record.log,
                cwd=record.directory,
                env=env,
            )
            self.children[name] = process
            self._save(self.state.with_node(replace(record, process=started, api_url=None)))
        deadline = time.monotonic() + (timeout or self.options.ready_timeout)
        waiting = list(names)
        listens = {name: _p2p_enabled(self._record(name)) for name in names}
        while waiting:
            for name in list(waiting):
                url = self._ready(name, deadline, listens[name])
                if url is not None:
                    self._save(self.state.with_node(replace(self._record(name), api_url=url)))
                    waiting.remove(name)
            if waiting:
                time.sleep(0.1)

    def _ready(self, name: str, deadline: float, listens: bool) -> str | None:
        """The node's API URL once it is ready; None while it boots; NodeFailed when it
        exited or the deadline passed."""
        record = self._record(name)
        assert record.process is not None
        child = self.children.get(name)
        if child is not None:
            child.poll()
        if not is_running(record.process):
            code = child.returncode if child is not None else None
            reason = "exited during start-up" + (f" with status {code}" if code is not None else "")
            raise NodeFailed(name, reason, log_tail(record.log, LOG_TAIL_LINES))
        answer = _status_answer(record)
        if answer is not None and (not listens or port_listening(record.p2p_port)):
            if answer.peer_id != record.peer_id or answer.role is not record.role:
                raise NodeFailed(
                    name,
                    f"answers as {answer.role.value} {answer.peer_id}, not as "
                    f"{record.role.value} {record.peer_id}",
                    [],
                )
            return url_file_for(record.token_file).read_text().strip()
        if time.monotonic() >= deadline:
            raise NodeFailed(
                name,
                "was not ready in time (its API or p2p port did not answer)",
                log_tail(record.log, LOG_TAIL_LINES),
            )
        return None

    def wait_for_offers(
        self, providers: Sequence[NodeHandle] | None = None, timeout: float | None = None
    ) -> list[dict[str, Any]]:
        """Wait until the client's offer book (/v1/offers) holds an offer for every enclave
        key each of these providers (default: all) has registered, so a job for any workload
        they serve can be matched; returns the offers. A node that dies meanwhile, or a
        provider whose offers do not arrive in time, is NodeFailed with its log."""
        wanted = {
            p.address.lower(): p for p in (self.providers if providers is None else providers)
        }
        deadline = time.monotonic() + (timeout or self.options.ready_timeout)
        while True:
            self.check_running()
            offers: list[dict[str, Any]] = []
            # The client's API busy or restarting: ask again on the next round.
            with contextlib.suppress(DevnetError, KeyError, TypeError):
                offers = list(self.client.get("/v1/offers")["offers"])
            offered = {(enclave_key_of(o.get("body", "")) or "").lower() for o in offers}
            missing = [
                p for p in wanted.values() if not (keys := _registered_keys(p)) or keys - offered
            ]
            if not missing:
                return offers
            if time.monotonic() >= deadline:
                first = missing[0]
                raise NodeFailed(
                    first.name,
                    f"has no offer in the client's offer book after "
                    f"{timeout or self.options.ready_timeout:.0f} s"
                    + (
                        f" (nor have {', '.join(p.name for p in missing[1:])})"
                        if missing[1:]
                        else ""
                    ),
                    first.log_tail(),
                )
            time.sleep(0.2)

    def check_running(self) -> None:
        """NodeFailed, with its log, for the first started node that is no longer running."""
        for node in self.nodes:
            child = self.children.get(node.name)
            if child is not None:
                child.poll()
            if node.pid is not None and not node.running:
                code = child.returncode if child is not None else None
                status = f" with status {code}" if code is not None else ""
                raise NodeFailed(node.name, f"exited{status}", node.log_tail())

    # ------------------------------------------------------------------ views

    @property
    def directory(self) -> Path:
        return self.state.directory

    @property
    def rpc_url(self) -> str:
        return self.state.rpc_url

    @property
    def chain_id(self) -> int:
        return self.state.chain_id

    @property
    def contracts(self) -> dict[str, str]:
        return dict(self.state.contracts)

    @property
    def manifest(self) -> Path:
        return self.state.manifest

    @property
    def nodes(self) -> list[NodeHandle]:
        return [NodeHandle(self, n.name) for n in self.state.nodes]

    def node(self, name: str) -> NodeHandle:
        if self.state.node(name) is None:
            known = ", ".join(n.name for n in self.state.nodes) or "none"
            raise DevnetError(f"no node {name!r} in this devnet (nodes: {known})")
        return NodeHandle(self, name)

    @property
    def client(self) -> NodeHandle:
        return self.node("client")

    @property
    def providers(self) -> list[NodeHandle]:
        return [n for n in self.nodes if n.role is Role.PROVIDER]

    @property
    def verifiers(self) -> list[NodeHandle]:
        return [n for n in self.nodes if n.role is Role.VERIFIER]

    @property
    def anvil(self) -> ProcessRecord | None:
        return self.state.anvil

    def rpc(self, method: str, params: Sequence[Any] = ()) -> Any:
        """One JSON-RPC call to anvil (evm_snapshot, evm_revert, evm_setAutomine, ...)."""
        try:
            answer = httpx.post(
                self.rpc_url,
                json={"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)},
                timeout=10.0,
            ).json()
        except (httpx.HTTPError, ValueError) as exc:
            raise DevnetError(f"anvil: {method}: {exc}") from exc
        if "error" in answer:
            raise DevnetError(f"anvil: {method}: {answer['error']}")
        return answer["result"]

    @contextmanager
    def chain_paused(self) -> Iterator[None]:
        """anvil stopped (SIGSTOP) for the block: its RPC stops answering and comes back
        with the same chain when the block ends, as an RPC outage would."""
        anvil = self.state.anvil
        if anvil is None or not is_running(anvil):
            raise DevnetError("anvil is not running")
        os.kill(anvil.pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.kill(anvil.pid, signal.SIGCONT)

    def summary(self) -> dict[str, Any]:
        """What `capa devnet up --json` prints."""
        return {
            "directory": str(self.directory),
            "insecure": INSECURE_NOTE,
            "rpc_url": self.rpc_url,
            "chain_id": self.chain_id,
            "deployment": str(self.manifest),
            "contracts": self.contracts,
            "sim_min_tcb_status": SIM_TCB_FLOOR,
            "client_config": str(self.client.config),
            "anvil_pid": self.anvil.pid if self.anvil else None,
            "nodes": [
                {
                    "name": n.name,
                    "role": n.role.value,
                    "peer_id": n.peer_id,
                    "address": n.address,
                    "api_url": n.api_url,
                    "multiaddr": n.multiaddr,
                    "config": str(n.config),
                    "log": str(n.log),
                    "pid": n.pid,
                }
                for n in self.nodes
            ],
        }

    def status(self) -> dict[str, Any]:
        """Each process alive or not; each node's own answer to /v1/status."""
        anvil = self.state.anvil
        chain: dict[str, Any] = {
            "rpc_url": self.rpc_url,
            "running": anvil is not None and is_running(anvil),
            "pid": anvil.pid if anvil else None,
            "head": _head(self.rpc_url) if anvil is not None and is_running(anvil) else None,
        }
        nodes = []
        for node in self.nodes:
            entry: dict[str, Any] = {
                "name": node.name,
                "role": node.role.value,
                "pid": node.pid,
                "running": node.running,
                "api_url": node.api_url,
                "peer_id": node.peer_id,
            }
            if node.running:
                try:
                    entry["status"] = node.status().model_dump(mode="json")
                except ApiError as exc:
                    entry["error"] = str(exc)
            nodes.append(entry)
        return {"directory": str(self.directory), "anvil": chain, "nodes": nodes}

    # ------------------------------------------------------------------ internals

    def _record(self, name: str) -> NodeRecord:
        found = self.state.node(name)
        if found is None:
            raise DevnetError(f"no node {name!r} in this devnet")
        return found

    def _save(self, state: DevnetState) -> None:
        self.state = state
        state.save()


def _status_answer(record: NodeRecord) -> NodeStatus | None:
    if not record.token_file.exists() or not url_file_for(record.token_file).exists():
        return None
    try:
        client = ApiClient.from_token_file(record.token_file)
    except ApiError:
        return None
    try:
        return client.status()
    except ApiError:
        return None
    finally:
        client.close()


def _p2p_enabled(record: NodeRecord) -> bool:
    try:
        return load_config(record.config, env={}).p2p.enabled
    except ConfigError as exc:
        raise DevnetError(f"{record.name}: {exc}") from exc


def port_listening(port: int) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:`port`."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _head(rpc_url: str) -> int | None:
    try:
        answer = httpx.post(
            rpc_url,
            json={"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber", "params": []},
            timeout=2.0,
        ).json()
        return int(answer["result"], 16)
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        return None


@contextmanager
def devnet_lock(directory: Path) -> Iterator[None]:
    """One `up` or `down` at a time per directory."""
    if not directory.is_dir():
        raise DevnetMissing(f"no devnet in {directory}: the directory does not exist")
    with (directory / LOCK_NAME).open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DevnetRunning(
                f"another `capa devnet` command is working on {directory}"
            ) from None
        yield


def _claim(directory: Path) -> None:
    """Make `directory` ours: refuse it while a devnet there runs; clear a stopped one."""
    if (directory / STATE_NAME).exists():
        old = load_state(directory)
        alive = [name for name, process in old.processes() if is_running(process)]
        if alive:
            raise DevnetRunning(
                f"a devnet is running in {directory} ({', '.join(alive)}): "
                f"`capa devnet down --dir {directory}` stops it"
            )
        # Nodes of a prepared devnet run elsewhere (a container each): their APIs tell.
        answering = [n.name for n in old.nodes if n.process is None and not not_ready(n.directory)]
        if answering:
            raise DevnetRunning(
                f"nodes of the devnet in {directory} are running ({', '.join(answering)}), "
                f"started outside `capa devnet`: stop them first (`docker compose down`)"
            )
        for node in old.nodes:
            if node.directory.parent == directory:
                shutil.rmtree(node.directory, ignore_errors=True)
        for leftover in (old.anvil_log, old.manifest, old.path):
            leftover.unlink(missing_ok=True)
        return
    strangers = [p.name for p in directory.iterdir() if p.name != LOCK_NAME]
    if strangers:
        raise DevnetError(
            f"{directory} is not empty and holds no devnet ({', '.join(sorted(strangers)[:3])}"
            f"{', ...' if len(strangers) > 3 else ''}): use an empty or new directory"
        )


def _registered_keys(provider: NodeHandle) -> frozenset[str]:
    """The provider's registered enclave keys (none while it does not answer)."""
    with contextlib.suppress(ApiError, DevnetError, OSError):
        status = provider.status().provider
        if status is not None:
            return frozenset(k.enclave_key.lower() for k in status.keys if k.status == "registered")
    return frozenset()

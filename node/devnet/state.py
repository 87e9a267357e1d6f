"""The devnet's state file (DIR/devnet.json): what `up` started, for `status`, `logs` and
`down` in later commands. Rewritten atomically after each process starts, so a launcher
that dies half way still leaves a record of everything it must stop."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from node.config.model import Role
from node.devnet.errors import DevnetMissing, StateFileInvalid
from node.devnet.processes import ProcessRecord

FORMAT = "capacloud-devnet/1"
STATE_NAME = "devnet.json"


@dataclass(frozen=True)
class NodeRecord:
    name: str
    role: Role
    directory: Path
    address: str
    peer_id: str
    p2p_port: int
    process: ProcessRecord | None = None
    api_url: str | None = None

    @property
    def config(self) -> Path:
        return self.directory / "capa.toml"

    @property
    def log(self) -> Path:
        return self.directory / "node.log"

    @property
    def token_file(self) -> Path:
        return self.directory / "api.token"

    @property
    def multiaddr(self) -> str:
        return f"/ip4/127.0.0.1/tcp/{self.p2p_port}/p2p/{self.peer_id}"

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "role": self.role.value,
            "directory": str(self.directory),
            "address": self.address,
            "peer_id": self.peer_id,
            "p2p_port": self.p2p_port,
            "process": self.process.to_json() if self.process else None,
            "api_url": self.api_url,
        }


@dataclass(frozen=True)
class DevnetState:
    directory: Path
    chain_id: int
    rpc_url: str = ""
    anvil: ProcessRecord | None = None
    contracts: dict[str, str] = field(default_factory=dict)
    nodes: tuple[NodeRecord, ...] = ()

    @property
    def path(self) -> Path:
        return self.directory / STATE_NAME

    @property
    def anvil_log(self) -> Path:
        return self.directory / "anvil.log"

    @property
    def manifest(self) -> Path:
        return self.directory / "deployment.json"

    def node(self, name: str) -> NodeRecord | None:
        return next((n for n in self.nodes if n.name == name), None)

    def with_node(self, record: NodeRecord) -> DevnetState:
        nodes = tuple(record if n.name == record.name else n for n in self.nodes)
        if record.name not in {n.name for n in self.nodes}:
            nodes += (record,)
        return replace(self, nodes=nodes)

    def processes(self) -> list[tuple[str, ProcessRecord]]:
        """Every process recorded, nodes first (they stop before the chain they use)."""
        found = [(n.name, n.process) for n in self.nodes if n.process is not None]
        if self.anvil is not None:
            found.append(("anvil", self.anvil))
        return found

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "directory": str(self.directory),
            "chain_id": self.chain_id,
            "rpc_url": self.rpc_url,
            "anvil": self.anvil.to_json() if self.anvil else None,
            "contracts": self.contracts,
            "nodes": [n.to_json() for n in self.nodes],
        }

    def save(self) -> None:
        staged = self.path.with_name(f".{STATE_NAME}.tmp")
        staged.write_text(json.dumps(self.to_json(), indent=2) + "\n", encoding="utf-8")
        os.replace(staged, self.path)


def load_state(directory: Path) -> DevnetState:
    path = directory / STATE_NAME
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DevnetMissing(
            f"no devnet in {directory} ({STATE_NAME} missing): start one with "
            f"`capa devnet up --dir {directory}`"
        ) from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise StateFileInvalid(f"{path} cannot be read as JSON: {exc}") from exc
    try:
        if raw.get("format") != FORMAT:
            raise ValueError(f"format is not {FORMAT!r}")
        return DevnetState(
            directory=directory,
            chain_id=int(raw["chain_id"]),
            rpc_url=str(raw["rpc_url"]),
            anvil=_process(raw["anvil"]),
            contracts={str(k): str(v) for k, v in dict(raw["contracts"]).items()},
            nodes=tuple(_node(entry) for entry in raw["nodes"]),
        )
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        detail = f"{exc.args[0]!r} missing" if isinstance(exc, KeyError) else str(exc)
        raise StateFileInvalid(f"{path} is not a devnet state file: {detail}") from exc


def _process(raw: Any) -> ProcessRecord | None:
    if raw is None:
        return None
    return ProcessRecord(pid=int(raw["pid"]), start_ticks=int(raw["start_ticks"]))


def _node(raw: Any) -> NodeRecord:
    api_url = raw.get("api_url")
    return NodeRecord(
        name=str(raw["name"]),
        role=Role(raw["role"]),
        directory=Path(raw["directory"]),
        address=str(raw["address"]),
        peer_id=str(raw["peer_id"]),
        p2p_port=int(raw["p2p_port"]),
        process=_process(raw.get("process")),
        api_url=str(api_url) if api_url else None,
    )

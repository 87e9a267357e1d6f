"""Committed contract artifacts (ABI + bytecode) and their freshness against the sources."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from eth_utils.crypto import keccak

from node.chain.errors import ArtifactError

REPO_ROOT = Path(__file__).resolve().parents[2]
ARTIFACT_DIR = REPO_ROOT / "contracts" / "artifacts"
SOURCE_DIR = REPO_ROOT / "contracts" / "src"
DEPLOYABLE_CONTRACTS = ("ProviderRegistry", "AttestationVerifier", "JobMarket")

# Inputs that change the bytecode besides our own sources.
_BUILD_INPUTS = (
    REPO_ROOT / "foundry.toml",
    REPO_ROOT / "package-lock.json",
)


@dataclass(frozen=True)
class ContractArtifact:
    name: str
    abi: list[dict[str, Any]]
    bytecode: bytes
    deployed_bytecode: bytes
    source_hash: str


def current_source_hash() -> str:
    """sha256 over every contract source file and the build inputs, in path order."""
    digest = hashlib.sha256()
    files = sorted(SOURCE_DIR.rglob("*.sol")) + list(_BUILD_INPUTS)
    for path in files:
        digest.update(str(path.relative_to(REPO_ROOT)).encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()


@cache
def load_artifact(name: str) -> ContractArtifact:
    path = ARTIFACT_DIR / f"{name}.json"
    try:
        raw = json.loads(path.read_text())
        return ContractArtifact(
            name=raw["contractName"],
            abi=raw["abi"],
            bytecode=bytes.fromhex(raw["bytecode"].removeprefix("0x")),
            deployed_bytecode=bytes.fromhex(raw["deployedBytecode"].removeprefix("0x")),
            source_hash=raw["sourceHash"],
        )
    except FileNotFoundError as exc:
        raise ArtifactError(f"missing artifact {path}: run `make contracts`") from exc
    except (KeyError, ValueError) as exc:
        raise ArtifactError(f"malformed artifact {path}: {exc}") from exc


def abi_type(param: dict[str, Any]) -> str:
    """The canonical type of an ABI parameter, tuples spelled out as in signatures."""
    if param["type"].startswith("tuple"):
        inner = ",".join(abi_type(c) for c in param["components"])
        return f"({inner}){param['type'][5:]}"
    return str(param["type"])


def abi_selector(item: dict[str, Any]) -> bytes:
    """The 4-byte selector of an ABI function or error entry."""
    types = ",".join(abi_type(p) for p in item["inputs"])
    return keccak(text=f"{item['name']}({types})")[:4]


def stale_artifacts() -> list[str]:
    """Names of the committed artifacts not built from the current sources."""
    expected = current_source_hash()
    return [n for n in DEPLOYABLE_CONTRACTS if load_artifact(n).source_hash != expected]

"""The deployment manifest: what `capa chain deploy` leaves for everyone who uses a deployment.

`deployments/<chain id>.json` names the chain, the three contracts with the hashes of the
artifacts they were built from and of the code now on chain, the block the deployment
began in (where watchers start), governance, treasury, token and every parameter.
`capa init --deployment FILE` and the `capa chain` commands read it. It never holds an RPC
URL: those often carry API keys, and the manifest is meant to be committed and shared.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from eth_utils.address import is_checksum_address, to_checksum_address
from eth_utils.crypto import keccak

from node.chain.artifacts import ARTIFACT_DIR, DEPLOYABLE_CONTRACTS, load_artifact
from node.chain.client import ChainClient
from node.chain.deploy import Deployment, MarketConfig
from node.chain.errors import ChainError, ManifestError, RpcUnavailable

FORMAT = "capacloud-deployment/1"
LOCAL_CHAIN_IDS = (31337, 1337)  # anvil and hardhat; ganache and geth --dev


@dataclass(frozen=True)
class ContractRecord:
    address: str
    artifact_sha256: str  # sha256 of contracts/artifacts/<name>.json as deployed
    source_hash: str  # the artifact's hash of the Solidity sources and build settings
    code_keccak: str  # keccak256 of the runtime code on chain right after deployment


@dataclass(frozen=True)
class DeploymentManifest:
    chain_id: int
    deploy_block: int
    deployer: str
    governance: str
    treasury: str
    token: str  # 0x0...0: the chain's native currency
    sim_allowed: bool
    parameters: dict[str, int]
    contracts: dict[str, ContractRecord]

    @property
    def market(self) -> str:
        return self.contracts["JobMarket"].address

    def deployment(self) -> Deployment:
        return Deployment(
            chain_id=self.chain_id,
            registry=self.contracts["ProviderRegistry"].address,
            verifier=self.contracts["AttestationVerifier"].address,
            market=self.market,
            governance=self.governance,
            treasury=self.treasury,
            block_number=self.deploy_block,
        )

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, **asdict(self)}


def artifact_sha256(name: str) -> str:
    return hashlib.sha256((ARTIFACT_DIR / f"{name}.json").read_bytes()).hexdigest()


def manifest_for(
    deployment: Deployment,
    *,
    deployer: str,
    config: MarketConfig,
    code_keccak: dict[str, str],
) -> DeploymentManifest:
    addresses = {
        "ProviderRegistry": deployment.registry,
        "AttestationVerifier": deployment.verifier,
        "JobMarket": deployment.market,
    }
    parameters = {
        key: value for key, value in asdict(config).items() if key not in ("token", "sim_allowed")
    }
    return DeploymentManifest(
        chain_id=deployment.chain_id,
        deploy_block=deployment.block_number,
        deployer=to_checksum_address(deployer),
        governance=to_checksum_address(deployment.governance),
        treasury=to_checksum_address(deployment.treasury),
        token=to_checksum_address(config.token),
        sim_allowed=config.sim_allowed,
        parameters=parameters,
        contracts={
            name: ContractRecord(
                address=addresses[name],
                artifact_sha256=artifact_sha256(name),
                source_hash=load_artifact(name).source_hash,
                code_keccak=code_keccak[name],
            )
            for name in DEPLOYABLE_CONTRACTS
        },
    )


def record_deployment(
    client: ChainClient,
    deployment: Deployment,
    *,
    deployer: str,
    config: MarketConfig,
    confirmations: int,
    timeout: float,
) -> DeploymentManifest:
    """Wait until the deployment is `confirmations` deep, then describe it with the hash of
    the code each address holds (anyone can compare it with eth_getCode later)."""
    try:
        client.wait_for_depth(deployment.block_number, confirmations, timeout)
    except RpcUnavailable as exc:
        # The contracts exist (unconfirmed): say where, or they are lost to the user.
        raise RpcUnavailable(
            f"deployed (JobMarket {deployment.market}, block {deployment.block_number}) but "
            f"not recorded: {exc}"
        ) from exc
    addresses = {
        "ProviderRegistry": deployment.registry,
        "AttestationVerifier": deployment.verifier,
        "JobMarket": deployment.market,
    }
    code_keccak = {}
    for name, address in addresses.items():
        with client.errors("eth_getCode"):
            code = bytes(client.w3.eth.get_code(to_checksum_address(address)))
        if not code:
            raise ChainError(
                f"{name} at {address} has no code: the deployment was reorganised away"
            )
        code_keccak[name] = "0x" + keccak(code).hex()
    return manifest_for(deployment, deployer=deployer, config=config, code_keccak=code_keccak)


def write_manifest(path: Path, manifest: DeploymentManifest, *, overwrite: bool = False) -> None:
    """Write atomically; refuse to replace a manifest unless told to (it may be the only
    record of a live deployment's addresses)."""
    if path.exists() and not overwrite:
        raise ManifestError(f"{path} exists already: refusing to overwrite a deployment record")
    path.parent.mkdir(parents=True, exist_ok=True)
    staged = path.with_name(f".{path.name}.tmp")
    staged.write_text(json.dumps(manifest.to_json(), indent=2) + "\n", encoding="utf-8")
    os.replace(staged, path)


def read_manifest(path: Path) -> DeploymentManifest:
    """The manifest at `path`, every field checked; ManifestError names the file and field."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ManifestError(
            f"deployment manifest {path} not found (`capa chain deploy` writes one)"
        ) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"deployment manifest {path} cannot be read: {exc}") from exc
    except ValueError as exc:
        raise ManifestError(f"deployment manifest {path} is not JSON: {exc}") from exc
    reader = _Fields(path, raw)
    if reader.raw.get("format") != FORMAT:
        raise ManifestError(f"{path} is not a deployment manifest (format {FORMAT!r} expected)")
    contracts = reader.mapping("contracts")
    records = {}
    for name in DEPLOYABLE_CONTRACTS:
        entry = _Fields(path, contracts.get(name), f"contracts.{name}.")
        records[name] = ContractRecord(
            address=entry.address("address"),
            artifact_sha256=entry.text("artifact_sha256"),
            source_hash=entry.text("source_hash"),
            code_keccak=entry.text("code_keccak"),
        )
    parameters = reader.mapping("parameters")
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in parameters.values()):
        raise ManifestError(f"{path}: parameters must be integers")
    return DeploymentManifest(
        chain_id=reader.integer("chain_id"),
        deploy_block=reader.integer("deploy_block"),
        deployer=reader.address("deployer"),
        governance=reader.address("governance"),
        treasury=reader.address("treasury"),
        token=reader.address("token"),
        sim_allowed=reader.boolean("sim_allowed"),
        parameters=dict(parameters),
        contracts=records,
    )


class _Fields:
    def __init__(self, path: Path, raw: object, prefix: str = "") -> None:
        if not isinstance(raw, dict):
            raise ManifestError(f"{path}: {prefix.rstrip('.') or 'the file'} is not an object")
        self.path, self.raw, self.prefix = path, raw, prefix

    def _get(self, key: str) -> object:
        if key not in self.raw:
            raise ManifestError(f"{self.path}: {self.prefix}{key} is missing")
        return self.raw[key]

    def _bad(self, key: str, expected: str) -> ManifestError:
        return ManifestError(
            f"{self.path}: {self.prefix}{key} = {self.raw[key]!r}: expected {expected}"
        )

    def integer(self, key: str) -> int:
        value = self._get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise self._bad(key, "a non-negative integer")
        return value

    def boolean(self, key: str) -> bool:
        value = self._get(key)
        if not isinstance(value, bool):
            raise self._bad(key, "true or false")
        return value

    def text(self, key: str) -> str:
        value = self._get(key)
        if not isinstance(value, str) or not value:
            raise self._bad(key, "a string")
        return value

    def address(self, key: str) -> str:
        value = self._get(key)
        if not isinstance(value, str) or not is_checksum_address(value):
            raise self._bad(key, "a checksummed address")
        return value

    def mapping(self, key: str) -> dict[str, Any]:
        value = self._get(key)
        if not isinstance(value, dict):
            raise self._bad(key, "an object")
        return value

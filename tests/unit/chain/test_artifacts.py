"""The committed contract artifacts are complete and built from the current sources."""

from __future__ import annotations

from node.chain.artifacts import DEPLOYABLE_CONTRACTS, load_artifact, stale_artifacts


def test_artifacts_are_built_from_current_sources() -> None:
    stale = stale_artifacts()
    assert stale == [], f"stale artifacts {stale}: run `make contracts` and commit them"


def test_artifacts_carry_abi_and_bytecode() -> None:
    for name in DEPLOYABLE_CONTRACTS:
        artifact = load_artifact(name)
        assert artifact.name == name
        assert len(artifact.deployed_bytecode) > 1000
        # EIP-170: a contract above 24 KiB cannot be deployed.
        assert len(artifact.deployed_bytecode) <= 24_576
        assert any(item["type"] == "function" for item in artifact.abi)

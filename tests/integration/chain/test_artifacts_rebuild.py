"""Rebuilding the contracts with the pinned toolchain gives the committed bytecode exactly."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from node.chain.artifacts import DEPLOYABLE_CONTRACTS, REPO_ROOT, load_artifact

FORGE = REPO_ROOT / "node_modules" / "@foundry-rs" / "forge-linux-amd64" / "bin" / "forge"


def test_fresh_build_equals_committed_artifacts(tmp_path: Path) -> None:
    out, cache = tmp_path / "out", tmp_path / "cache"
    subprocess.run(
        [str(FORGE), "build", "--skip", "test", "--out", str(out), "--cache-path", str(cache)],
        cwd=REPO_ROOT,
        check=True,
        capture_output=True,
        timeout=300,
    )
    for name in DEPLOYABLE_CONTRACTS:
        built = json.loads((out / f"{name}.sol" / f"{name}.json").read_text())
        committed = load_artifact(name)
        assert built["deployedBytecode"]["object"] == "0x" + committed.deployed_bytecode.hex(), (
            f"{name}: committed artifact differs from a fresh build; run `make contracts`"
        )
        assert built["abi"] == committed.abi

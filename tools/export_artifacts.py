"""Copy ABI + bytecode of the deployable contracts from forge's out/ to contracts/artifacts/.

Each artifact records a hash of the Solidity sources, the compiler settings and the
OpenZeppelin version it was built from, so a test can tell when it is stale.
Run through `make contracts`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from node.chain.artifacts import (  # noqa: E402
    ARTIFACT_DIR,
    DEPLOYABLE_CONTRACTS,
    current_source_hash,
)

OUT_DIR = ROOT / "contracts" / "out"


def main() -> None:
    ARTIFACT_DIR.mkdir(parents=True, exist_ok=True)
    source_hash = current_source_hash()
    for name in DEPLOYABLE_CONTRACTS:
        built = json.loads((OUT_DIR / f"{name}.sol" / f"{name}.json").read_text())
        artifact = {
            "contractName": name,
            "sourceHash": source_hash,
            "abi": built["abi"],
            "bytecode": built["bytecode"]["object"],
            "deployedBytecode": built["deployedBytecode"]["object"],
        }
        path = ARTIFACT_DIR / f"{name}.json"
        path.write_text(json.dumps(artifact, indent=1, sort_keys=True) + "\n")
        size = (len(artifact["deployedBytecode"]) - 2) // 2
        print(f"{path.relative_to(ROOT)}: {size} bytes deployed")


if __name__ == "__main__":
    main()

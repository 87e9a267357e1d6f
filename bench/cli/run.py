"""How long `capa` takes to start, against a bare interpreter measured in the same run.

Run: `.venv/bin/python bench/cli/run.py [--runs 7]`. Each command is started `--runs` times
in a fresh process; the table shows the median wall time and its ratio to `python -c pass`.
"every command module" imports what `capa` imported at start before commands loaded lazily
(node/cli/lazy.py): the cost every command line paid then. `capa job status` is run against
a config that does not exist, so it loads its command and fails at once, with no daemon.
Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CAPA = Path(sys.executable).with_name("capa")
EVERY_MODULE = (
    "import node.cli.main, node.cli.attest, node.cli.chain, node.cli.devnet, node.cli.init, "
    "node.cli.job, node.cli.node, node.cli.node_probe, node.cli.node_run, node.cli.provider, "
    "node.cli.wallet"
)


def cases(missing: Path) -> list[tuple[str, list[str], int]]:
    """(name, command line, the exit status it must end with)."""
    return [
        ("python -c pass", [sys.executable, "-c", "pass"], 0),
        ("capa --version", [str(CAPA), "--version"], 0),
        ("capa --help", [str(CAPA), "--help"], 0),
        ("capa job status (no daemon)", [str(CAPA), "job", "status", "0x1", "-c", str(missing)], 2),
        ("capa node --help", [str(CAPA), "node", "--help"], 0),
        ("every command module", [sys.executable, "-c", EVERY_MODULE], 0),
    ]


def timed(command: list[str], expected: int) -> float:
    began = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, check=False)
    elapsed = time.perf_counter() - began
    if done.returncode != expected:
        raise SystemExit(
            f"{' '.join(command)} exited {done.returncode}, not {expected}: "
            f"{done.stderr.decode(errors='replace')[-400:]}"
        )
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    if not CAPA.exists():
        raise SystemExit(f"{CAPA} not found: run `make deps` (pip install -e .) first")
    with tempfile.TemporaryDirectory() as scratch:
        plan = cases(Path(scratch) / "missing.toml")
        for _, command, expected in plan:  # warm the file cache and the bytecode
            timed(command, expected)
        medians: dict[str, float] = {}
        for name, command, expected in plan:
            medians[name] = statistics.median(timed(command, expected) for _ in range(args.runs))
    baseline = medians["python -c pass"]
    print(f"{'command':<30} {'median s':>9} {'x python':>9}")
    for name, seconds in medians.items():
        print(f"{name:<30} {seconds:>9.3f} {seconds / baseline:>9.1f}")
    figures = {
        "runs": args.runs,
        "median_s": {name: round(s, 4) for name, s in medians.items()},
        "ratio_to_python": {name: round(s / baseline, 2) for name, s in medians.items()},
        "help_vs_every_module": round(medians["capa --help"] / medians["every command module"], 3),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()

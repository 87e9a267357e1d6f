"""P2P attack bench: each red-team attack class against a provider node in its own process,
with the node's RSS (baseline, peak during, after) and how often honest peers were served.

    .venv/bin/python bench/p2p/attacks.py                 # every attack, test-sized
    .venv/bin/python bench/p2p/attacks.py --scale 4       # four times the attack sizes
    P2P_ATTACK_TARGET=/other/tree/tests/integration/p2p/target_node.py \\
        .venv/bin/python bench/p2p/attacks.py             # the same against other code

The attacks, target and probes are those of tests/integration/p2p (attack_harness,
adversary, target_node). Prints a table, then (last line) one JSON object of the figures.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "integration" / "p2p"))

from attack_harness import Target, run_attack  # noqa: E402


def attacks(scale: int) -> list[tuple[str, dict[str, Any], list[str]]]:
    def n(value: int) -> str:
        return str(value * scale)

    return [
        ("malformed-rpc", {}, ["--repeat", "2"]),
        ("bad-key", {}, ["--repeat", "3"]),
        ("concurrent-upload", {}, ["--repeat", "2"]),
        ("conn-flood", {"max_connections": 32}, ["--count", n(120), "--seconds", "20"]),
        ("violate-then-reconnect", {}, ["--repeat", "2"]),
        ("window-overrun", {}, ["--mib", n(300), "--seconds", "30", "--hold", "1"]),
        ("upload-flood", {}, ["--count", n(4), "--mib", "16", "--identities", "2"]),
        ("prune-flood", {}, ["--count", n(1500), "--per-rpc", "200", "--seconds", "20"]),
        ("identify-push-flood", {}, ["--count", n(12), "--per-rpc", "120000"]),
        ("stream-flood", {}, ["--count", n(20000), "--seconds", "20", "--hold", "1"]),
        (
            "stream-flood",
            {},
            ["--count", n(3000), "--protocol", "/meshsub/1.1.0", "--seconds", "20"],
        ),
        ("graft-flood", {}, ["--count", n(1500), "--per-rpc", "200", "--seconds", "20"]),
        ("bad-signature-flood", {}, ["--count", n(400), "--per-rpc", "50", "--seconds", "20"]),
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", type=int, default=1)
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    print(
        f"{'attack':<24} {'alive':>5} {'base':>6} {'peak':>6} {'after':>6} "
        f"{'served during':>14} {'after':>6} {'banned':>6}"
    )
    for name, overrides, options in attacks(args.scale):
        with tempfile.TemporaryDirectory() as directory:
            target = Target(Path(directory), overrides)
            try:
                outcome = run_attack(target, name, *options, timeout_s=300.0)
                banned = len(target.stats()["banned"]) if target.responsive() else 0
            finally:
                target.stop()
        during = outcome.existing_during + outcome.fresh_during
        after = outcome.existing_after + outcome.fresh_after
        label = name + (" (meshsub)" if "--protocol" in options else "")
        row = {
            "attack": label,
            "alive": outcome.alive,
            "baseline_mib": round(outcome.baseline_mib, 1),
            "peak_mib": round(outcome.peak_mib, 1),
            "after_mib": round(outcome.after_mib, 1),
            "served_during": f"{sum(during)}/{len(during)}",
            "served_after": f"{sum(after)}/{len(after)}",
            "banned": banned,
            "attacker": outcome.attacker,
        }
        rows.append(row)
        print(
            f"{label:<24} {row['alive']!s:>5} {row['baseline_mib']:>6} {row['peak_mib']:>6} "
            f"{row['after_mib']:>6} {row['served_during']:>14} {row['served_after']:>6} "
            f"{banned:>6}",
            flush=True,
        )
    print(json.dumps({"scale": args.scale, "attacks": rows}))


if __name__ == "__main__":
    main()

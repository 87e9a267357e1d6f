"""Idle footprint of a provider's `capa node run`, with p2p and the enclave loaded: resident
memory and CPU over a window, then shutdown time and a restart.

Run: `.venv/bin/python bench/idle/run.py [--seconds 60]`. Brings up a devnet (anvil with
1 s blocks, one verifier, one provider, one client, each its own `capa node run` process,
libp2p on loopback) and waits until the provider is what a provider is at rest: registered
and staked, its sim enclave (INSECURE) started with the served wasm modules, its key approved
by the verifier and registered on chain, its offer in the client's book. Then it samples
/proc for the window: the provider's process, and the processes it started (the enclave's
sandboxes and the runtime each keeps ready for the next job). The chain keeps moving meanwhile
(a block a second, --block-time; each node polls it every 2 s, as the default config
does, --poll). Polling a moving chain is most of the idle CPU: each poll asks for the head,
its block, the logs and the unconfirmed blocks above the confirmed cursor. and peers stay connected. Then SIGTERM and its exit code, and a restart of
the same node until it answers and listens again.

Also measures, in fresh interpreters, what the API (FastAPI app, its models and document)
adds to the stack the daemon loads anyway. Prints a table, then one JSON line.

Memory is RSS (what `ps` shows); for the provider with its children it is also PSS, which
shares the pages they have in common among them instead of counting them once per process.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from node.devnet.launcher import Devnet, DevnetOptions, NodeHandle

# Goals of issue 15: the daemon with p2p and an enclave, not the bare chain loop (150 MB then).
GOAL_RSS_MB = 200.0
GOAL_CPU_PERCENT = 1.0
_TICKS = os.sysconf("SC_CLK_TCK")
# What the daemon loads besides its API; then the same plus the API app, document built.
_STACK = (
    "import trio, hypercorn.trio, pydantic, web3, sqlalchemy, alembic, prometheus_client, "
    "node.chain.typed_data, node.config.model, node.metrics, node.state.model, node.store.records"
)
_STACK_AND_API = (
    _STACK + "; from node.api.app import ApiApp; from node.metrics import Metrics; "
    "ApiApp(None, 'token', Metrics()).openapi()"
)

# The modules `capa node run` imports: every command's (the CLI imports them all at start),
# then the daemon's.
_CAPA = (
    "from node.cli.main import main; from node.daemon.daemon import run_daemon; "
    "import node.daemon.wiring"
)
_STACK_AND_P2P = _STACK + "; import libp2p"


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def cpu_seconds(pid: int) -> float:
    fields = _stat(pid)
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime + stime


def descendants(pid: int) -> list[int]:
    """The processes below `pid`, at this moment."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                children.setdefault(int(_stat(int(entry.name))[1]), []).append(int(entry.name))
            except (OSError, IndexError):
                continue  # gone meanwhile
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def status_mb(pid: int, key: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {key}")


def pss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no Pss")


def tree_sample(pid: int) -> tuple[float, float, float, int]:
    """(RSS of `pid`, RSS summed over it and its descendants, PSS of the same, processes)."""
    total_rss = total_pss = 0.0
    tree = [pid, *descendants(pid)]
    counted = 0
    for member in tree:
        try:
            total_rss += status_mb(member, "VmRSS")
            total_pss += pss_mb(member)
            counted += 1
        except (OSError, RuntimeError):
            continue  # exited, or a kernel thread without memory
    return status_mb(pid, "VmRSS"), total_rss, total_pss, counted


def tree_cpu_seconds(pid: int, known: dict[int, float]) -> None:
    """Record the CPU seconds of `pid` and its descendants now (children that exit are
    counted from their last sample: short-lived ones are a fraction of a tick)."""
    for member in [pid, *descendants(pid)]:
        try:
            known[member] = cpu_seconds(member)
        except (OSError, IndexError):
            continue


def wait_at_rest(provider: NodeHandle, timeout: float = 120.0) -> dict[str, Any]:
    """The provider's status once every key is registered and nothing holds offers back."""
    deadline = time.monotonic() + timeout
    while True:
        status: dict[str, Any] = provider.get("/v1/status")
        facts = status.get("provider") or {}
        keys = facts.get("keys", [])
        if keys and all(k["status"] == "registered" for k in keys) and not facts["waiting_for"]:
            return status
        if time.monotonic() > deadline:
            raise SystemExit(f"the provider is not at rest after {timeout:.0f} s: {facts}")
        time.sleep(0.2)


def peak_rss_mb(code: str) -> float:
    """Peak RSS of a fresh interpreter that runs `code`."""
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from this (larger) parent process.
    report = (
        "; import pathlib; print([line.split()[1] for line in pathlib.Path('/proc/self/status')"
        ".read_text().splitlines() if line.startswith('VmHWM:')][0])"
    )
    done = subprocess.run(
        [sys.executable, "-c", code + report],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    return int(done.stdout.split()[-1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="measurement window")
    parser.add_argument("--poll", type=float, default=2.0, help="chain poll interval, seconds")
    parser.add_argument("--block-time", type=float, default=1.0, help="anvil's, seconds")
    args = parser.parse_args()
    # The default config's chain poll (2 s), not the devnet's quick one (0.25 s, for tests).
    options = DevnetOptions(
        providers=1, verifiers=1, poll_interval=args.poll, block_time=args.block_time
    )
    with tempfile.TemporaryDirectory(prefix="capa-bench-idle-") as folder:
        started = time.monotonic()
        with Devnet.up(Path(folder) / "net", options) as net:
            up_s = time.monotonic() - started  # anvil, contracts, 3 nodes, the offer seen
            provider = net.node("provider-1")
            status = wait_at_rest(provider)
            time.sleep(2)  # let the work that follows the last key's offer settle
            pid = provider.pid
            assert pid is not None
            wall_before = time.monotonic()
            cpu_before: dict[int, float] = {}
            tree_cpu_seconds(pid, cpu_before)
            own_before = cpu_seconds(pid)
            samples = []
            while time.monotonic() - wall_before < args.seconds:
                samples.append(tree_sample(pid))
                time.sleep(1)
            cpu_after: dict[int, float] = {}
            tree_cpu_seconds(pid, cpu_after)
            own_used = cpu_seconds(pid) - own_before
            window = time.monotonic() - wall_before
            tree_used = sum(cpu_after[p] - cpu_before.get(p, 0.0) for p in cpu_after)
            others = {
                node.name: status_mb(node.pid, "VmRSS")
                for node in net.nodes
                if node.name != provider.name and node.pid is not None
            }
            stop_at = time.monotonic()
            outcome = provider.stop()
            shutdown_s = time.monotonic() - stop_at
            restart_at = time.monotonic()
            provider.restart()
            restart_s = time.monotonic() - restart_at
    stack_mb, with_api_mb = peak_rss_mb(_STACK), peak_rss_mb(_STACK_AND_API)
    with_p2p_mb, capa_mb = peak_rss_mb(_STACK_AND_P2P), peak_rss_mb(_CAPA)
    own_cpu = 100 * own_used / window
    tree_cpu = 100 * tree_used / window
    own_rss, tree_rss, tree_pss, processes = samples[-1]
    own_peak = max(s[0] for s in samples)
    tree_pss_peak = max(s[2] for s in samples)
    facts = status.get("provider") or {}
    keys = ", ".join(f"{k['workload']} {k['status']}" for k in facts.get("keys", []))
    print(
        f"idle bench: a provider in a devnet (registered {facts.get('registered')}, keys: "
        f"{keys or 'none'}; offer seen by the client; sim enclave, INSECURE), chain polled "
        f"every {args.poll:g} s, a block every {args.block_time:g} s, window {window:.0f} s"
    )
    print(f"{'measure':<44}{'value':>12}{'goal':>12}")
    print(f"{'devnet up, offer seen by the client (s)':<44}{up_s:>12.2f}{'':>12}")
    print(f"{'provider RSS at end of window (MB)':<44}{own_rss:>12.1f}{GOAL_RSS_MB:>12.0f}")
    print(f"{'provider RSS peak in window (MB)':<44}{own_peak:>12.1f}{GOAL_RSS_MB:>12.0f}")
    print(f"{f'with its {processes} processes, RSS sum (MB)':<44}{tree_rss:>12.1f}")
    print(f"{'with its processes, PSS (MB)':<44}{tree_pss:>12.1f}{GOAL_RSS_MB:>12.0f}")
    print(f"{'with its processes, PSS peak (MB)':<44}{tree_pss_peak:>12.1f}{GOAL_RSS_MB:>12.0f}")
    print(f"{'provider CPU (% of one core)':<44}{own_cpu:>12.2f}{GOAL_CPU_PERCENT:>12.1f}")
    print(
        f"{'with its processes, CPU (% of one core)':<44}{tree_cpu:>12.2f}{GOAL_CPU_PERCENT:>12.1f}"
    )
    print(f"{'shutdown on SIGTERM (s), outcome':<44}{shutdown_s:>12.2f}{outcome:>12}")
    print(f"{'restart until API and p2p answer (s)':<44}{restart_s:>12.2f}")
    for name, rss in sorted(others.items()):
        print(f"{name + ' RSS (MB)':<44}{rss:>12.1f}")
    print(f"{'stack without the API (MB)':<44}{stack_mb:>12.1f}")
    print(f"{'API app on top of it (MB)':<44}{with_api_mb - stack_mb:>12.1f}")
    print(f"{'libp2p on top of it (MB)':<44}{with_p2p_mb - stack_mb:>12.1f}")
    print(f"{'capa node run, its modules loaded (MB)':<44}{capa_mb:>12.1f}")
    figures = {
        "window_s": round(window, 1),
        "poll_s": args.poll,
        "block_time_s": args.block_time,
        "devnet_up_s": round(up_s, 2),
        "rss_mb": round(own_rss, 1),
        "rss_peak_mb": round(own_peak, 1),
        "tree_rss_mb": round(tree_rss, 1),
        "tree_pss_mb": round(tree_pss, 1),
        "tree_pss_peak_mb": round(tree_pss_peak, 1),
        "tree_processes": processes,
        "cpu_percent": round(own_cpu, 3),
        "tree_cpu_percent": round(tree_cpu, 3),
        "shutdown_s": round(shutdown_s, 2),
        "shutdown": outcome,
        "restart_s": round(restart_s, 2),
        "other_rss_mb": {k: round(v, 1) for k, v in others.items()},
        "stack_rss_mb": round(stack_mb, 1),
        "api_rss_mb": round(with_api_mb - stack_mb, 1),
        "libp2p_rss_mb": round(with_p2p_mb - stack_mb, 1),
        "capa_imports_rss_mb": round(capa_mb, 1),
        "keys_registered": sum(k["status"] == "registered" for k in facts.get("keys", [])),
        "goal_rss_mb": GOAL_RSS_MB,
        "goal_cpu_percent": GOAL_CPU_PERCENT,
    }
    print(json.dumps(figures, sort_keys=True))


if __name__ == "__main__":
    main()

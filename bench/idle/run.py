"""Idle footprint of `capa node run`: resident memory and CPU over a window, then shutdown time.

Run: `.venv/bin/python bench/idle/run.py [--seconds 60]`. Starts anvil, deploys the market,
`capa init`s a provider with the default keystore parameters, starts the daemon as its own
process with the default config (poll every 2 s, API on loopback), waits until it answers,
then samples /proc for the window. Also measures, in fresh interpreters, what the API
(FastAPI app, its models and document) adds to the stack the daemon loads anyway. Prints a
table, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from eth_account import Account

from node.chain.anvil import DEV_PRIVATE_KEYS, run_anvil
from node.chain.client import ChainClient
from node.chain.deploy import MarketConfig, deploy_market
from node.cli.init import init_node
from node.config.model import Backend, Role

GOAL_RSS_MB = 150.0
GOAL_CPU_PERCENT = 1.0
PASSWORD = "idle bench password"
_RUN = "import sys; from node.cli.node_run import node_app; node_app(sys.argv[1:])"
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


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime + stime


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


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


def wait_ready(directory: Path, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit("the daemon exited before it was ready")
        url_file = directory / "api.url"
        if url_file.exists():
            try:
                if httpx.get(url_file.read_text() + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
        time.sleep(0.1)
    raise SystemExit("the daemon did not become ready")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=60.0, help="measurement window")
    args = parser.parse_args()
    with run_anvil() as anvil, tempfile.TemporaryDirectory() as folder:
        directory = Path(folder)
        chain = ChainClient(anvil.rpc_url)
        deployment = deploy_market(chain, Account.from_key(DEV_PRIVATE_KEYS[0]), MarketConfig())
        result = init_node(
            directory,
            Role.PROVIDER,
            PASSWORD,
            backend=Backend.SIM,
            rpc_urls=[anvil.rpc_url],
            chain_id=anvil.chain_id,
            market=deployment.market,
            api_port=0,
        )
        env = {**os.environ, "CAPA_KEYSTORE_PASSWORD": PASSWORD}
        process = subprocess.Popen(
            [sys.executable, "-c", _RUN, "run", "--config", str(result.config_path)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            started = time.monotonic()
            wait_ready(directory, process)
            ready_s = time.monotonic() - started
            time.sleep(2)  # let start-up work (replay, first poll) finish before measuring
            cpu_before, wall_before = cpu_seconds(process.pid), time.monotonic()
            samples = []
            while time.monotonic() - wall_before < args.seconds:
                samples.append(rss_mb(process.pid))
                time.sleep(1)
            cpu_used = cpu_seconds(process.pid) - cpu_before
            window = time.monotonic() - wall_before
            stop_at = time.monotonic()
            process.send_signal(signal.SIGTERM)
            code = process.wait(timeout=15)
            shutdown_s = time.monotonic() - stop_at
        finally:
            if process.poll() is None:
                process.kill()
    stack_mb, with_api_mb = peak_rss_mb(_STACK), peak_rss_mb(_STACK_AND_API)
    cpu_percent = 100 * cpu_used / window
    peak, last = max(samples), samples[-1]
    print(f"idle bench: provider daemon, poll every 2 s, window {window:.0f} s")
    print(f"{'measure':<36}{'value':>12}{'goal':>12}")
    print(f"{'ready after start (s)':<36}{ready_s:>12.2f}{'':>12}")
    print(f"{'RSS at end of window (MB)':<36}{last:>12.1f}{GOAL_RSS_MB:>12.0f}")
    print(f"{'RSS peak in window (MB)':<36}{peak:>12.1f}{GOAL_RSS_MB:>12.0f}")
    print(f"{'CPU (% of one core)':<36}{cpu_percent:>12.2f}{GOAL_CPU_PERCENT:>12.1f}")
    print(f"{'shutdown on SIGTERM (s), exit code':<36}{shutdown_s:>12.2f}{code:>12}")
    print(f"{'stack without the API (MB)':<36}{stack_mb:>12.1f}{'':>12}")
    print(f"{'API app on top of it (MB)':<36}{with_api_mb - stack_mb:>12.1f}{'':>12}")
    figures = {
        "window_s": round(window, 1),
        "ready_s": round(ready_s, 2),
        "rss_mb": round(last, 1),
        "rss_peak_mb": round(peak, 1),
        "cpu_percent": round(cpu_percent, 3),
        "shutdown_s": round(shutdown_s, 2),
        "exit_code": code,
        "stack_rss_mb": round(stack_mb, 1),
        "api_rss_mb": round(with_api_mb - stack_mb, 1),
        "goal_rss_mb": GOAL_RSS_MB,
        "goal_cpu_percent": GOAL_CPU_PERCENT,
    }
    print(json.dumps(figures, sort_keys=True))


if __name__ == "__main__":
    main()

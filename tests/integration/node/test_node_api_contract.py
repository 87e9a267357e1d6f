"""The API against its own OpenAPI document: schemathesis, every check, on a real daemon.

A provider daemon runs as its own process on anvil with a posted job in its store, so the
lists have rows and the stateful phase follows a real job id into the job routes. Generation
is deterministic (the same cases every run); the example count is what keeps the test near a
minute on two cores while every operation still gets dozens of cases in each phase.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
from eth_utils.crypto import keccak
from node_harness import (
    PRICE,
    TDX,
    Actors,
    mine,
    register_initialised_provider,
    start_daemon,
    wait_for_api,
)

from node.chain.anvil import AnvilNode
from node.chain.market import Market
from node.chain.typed_data import JobRequest
from node.cli.init import init_node
from node.config.model import Backend, Role

PASSWORD = "schemathesis password"
EXAMPLES = 75  # per operation and phase


def _schemathesis() -> Path:
    found = Path(sys.executable).with_name("st")
    assert found.exists(), f"schemathesis is not installed next to {sys.executable}: make deps"
    return found


def _wait_for_job(url: str, token: str, timeout: float = 30.0) -> None:
    auth = {"Authorization": f"Bearer {token}"}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if httpx.get(f"{url}/v1/jobs", headers=auth, timeout=5).json()["jobs"]:
            return
        time.sleep(0.1)
    raise AssertionError("the daemon did not see the posted job")


def test_schemathesis_finds_nothing_with_every_check(
    tmp_path: Path, anvil: AnvilNode, market: Market, actors: Actors
) -> None:
    result = init_node(
        tmp_path / "node",
        Role.PROVIDER,
        PASSWORD,
        backend=Backend.SIM,
        rpc_urls=[anvil.rpc_url],
        chain_id=anvil.chain_id,
        market=market.deployment.market,
        api_port=0,
        scrypt_n=2**4,
    )
    now = market.latest_timestamp()
    request = JobRequest(
        keccak(b"spec"), keccak(b"input"), 1 << TDX, bytes(32), 1, PRICE, now + 3600, 1
    )
    market.post_job(actors.client, request)
    register_initialised_provider(market, tmp_path / "node", PASSWORD)
    process = start_daemon(result.config_path, PASSWORD)
    try:
        url, token = wait_for_api(tmp_path / "node", process)
        mine(anvil.rpc_url, 3)  # the posting's confirmations
        _wait_for_job(url, token)
        run = subprocess.run(
            [
                str(_schemathesis()),
                "run",
                f"{url}/openapi.json",
                "--header",
                f"Authorization: Bearer {token}",
                "--checks",
                "all",
                "--generation-deterministic",
                "--max-examples",
                str(EXAMPLES),
                "--request-timeout",
                "10",
                "--no-color",
            ],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=400,
        )
        assert run.returncode == 0, run.stdout[-12000:] + run.stderr[-4000:]
        counted = re.search(r"(\d+) generated, (\d+) passed", run.stdout)
        assert counted is not None, run.stdout[-4000:]
        generated, passed = map(int, counted.groups())
        assert generated == passed >= 1000, run.stdout[-4000:]  # every operation was exercised
        document = httpx.get(f"{url}/openapi.json", timeout=5).json()
        operations = sum(len(methods) for methods in document["paths"].values())
        assert f"Tested: {operations}\n" in run.stdout, run.stdout[-4000:]
        # Hostile but schema-valid actions were recorded, not left to fail in the background.
        auth = {"Authorization": f"Bearer {token}"}
        metrics = httpx.get(f"{url}/metrics", headers=auth, timeout=5).text
        assert "capa_effect_failures_total{" not in metrics, metrics
        assert process.poll() is None, "the daemon died under the tester"
    finally:
        process.terminate()
        process.wait(timeout=15)

"""`capa init` then `capa node run` as a real process: API, token, metrics, CLI, signals."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from node_harness import (
    RUN_NODE_APP,
    Actors,
    register_initialised_provider,
    start_daemon,
    wait_for_api,
)

from node.api.models import ActionOutcome
from node.chain.anvil import AnvilNode
from node.chain.market import Market
from node.cli.init import init_node
from node.config.model import Backend, Role

PASSWORD = "correct horse battery staple"


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_init_run_query_and_stop_on_signal(
    tmp_path: Path, anvil: AnvilNode, market: Market, actors: Actors, stop_signal: int
) -> None:
    result = init_node(
        tmp_path,
        Role.PROVIDER,
        PASSWORD,
        backend=Backend.SIM,
        rpc_urls=[anvil.rpc_url],
        chain_id=31337,
        market=market.deployment.market,
        api_port=0,
        scrypt_n=2**4,
    )
    for secret in ("keys/account.json", "keys/identity.key"):
        assert (tmp_path / secret).stat().st_mode & 0o777 == 0o600
    register_initialised_provider(market, tmp_path, PASSWORD)
    process = start_daemon(result.config_path, PASSWORD)
    try:
        url, token = wait_for_api(tmp_path, process)
        assert (tmp_path / "api.token").stat().st_mode & 0o777 == 0o600
        assert url.startswith("http://127.0.0.1:")
        assert httpx.get(f"{url}/v1/status").status_code == 401
        auth = {"Authorization": f"Bearer {token}"}
        status = httpx.get(f"{url}/v1/status", headers=auth).json()
        assert status["role"] == "provider" and status["address"] == result.address
        assert status["peer_id"] == result.peer_id
        metrics = httpx.get(f"{url}/metrics", headers=auth).text
        assert "capa_chain_head_block" in metrics
        spec = httpx.get(f"{url}/openapi.json").json()
        assert "/v1/jobs/{job_id}/accept" in spec["paths"]

        # The CLI reaches the daemon through the same API.
        cli = subprocess.run(
            [
                sys.executable,
                "-c",
                RUN_NODE_APP,
                "status",
                "--json",
                "--config",
                str(result.config_path),
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert cli.returncode == 0, cli.stderr
        assert json.loads(cli.stdout)["address"] == result.address
        refused = subprocess.run(
            [
                sys.executable,
                "-c",
                RUN_NODE_APP,
                "accept",
                "0x" + "11" * 32,
                "--enclave-key",
                actors.provider.address,
                "--config",
                str(result.config_path),
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert refused.returncode == 1
        assert "is not open" in refused.stderr
        _other_commands(result.config_path)

        started = time.monotonic()
        process.send_signal(stop_signal)
        output, _ = process.communicate(timeout=10)
        assert process.returncode == 0, output
        assert time.monotonic() - started < 10
        logs = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
        assert any(entry["msg"] == "stopped" for entry in logs)
        assert PASSWORD not in output
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _other_commands(config: Path) -> None:
    """The other commands that talk to the daemon, in-process: each speaks the API's models."""
    from typer.testing import CliRunner

    import node.cli.node_run  # noqa: F401  (registers the commands on node_app)
    from node.cli.node import node_app

    runner = CliRunner()
    where = ["--config", str(config)]
    listed = runner.invoke(node_app, ["jobs", "--status", "open", *where])
    assert listed.exit_code == 0, listed.output
    assert "job" in listed.stdout and "price (wei)" in listed.stdout
    withdrawn = runner.invoke(node_app, ["withdraw", str(10**30), *where])
    assert withdrawn.exit_code == 0, withdrawn.output
    outcome = ActionOutcome.model_validate_json(withdrawn.stdout)
    assert outcome.seq is not None and outcome.rejected == "" and not outcome.duplicate
    not_a_client = runner.invoke(node_app, ["claim-timeout", "0x" + "11" * 32, *where])
    assert not_a_client.exit_code == 1
    assert "HTTP 409: only a client node takes this action" in not_a_client.stderr
    nothing = runner.invoke(node_app, ["withdraw", "0", *where])
    assert nothing.exit_code == 1
    assert "amount: expected decimal text of an integer from 1" in nothing.stderr
    no_job = runner.invoke(node_app, ["cancel", "job-7", *where])
    assert no_job.exit_code == 1
    assert "not a job id" in no_job.stderr


def test_run_against_another_chain_says_so_in_one_line(
    tmp_path: Path, anvil: AnvilNode, market: Market
) -> None:
    from typer.testing import CliRunner

    import node.cli.node_run  # noqa: F401  (registers `run` on node_app)
    from node.cli.node import node_app

    result = init_node(
        tmp_path,
        Role.CLIENT,
        PASSWORD,
        rpc_urls=[anvil.rpc_url],
        chain_id=1,
        market=market.deployment.market,
        api_port=0,
        scrypt_n=2**4,
    )
    outcome = CliRunner().invoke(
        node_app,
        ["run", "--config", str(result.config_path)],
        env={"CAPA_KEYSTORE_PASSWORD": PASSWORD},
    )
    assert outcome.exit_code == 1
    lines = [line for line in outcome.output.splitlines() if line.strip()]
    assert lines[-1].startswith("capa: chain.chain_id is 1 but")
    assert "serves chain 31337" in lines[-1]


def test_ctrl_c_at_the_password_prompt_exits_cleanly(
    tmp_path: Path, anvil: AnvilNode, market: Market, actors: Actors
) -> None:
    import pty

    init_node(
        tmp_path,
        Role.CLIENT,
        PASSWORD,
        rpc_urls=[anvil.rpc_url],
        chain_id=anvil.chain_id,
        market=market.deployment.market,
        scrypt_n=2**4,
    )
    primary, secondary = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k != "CAPA_KEYSTORE_PASSWORD"}
    process = subprocess.Popen(
        [sys.executable, "-c", RUN_NODE_APP, "run", "--config", str(tmp_path / "capa.toml")],
        env=env,
        stdin=secondary,
        stdout=secondary,
        stderr=secondary,
        start_new_session=True,
    )
    os.close(secondary)
    seen = b""
    deadline = time.monotonic() + 30
    try:
        # The prompt on the terminal is the event: the daemon is waiting for the password.
        while b"password" not in seen.lower():
            assert time.monotonic() < deadline, f"no password prompt: {seen!r}"
            seen += os.read(primary, 4096)
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 130
        with contextlib.suppress(OSError):
            while chunk := os.read(primary, 4096):
                seen += chunk
    finally:
        if process.poll() is None:
            process.kill()
        os.close(primary)
    assert b"interrupted before the daemon was running" in seen
    assert b"Traceback" not in seen

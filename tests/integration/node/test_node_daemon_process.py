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
from node_harness import Actors

from node.chain.anvil import AnvilNode
from node.chain.market import Market
from node.cli.init import init_node
from node.config.model import Role

PASSWORD = "correct horse battery staple"
_RUN_NODE_APP = "import sys; from node.cli.node_run import node_app; node_app(sys.argv[1:])"


def _start(config: Path) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "CAPA_KEYSTORE_PASSWORD": PASSWORD,
        "CAPA_CHAIN_POLL_INTERVAL": "0.2",
        # Any free port on loopback: tests run several daemons on one machine.
        "CAPA_P2P_LISTEN_ADDRS": "/ip4/127.0.0.1/tcp/0",
    }
    return subprocess.Popen(
        [sys.executable, "-c", _RUN_NODE_APP, "run", "--config", str(config), "--log-json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _wait_ready(
    directory: Path, process: subprocess.Popen[str], timeout: float = 30.0
) -> tuple[str, str]:
    """The daemon writes its URL and a fresh token once the API listens; then it answers."""
    deadline = time.monotonic() + timeout
    url_file, token_file = directory / "api.url", directory / "api.token"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(
                f"daemon exited early:\n{process.stdout.read() if process.stdout else ''}"
            )
        if url_file.exists() and token_file.exists():
            url, token = url_file.read_text(), token_file.read_text()
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    return url, token
            except httpx.HTTPError:
                pass
        time.sleep(0.05)
    raise AssertionError("daemon did not become ready")


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_init_run_query_and_stop_on_signal(
    tmp_path: Path, anvil: AnvilNode, market: Market, actors: Actors, stop_signal: int
) -> None:
    result = init_node(
        tmp_path,
        Role.PROVIDER,
        PASSWORD,
        rpc_urls=[anvil.rpc_url],
        chain_id=31337,
        market=market.deployment.market,
        api_port=0,
        scrypt_n=2**4,
    )
    for secret in ("keys/account.json", "keys/identity.key"):
        assert (tmp_path / secret).stat().st_mode & 0o777 == 0o600
    process = _start(result.config_path)
    try:
        url, token = _wait_ready(tmp_path, process)
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
        assert "/v1/actions" in spec["paths"]

        # The CLI reaches the daemon through the same API.
        cli = subprocess.run(
            [sys.executable, "-c", _RUN_NODE_APP, "status", "--config", str(result.config_path)],
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
                _RUN_NODE_APP,
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
        [sys.executable, "-c", _RUN_NODE_APP, "run", "--config", str(tmp_path / "capa.toml")],
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

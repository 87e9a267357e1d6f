"""docker-compose.yml runs for real: host networking, a health check, `down` leaves nothing."""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.request
import uuid

import pytest

from .conftest import SETUP_TIMEOUT, Docker

pytestmark = [pytest.mark.docker, pytest.mark.timeout(SETUP_TIMEOUT + 300)]

HEALTHY_WITHIN_SECONDS = 60


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _chain_id(port: int) -> int:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}",
        data=json.dumps(
            {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}
        ).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as answer:
        return int(json.load(answer)["result"], 16)


def _wait_healthy(docker: Docker, project: str, since: int) -> None:
    """Reads the engine's health events for the project until one says healthy; `--until`
    ends the stream at the deadline, so a service that never gets there fails the wait."""
    until = int(time.time()) + HEALTHY_WITHIN_SECONDS
    events = subprocess.Popen(
        ["docker", "events", "--since", str(since), "--until", str(until),
         "--filter", f"label=com.docker.compose.project={project}",
         "--filter", "event=health_status", "--format", "{{.Status}}"],
        env=docker.env, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    seen = []
    try:
        assert events.stdout is not None
        for line in events.stdout:
            seen.append(line.strip())
            if line.strip() == "health_status: healthy":
                return
            if line.strip() == "health_status: unhealthy":
                break
    finally:
        events.kill()
        events.wait()
    raise AssertionError(f"not healthy (deadline {HEALTHY_WITHIN_SECONDS}s); health events: {seen}")


def test_compose_brings_anvil_up_healthy_on_the_host_network(
    docker: Docker, node_image: str
) -> None:
    port = _free_port()
    project = f"capatest{uuid.uuid4().hex[:8]}"
    compose = [*docker.compose(), "--project-name", project, "--file", "docker-compose.yml"]
    env = {**docker.env, "CAPA_IMAGE": node_image, "CAPA_ANVIL_PORT": str(port)}
    compose_docker = Docker(env)
    since = int(time.time())
    try:
        compose_docker.run([*compose, "up", "--detach", "--no-build", "anvil"], timeout=300)
        # The engine runs the health check in the container; this waits for its verdict.
        _wait_healthy(docker, project, since)
        # Reached from the host on loopback: the container shares the host's network.
        assert _chain_id(port) == 31337
    finally:
        compose_docker.run([*compose, "down", "--volumes", "--remove-orphans"], timeout=300)
    left = docker.run(
        [
            "docker",
            "ps",
            "--all",
            "--quiet",
            "--filter",
            f"label=com.docker.compose.project={project}",
        ]
    )
    assert left.stdout.strip() == ""
    with pytest.raises(OSError):
        _chain_id(port)

"""`make test-compose`: docker-compose.yml brings the whole marketplace up in containers (anvil,
the deployer, two verifiers, two sim providers, a client), a wasm job submitted from the host
with `capa job submit` settles on chain, and `down` leaves nothing behind.

Every check reads what a user could read: the engine's health events, the client's API and
CLI, the chain, and the machine's ports afterwards.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from node.api.models import enclave_key_of
from node.chain.client import ChainClient
from node.chain.market import JobState, Market
from node.config.loader import load_config
from node.devnet.launcher import capa_command, free_ports, port_listening

from .conftest import REPO, SETUP_TIMEOUT, Docker

pytestmark = [pytest.mark.docker, pytest.mark.timeout(SETUP_TIMEOUT + 900)]

UPPER = REPO / "workloads" / "wasm" / "upper.wasm"
NODES = ("verifier-1", "verifier-2", "provider-1", "provider-2", "client")
PROVIDERS = ("provider-1", "provider-2")
HEALTHY_WITHIN_SECONDS = 420
OFFERS_WITHIN_SECONDS = 180
BPS = 10_000


def _wait_all_healthy(docker: Docker, project: str, services: set[str]) -> None:
    """Until each service has said healthy: the engine's health events from now on (`--until`
    ends the stream at the deadline, so a service that never gets there fails the wait), and
    what `docker ps` says of the services that got there before the stream began. Replaying
    old events with `--since` is not enough: the engine keeps only its last 256 events, and
    every health check run adds several (on vfs, `up` takes minutes)."""
    until = int(time.time()) + HEALTHY_WITHIN_SECONDS
    label = f"label=com.docker.compose.project={project}"
    service = '{{index .Actor.Attributes "com.docker.compose.service"}}'
    events = subprocess.Popen(
        ["docker", "events", "--since", str(int(time.time())), "--until", str(until),
         "--filter", label, "--filter", "event=health_status",
         "--format", f"{service} {{{{.Status}}}}"],
        env=docker.env, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    healthy: set[str] = set()
    try:
        listed = docker.run(
            ["docker", "ps", "--all", "--filter", label, "--format",
             '{{.Label "com.docker.compose.service"}} {{.Status}}'],
        )  # fmt: skip
        for line in listed.stdout.splitlines():
            name, _, status = line.partition(" ")
            if "(unhealthy)" in status:
                raise AssertionError(f"{name} is unhealthy")
            if "(healthy)" in status:
                healthy.add(name)
        assert events.stdout is not None
        while not services <= healthy:
            line = events.stdout.readline()
            if not line:
                break
            name, _, status = line.strip().partition(" ")
            if status == "health_status: unhealthy":
                raise AssertionError(f"{name} is unhealthy")
            if status == "health_status: healthy":
                healthy.add(name)
    finally:
        events.kill()
        events.wait()
    if not services <= healthy:
        raise AssertionError(
            f"not healthy within {HEALTHY_WITHIN_SECONDS}s: {', '.join(sorted(services - healthy))}"
        )


def _node_api(node_dir: Path, path: str) -> Any:
    url = (node_dir / "api.url").read_text().strip()
    token = (node_dir / "api.token").read_text().strip()
    answer = httpx.get(url + path, headers={"Authorization": f"Bearer {token}"}, timeout=5)
    answer.raise_for_status()
    return answer.json()


def _registered_keys(node_dir: Path) -> set[str]:
    keys = _node_api(node_dir, "/v1/status")["provider"]["keys"]
    return {k["enclave_key"].lower() for k in keys if k["status"] == "registered"}


def _wait_for_offers(client_dir: Path, provider_dirs: list[Path]) -> None:
    """Until the client's offer book holds an offer for every key each provider registered,
    so a job for any workload they serve can be matched (the daemons are other processes:
    their APIs are asked again, with a deadline)."""
    deadline = time.monotonic() + OFFERS_WITHIN_SECONDS
    missing = [d.name for d in provider_dirs]
    while missing:
        assert time.monotonic() < deadline, f"offers of {missing} never reached the client"
        try:
            rows = _node_api(client_dir, "/v1/offers")["offers"]
            offered = {(enclave_key_of(o["body"]) or "").lower() for o in rows}
            missing = [
                d.name for d in provider_dirs if not (keys := _registered_keys(d)) or keys - offered
            ]
        except (httpx.HTTPError, OSError, KeyError, TypeError, ValueError):
            pass
        time.sleep(0.5)


def _capa(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*capa_command(), *args], cwd=REPO, capture_output=True, text=True, timeout=timeout
    )


def test_compose_runs_the_marketplace_and_a_job_from_the_host_settles(
    docker: Docker, node_image: str, tmp_path: Path
) -> None:
    folder = tmp_path / "compose"
    (anvil_port,) = free_ports(1)
    project = f"capamarket{uuid.uuid4().hex[:8]}"
    compose = [*docker.compose(), "--project-name", project, "--file", "docker-compose.yml"]
    env = {
        **docker.env,
        "CAPA_IMAGE": node_image,
        "CAPA_ANVIL_PORT": str(anvil_port),
        "CAPA_COMPOSE_DIR": str(folder),
    }
    compose_docker = Docker(env)
    ports = {anvil_port}
    try:
        # Compose starts each service once what it depends on is healthy or done.
        compose_docker.run([*compose, "up", "--detach", "--no-build"], timeout=600)
        _wait_all_healthy(docker, project, {"anvil", *NODES})
        state = json.loads((folder / "devnet.json").read_text())
        addresses = {n["name"]: n["address"].lower() for n in state["nodes"]}
        for name in NODES:
            config = load_config(folder / name / "capa.toml", env={})
            ports.add(int(config.p2p.listen_addrs[0].split("/")[4]))
            ports.add(int((folder / name / "api.url").read_text().strip().rsplit(":", 1)[1]))
        _wait_for_offers(folder / "client", [folder / p for p in PROVIDERS])

        # The user's side, on the host: the client config in the shared folder.
        (tmp_path / "words").write_bytes(b"sealed outside the enclave")
        submitted = _capa(
            "job", "submit", "-c", str(folder / "client" / "capa.toml"), "--json",
            "--wasm", str(UPPER),
            "--input", str(tmp_path / "words"),
            "--output", str(tmp_path / "upper.out"),
        )  # fmt: skip
        assert submitted.returncode == 0, submitted.stdout + submitted.stderr
        job = json.loads(submitted.stdout)
        assert job["state"] == "verified" and job["insecure"] is True
        assert "INSECURE" in job["tee_kind"] and job["match_tx"] and job["settle_tx"]
        assert (tmp_path / "upper.out").read_bytes() == b"SEALED OUTSIDE THE ENCLAVE"
        assert job["provider"].lower() in {addresses[p] for p in PROVIDERS}

        status = _capa("job", "status", job["job_id"], "-c", str(folder / "client" / "capa.toml"),
                       "--json")  # fmt: skip
        assert status.returncode == 0, status.stderr
        assert json.loads(status.stdout)["state"] == "verified"

        # On chain: settled, the provider paid the price less the protocol fee.
        market = Market.at(
            ChainClient(f"http://127.0.0.1:{anvil_port}"), state["contracts"]["JobMarket"]
        )
        job_id = bytes.fromhex(job["job_id"][2:])
        assert market.job(job_id).state is JobState.SETTLED
        fee = int(job["price"]) * market.parameters()["fee_bps"] // BPS
        paid = market.settled_payouts(
            job["provider"], from_block=0, to_block=market.client.block_number(), log_range=10_000
        )
        assert [payout for jid, payout, _ in paid if jid == job_id] == [int(job["price"]) - fee]
    except BaseException:
        logs = compose_docker.run([*compose, "logs", "--no-color", "--tail", "40"], check=False)
        print(logs.stdout, logs.stderr)
        raise
    finally:
        compose_docker.run([*compose, "down", "--volumes", "--remove-orphans"], timeout=300)
        shutil.rmtree(folder, ignore_errors=True)

    label = f"label=com.docker.compose.project={project}"
    containers = docker.run(["docker", "ps", "--all", "--quiet", "--filter", label])
    assert containers.stdout.strip() == ""
    volumes = docker.run(["docker", "volume", "ls", "--quiet", "--filter", label])
    assert volumes.stdout.strip() == ""
    assert not folder.exists()
    assert len(ports) == 1 + 2 * len(NODES)
    assert [port for port in sorted(ports) if port_listening(port)] == []

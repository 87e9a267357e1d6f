"""A Docker engine and the node image for the container tests, made once per session.

tools/docker-env.sh reuses a Docker that answers already, or installs Debian's and starts one
(as root) that the session stops again; tools/docker-image.sh builds the image with no
registry and no package index inside the build, as CI must.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]

# The first test pays for the engine, the base image and the build (minutes on a new machine).
SETUP_TIMEOUT = 1500


@dataclass(frozen=True)
class Docker:
    env: dict[str, str]

    def run(
        self, args: Sequence[str], *, timeout: float = 600, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        # 600 s: on vfs one `docker run` copies the whole image twice (a minute and more on a
        # loaded machine); on overlay2 it takes seconds.
        done = subprocess.run(
            list(args), cwd=REPO, env=self.env, capture_output=True, text=True, timeout=timeout
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"{' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
            )
        return done

    def compose(self) -> list[str]:
        """`docker compose` where the plugin is there, Debian's `docker-compose` otherwise."""
        plugin = self.run(["docker", "compose", "version"], check=False)
        if plugin.returncode == 0:
            return ["docker", "compose"]
        standalone = shutil.which("docker-compose", path=self.env.get("PATH"))
        assert standalone, "neither `docker compose` nor docker-compose: run tools/docker-env.sh up"
        return [standalone]


def docker_env_script(command: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """tools/docker-env.sh up|down|status (up may install packages: minutes)."""
    return subprocess.run(
        ["bash", "tools/docker-env.sh", command],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=SETUP_TIMEOUT,
    )


def _exports(text: str) -> dict[str, str]:
    found = {}
    for line in text.splitlines():
        if line.startswith("export "):
            name, _, value = line.removeprefix("export ").partition("=")
            found[name] = value
    return found


@pytest.fixture(scope="session")
def docker() -> Iterator[Docker]:
    # An engine of this session's own where one must be started: another checkout's test
    # run on the same machine stops only its own.
    env = {
        **os.environ,
        "CAPA_DOCKER_DIR": f"/tmp/capacloud-docker-test-{uuid.uuid4().hex[:8]}",
        "NO_COLOR": "1",
        "COLUMNS": "200",
    }
    up = docker_env_script("up", env)
    assert up.returncode == 0, f"tools/docker-env.sh up failed:\n{up.stderr}"
    exports = _exports(up.stdout)
    started = exports.pop("CAPA_DOCKER_STARTED", "") == "1"
    env.update(exports)
    try:
        yield Docker(env)
    finally:
        if started:
            down = docker_env_script("down", env)
            assert down.returncode == 0, f"tools/docker-env.sh down failed:\n{down.stderr}"


@pytest.fixture(scope="session")
def node_image(docker: Docker) -> Iterator[str]:
    """The image of this checkout, under a tag of its own, removed after the session."""
    given = os.environ.get("CAPA_TEST_IMAGE")
    if given:
        # An image built already (`make docker-image`), to iterate on the tests quickly.
        yield given
        return
    tag = f"capacloud/node:test-{uuid.uuid4().hex[:8]}"
    docker.run(["bash", "tools/docker-image.sh", "build", tag], timeout=SETUP_TIMEOUT)
    try:
        yield tag
    finally:
        docker.run(["docker", "image", "rm", "--force", tag], check=False)

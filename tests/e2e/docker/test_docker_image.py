"""The node image, built offline from this checkout, run for real with host networking."""

from __future__ import annotations

import json
from typing import Any

import pytest

from node import __version__

from .conftest import SETUP_TIMEOUT, Docker

pytestmark = [pytest.mark.docker, pytest.mark.timeout(SETUP_TIMEOUT + 300)]

# What a job sandbox asks of its container: user namespaces and a fresh /proc for bubblewrap
# (the default seccomp profile and the masked /proc paths refuse them), and CAP_SYS_ADMIN to
# make the container's own cgroup subtree writable, so job cgroups nest inside its limits.
SANDBOX_OPTIONS = (
    "--cap-add", "SYS_ADMIN",
    "--security-opt", "seccomp=unconfined",
    "--security-opt", "systempaths=unconfined",
)  # fmt: skip
REMOUNT_OWN_CGROUPS = (
    "awk '$3 ~ /^cgroup2?$/ {print $2}' /proc/self/mounts"
    ' | while read -r mount; do mount -o remount,rw,bind "$mount"; done'
)


def _capa(docker: Docker, image: str, *args: str, options: tuple[str, ...] = ()) -> str:
    ran = docker.run(["docker", "run", "--rm", "--network", "host", *options, image, *args])
    return ran.stdout


def _by_name(capabilities: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {capability["name"]: capability for capability in capabilities}


def test_capa_in_the_image_is_this_checkout(docker: Docker, node_image: str) -> None:
    assert _capa(docker, node_image, "--version").strip() == f"capa {__version__}"


def test_a_default_container_says_it_cannot_sandbox_jobs(docker: Docker, node_image: str) -> None:
    report = json.loads(_capa(docker, node_image, "node", "probe", "--json"))
    sandboxes = _by_name(report["sandboxes"])
    # The runtimes are there; what a plain container refuses is namespaces and cgroups, and
    # the probe says so instead of offering a sandbox that does not hold.
    assert sandboxes["wasmtime"]["available"] and sandboxes["onnxruntime"]["available"]
    assert sandboxes["sandbox user"]["available"], sandboxes["sandbox user"]["detail"]
    assert not sandboxes["bubblewrap"]["available"]
    assert "namespace" in sandboxes["bubblewrap"]["detail"]
    assert not sandboxes["wasm isolation"]["available"]
    assert "wasm sandbox: unavailable" in " ".join(report["notes"])
    attesters = _by_name(report["attesters"])
    assert attesters["sim"]["available"] and "INSECURE" in attesters["sim"]["detail"]
    assert not any(attesters[kind]["available"] for kind in ("tdx", "sev-snp", "sgx"))


def test_a_container_with_the_sandbox_settings_runs_wasm_jobs(
    docker: Docker, node_image: str
) -> None:
    ran = docker.run(
        ["docker", "run", "--rm", "--network", "host", *SANDBOX_OPTIONS, "--entrypoint", "sh",
         node_image, "-c", f"{REMOUNT_OWN_CGROUPS} && exec capa node probe --json"]
    )  # fmt: skip
    sandboxes = _by_name(json.loads(ran.stdout)["sandboxes"])
    assert sandboxes["bubblewrap"]["available"], sandboxes["bubblewrap"]["detail"]
    assert sandboxes["cgroups v1"]["available"] or sandboxes["cgroups v2"]["available"]
    # A real (empty) wasm job ran in the native sandbox inside the container.
    assert sandboxes["wasm isolation"]["available"], sandboxes["wasm isolation"]["detail"]


def test_the_image_carries_no_dev_tools_and_finds_its_contracts(
    docker: Docker, node_image: str
) -> None:
    # One container for several looks: on vfs each one is a full copy of the image. `/` must
    # be 0755: the sandbox user runs bubblewrap, and a 0700 root (a base made from a mktemp
    # folder) stops every job, on vfs only, since overlay2 gives a container's root 0755.
    check = (
        "import importlib.util, os, shutil\n"
        "from node.chain.artifacts import DEPLOYABLE_CONTRACTS, load_artifact\n"
        "dev = [m for m in ('pytest', 'mypy', 'ruff', 'hypothesis', 'schemathesis')"
        " if importlib.util.find_spec(m)]\n"
        "print(dev, [len(load_artifact(n).bytecode) > 0 for n in DEPLOYABLE_CONTRACTS],"
        " shutil.which('anvil'), oct(os.stat('/').st_mode & 0o7777))\n"
    )
    out = _capa(docker, node_image, "-c", check, options=("--entrypoint", "python3"))
    assert out.strip() == "[] [True, True, True] /opt/capacloud/bin/anvil 0o755"

"""tools/docker-env.sh starts an engine of its own and `down` leaves nothing of it behind."""

from __future__ import annotations

import hashlib
import os
import subprocess
import tarfile
import uuid
from pathlib import Path

import pytest

from .conftest import SETUP_TIMEOUT, docker_env_script

pytestmark = [
    pytest.mark.docker,
    pytest.mark.timeout(SETUP_TIMEOUT),
    pytest.mark.skipif(os.geteuid() != 0, reason="starting dockerd needs root"),
]


def _overlay_mounts_in_tmp() -> bool:
    """Whether this kernel mounts overlayfs over /tmp (docker-env.sh's data root): where it
    cannot (e.g. /tmp itself on an overlay), the engine runs on vfs, tested on its own."""
    base = Path(f"/tmp/capacloud-overlay-probe-{uuid.uuid4().hex[:8]}")
    parts = [base / name for name in ("lower", "upper", "work", "merged")]
    for part in parts:
        part.mkdir(parents=True)
    lower, upper, work, merged = parts
    try:
        options = f"lowerdir={lower},upperdir={upper},workdir={work}"
        mounted = subprocess.run(
            ["mount", "-t", "overlay", "overlay", "-o", options, str(merged)],
            capture_output=True, timeout=30,
        )  # fmt: skip
        if mounted.returncode == 0:
            subprocess.run(["umount", str(merged)], capture_output=True, timeout=30)
        return mounted.returncode == 0
    finally:
        subprocess.run(["rm", "-rf", str(base)], capture_output=True, timeout=30)


def _import_true_image(engine: dict[str, str], tmp_path: Path) -> str:
    """A one-program image: the host's /usr/bin/true and the libraries it loads."""
    libraries = subprocess.run(
        ["ldd", "/usr/bin/true"], capture_output=True, text=True, check=True
    ).stdout
    files = ["/usr/bin/true"] + [word for word in libraries.split() if word.startswith("/")]
    tarball = tmp_path / "true.tar"
    with tarfile.open(tarball, "w") as tar:
        for name in files:
            tar.add(Path(name).resolve(), arcname=name.lstrip("/"))
    tag = "capacloud/envtest-true:latest"
    subprocess.run(
        ["docker", "import", str(tarball), tag], env=engine, capture_output=True, check=True
    )
    return tag


def _cgroups(state_dir: str) -> list[Path]:
    """The engine's cgroup parent (named after its folder) wherever it was made."""
    parent = "capacloud-docker-" + hashlib.sha256(f"{state_dir}\n".encode()).hexdigest()[:8]
    return [path for path in Path("/sys/fs/cgroup").glob(f"**/{parent}") if path.is_dir()]


def _traces(state_dir: str) -> list[str]:
    """Processes and mounts that still name the engine's folder."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if f"{state_dir}/" in cmdline:
                found.append(f"process {proc.name}: {cmdline}")
    found += [
        line for line in Path("/proc/self/mounts").read_text().splitlines() if state_dir in line
    ]
    return found


@pytest.mark.parametrize("storage", ["overlay2", "vfs"])
def test_up_starts_an_engine_once_and_down_removes_it(storage: str, tmp_path: Path) -> None:
    if storage == "overlay2" and not _overlay_mounts_in_tmp():
        pytest.skip("this kernel cannot mount overlayfs under /tmp: engines here run on vfs")
    state_dir = f"/tmp/capacloud-docker-envtest-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "CAPA_DOCKER_DIR": state_dir,
        "CAPA_DOCKER_STORAGE": storage,
        # No engine answers here, whatever the machine has: `up` must start its own.
        "DOCKER_HOST": f"unix://{state_dir}/none.sock",
    }
    try:
        first = docker_env_script("up", env)
        assert first.returncode == 0, first.stderr
        assert first.stdout.splitlines() == [
            f"export DOCKER_HOST=unix://{state_dir}/docker.sock",
            "export CAPA_DOCKER_STARTED=1",
        ]
        engine = {**env, "DOCKER_HOST": f"unix://{state_dir}/docker.sock"}
        info = subprocess.run(
            ["docker", "info", "--format", "{{.Driver}} {{.DockerRootDir}}"],
            env=engine, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert info.stdout.split() == [storage, f"{state_dir}/data"], info.stderr
        # A second `up` finds that engine and starts nothing.
        second = docker_env_script("up", env)
        assert second.returncode == 0, second.stderr
        assert second.stdout.splitlines() == [f"export DOCKER_HOST=unix://{state_dir}/docker.sock"]
        # A container makes the engine's cgroups, mounts and shim processes.
        image = _import_true_image(engine, tmp_path)
        ran = subprocess.run(
            ["docker", "run", "--rm", "--network", "host", image, "/usr/bin/true"],
            env=engine, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert ran.returncode == 0, ran.stderr
        assert _cgroups(state_dir), "the container left no cgroup parent to look for"
    finally:
        down = docker_env_script("down", env)
    assert down.returncode == 0, down.stderr
    assert not Path(state_dir).exists()
    assert not Path(f"{state_dir}.lock").exists()
    assert _traces(state_dir) == []
    assert _cgroups(state_dir) == []

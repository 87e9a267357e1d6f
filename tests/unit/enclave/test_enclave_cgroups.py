"""cgroup hierarchy detection and the v2 file protocol on a fake tree (this machine is hybrid
v1, whose enforcement the integration tests prove), and the seccomp program's shape."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from node.enclave.cgroups import (
    CgroupLimits,
    CgroupMount,
    CgroupV1Driver,
    CgroupV2Driver,
    detect_cgroup_driver,
)
from node.enclave.errors import SandboxUnavailable
from node.enclave.seccomp import DENIED_SYSCALLS_X86_64, sandbox_filter


def _v2_tree(root: Path, controllers: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "cgroup.controllers").write_text(controllers + "\n")
    (root / "cgroup.subtree_control").write_text("")
    return root


def test_hybrid_machine_without_v2_controllers_uses_v1(tmp_path):
    v2 = _v2_tree(tmp_path / "unified", "hugetlb")
    v1 = {name: tmp_path / name for name in ("memory", "pids", "cpu", "cpuacct")}
    for path in v1.values():
        path.mkdir()
    mounts = [CgroupMount(v2, "cgroup2", frozenset({"rw"}))] + [
        CgroupMount(path, "cgroup", frozenset({"rw", name})) for name, path in v1.items()
    ]
    driver = detect_cgroup_driver(mounts)
    assert isinstance(driver, CgroupV1Driver)


def test_no_usable_hierarchy_says_why(tmp_path):
    v2 = _v2_tree(tmp_path / "unified", "hugetlb")
    with pytest.raises(SandboxUnavailable) as error:
        detect_cgroup_driver([CgroupMount(v2, "cgroup2", frozenset())])
    message = str(error.value)
    assert "memory, pids, cpu not available" in message
    assert "controllers not mounted: memory, pids, cpu, cpuacct" in message


class FakeV2Files:
    """A v2 tree where mkdir creates the files the kernel would."""

    @staticmethod
    def populate(directory: Path) -> None:
        for name in (
            "cgroup.procs",
            "cgroup.subtree_control",
            "memory.max",
            "pids.max",
            "cpu.max",
            "memory.swap.max",
        ):
            (directory / name).write_text("")
        (directory / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
        (directory / "pids.events").write_text("max 4\n")
        (directory / "cpu.stat").write_text("usage_usec 1500000\nuser_usec 1\n")
        (directory / "memory.peak").write_text("1048576\n")


def test_v2_driver_writes_limits_and_reads_events(tmp_path, monkeypatch):
    root = _v2_tree(tmp_path / "cg", "cpu memory pids io")
    driver = CgroupV2Driver.detect([CgroupMount(root, "cgroup2", frozenset())])
    original_mkdir = Path.mkdir

    def mkdir_with_kernel_files(self: Path, *args: object, **kwargs: object) -> None:
        original_mkdir(self, *args, **kwargs)  # type: ignore[arg-type]
        FakeV2Files.populate(self)

    monkeypatch.setattr(Path, "mkdir", mkdir_with_kernel_files)
    job = driver.create("job-1", CgroupLimits(memory_bytes=1 << 26, pids=7, cpus=1.5))
    directory = root / "capacloud" / "job-1"
    assert (root / "cgroup.subtree_control").read_text() == "+memory +pids +cpu"
    assert (directory / "memory.max").read_text() == str(1 << 26)
    assert (directory / "memory.swap.max").read_text() == "0"
    assert (directory / "pids.max").read_text() == "7"
    assert (directory / "cpu.max").read_text() == "150000 100000"
    assert job.procs_files == (directory / "cgroup.procs",)
    report = job.report()
    assert (report.oom_kills, report.pids_refused) == (1, 4)
    assert report.cpu_seconds == 1.5 and report.peak_memory_bytes == 1 << 20


def test_seccomp_filter_denies_sockets_and_allows_the_rest():
    program = sandbox_filter()
    assert len(program) % 8 == 0
    instructions = [struct.unpack("<HBBI", program[i : i + 8]) for i in range(0, len(program), 8)]
    compared = {k for code, _jt, _jf, k in instructions if code == 0x15}
    assert DENIED_SYSCALLS_X86_64["socket"] in compared
    assert DENIED_SYSCALLS_X86_64["socketpair"] in compared
    assert 0 not in compared and 1 not in compared  # read and write stay allowed
    assert instructions[-1] == (0x06, 0, 0, 0x7FFF0000)

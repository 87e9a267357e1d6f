"""The host stays the host while the daemon runs as root (as CI does): one test per finding of
the red-team pass on the exec sandbox. Each job here tries the attack for real and reports
"ESCAPED ..." or "blocked ..." through its sealed output; the host is checked from outside too,
and anything a failing run changed on the host is put back."""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from node.enclave.jobs import FailureReason, JobLimits
from node.enclave.workloads import ExecWorkload

MIB = 1024 * 1024
# Global (not namespaced), harmless to change for a moment, and restored in every case.
HARMLESS_SYSCTL = Path("/proc/sys/fs/lease-break-time")
# What the red team read: host keyrings, allocator and page state, the kernel command line.
MASKED_PROC_FILES = (
    "/proc/keys",
    "/proc/key-users",
    "/proc/kcore",
    "/proc/kpageflags",
    "/proc/kpagecount",
    "/proc/slabinfo",
    "/proc/sched_debug",
    "/proc/timer_list",
    "/proc/cmdline",
    "/proc/sysrq-trigger",
    "/proc/kallsyms",
    "/proc/kmsg",
    "/proc/interrupts",
)


@pytest.fixture(scope="module")
def hostile(backend, rootfs):
    return backend.create_instance(ExecWorkload(rootfs, ("/bin/hostile",)))


def _output(ran) -> str:
    assert ran.outcome.succeeded, ran.outcome.failure
    assert ran.plaintext_output is not None
    return ran.plaintext_output.decode()


@pytest.fixture
def restore_sysctl() -> Iterator[str]:
    before = HARMLESS_SYSCTL.read_text()
    try:
        yield before
    finally:
        if HARMLESS_SYSCTL.read_text() != before:
            HARMLESS_SYSCTL.write_text(before)


def test_a_job_cannot_write_a_host_sysctl(hostile, client, restore_sysctl):
    changed = str(int(restore_sysctl) + 7)
    output = _output(client.run(hostile, args=("sysctl", str(HARMLESS_SYSCTL), changed)))
    assert output.startswith(f"blocked sysctl {HARMLESS_SYSCTL}: "), output
    assert HARMLESS_SYSCTL.read_text() == restore_sysctl


def _host_uids(pid: str) -> list[int] | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    line = next(line for line in status.splitlines() if line.startswith("Uid:"))
    return [int(uid) for uid in line.split()[1:]]


def test_the_workload_never_runs_as_host_root(hostile, client):
    """Seen from the host: every process of a running job has a non-zero real, effective,
    saved and filesystem uid."""
    tag = f"uid-probe-{os.urandom(4).hex()}"
    needle = f"/bin/hostile\0loop\0{tag}\0".encode()
    job = threading.Thread(
        target=client.run,
        args=(hostile,),
        kwargs={"args": ("loop", tag), "limits": JobLimits(wall_seconds=3)},
    )
    job.start()
    seen: dict[str, list[int]] = {}
    deadline = time.monotonic() + 3
    while not seen and time.monotonic() < deadline:
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if cmdline.startswith(needle) and (uids := _host_uids(entry.name)) is not None:
                seen[entry.name] = uids
    job.join()
    assert seen, "the job's process was never seen running"
    for pid, uids in seen.items():
        assert 0 not in uids, f"pid {pid} runs with host uids {uids}"


def test_a_job_cannot_change_a_host_device_node_or_proc_file(hostile, client):
    # chmod to the current mode: harmless to the host even on a sandbox that lets it through.
    targets = {path: os.stat(path).st_mode for path in ("/dev/null", "/proc/slabinfo")}
    for path, mode in targets.items():
        output = _output(client.run(hostile, args=("chmod", path, f"{mode & 0o7777:o}")))
        assert output.startswith(f"blocked chmod {path}: "), output
        assert os.stat(path).st_mode == mode


def test_host_information_in_proc_is_unreadable(hostile, client):
    present = [path for path in MASKED_PROC_FILES if os.path.exists(path)]
    assert "/proc/keys" in present
    output = _output(client.run(hostile, args=("open", *present)))
    assert output.splitlines() == [f"blocked open {path}: Permission denied" for path in present]


def _mounts(
    hostile, client, limits: JobLimits | None = None
) -> list[tuple[str, set[str], str, str]]:
    """(mount point, mount options, fs type, super options) of each mount the job sees."""
    output = _output(client.run(hostile, args=("cat", "/proc/self/mountinfo"), limits=limits))
    mounts = []
    for line in output.splitlines():
        fields = line.split()
        separator = fields.index("-")
        mounts.append(
            (fields[4], set(fields[5].split(",")), fields[separator + 1], fields[separator + 3])
        )
    return mounts


def test_proc_sys_is_mounted_read_only(hostile, client):
    options = {point: mount_options for point, mount_options, _, _ in _mounts(hostile, client)}
    assert "ro" in options["/proc/sys"]


def test_no_host_path_shows_in_the_sandbox_command_line(hostile, client, rootfs):
    output = _output(client.run(hostile, args=("cat", "/proc/1/cmdline")))
    assert "--args" in output and "/bin/hostile" in output, output
    assert str(rootfs) not in output


def test_no_host_file_descriptor_reaches_the_job(hostile, client):
    output = _output(client.run(hostile, args=("fds",)))
    numbers = sorted(int(line.split()[1]) for line in output.splitlines())
    # 0-2 are the pipes, the last one is the directory `fds` is listing.
    assert numbers[:3] == [0, 1, 2] and len(numbers) == 4, output


def test_dev_shm_is_bounded_by_the_scratch_limit(hostile, client):
    scratch = 8 * MIB
    limits = JobLimits(wall_seconds=20, memory_bytes=256 * MIB, scratch_bytes=scratch)
    output = _output(client.run(hostile, args=("fill", "/dev/shm/big", "64"), limits=limits))
    match = re.fullmatch(r"filled /dev/shm/big with (\d+) KiB: No space left on device\n", output)
    assert match, output
    assert int(match.group(1)) * 1024 <= scratch


def _size_option(options: str) -> int | None:
    for option in options.split(","):
        if option.startswith("size="):
            value = option[5:]
            units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
            return int(value[:-1]) * units[value[-1]] if value[-1] in units else int(value)
    return None


# Host device nodes, bound one by one: writes reach the device, never any storage.
DEVICE_NODES = {f"/dev/{name}" for name in ("null", "zero", "full", "random", "urandom", "tty")}


def test_every_writable_mount_is_sized_and_together_within_the_scratch_limit(hostile, client):
    scratch = 16 * MIB
    limits = JobLimits(wall_seconds=10, memory_bytes=256 * MIB, scratch_bytes=scratch)
    writable: dict[str, int] = {}
    for point, mount_options, fstype, super_options in _mounts(hostile, client, limits):
        if "rw" not in mount_options or fstype in ("proc", "devpts"):
            continue
        if fstype == "devtmpfs" and point in DEVICE_NODES:
            continue
        assert fstype == "tmpfs", f"writable {fstype} at {point}"
        size = _size_option(super_options)
        assert size is not None, f"unsized writable tmpfs at {point}"
        writable[point] = size
    assert set(writable) == {"/work", "/tmp", "/dev/shm"}, writable
    assert sum(writable.values()) <= scratch, writable


def test_stderr_written_before_an_oom_never_reaches_a_failure_or_a_log(hostile, client, caplog):
    """The job echoes its opened input to stderr, then fills memory through tmpfs until the
    OOM killer comes: the failure names the memory cap, in our words only."""
    marker = b"client-secret=" + os.urandom(12).hex().encode()
    limits = JobLimits(wall_seconds=30, memory_bytes=32 * MIB, scratch_bytes=1024 * MIB)
    with caplog.at_level(logging.DEBUG):
        ran = client.run(hostile, marker, args=("leak", "/work/fill"), limits=limits)
    failure = ran.outcome.failure
    assert failure is not None and failure.reason is FailureReason.MEMORY_LIMIT, failure
    assert marker.decode() not in str(failure)
    assert marker.decode() not in repr(ran.outcome)
    assert marker.decode() not in caplog.text
    assert marker not in ran.sealed_output

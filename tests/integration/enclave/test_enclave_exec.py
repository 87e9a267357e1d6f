"""exec workloads in bubblewrap + seccomp + cgroups: each limit proven by a program that breaks
it, escape attempts that fail, and the plaintext never touching the host's disk."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest

from node.enclave.jobs import FailureReason, JobLimits
from node.enclave.workloads import ExecWorkload


@pytest.fixture(scope="module")
def hostile(backend, rootfs):
    return backend.create_instance(ExecWorkload(rootfs, ("/bin/hostile",)))


def _failed(ran, reason: FailureReason) -> None:
    assert ran.outcome.failure is not None, "the job should have failed"
    assert ran.outcome.failure.reason is reason, ran.outcome.failure
    assert ran.outcome.receipt is None and ran.outcome.output_hash is None


def test_round_trip_and_measurement_binds_root_and_argv(backend, rootfs, client):
    instance = backend.create_instance(ExecWorkload(rootfs, ("/bin/sha256",)))
    other_argv = ExecWorkload(rootfs, ("/bin/upper",)).measure()
    assert instance.measurement != other_argv
    data = os.urandom(3 * 1024 * 1024 + 7)
    ran = client.run(instance, data)
    assert ran.outcome.succeeded, ran.outcome.failure
    assert ran.plaintext_output == hashlib.sha256(data).hexdigest().encode() + b"\n"
    assert ran.outcome.usage.cpu_seconds is not None and ran.outcome.usage.cpu_seconds > 0


def test_measurement_changes_when_a_file_of_the_root_changes(rootfs, tmp_path):
    copy = tmp_path / "root"
    (copy / "bin").mkdir(parents=True)
    (copy / "bin" / "tool").write_bytes(b"one")
    before = ExecWorkload(copy, ("/bin/tool",)).measure()
    (copy / "bin" / "tool").write_bytes(b"two")
    assert ExecWorkload(copy, ("/bin/tool",)).measure() != before


def test_infinite_loop_ends_at_the_deadline(hostile, client):
    _failed(
        client.run(hostile, args=("loop",), limits=JobLimits(wall_seconds=0.3)),
        FailureReason.TIMEOUT,
    )


def test_memory_bomb_is_killed_at_the_cgroup_cap(hostile, client):
    cap = 48 * 1024 * 1024
    ran = client.run(hostile, args=("memory",), limits=JobLimits(memory_bytes=cap))
    _failed(ran, FailureReason.MEMORY_LIMIT)
    assert ran.outcome.usage.peak_memory_bytes is not None
    assert ran.outcome.usage.peak_memory_bytes <= cap


def test_fork_bomb_stops_at_the_pids_limit(hostile, client):
    ran = client.run(hostile, args=("fork",), limits=JobLimits(pids=12))
    _failed(ran, FailureReason.PIDS_LIMIT)


def test_crash_is_reported_with_its_signal(hostile, client):
    ran = client.run(hostile, args=("trap",))
    _failed(ran, FailureReason.KILLED)
    assert "SIGILL" in ran.outcome.failure.detail


def test_output_over_the_cap_fails_the_job(hostile, client):
    ran = client.run(hostile, args=("output",), limits=JobLimits(output_bytes=200_000))
    _failed(ran, FailureReason.OUTPUT_LIMIT)


def test_no_socket_of_any_family(hostile, client):
    ran = client.run(hostile, args=("socket",))
    assert ran.plaintext_output == (
        b"blocked socket AF_INET: Operation not permitted\n"
        b"blocked socket AF_UNIX: Operation not permitted\n"
    )


def test_shadow_is_not_readable(hostile, client):
    ran = client.run(hostile, args=("shadow",))
    assert ran.plaintext_output is not None
    assert ran.plaintext_output.startswith(b"blocked read /etc/shadow")


def test_writes_outside_its_folder_fail_and_the_host_disk_is_untouched(hostile, client, tmp_path):
    target = tmp_path / "escaped"
    ran = client.run(hostile, args=("write", "/escaped", "/bin/escaped", str(target)))
    assert ran.outcome.succeeded, ran.plaintext_output
    assert ran.plaintext_output is not None and b"ESCAPED" not in ran.plaintext_output
    assert not target.exists()
    assert not Path("/escaped").exists()


def test_plaintext_never_reaches_a_host_file(backend, rootfs, client, tmp_path):
    """The workload copies its input into its own folder and /tmp; the host sees none of it."""
    instance = backend.create_instance(ExecWorkload(rootfs, ("/bin/upper",)))
    marker = b"plaintext-marker-" + os.urandom(8).hex().encode()
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    started = time.time()
    ran = client.run(instance, marker * 100)
    (job_dir / "input.sealed").write_bytes(ran.sealed_input)
    (job_dir / "output.sealed").write_bytes(ran.sealed_output)
    assert ran.plaintext_output == (marker * 100).upper()
    for directory in (job_dir, Path("/tmp"), Path("/dev/shm"), Path("/var/tmp")):
        for path in _files_changed_since(directory, started):
            try:
                content = path.read_bytes()
            except FileNotFoundError:
                continue  # another process's temporary file, gone since it was listed
            assert marker not in content and marker.upper() not in content, path


def _files_changed_since(directory: Path, since: float) -> list[Path]:
    found = []
    for root, _dirs, files in os.walk(directory):
        for name in files:
            path = Path(root) / name
            try:
                if path.is_file() and path.stat().st_mtime >= since - 1:
                    found.append(path)
            except OSError:
                continue
    return found


def test_cgroups_are_removed_after_each_job(hostile, client, native_sandbox):
    client.run(hostile, args=("fork",), limits=JobLimits(pids=8))
    leftovers = [p for p in Path("/sys/fs/cgroup").glob("*/capacloud/job-*") if p.is_dir()] + [
        p for p in Path("/sys/fs/cgroup").glob("capacloud/job-*") if p.is_dir()
    ]
    assert leftovers == []

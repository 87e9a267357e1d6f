"""The rules the sandbox is built on, each checked without starting one: who a job is on the
host (never uid 0, or no job at all), how the scratch limit is split, how a run's ending is
told in our own words, what the wasm child may report, and how the probe judges a mount table."""

from __future__ import annotations

import os
import pwd
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from node.enclave.cgroups import CgroupReport
from node.enclave.errors import SandboxUnavailable
from node.enclave.jobs import FailureReason, JobLimits
from node.enclave.native_sandbox import (
    SANDBOX_USER,
    JobIdentity,
    NativeSandbox,
    SandboxEnd,
    classify_exit,
    job_identity,
    scratch_sizes,
)
from node.enclave.probe import _isolation_findings, _mount_table
from node.enclave.wasm_runner import _parse_outcome


def test_a_root_daemon_without_the_sandbox_user_refuses_in_one_line():
    with pytest.raises(SandboxUnavailable) as error:
        job_identity("capacloud-no-such-user", daemon_uid=0)
    message = str(error.value)
    assert "\n" not in message
    assert "refusing to run jobs" in message and "tools/system-deps.sh" in message


def test_a_sandbox_user_that_is_root_is_refused():
    with pytest.raises(SandboxUnavailable, match="dedicated unprivileged user"):
        job_identity("root", daemon_uid=0)


def test_a_root_daemon_drops_to_the_dedicated_user():
    if os.geteuid() != 0:
        pytest.skip("the set-up script creates the sandbox user only on a root machine")
    identity = job_identity()
    entry = pwd.getpwnam(SANDBOX_USER)
    assert identity == JobIdentity(entry.pw_uid, entry.pw_gid, True, identity.label)
    assert identity.uid != 0 and identity.gid != 0


def test_a_daemon_that_is_not_root_runs_jobs_as_itself():
    identity = job_identity("capacloud-no-such-user", daemon_uid=4321)
    assert identity.uid == 4321 and not identity.drop_from_root


class _NoCgroups:
    version = "none"

    def create(self, name: str, limits: object) -> object:
        raise AssertionError("no cgroup for a refused sandbox")


def test_the_sandbox_refuses_host_root_whatever_it_is_given(tmp_path: Path):
    with pytest.raises(SandboxUnavailable, match="uid 0"):
        NativeSandbox(tmp_path / "bwrap", _NoCgroups(), JobIdentity(0, 0, False, "root"))


@pytest.fixture
def bubblewrap_behind_a_root_only_directory() -> Iterator[Path]:
    """A bwrap file the sandbox user may execute, below a directory it may not search (as in
    an image whose `/` has mode 0700); pytest's own tmp_path is such a directory already."""
    with tempfile.TemporaryDirectory() as top:
        os.chmod(top, 0o755)
        locked = Path(top) / "locked"
        locked.mkdir(mode=0o700)
        locked.chmod(0o700)
        bwrap = locked / "bwrap"
        bwrap.touch(mode=0o755)
        yield bwrap


def test_a_root_daemon_refuses_a_bubblewrap_its_sandbox_user_cannot_reach(
    bubblewrap_behind_a_root_only_directory: Path,
):
    bwrap = bubblewrap_behind_a_root_only_directory
    identity = JobIdentity(4321, 4321, True, "capacloud-sandbox (uid 4321)")
    with pytest.raises(SandboxUnavailable) as error:
        NativeSandbox(bwrap, _NoCgroups(), identity)
    assert str(error.value) == (
        "refusing to run jobs: the sandbox user, capacloud-sandbox (uid 4321), cannot search "
        f"{bwrap.parent} (mode 0700) on the way to {bwrap}; make it searchable "
        f"(chmod o+x {bwrap.parent})"
    )
    # Searchable is enough: the sandbox user needs to reach bwrap, not to list the folder.
    bwrap.parent.chmod(0o711)
    assert NativeSandbox(bwrap, _NoCgroups(), identity).identity == identity


@pytest.mark.parametrize("scratch", [64 * 1024, 1 << 20, 64 << 20, (64 << 20) + 12345])
def test_writable_mounts_share_the_scratch_limit(scratch: int):
    sizes = dict(scratch_sizes(scratch))
    assert set(sizes) == {"/work", "/tmp", "/dev/shm"}
    assert sum(sizes.values()) <= scratch
    assert all(size > 0 and size % 4096 == 0 for size in sizes.values())  # size=0: unlimited


def test_scratch_below_the_minimum_is_refused():
    with pytest.raises(ValueError, match="scratch"):
        JobLimits(scratch_bytes=4096)


def _end(exit_code: int | None, exit_status: int, oom_kills: int = 0) -> SandboxEnd:
    return SandboxEnd((), False, exit_code, exit_status, CgroupReport(oom_kills, 0, None, None))


def test_an_oom_kill_is_told_before_a_missing_exit_code():
    failure = classify_exit(_end(None, -9, oom_kills=1), JobLimits())
    assert failure is not None and failure.reason is FailureReason.MEMORY_LIMIT


def test_a_sandbox_without_exit_code_is_told_in_our_words():
    failure = classify_exit(_end(None, 1), JobLimits())
    assert failure is not None and failure.reason is FailureReason.SANDBOX_ERROR
    assert failure.detail == (
        "the sandbox reported no exit code (exit status 1); `capa node probe` checks this machine"
    )


@pytest.mark.parametrize(
    "raw",
    [
        b'{"exit": 0, "note": 1}',  # a key we never asked for
        b'{"exit": "client-secret"}',  # text where a number belongs
        b'{"exit": 0.5}',
        b'{"exit": true}',
        b'{"exit": 0, "trap": 9}',  # two endings
        b'{"fuel_left": 3}',  # no ending
        b"[0]",
        b"\xff\xfe",
        b"",
        b'{"exit": 0}' + b" " * 5000,
    ],
)
def test_a_wasm_report_is_integers_or_nothing(raw: bytes):
    assert _parse_outcome(raw) is None


def test_a_well_formed_wasm_report_is_read():
    assert _parse_outcome(b'{"exit": 3, "fuel_left": 7, "memory_bytes": 65536}\n') == {
        "exit": 3,
        "fuel_left": 7,
        "memory_bytes": 65536,
    }


# What a job saw before issue 10: /proc/sys inside a writable /proc, host /proc entries in the
# clear, a writable /dev tmpfs without a size, scratch mounts of 64 MiB each.
UNPROTECTED_MOUNTINFO = """\
65 42 0:40 /newroot / ro,nosuid,nodev,relatime - tmpfs tmpfs rw
66 65 0:41 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw
72 65 0:42 / /dev rw,nosuid,nodev,relatime - tmpfs tmpfs rw,mode=755
80 72 0:44 / /tmp rw,nosuid,nodev,relatime - tmpfs tmpfs rw,size=65536k
81 72 0:45 / /work rw,nosuid,nodev,relatime - tmpfs tmpfs rw,size=65536k
"""


def test_the_probe_names_each_missing_protection():
    holds, missing = _isolation_findings(
        _mount_table(UNPROTECTED_MOUNTINFO), ("/proc/keys",), 64 << 20
    )
    assert holds == []
    assert missing == [
        "/proc/sys is writable",
        "/proc entries not masked: /proc/keys",
        "/dev is writable",
        "/dev is an unsized writable tmpfs",
        "writable mounts exceed the 67108864 B scratch limit",
    ]

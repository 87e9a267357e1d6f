"""Per-job cgroups for the native sandbox: memory, pids and cpu limits, on either hierarchy.

cgroup v2 is used when its mount offers the memory, pids and cpu controllers; otherwise v1
(separate memory, pids, cpu and cpuacct mounts; what a hybrid machine has). Each job gets
`capacloud/<name>` in every hierarchy it uses. The sandboxed command is started by a shell that
writes its own pid into each `cgroup.procs` and then execs bubblewrap, so nothing of the job
runs outside its cgroup even for an instant.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from node.enclave.errors import SandboxUnavailable

PARENT_NAME = "capacloud"
_CPU_PERIOD_US = 100_000
_KILL_GRACE_SECONDS = 5.0


@dataclass(frozen=True)
class CgroupLimits:
    memory_bytes: int
    pids: int
    cpus: float


@dataclass(frozen=True)
class CgroupReport:
    oom_kills: int
    pids_refused: int
    cpu_seconds: float | None
    peak_memory_bytes: int | None


class JobCgroup(Protocol):
    @property
    def procs_files(self) -> tuple[Path, ...]: ...

    def set_limits(self, limits: CgroupLimits) -> None:
        """Applies new limits to a live cgroup (a pre-started runtime becoming a job)."""
        ...

    def member_pids(self) -> set[int]: ...

    def report(self) -> CgroupReport: ...

    def kill_all(self) -> None: ...

    def remove(self) -> None: ...


class CgroupDriver(Protocol):
    @property
    def version(self) -> str: ...

    def create(self, name: str, limits: CgroupLimits) -> JobCgroup: ...


@dataclass(frozen=True)
class CgroupMount:
    path: Path
    fstype: str
    options: frozenset[str]


def read_mounts(mounts_file: Path = Path("/proc/self/mounts")) -> list[CgroupMount]:
    mounts = []
    for line in mounts_file.read_text().splitlines():
        fields = line.split()
        if len(fields) >= 4 and fields[2] in ("cgroup", "cgroup2"):
            mounts.append(CgroupMount(Path(fields[1]), fields[2], frozenset(fields[3].split(","))))
    return mounts


def _write(path: Path, value: str) -> None:
    try:
        path.write_text(value)
    except OSError as exc:
        raise SandboxUnavailable(f"cannot write {value!r} to {path}: {exc}") from exc


def _read_keyed(path: Path) -> dict[str, int]:
    values: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in path.read_text().splitlines():
            key, _, value = line.partition(" ")
            with contextlib.suppress(ValueError):
                values[key] = int(value)
    return values


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _member_pids(procs_files: tuple[Path, ...]) -> set[int]:
    pids: set[int] = set()
    for procs in procs_files:
        with contextlib.suppress(OSError, ValueError):
            pids.update(int(pid) for pid in procs.read_text().split())
    return pids


def _kill_members(procs_files: tuple[Path, ...]) -> None:
    deadline = time.monotonic() + _KILL_GRACE_SECONDS
    while time.monotonic() < deadline:
        pids = _member_pids(procs_files)
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        # Killed tasks leave their cgroup asynchronously; v1 has no event to wait on.
        time.sleep(0.005)


def _cpu_quota(limits: CgroupLimits) -> int:
    return max(1000, int(limits.cpus * _CPU_PERIOD_US))


def _remove_dir(path: Path) -> None:
    deadline = time.monotonic() + _KILL_GRACE_SECONDS
    while True:
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.005)


class _V1JobCgroup:
    def __init__(self, directories: dict[str, Path]) -> None:
        self._dirs = directories

    @property
    def procs_files(self) -> tuple[Path, ...]:
        return tuple(d / "cgroup.procs" for d in self._unique_dirs())

    def _unique_dirs(self) -> list[Path]:
        return list(dict.fromkeys(self._dirs.values()))

    def member_pids(self) -> set[int]:
        return _member_pids(self.procs_files)

    def set_limits(self, limits: CgroupLimits) -> None:
        memory = self._dirs["memory"]
        memsw = memory / "memory.memsw.limit_in_bytes"
        if memsw.exists():
            # memory+swap equal to memory, so a job cannot escape its cap into swap; the kernel
            # wants memsw >= memory at every moment, so the order depends on the direction.
            current = _read_int(memory / "memory.limit_in_bytes") or 0
            order = [memsw, memory / "memory.limit_in_bytes"]
            for path in order if limits.memory_bytes >= current else reversed(order):
                _write(path, str(limits.memory_bytes))
        else:
            _write(memory / "memory.limit_in_bytes", str(limits.memory_bytes))
        _write(self._dirs["pids"] / "pids.max", str(limits.pids))
        cpu = self._dirs["cpu"]
        _write(cpu / "cpu.cfs_period_us", str(_CPU_PERIOD_US))
        _write(cpu / "cpu.cfs_quota_us", str(_cpu_quota(limits)))

    def report(self) -> CgroupReport:
        usage_ns = _read_int(self._dirs["cpuacct"] / "cpuacct.usage")
        return CgroupReport(
            oom_kills=_read_keyed(self._dirs["memory"] / "memory.oom_control").get("oom_kill", 0),
            pids_refused=_read_keyed(self._dirs["pids"] / "pids.events").get("max", 0),
            cpu_seconds=None if usage_ns is None else usage_ns / 1e9,
            peak_memory_bytes=_read_int(self._dirs["memory"] / "memory.max_usage_in_bytes"),
        )

    def kill_all(self) -> None:
        _kill_members(self.procs_files)

    def remove(self) -> None:
        self.kill_all()
        for directory in self._unique_dirs():
            _remove_dir(directory)


class CgroupV1Driver:
    CONTROLLERS = ("memory", "pids", "cpu", "cpuacct")

    def __init__(self, roots: dict[str, Path]) -> None:
        self._roots = roots

    @property
    def version(self) -> str:
        return "v1"

    @classmethod
    def detect(cls, mounts: list[CgroupMount]) -> CgroupV1Driver:
        roots: dict[str, Path] = {}
        for mount in mounts:
            if mount.fstype == "cgroup":
                for controller in cls.CONTROLLERS:
                    if controller in mount.options and controller not in roots:
                        roots[controller] = mount.path
        missing = [c for c in cls.CONTROLLERS if c not in roots]
        if missing:
            raise SandboxUnavailable(f"cgroup v1: controllers not mounted: {', '.join(missing)}")
        for controller, root in roots.items():
            if not os.access(root, os.W_OK):
                raise SandboxUnavailable(
                    f"cgroup v1: {root} ({controller}) is not writable by uid {os.getuid()}; "
                    "run as root or delegate a subtree"
                )
        return cls(roots)

    def create(self, name: str, limits: CgroupLimits) -> JobCgroup:
        directories: dict[str, Path] = {}
        by_root: dict[Path, Path] = {}
        try:
            for controller, root in self._roots.items():
                if root not in by_root:
                    directory = root / PARENT_NAME / name
                    directory.mkdir(parents=True)
                    by_root[root] = directory
                directories[controller] = by_root[root]
        except OSError as exc:
            _V1JobCgroup(directories).remove()
            raise SandboxUnavailable(f"cgroup v1: cannot create job cgroup: {exc}") from exc
        job = _V1JobCgroup(directories)
        try:
            job.set_limits(limits)
        except SandboxUnavailable:
            job.remove()
            raise
        return job


class _V2JobCgroup:
    def __init__(self, directory: Path) -> None:
        self._dir = directory

    @property
    def procs_files(self) -> tuple[Path, ...]:
        return (self._dir / "cgroup.procs",)

    def member_pids(self) -> set[int]:
        return _member_pids(self.procs_files)

    def set_limits(self, limits: CgroupLimits) -> None:
        _write(self._dir / "memory.max", str(limits.memory_bytes))
        if (self._dir / "memory.swap.max").exists():
            _write(self._dir / "memory.swap.max", "0")
        _write(self._dir / "pids.max", str(limits.pids))
        _write(self._dir / "cpu.max", f"{_cpu_quota(limits)} {_CPU_PERIOD_US}")

    def report(self) -> CgroupReport:
        usage_us = _read_keyed(self._dir / "cpu.stat").get("usage_usec")
        return CgroupReport(
            oom_kills=_read_keyed(self._dir / "memory.events").get("oom_kill", 0),
            pids_refused=_read_keyed(self._dir / "pids.events").get("max", 0),
            cpu_seconds=None if usage_us is None else usage_us / 1e6,
            peak_memory_bytes=_read_int(self._dir / "memory.peak"),
        )

    def kill_all(self) -> None:
        kill_file = self._dir / "cgroup.kill"
        if kill_file.exists():
            with contextlib.suppress(OSError):
                kill_file.write_text("1")
        _kill_members(self.procs_files)

    def remove(self) -> None:
        self.kill_all()
        _remove_dir(self._dir)


class CgroupV2Driver:
    CONTROLLERS = ("memory", "pids", "cpu")

    def __init__(self, root: Path) -> None:
        self._root = root

    @property
    def version(self) -> str:
        return "v2"

    @classmethod
    def detect(cls, mounts: list[CgroupMount]) -> CgroupV2Driver:
        unified = [m for m in mounts if m.fstype == "cgroup2"]
        if not unified:
            raise SandboxUnavailable("cgroup v2: no cgroup2 mount")
        root = unified[0].path
        available = set((root / "cgroup.controllers").read_text().split())
        missing = [c for c in cls.CONTROLLERS if c not in available]
        if missing:
            raise SandboxUnavailable(
                f"cgroup v2 at {root}: controllers {', '.join(missing)} not available "
                f"(bound to v1 on a hybrid machine?); offers {sorted(available) or 'none'}"
            )
        if not os.access(root, os.W_OK):
            raise SandboxUnavailable(f"cgroup v2: {root} not writable by uid {os.getuid()}")
        return cls(root)

    def _enable_controllers(self, directory: Path) -> None:
        enabled = set((directory / "cgroup.subtree_control").read_text().split())
        wanted = [c for c in self.CONTROLLERS if c not in enabled]
        if wanted:
            _write(directory / "cgroup.subtree_control", " ".join(f"+{c}" for c in wanted))

    def create(self, name: str, limits: CgroupLimits) -> JobCgroup:
        parent = self._root / PARENT_NAME
        try:
            self._enable_controllers(self._root)
            parent.mkdir(exist_ok=True)
            self._enable_controllers(parent)
            directory = parent / name
            directory.mkdir()
        except OSError as exc:
            raise SandboxUnavailable(f"cgroup v2: cannot create job cgroup: {exc}") from exc
        job = _V2JobCgroup(directory)
        try:
            job.set_limits(limits)
        except SandboxUnavailable:
            job.remove()
            raise
        return job


def detect_cgroup_driver(mounts: list[CgroupMount] | None = None) -> CgroupDriver:
    """v2 when it has the controllers, else v1; SandboxUnavailable says why neither works."""
    mounts = read_mounts() if mounts is None else mounts
    reasons = []
    for driver in (CgroupV2Driver, CgroupV1Driver):
        try:
            return driver.detect(mounts)
        except (SandboxUnavailable, OSError) as exc:
            reasons.append(str(exc))
    raise SandboxUnavailable("no usable cgroup hierarchy: " + "; ".join(reasons))

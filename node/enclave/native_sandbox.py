"""The native sandbox: bubblewrap + seccomp + a per-job cgroup + rlimits, never as host root.

Who a job is on the host: an unprivileged uid, always. A root daemon drops to the dedicated
sandbox user (`capacloud-sandbox`, created by tools/system-deps.sh) after the job has joined its
cgroup and before bubblewrap starts; a daemon that is not root runs jobs as its own uid. A root
daemon without that user refuses to run jobs. So the sandbox's uid 65534 never stands for host
root, which would own every sysctl, device node and /proc file the job can reach.

What the job sees: a read-only root made of the given binds (nothing else of the host: no /etc,
no /home, no host /tmp), bound from file descriptors this process opened, so bubblewrap's own
command line (the job's /proc/1/cmdline) names no host path; a fresh /proc whose /proc/sys is
read-only and whose host-wide entries (keyrings, kernel memory and allocator state, the kernel
command line, sysrq, ...) are masked by an empty, unreadable file or directory; a read-only
/dev of host device nodes it does not own; and writable scratch only in /work (its folder),
/tmp and /dev/shm, tmpfs mounts whose sizes add up to the job's scratch limit. Its own pid, net,
ipc, uts, cgroup and user namespaces, no capabilities, no further user namespaces, no socket
syscalls, a new session, and limits: memory, pids and cpu through the cgroup, core dumps off,
open files and file size capped, a wall-clock deadline enforced from here.

What comes back: stdin is the opened input through a pipe; stdout is sealed as it arrives;
stderr goes nowhere, since it derives from the plaintext, and nothing a job writes ever becomes
part of a failure reason: those are built from our own words and numbers only.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import pwd
import select
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from node.enclave.cgroups import (
    CgroupDriver,
    CgroupLimits,
    CgroupReport,
    JobCgroup,
    detect_cgroup_driver,
)
from node.enclave.errors import OutputCapExceeded, SandboxUnavailable
from node.enclave.jobs import Failure, FailureReason, JobLimits, RunReport, Usage
from node.enclave.output import OutputWriter
from node.enclave.plaintext_pump import InputPump
from node.enclave.seccomp import sandbox_filter

SANDBOX_USER = "capacloud-sandbox"
SANDBOX_UID = 65534
"""The uid inside the sandbox; on the host it is the dedicated user (or this daemon's uid)."""
_PAGE = 4096
_READ_SIZE = 64 * 1024
_OPEN_FILES = 1024
_STATUS_LIMIT = 64 * 1024
_CGROUP_FAILED = 125
_STAGE_FAILED = 124
# The shell joins the job's cgroups, stages the binds the sandbox user cannot reach and sets
# rlimits as this (possibly root) daemon, then becomes setpriv (drops to the sandbox user) and
# bubblewrap: nothing of the job exists outside the cgroup, nothing of it runs as root past
# this line, and no preexec_fn runs in a threaded parent.
_ENTER_SCRIPT = (
    'n=$1; shift; while [ "$n" -gt 0 ]; do echo $$ > "$1" || exit {cgroup_failed}; shift; '
    "n=$((n-1)); done; "
    'n=$1; shift; while [ "$n" -gt 0 ]; do {mount} --bind "$1" "$2" || exit {stage_failed}; '
    "shift 2; n=$((n-1)); done; "
    'ulimit -c 0; ulimit -n {open_files}; ulimit -f {file_blocks}; exec "$@"'
)
# Host-wide state a job has no business reading or writing: Docker's default masks plus what a
# red-team pass read (keyrings, page and slab state, kernel symbols, the kernel command line).
# Each mask is a bind mount, which costs bubblewrap a pass over the mount table, so only the
# entries a job's uid could open are masked: those only root may open stay as they are, since
# no job runs as root. Entries this kernel lacks are skipped (a bind onto one would fail).
MASKED_PROC_FILES = (
    "keys", "key-users", "kcore", "kmsg", "kallsyms", "kpageflags", "kpagecount", "kpagecgroup",
    "slabinfo", "sched_debug", "timer_list", "timer_stats", "latency_stats", "sysrq-trigger",
    "cmdline", "config.gz", "interrupts", "vmallocinfo", "pagetypeinfo",
)  # fmt: skip
MASKED_PROC_DIRS = ("acpi", "asound", "scsi")


@dataclass(frozen=True)
class Bind:
    host: Path
    sandbox: str


@dataclass(frozen=True)
class SandboxCommand:
    binds: tuple[Bind, ...]
    symlinks: tuple[tuple[str, str], ...]
    """(target, link) pairs created in the sandbox root, e.g. ("usr/lib", "/lib")."""
    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = (("PATH", "/usr/bin:/bin"),)


@dataclass(frozen=True)
class JobIdentity:
    """The host uid and gid every process of a job has; never 0."""

    uid: int
    gid: int
    drop_from_root: bool
    """True: this daemon is root and drops to `uid` for each job; False: `uid` is its own."""
    label: str


def job_identity(user: str = SANDBOX_USER, daemon_uid: int | None = None) -> JobIdentity:
    """Who jobs run as on this host, or SandboxUnavailable in one line saying how to fix it."""
    if daemon_uid is None:
        daemon_uid = 0 if 0 in (os.getuid(), os.geteuid()) else os.geteuid()
    if daemon_uid != 0:
        return JobIdentity(daemon_uid, os.getegid(), False, f"this daemon's own uid {daemon_uid}")
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise SandboxUnavailable(
            f"refusing to run jobs: this daemon is root and the sandbox user {user!r} does not "
            "exist; create it with tools/system-deps.sh (make deps) as root"
        ) from None
    if entry.pw_uid == 0 or entry.pw_gid == 0:
        raise SandboxUnavailable(
            f"refusing to run jobs: the sandbox user {user!r} has uid {entry.pw_uid} and gid "
            f"{entry.pw_gid}; it must be a dedicated unprivileged user (tools/system-deps.sh)"
        )
    return JobIdentity(entry.pw_uid, entry.pw_gid, True, f"{user} (uid {entry.pw_uid})")


def find_bubblewrap() -> Path:
    found = shutil.which("bwrap")
    if found is None:
        raise SandboxUnavailable(
            "bubblewrap (bwrap) is not installed: run tools/system-deps.sh (apt-get install "
            "bubblewrap)"
        )
    return Path(found)


def _find_util_linux(name: str) -> str:
    found = shutil.which(name, path="/usr/bin:/bin:/usr/sbin:/sbin")
    if found is None:
        raise SandboxUnavailable(
            f"{name} (util-linux) is missing: a root daemon needs it to hand jobs to the "
            "sandbox user"
        )
    return found


def _searchable_by(path: Path, identity: JobIdentity) -> bool:
    """Whether `identity` may walk down to `path`: bubblewrap resolves every bind source as
    the sandbox user, so a source under a root-only directory must be staged first."""
    return _first_unsearchable(path, identity) is None


def _first_unsearchable(path: Path, identity: JobIdentity) -> Path | None:
    """The first directory above `path` that `identity` may not search, or None."""
    for directory in reversed(path.parents):
        try:
            if not _permissions(directory.stat(), identity) & 0o1:
                return directory
        except OSError:
            return directory
    return None


def _check_reachable(bubblewrap: Path, identity: JobIdentity) -> None:
    """A root daemon execs bubblewrap as the sandbox user, whose dynamic loader then opens its
    libraries as that user: a root-only directory on the way (a container image whose `/` has
    mode 0700, say) makes every job die before bubblewrap prints a word. Said here, once."""
    real = Path(os.path.realpath(bubblewrap))
    blocked = _first_unsearchable(real, identity)
    if blocked is not None:
        mode = "not readable"
        with contextlib.suppress(OSError):
            mode = f"mode {stat.S_IMODE(blocked.stat().st_mode):04o}"
        raise SandboxUnavailable(
            f"refusing to run jobs: the sandbox user, {identity.label}, cannot search {blocked} "
            f"({mode}) on the way to {real}; make it searchable (chmod o+x {blocked})"
        )


def _permissions(info: os.stat_result, identity: JobIdentity) -> int:
    """The rwx bits (0-7) that apply to `identity` on a file (it has no other group)."""
    if info.st_uid == identity.uid:
        return (info.st_mode >> 6) & 0o7
    if info.st_gid == identity.gid:
        return (info.st_mode >> 3) & 0o7
    return info.st_mode & 0o7


class _Stage:
    """Mount points the sandbox user can reach, one per bind source it cannot: each job's
    entering shell (root, in a private mount namespace that dies with the job) binds the
    source there before dropping privileges. The host's mount table is never touched."""

    def __init__(self, identity: JobIdentity) -> None:
        self._identity = identity
        self._lock = threading.Lock()
        self._points: dict[Path, Path] = {}
        self._directory: Path | None = None

    def point(self, source: Path) -> Path | None:
        """Where `source` is staged, or None when the sandbox user reaches it as it is."""
        real = Path(os.path.realpath(source))
        if not self._identity.drop_from_root or _searchable_by(real, self._identity):
            return None
        with self._lock:
            if real not in self._points:
                if self._directory is None:
                    self._directory = Path(tempfile.mkdtemp(prefix="capacloud-stage-"))
                    self._directory.chmod(0o711)
                    weakref.finalize(self, shutil.rmtree, self._directory, True)
                point = self._directory / str(len(self._points))
                if real.is_dir():
                    point.mkdir(mode=0o755)
                else:
                    point.touch(mode=0o444)
                self._points[real] = point
            return self._points[real]


def scratch_sizes(scratch_bytes: int) -> tuple[tuple[str, int], ...]:
    """The job's writable mounts and their sizes, which add up to at most `scratch_bytes`:
    half for /work, a quarter each for /tmp and /dev/shm, in whole pages (never 0: tmpfs
    reads size=0 as no limit at all; JobLimits keeps the total at four pages or more)."""
    pages = max(scratch_bytes // _PAGE, 4)
    work, tmp = pages // 2, pages // 4
    shm = pages - work - tmp
    return (("/work", work * _PAGE), ("/tmp", tmp * _PAGE), ("/dev/shm", shm * _PAGE))


class _Masks:
    """An empty file and an empty directory, mode 000 and owned by this daemon, that bubblewrap
    binds read-only over each masked /proc entry: open fails, chmod hits a read-only mount."""

    def __init__(self, identity: JobIdentity) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="capacloud-masks-"))
        self.directory.chmod(0o711)  # bubblewrap resolves the masks as the sandbox user
        self.file = self.directory / "file"
        self.dir = self.directory / "dir"
        self.file.touch(mode=0)
        self.dir.mkdir(mode=0)
        self.file.chmod(0)
        self.dir.chmod(0)
        self._finalizer = weakref.finalize(self, _remove_masks, self.directory)
        entries = []
        for names, is_dir in ((MASKED_PROC_FILES, False), (MASKED_PROC_DIRS, True)):
            for name in names:
                path = Path("/proc") / name
                with contextlib.suppress(OSError):
                    info = path.stat()
                    if stat.S_ISDIR(info.st_mode) == is_dir and _permissions(info, identity):
                        entries.append((str(path), is_dir))
        self.entries = tuple(entries)


def _remove_masks(directory: Path) -> None:
    for name in ("file", "dir"):
        with contextlib.suppress(OSError):
            (directory / name).chmod(0o700)
    shutil.rmtree(directory, ignore_errors=True)


class _Fds:
    """The memfds one sandbox start hands to bubblewrap; closed here once it has them."""

    def __init__(self) -> None:
        self.fds: list[int] = []

    def add(self, fd: int) -> int:
        self.fds.append(fd)
        return fd

    def data(self, name: str, data: bytes) -> int:
        fd = self.add(os.memfd_create(name, os.MFD_CLOEXEC))
        os.write(fd, data)
        os.lseek(fd, 0, os.SEEK_SET)
        return fd

    def close(self) -> None:
        for fd in self.fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.fds.clear()


@dataclass(frozen=True)
class SandboxEnd:
    """How a sandboxed run ended, in facts gathered here (nothing the job wrote)."""

    stopped_by: tuple[FailureReason, ...]
    input_rejected: bool
    exit_code: int | None
    """The workload's exit code as bubblewrap reported it; None if the sandbox never did."""
    exit_status: int
    """The sandbox process's own wait status (negative: killed by that signal)."""
    cgroup: CgroupReport


class NativeSandbox:
    def __init__(
        self, bubblewrap: Path, cgroups: CgroupDriver, identity: JobIdentity | None = None
    ) -> None:
        self._bubblewrap = bubblewrap
        self._cgroups = cgroups
        self._identity = identity or job_identity()
        if self._identity.uid == 0:
            raise SandboxUnavailable("refusing to run jobs as host uid 0")
        self._drop: tuple[str, ...] = ()
        self._unshare: tuple[str, ...] = ()
        self._mount = "mount"
        if self._identity.drop_from_root:
            _check_reachable(bubblewrap, self._identity)
            self._mount = _find_util_linux("mount")
            self._unshare = (_find_util_linux("unshare"), "--mount", "--propagation", "private")
            self._drop = (
                _find_util_linux("setpriv"),
                f"--reuid={self._identity.uid}", f"--regid={self._identity.gid}",
                "--clear-groups", "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs",
                "--",
            )  # fmt: skip
        self._seccomp = sandbox_filter()
        self._masks = _Masks(self._identity)
        self._stage = _Stage(self._identity)

    @property
    def cgroup_version(self) -> str:
        return self._cgroups.version

    @property
    def identity(self) -> JobIdentity:
        return self._identity

    @property
    def masked_entries(self) -> tuple[str, ...]:
        return tuple(path for path, _ in self._masks.entries)

    def _bwrap_args(
        self,
        command: SandboxCommand,
        limits: JobLimits,
        fds: _Fds,
        status_fd: int,
        staged: list[tuple[Path, Path]],
    ) -> list[str]:
        """bubblewrap's arguments, which reach it through a memfd (`--args`): its command line,
        which the job reads as /proc/1/cmdline, names no host path."""

        def source(path: Path) -> str:
            point = self._stage.point(path)
            if point is None:
                return str(path)
            staged.append((path, point))
            return str(point)

        args = [
            "--json-status-fd", str(status_fd),
            "--unshare-all", "--unshare-user", "--disable-userns",
            "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID),
            "--die-with-parent", "--new-session", "--cap-drop", "ALL",
            "--hostname", "sandbox", "--clearenv",
        ]  # fmt: skip
        for name, value in command.env:
            args += ["--setenv", name, value]
        args += ["--proc", "/proc"]
        for path, is_dir in self._masks.entries:
            args += ["--ro-bind", str(self._masks.dir if is_dir else self._masks.file), path]
        # The host's /proc/sys, read-only: its values are the reader's namespaces' anyway.
        args += ["--ro-bind", "/proc/sys", "/proc/sys"]
        sizes = dict(scratch_sizes(limits.scratch_bytes))
        args += [
            "--dev", "/dev",
            "--size", str(sizes["/dev/shm"]), "--tmpfs", "/dev/shm",
            "--remount-ro", "/dev",
            # Scratch before binds: a bind under /work or /tmp (a venv, say) must stay visible.
            "--size", str(sizes["/tmp"]), "--tmpfs", "/tmp",
            "--size", str(sizes["/work"]), "--tmpfs", "/work",
        ]  # fmt: skip
        for bind in command.binds:
            args += ["--ro-bind", source(bind.host), bind.sandbox]
        for target, link in command.symlinks:
            args += ["--symlink", target, link]
        seccomp_fd = fds.data("capacloud-seccomp", self._seccomp)
        args += ["--remount-ro", "/", "--chdir", "/work", "--seccomp", str(seccomp_fd)]
        return args

    def start(
        self,
        command: SandboxCommand,
        limits: JobLimits,
        cgroup_limits: CgroupLimits | None = None,
        pass_fds: tuple[int, ...] = (),
        kind: str = "job",
    ) -> SandboxProcess:
        """Creates the job's cgroup and starts the sandbox in it; the caller supervises it and
        always discards it. `pass_fds` reach the workload as they are numbered here."""
        cgroup = self._cgroups.create(
            f"{kind}-{uuid.uuid4().hex}",
            cgroup_limits or CgroupLimits(limits.memory_bytes, limits.pids, limits.cpus),
        )
        fds = _Fds()
        status_read, status_write = os.pipe2(os.O_CLOEXEC)
        try:
            staged: list[tuple[Path, Path]] = []
            args = self._bwrap_args(command, limits, fds, status_write, staged)
            args_fd = fds.data("capacloud-bwrap-args", b"".join(a.encode() + b"\0" for a in args))
            procs = [str(p) for p in cgroup.procs_files]
            largest_mount = max(size for _, size in scratch_sizes(limits.scratch_bytes))
            script = _ENTER_SCRIPT.format(
                cgroup_failed=_CGROUP_FAILED, stage_failed=_STAGE_FAILED, mount=self._mount,
                open_files=_OPEN_FILES, file_blocks=largest_mount // 512,
            )  # fmt: skip
            argv = [
                *(self._unshare if staged else ()), "/bin/sh", "-c", script, "capacloud-enter",
                str(len(procs)), *procs,
                str(len(staged)), *(str(path) for pair in staged for path in pair),
                *self._drop, str(self._bubblewrap), "--args", str(args_fd), "--", *command.argv,
            ]  # fmt: skip
            process = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                pass_fds=(*fds.fds, status_write, *pass_fds),
                env={"PATH": "/usr/bin:/bin"},
            )
        except (OSError, SandboxUnavailable) as exc:
            os.close(status_read)
            cgroup.remove()
            if isinstance(exc, SandboxUnavailable):
                raise
            raise SandboxUnavailable(f"cannot start the sandbox: {exc}") from exc
        finally:
            fds.close()
            os.close(status_write)
        return SandboxProcess(process, cgroup, status_read)

    def run(
        self,
        command: SandboxCommand,
        limits: JobLimits,
        plaintext: Iterator[bytes],
        output: OutputWriter,
    ) -> RunReport:
        started = time.perf_counter()
        sandbox = self.start(command, limits)
        try:
            start_seconds = time.perf_counter() - started
            end = sandbox.supervise(limits, plaintext, output)
        finally:
            sandbox.discard()
        return RunReport(
            exit_code=end.exit_code,
            failure=classify_exit(end, limits),
            usage=Usage(
                wall_seconds=time.perf_counter() - started,
                cpu_seconds=end.cgroup.cpu_seconds,
                peak_memory_bytes=end.cgroup.peak_memory_bytes,
                output_bytes=output.written,
            ),
            start_seconds=start_seconds,
        )


def detect_native_sandbox() -> NativeSandbox:
    """The native sandbox of this machine, or SandboxUnavailable saying what is missing."""
    return NativeSandbox(find_bubblewrap(), detect_cgroup_driver())


class SandboxProcess:
    """A started sandbox in its own cgroup: supervised once, then discarded."""

    def __init__(self, process: subprocess.Popen[bytes], cgroup: JobCgroup, status_fd: int) -> None:
        self._process = process
        self._cgroup = cgroup
        self._status_fd: int | None = status_fd
        self._status = bytearray()
        self._discarded = False

    @property
    def cgroup(self) -> JobCgroup:
        return self._cgroup

    def host_uids(self) -> set[int]:
        """Every real, effective, saved and filesystem uid the cgroup's processes have now."""
        uids: set[int] = set()
        for pid in self._cgroup.member_pids():
            with contextlib.suppress(OSError, StopIteration, ValueError):
                status = Path(f"/proc/{pid}/status").read_text()
                line = next(line for line in status.splitlines() if line.startswith("Uid:"))
                uids.update(int(uid) for uid in line.split()[1:])
        return uids

    def wait_started(self, timeout: float) -> bool:
        """Waits for bubblewrap to report the sandbox's first process: by then every process
        of the job has dropped to the job's identity. False if it never does."""
        assert self._status_fd is not None
        deadline = time.monotonic() + timeout
        while b"\n" not in self._status:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([self._status_fd], [], [], remaining)[0]:
                return False
            data = os.read(self._status_fd, _READ_SIZE)
            if not data:
                return False
            self._status += data
        return b"child-pid" in self._status

    def supervise(
        self,
        limits: JobLimits,
        plaintext: Iterator[bytes],
        output: OutputWriter,
        on_start: Callable[[], None] | None = None,
    ) -> SandboxEnd:
        """Feeds stdin, seals stdout and enforces the deadline until the sandbox has ended;
        `on_start` runs right before the deadline starts (a waiting runtime gets its job)."""
        process = self._process
        assert process.stdin is not None and process.stdout is not None
        causes: list[FailureReason] = []

        def kill() -> None:
            self._cgroup.kill_all()
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGKILL)

        def stop(cause: FailureReason) -> None:
            causes.append(cause)
            kill()

        stdin_fd = os.dup(process.stdin.fileno())
        process.stdin.close()
        pump = InputPump(plaintext, stdin_fd, lambda: stop(FailureReason.INPUT_REJECTED))
        reader = threading.Thread(
            target=_drain_stdout, args=(process.stdout, output, stop), daemon=True
        )
        # Popen.wait(timeout=...) polls with sleeps of up to 50 ms, which a short job pays
        # in full; a blocking wait plus a timer that kills at the deadline costs nothing.
        finished = threading.Lock()
        exited = False

        def on_deadline() -> None:
            with finished:
                if not exited:
                    stop(FailureReason.TIMEOUT)

        deadline = threading.Timer(limits.wall_seconds, on_deadline)
        deadline.daemon = True
        pump.start()
        reader.start()
        try:
            if on_start is not None:
                on_start()
            deadline.start()
            exit_status = process.wait()
        except BaseException:
            kill()
            raise
        finally:
            with finished:
                exited = True
            deadline.cancel()
            pump.stop()
            self._cgroup.kill_all()
            reader.join()
            pump.join()
        return SandboxEnd(
            stopped_by=tuple(causes),
            input_rejected=pump.rejected is not None or FailureReason.INPUT_REJECTED in causes,
            exit_code=self._exit_code(),
            exit_status=exit_status,
            cgroup=self._cgroup.report(),
        )

    def _exit_code(self) -> int | None:
        """bubblewrap's `exit-code`, read once every process of the job is gone."""
        assert self._status_fd is not None
        with os.fdopen(self._status_fd, "rb") as status_file:
            self._status_fd = None
            self._status += status_file.read(_STATUS_LIMIT)
        for line in bytes(self._status).splitlines():
            with contextlib.suppress(ValueError):
                document = json.loads(line)
                if isinstance(document, dict) and isinstance(document.get("exit-code"), int):
                    return int(document["exit-code"])
        return None

    def discard(self) -> None:
        """Kills whatever is left of the sandbox and removes its cgroup; safe to call twice."""
        if self._discarded:
            return
        self._discarded = True
        with contextlib.suppress(ProcessLookupError):
            self._process.kill()
        self._cgroup.remove()
        self._process.wait()
        for stream in (self._process.stdin, self._process.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        if self._status_fd is not None:
            os.close(self._status_fd)
            self._status_fd = None


def _drain_stdout(
    stream: IO[bytes], output: OutputWriter, stop: Callable[[FailureReason], None]
) -> None:
    fd = stream.fileno()
    try:
        while data := os.read(fd, _READ_SIZE):
            try:
                output.write(data)
            except OutputCapExceeded:
                stop(FailureReason.OUTPUT_LIMIT)
                return
    finally:
        stream.close()


def _status_words(exit_status: int) -> str:
    if exit_status < 0:
        try:
            return f"killed by {signal.Signals(-exit_status).name}"
        except ValueError:
            return f"killed by signal {-exit_status}"
    return f"exit status {exit_status}"


def sandbox_failure(end: SandboxEnd, limits: JobLimits) -> Failure | None:
    """The causes every sandboxed run shares, most telling first; None: look at the workload.

    An OOM kill comes before anything the exit status suggests: the OOM killer may have taken
    bubblewrap itself, whose missing report would otherwise read as a setup failure."""
    if end.input_rejected:
        return Failure(FailureReason.INPUT_REJECTED, "input failed authentication mid-stream")
    if end.cgroup.oom_kills:
        return Failure(
            FailureReason.MEMORY_LIMIT,
            f"{end.cgroup.oom_kills} process(es) killed at the {limits.memory_bytes} B memory cap",
        )
    if FailureReason.OUTPUT_LIMIT in end.stopped_by:
        return Failure(FailureReason.OUTPUT_LIMIT, f"output over {limits.output_bytes} B")
    if FailureReason.TIMEOUT in end.stopped_by:
        return Failure(FailureReason.TIMEOUT, f"ran past {limits.wall_seconds} s")
    if end.exit_code is None:
        if end.exit_status == _CGROUP_FAILED:
            detail = "the job could not join its cgroup"
        elif end.exit_status == _STAGE_FAILED:
            detail = "the job's read-only binds could not be staged for the sandbox user"
        else:
            detail = (
                f"the sandbox reported no exit code ({_status_words(end.exit_status)}); "
                "`capa node probe` checks this machine"
            )
        return Failure(FailureReason.SANDBOX_ERROR, detail)
    return None


def classify_exit(end: SandboxEnd, limits: JobLimits) -> Failure | None:
    """A native workload's failure, from our own observations only."""
    failure = sandbox_failure(end, limits)
    if failure is not None or end.exit_code is None:
        return failure
    exit_code = end.exit_code
    if exit_code != 0 and end.cgroup.pids_refused:
        return Failure(
            FailureReason.PIDS_LIMIT,
            f"exit {exit_code} after {end.cgroup.pids_refused} fork(s) refused at "
            f"{limits.pids} pids",
        )
    if exit_code > 128:
        try:
            name = signal.Signals(exit_code - 128).name
        except ValueError:
            name = f"signal {exit_code - 128}"
        return Failure(FailureReason.KILLED, f"killed by {name}")
    if exit_code != 0:
        return Failure(FailureReason.NONZERO_EXIT, f"exit {exit_code}")
    return None


def system_binds() -> tuple[tuple[Bind, ...], tuple[tuple[str, str], ...]]:
    """The host's /usr and library dirs, read-only, for runners that need an interpreter."""
    binds: list[Bind] = [Bind(Path("/usr"), "/usr")]
    symlinks: list[tuple[str, str]] = []
    for name in ("bin", "sbin", "lib", "lib64", "lib32", "libx32"):
        path = Path("/") / name
        if path.is_symlink():
            symlinks.append((os.readlink(path), f"/{name}"))
        elif path.is_dir():
            binds.append(Bind(path, f"/{name}"))
    return tuple(binds), tuple(symlinks)


def python_runtime_binds() -> tuple[tuple[Bind, ...], tuple[tuple[str, str], ...]]:
    """system_binds plus this Python runtime and its packages, at their own paths, read-only."""
    binds, symlinks = system_binds()
    roots = dict.fromkeys(Path(p).resolve() for p in (sys.base_prefix, sys.prefix))
    extra = tuple(Bind(root, str(root)) for root in roots if not str(root).startswith("/usr"))
    return (*binds, *extra), symlinks


_live: weakref.WeakSet[SandboxProcess] = weakref.WeakSet()


@atexit.register
def _discard_live() -> None:  # pragma: no cover - runs at interpreter exit
    for sandbox in list(_live):
        sandbox.discard()


def keep_until_exit(sandbox: SandboxProcess) -> None:
    """Makes sure a sandbox that outlives its caller (a waiting runtime) is discarded at exit:
    its processes die with this one anyway, its cgroup directories would not."""
    _live.add(sandbox)

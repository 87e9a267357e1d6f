"""The native sandbox: bubblewrap + seccomp + a per-job cgroup + rlimits.

The workload gets: a read-only root made of the given binds (nothing else of the host: no /etc,
no /home, no host /tmp), private tmpfs /tmp and /work (its folder, sized), its own pid, net,
ipc, uts, cgroup and user namespaces (uid 65534, no capabilities, no further user
namespaces), no socket syscalls, a new session (no terminal injection), and limits: memory,
pids and cpu through the cgroup, core dumps off, open files and file size capped, a wall-clock
deadline enforced from here. stdin is the opened input through a pipe; stdout is sealed as it
arrives; stderr is dropped once the sandbox has started, since it derives from the plaintext.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from node.enclave.cgroups import CgroupDriver, CgroupLimits, JobCgroup
from node.enclave.errors import OutputCapExceeded, SandboxUnavailable
from node.enclave.jobs import Failure, FailureReason, JobLimits, RunReport, Usage
from node.enclave.output import OutputWriter
from node.enclave.plaintext_pump import InputPump
from node.enclave.seccomp import sandbox_filter

SANDBOX_UID = 65534
_READ_SIZE = 64 * 1024
_STDERR_KEEP = 4096
_OPEN_FILES = 1024
# The shell joins the job's cgroups and sets rlimits, then becomes bubblewrap: nothing of the
# job exists outside the cgroup, and no preexec_fn runs in a threaded parent.
_ENTER_SCRIPT = (
    'n=$1; shift; while [ "$n" -gt 0 ]; do echo $$ > "$1" || exit 125; shift; n=$((n-1)); done; '
    'ulimit -c 0; ulimit -n {open_files}; ulimit -f {file_blocks}; exec "$@"'
)


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


def find_bubblewrap() -> Path:
    found = shutil.which("bwrap")
    if found is None:
        raise SandboxUnavailable(
            "bubblewrap (bwrap) is not installed: run tools/system-deps.sh (apt-get install "
            "bubblewrap)"
        )
    return Path(found)


class NativeSandbox:
    def __init__(self, bubblewrap: Path, cgroups: CgroupDriver) -> None:
        self._bubblewrap = bubblewrap
        self._cgroups = cgroups
        self._seccomp = sandbox_filter()

    @property
    def cgroup_version(self) -> str:
        return self._cgroups.version

    def _bwrap_argv(
        self, command: SandboxCommand, limits: JobLimits, seccomp_fd: int, status_fd: int
    ) -> list[str]:
        argv = [
            str(self._bubblewrap),
            "--json-status-fd", str(status_fd),
            "--unshare-all", "--unshare-user", "--disable-userns",
            "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID),
            "--die-with-parent", "--new-session", "--cap-drop", "ALL",
            "--hostname", "sandbox", "--clearenv",
        ]  # fmt: skip
        for name, value in command.env:
            argv += ["--setenv", name, value]
        scratch = str(limits.scratch_bytes)
        # Scratch mounts first: a bind under /work or /tmp (a venv, say) must stay visible.
        argv += [
            "--proc", "/proc", "--dev", "/dev",
            "--size", scratch, "--tmpfs", "/tmp",
            "--size", scratch, "--tmpfs", "/work",
        ]  # fmt: skip
        for bind in command.binds:
            argv += ["--ro-bind", str(bind.host), bind.sandbox]
        for target, link in command.symlinks:
            argv += ["--symlink", target, link]
        argv += [
            "--remount-ro", "/", "--chdir", "/work",
            "--seccomp", str(seccomp_fd),
            "--", *command.argv,
        ]  # fmt: skip
        return argv

    def run(
        self,
        command: SandboxCommand,
        limits: JobLimits,
        plaintext: Iterator[bytes],
        output: OutputWriter,
    ) -> RunReport:
        started = time.perf_counter()
        cgroup = self._cgroups.create(
            f"job-{uuid.uuid4().hex}",
            CgroupLimits(limits.memory_bytes, limits.pids, limits.cpus),
        )
        try:
            return self._run_in(cgroup, command, limits, plaintext, output, started)
        finally:
            cgroup.remove()

    def _run_in(
        self,
        cgroup: JobCgroup,
        command: SandboxCommand,
        limits: JobLimits,
        plaintext: Iterator[bytes],
        output: OutputWriter,
        started: float,
    ) -> RunReport:
        seccomp_fd = os.memfd_create("capacloud-seccomp", 0)
        os.write(seccomp_fd, self._seccomp)
        os.lseek(seccomp_fd, 0, os.SEEK_SET)
        status_read, status_write = os.pipe()
        procs = [str(p) for p in cgroup.procs_files]
        script = _ENTER_SCRIPT.format(
            open_files=_OPEN_FILES, file_blocks=max(1, limits.scratch_bytes // 512)
        )
        argv = [
            "/bin/sh", "-c", script, "capacloud-enter", str(len(procs)), *procs,
            *self._bwrap_argv(command, limits, seccomp_fd, status_write),
        ]  # fmt: skip
        causes: list[FailureReason] = []
        try:
            process = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                pass_fds=(seccomp_fd, status_write),
                env={"PATH": "/usr/bin:/bin"},
            )
        except OSError as exc:
            raise SandboxUnavailable(f"cannot start the sandbox: {exc}") from exc
        finally:
            os.close(seccomp_fd)
            os.close(status_write)
        assert process.stdin is not None and process.stdout is not None
        assert process.stderr is not None
        start_seconds = time.perf_counter() - started

        def stop(cause: FailureReason) -> None:
            causes.append(cause)
            cgroup.kill_all()
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGKILL)

        stdin_fd = os.dup(process.stdin.fileno())
        process.stdin.close()
        pump = InputPump(plaintext, stdin_fd, lambda: stop(FailureReason.INPUT_REJECTED))
        stderr_tail = bytearray()
        readers = [
            threading.Thread(
                target=_drain_stdout, args=(process.stdout, output, stop), daemon=True
            ),
            threading.Thread(target=_keep_tail, args=(process.stderr, stderr_tail), daemon=True),
        ]
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
        for reader in readers:
            reader.start()
        deadline.start()
        try:
            exit_status = process.wait()
        finally:
            with finished:
                exited = True
            deadline.cancel()
            pump.stop()
        cgroup.kill_all()
        for reader in readers:
            reader.join()
        pump.join()
        with os.fdopen(status_read, "rb") as status_file:
            status = _parse_status(status_file.read())
        report = cgroup.report()
        failure = _classify(
            causes, exit_status, status, report.oom_kills, report.pids_refused, limits,
            bytes(stderr_tail), pump.rejected is not None,
        )  # fmt: skip
        return RunReport(
            exit_code=status.get("exit-code"),
            failure=failure,
            usage=Usage(
                wall_seconds=time.perf_counter() - started,
                cpu_seconds=report.cpu_seconds,
                peak_memory_bytes=report.peak_memory_bytes,
                output_bytes=output.written,
            ),
            start_seconds=start_seconds,
        )


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


def _keep_tail(stream: IO[bytes], tail: bytearray) -> None:
    fd = stream.fileno()
    while data := os.read(fd, _READ_SIZE):
        tail += data
        del tail[:-_STDERR_KEEP]
    stream.close()


def _parse_status(raw: bytes) -> dict[str, int]:
    status: dict[str, int] = {}
    for line in raw.decode(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            document = json.loads(line)
            if isinstance(document, dict):
                status.update({k: v for k, v in document.items() if isinstance(v, int)})
    return status


def _classify(
    causes: list[FailureReason],
    exit_status: int,
    status: dict[str, int],
    oom_kills: int,
    pids_refused: int,
    limits: JobLimits,
    stderr_tail: bytes,
    input_rejected: bool,
) -> Failure | None:
    if input_rejected or FailureReason.INPUT_REJECTED in causes:
        return Failure(FailureReason.INPUT_REJECTED, "input failed authentication mid-stream")
    if FailureReason.OUTPUT_LIMIT in causes:
        return Failure(FailureReason.OUTPUT_LIMIT, f"output over {limits.output_bytes} B")
    if FailureReason.TIMEOUT in causes:
        return Failure(FailureReason.TIMEOUT, f"ran past {limits.wall_seconds} s")
    if "exit-code" not in status:
        # The sandbox never started the workload, so stderr is bubblewrap's own and safe to show.
        message = stderr_tail.decode(errors="replace").strip().splitlines()
        detail = message[-1] if message else f"exit status {exit_status}"
        return Failure(FailureReason.SANDBOX_ERROR, f"sandbox setup failed: {detail}")
    exit_code = status["exit-code"]
    if oom_kills:
        return Failure(
            FailureReason.MEMORY_LIMIT,
            f"{oom_kills} process(es) killed at the {limits.memory_bytes} B memory cap",
        )
    if exit_code != 0 and pids_refused:
        return Failure(
            FailureReason.PIDS_LIMIT,
            f"exit {exit_code} after {pids_refused} fork(s) refused at {limits.pids} pids",
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

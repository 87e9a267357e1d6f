"""wasm workloads: a WASI module run by wasmtime in a child process inside the native sandbox.

The daemon compiles the module once, refusing what cannot load here (multi-memory is off), and
checks its imports and `_start` itself. The compiled module goes, read-only, to a child
(`wasm_entry.py`) that runs in the same bubblewrap sandbox, cgroup, rlimits and
kill-at-deadline as an exec job, as the sandbox user. So nothing a module does reaches this
process: its memory is capped by the child's cgroup (the job's linear-memory limit plus the
runtime's own allowance), a blocking WASI call ends when the child is killed at the deadline,
and store limits (one memory, a few bounded tables, one instance) end runaway modules early.
No preopened directories and no sockets: the module sees args, stdin (the opened input), stdout
(sealed as it is written) and nothing else. Fuel is metered for billing and capped when the job
says so.

A child takes Python and wasmtime about 100 ms to start, so each runner keeps one started child
waiting in its own cgroup (a spare): a job hands the spare its limits and input and starts in
milliseconds, and the next spare starts when the job is over. Jobs on one runner take turns,
as they did when wasm ran in this process. Spares are started by a thread that lives as long as
the runner, because bubblewrap dies with the thread that started it.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import json
import os
import queue
import select
import shutil
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path

import wasmtime

from node.enclave import wasm_entry
from node.enclave.cgroups import CgroupLimits
from node.enclave.errors import SandboxUnavailable, WorkloadInvalid
from node.enclave.jobs import Failure, FailureReason, JobLimits, RunReport, Usage
from node.enclave.native_sandbox import (
    Bind,
    NativeSandbox,
    SandboxCommand,
    SandboxEnd,
    SandboxProcess,
    keep_until_exit,
    python_runtime_binds,
    sandbox_failure,
)
from node.enclave.output import OutputWriter
from node.enclave.workloads import WasmWorkload

_UNMETERED_FUEL = 2**63 - 1
# A refused memory.grow is invisible from outside (malloc just returns NULL), so a failed run
# whose memory ended this close to the cap is reported as hitting it.
_MEMORY_CAP_SLACK = 4 * 1024 * 1024
RUNTIME_MEMORY_BYTES = 64 * 1024 * 1024
"""What the child may use besides the module's linear memory: Python, wasmtime and the
module's tables (about 40 MiB measured, 8 MiB of tables at most)."""
_RUNTIME_PIDS = 16
_SPARE_LIMITS = JobLimits(wall_seconds=1.0, memory_bytes=RUNTIME_MEMORY_BYTES, pids=_RUNTIME_PIDS,
                          scratch_bytes=1024 * 1024)  # fmt: skip
_READY_SECONDS = 60.0
_TAKE_POLL_SECONDS = 1.0
_REPORT_LIMIT = 4096
_ARTIFACT_PATH = "/opt/capacloud/module.cwasm"
_ENTRY_PATH = "/opt/capacloud/wasm_entry.py"
_OUTCOME_KEYS = frozenset({"exit", "trap", "instantiate", "fuel_left", "memory_bytes"})
_ENDINGS = ("exit", "trap", "instantiate")


class _Spare:
    """A started child waiting for its job; owns its two pipe ends until discarded."""

    def __init__(self, sandbox: SandboxProcess, control_fd: int, report_fd: int) -> None:
        self.sandbox = sandbox
        self._control_fd: int | None = control_fd
        self.report_fd = report_fd
        self.problem: str | None = None
        """Why this spare cannot take a job (our own words), or None."""

    def hand_over(self, job: bytes) -> None:
        """Sends the job down the control pipe and closes our end: the child reads to EOF."""
        assert self._control_fd is not None
        fd, self._control_fd = self._control_fd, None
        try:
            view = memoryview(job)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)

    def discard(self) -> None:
        self.sandbox.discard()
        if self._control_fd is not None:
            os.close(self._control_fd)
            self._control_fd = None
        if self.report_fd >= 0:
            os.close(self.report_fd)
            self.report_fd = -1


class _Spares:
    """One spare at a time, started ahead by a thread of its own."""

    def __init__(self, start: Callable[[], _Spare]) -> None:
        self._start = start
        self._slot: queue.Queue[_Spare | SandboxUnavailable] = queue.Queue(maxsize=1)
        self._lock = threading.Lock()
        self._wanted = threading.Event()
        self._closed = False
        self._wanted.set()
        self._thread = threading.Thread(target=self._keep, name="enclave-wasm-spare", daemon=True)
        self._thread.start()
        _open_spares.add(self)

    def _keep(self) -> None:
        while True:
            self._wanted.wait()
            self._wanted.clear()
            if self._closed:
                return
            item: _Spare | SandboxUnavailable
            try:
                item = self._start()
            except SandboxUnavailable as exc:
                item = exc
            with self._lock:
                if self._closed:
                    if isinstance(item, _Spare):
                        item.discard()
                    return
                self._slot.put_nowait(item)

    def take(self) -> _Spare:
        """The started spare, once there is one (a job before this one may still be running);
        the caller calls `replenish` once its job is over."""
        while True:
            try:
                item = self._slot.get(timeout=_TAKE_POLL_SECONDS)
                break
            except queue.Empty:
                if self._closed or not self._thread.is_alive():
                    raise SandboxUnavailable("the wasm runner is closed") from None
        if isinstance(item, SandboxUnavailable):
            self.replenish()
            raise item
        return item

    def replenish(self) -> None:
        """Starts the next spare. After a job rather than during it: starting Python and
        wasmtime takes a CPU for a while, which a running job should not have to share."""
        self._wanted.set()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            with contextlib.suppress(queue.Empty):
                item = self._slot.get_nowait()
                if isinstance(item, _Spare):
                    item.discard()
        self._wanted.set()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=_READY_SECONDS)


_open_spares: weakref.WeakSet[_Spares] = weakref.WeakSet()


@atexit.register
def _close_spares() -> None:  # pragma: no cover - runs at interpreter exit
    for spares in list(_open_spares):
        spares.close()


class WasmRunner:
    def __init__(self, workload: WasmWorkload, sandbox: NativeSandbox) -> None:
        engine = wasmtime.Engine(wasm_entry.engine_config())
        try:
            module = wasmtime.Module(engine, workload.module)
        except wasmtime.WasmtimeError as exc:
            raise WorkloadInvalid(f"not a loadable wasm module: {_describe(exc)}") from exc
        self._invalid = _check_module(engine, module)
        self._name = workload.name
        self._directory = Path(tempfile.mkdtemp(prefix="capacloud-wasm-"))
        self._directory.chmod(0o711)  # the sandbox user reaches the artifact, nothing else
        artifact = self._directory / "module.cwasm"
        artifact.write_bytes(module.serialize())
        artifact.chmod(0o444)
        binds, symlinks = python_runtime_binds()
        binds = (
            *binds,
            Bind(artifact, _ARTIFACT_PATH),
            Bind(Path(wasm_entry.__file__), _ENTRY_PATH),
        )
        self._spares = None
        if self._invalid is None:
            self._spares = _Spares(functools.partial(_start_spare, sandbox, binds, symlinks))
        self._finalizer = weakref.finalize(self, _close, self._spares, self._directory)

    def run(
        self,
        args: tuple[str, ...],
        limits: JobLimits,
        plaintext: Iterator[bytes],
        output: OutputWriter,
    ) -> RunReport:
        started = time.perf_counter()
        if self._invalid is not None or self._spares is None:
            detail = self._invalid or "the runner is closed"
            return RunReport(None, Failure(FailureReason.WORKLOAD_INVALID, detail), Usage())
        spare = self._spares.take()
        try:
            if spare.problem is not None:
                return RunReport(
                    None,
                    Failure(FailureReason.SANDBOX_ERROR, spare.problem),
                    Usage(wall_seconds=time.perf_counter() - started),
                )
            fuel_budget = limits.fuel if limits.fuel is not None else _UNMETERED_FUEL
            job = json.dumps(
                {
                    "argv": [self._name, *args],
                    "fuel": fuel_budget,
                    "memory_bytes": limits.memory_bytes,
                }
            ).encode()
            start_seconds = 0.0
            runtime_cpu: float | None = None

            def hand_over() -> None:
                nonlocal start_seconds, runtime_cpu
                # The cgroup has carried the runtime since it started: that is not the job's.
                runtime_cpu = spare.sandbox.cgroup.report().cpu_seconds
                spare.sandbox.cgroup.set_limits(
                    CgroupLimits(
                        limits.memory_bytes + RUNTIME_MEMORY_BYTES, _RUNTIME_PIDS, limits.cpus
                    )
                )
                spare.hand_over(job)
                start_seconds = time.perf_counter() - started

            end = spare.sandbox.supervise(limits, plaintext, output, on_start=hand_over)
            outcome = _read_outcome(spare.report_fd)
        finally:
            spare.discard()
            self._spares.replenish()
        fuel_left = None if outcome is None else outcome.get("fuel_left")
        fuel_consumed = None
        if fuel_left is not None and 0 <= fuel_left <= fuel_budget:
            fuel_consumed = fuel_budget - fuel_left
        memory_bytes = None if outcome is None else outcome.get("memory_bytes")
        cpu_seconds = end.cgroup.cpu_seconds
        if cpu_seconds is not None and runtime_cpu is not None:
            cpu_seconds = max(0.0, cpu_seconds - runtime_cpu)
        return RunReport(
            exit_code=None if outcome is None else outcome.get("exit"),
            failure=_classify(end, outcome, limits),
            usage=Usage(
                wall_seconds=time.perf_counter() - started,
                cpu_seconds=cpu_seconds,
                fuel_consumed=fuel_consumed,
                peak_memory_bytes=memory_bytes,
                output_bytes=output.written,
            ),
            start_seconds=start_seconds,
        )

    def close(self) -> None:
        self._finalizer()


def _start_spare(
    sandbox: NativeSandbox, binds: tuple[Bind, ...], symlinks: tuple[tuple[str, str], ...]
) -> _Spare:
    """Starts a child that loads the module and waits for its job. Holds no reference to the
    runner, so a runner nobody uses any more is collected and its spare discarded."""
    control_read, control_write = os.pipe2(os.O_CLOEXEC)
    report_read, report_write = os.pipe2(os.O_CLOEXEC)
    command = SandboxCommand(
        binds=binds,
        symlinks=symlinks,
        argv=(
            sys.executable,
            "-I",
            "-B",
            _ENTRY_PATH,
            _ARTIFACT_PATH,
            str(control_read),
            str(report_write),
        ),
    )
    try:
        process = sandbox.start(
            command, _SPARE_LIMITS, pass_fds=(control_read, report_write), kind="wasm"
        )
    except SandboxUnavailable:
        os.close(control_write)
        os.close(report_read)
        raise
    finally:
        os.close(control_read)
        os.close(report_write)
    keep_until_exit(process)
    spare = _Spare(process, control_write, report_read)
    if not _read_ready(report_read, _READY_SECONDS):
        spare.problem = "the wasm runtime did not start"
    elif 0 in process.host_uids():
        spare.problem = "refusing to run: a process of the wasm sandbox runs as host root"
    return spare


def _close(spares: _Spares | None, directory: Path) -> None:
    if spares is not None:
        spares.close()
    shutil.rmtree(directory, ignore_errors=True)


def _check_module(engine: wasmtime.Engine, module: wasmtime.Module) -> str | None:
    """Why a loadable module still cannot run here (in our words), or None."""
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    store = wasmtime.Store(engine)
    missing = []
    for imported in module.imports:
        try:
            linker.get(store, imported.module, imported.name or "")
        except wasmtime.WasmtimeError:
            missing.append(f"{_printable(imported.module)}::{_printable(imported.name or '')}")
    if missing:
        return f"the module imports {', '.join(missing)}, which the sandbox does not provide"
    if not any(
        e.name == "_start" and isinstance(e.type, wasmtime.FuncType) for e in module.exports
    ):
        return "module exports no _start"
    return None


def _printable(name: str) -> str:
    """A module's import name, shown as the measured module spells it but bounded and plain."""
    cleaned = "".join(c if c.isprintable() and c.isascii() else "?" for c in name)
    return cleaned[:64]


def _read_ready(fd: int, timeout: float) -> bool:
    """Reads the child's `ready` line byte by byte: nothing after it is consumed here."""
    deadline = time.monotonic() + timeout
    line = b""
    while not line.endswith(b"\n") and len(line) < 16:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
            return False
        byte = os.read(fd, 1)
        if not byte:
            return False
        line += byte
    return line == b"ready\n"


def _read_outcome(fd: int) -> dict[str, int] | None:
    """The child's report, read once every process of the job is gone."""
    raw = b""
    while len(raw) <= _REPORT_LIMIT and (data := os.read(fd, _REPORT_LIMIT)):
        raw += data
    return _parse_outcome(raw)


def _parse_outcome(raw: bytes) -> dict[str, int] | None:
    """Integers under the keys we asked for, with exactly one ending, or nothing at all: the
    child ran the module, so its report may say anything."""
    if len(raw) > _REPORT_LIMIT:
        return None
    try:
        document = json.loads(raw.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(document, dict) or not set(document) <= _OUTCOME_KEYS:
        return None
    if not all(type(value) is int for value in document.values()):
        return None
    if sum(key in document for key in _ENDINGS) != 1:
        return None
    return document


def _classify(end: SandboxEnd, outcome: dict[str, int] | None, limits: JobLimits) -> Failure | None:
    failure = sandbox_failure(end, limits)
    if failure is not None:
        return failure
    if outcome is None:
        return Failure(
            FailureReason.SANDBOX_ERROR,
            f"the wasm runtime ended without a report (exit code {end.exit_code})",
        )
    if "instantiate" in outcome:
        return Failure(
            FailureReason.WORKLOAD_INVALID,
            f"the module cannot be instantiated within the sandbox's limits: "
            f"{wasm_entry.MAX_MEMORIES} memory of at most {limits.memory_bytes} B, "
            f"{wasm_entry.MAX_TABLES} tables of {wasm_entry.MAX_TABLE_ELEMENTS} elements, "
            f"{wasm_entry.MAX_INSTANCES} instance",
        )
    if "trap" in outcome:
        try:
            code: wasmtime.TrapCode | None = wasmtime.TrapCode(outcome["trap"])
        except ValueError:
            code = None
        if code is wasmtime.TrapCode.OUT_OF_FUEL:
            return Failure(FailureReason.FUEL_EXHAUSTED, f"fuel budget {limits.fuel} spent")
        name = "host error" if code is None else code.name.lower().replace("_", " ")
        return Failure(FailureReason.TRAP, f"wasm trap: {name}")
    exit_code = outcome["exit"]
    if exit_code:
        return _exit_failure(exit_code, outcome.get("memory_bytes"), limits)
    return None


def _exit_failure(exit_code: int, memory_bytes: int | None, limits: JobLimits) -> Failure:
    if memory_bytes is not None and memory_bytes >= limits.memory_bytes - _MEMORY_CAP_SLACK:
        return Failure(
            FailureReason.MEMORY_LIMIT,
            f"exit {exit_code} with linear memory at {memory_bytes} of {limits.memory_bytes} B",
        )
    return Failure(FailureReason.NONZERO_EXIT, f"exit {exit_code}")


def _describe(exc: BaseException) -> str:
    """wasmtime's account of why a module does not load, cause included, on one line."""
    lines = [line.strip() for line in str(exc).splitlines()]
    text = ": ".join(line for line in lines if line and line != "Caused by:")
    return text or type(exc).__name__

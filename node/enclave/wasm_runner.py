"""wasm workloads: a WASI module in wasmtime, in this process.

No preopened directories and no sockets: the module sees args, stdin (the opened input, through
a pipe), stdout (sealed as it is written) and nothing else. Fuel is metered for billing and
capped when the job says so; a wall-clock deadline interrupts through epochs; linear memory is
capped by the store's limits.
"""

from __future__ import annotations

import errno
import os
import threading
import time
from collections.abc import Iterator

import wasmtime

from node.enclave.errors import OutputCapExceeded, WorkloadInvalid
from node.enclave.jobs import Failure, FailureReason, JobLimits, RunReport, Usage
from node.enclave.output import OutputWriter
from node.enclave.plaintext_pump import InputPump
from node.enclave.workloads import WasmWorkload

_UNMETERED_FUEL = 2**63 - 1
_PAGE = 65536
# A refused memory.grow is invisible from outside (malloc just returns NULL), so a failed run
# whose memory ended this close to the cap is reported as hitting it.
_MEMORY_CAP_SLACK = 4 * 1024 * 1024


class WasmRunner:
    def __init__(self, workload: WasmWorkload) -> None:
        config = wasmtime.Config()
        config.consume_fuel = True
        config.epoch_interruption = True
        self._engine = wasmtime.Engine(config)
        try:
            self._module = wasmtime.Module(self._engine, workload.module)
        except wasmtime.WasmtimeError as exc:
            raise WorkloadInvalid(f"not a loadable wasm module: {_first_line(exc)}") from exc
        self._linker = wasmtime.Linker(self._engine)
        self._linker.define_wasi()
        self._name = workload.name
        # Epochs belong to the engine: one run at a time, so an interrupt hits only its own run.
        self._lock = threading.Lock()

    def run(
        self,
        args: tuple[str, ...],
        limits: JobLimits,
        plaintext: Iterator[bytes],
        output: OutputWriter,
    ) -> RunReport:
        with self._lock:
            return self._run(args, limits, plaintext, output)

    def close(self) -> None:
        pass  # engine and module are freed with the runner

    def _run(
        self,
        args: tuple[str, ...],
        limits: JobLimits,
        plaintext: Iterator[bytes],
        output: OutputWriter,
    ) -> RunReport:
        started = time.perf_counter()
        stop_causes: list[FailureReason] = []

        def interrupt(cause: FailureReason) -> None:
            stop_causes.append(cause)
            self._engine.increment_epoch()

        def write_stdout(data: bytes) -> int:
            try:
                output.write(data)
            except OutputCapExceeded:
                interrupt(FailureReason.OUTPUT_LIMIT)
                return -errno.EIO
            return len(data)

        store = wasmtime.Store(self._engine)
        store.set_limits(memory_size=limits.memory_bytes)
        fuel_budget = limits.fuel if limits.fuel is not None else _UNMETERED_FUEL
        store.set_fuel(fuel_budget)
        store.set_epoch_deadline(1)
        read_fd, write_fd = os.pipe()
        wasi = wasmtime.WasiConfig()
        wasi.argv = [self._name, *args]
        wasi.stdin_file = f"/proc/self/fd/{read_fd}"
        wasi.stdout_custom = write_stdout
        # stderr is derived from the plaintext too: it is dropped rather than shown to the host.
        wasi.stderr_custom = lambda data: len(data)
        store.set_wasi(wasi)
        pump = InputPump(plaintext, write_fd, lambda: interrupt(FailureReason.INPUT_REJECTED))
        pump.start()
        timer = threading.Timer(limits.wall_seconds, interrupt, (FailureReason.TIMEOUT,))
        exit_code: int | None = None
        failure: Failure | None = None
        memory_bytes: int | None = None
        start_seconds = 0.0
        try:
            try:
                instance = self._linker.instantiate(store, self._module)
            except (wasmtime.WasmtimeError, wasmtime.Trap) as exc:
                failure = Failure(FailureReason.WORKLOAD_INVALID, _first_line(exc))
            else:
                start = instance.exports(store).get("_start")
                start_seconds = time.perf_counter() - started
                timer.start()
                if not isinstance(start, wasmtime.Func):
                    failure = Failure(FailureReason.WORKLOAD_INVALID, "module exports no _start")
                else:
                    try:
                        start(store)
                        exit_code = 0
                    except wasmtime.ExitTrap as exc:
                        exit_code = exc.code
                    except wasmtime.Trap as exc:
                        failure = _classify_trap(exc, stop_causes, limits)
                    except wasmtime.WasmtimeError as exc:
                        failure = Failure(FailureReason.TRAP, _first_line(exc))
                memory = instance.exports(store).get("memory")
                if isinstance(memory, wasmtime.Memory):
                    memory_bytes = memory.size(store) * _PAGE
        finally:
            timer.cancel()
            pump.stop()
            fuel_left = _remaining_fuel(store)
            store.close()
            os.close(read_fd)
            pump.join()
        if pump.rejected is not None:
            failure = Failure(FailureReason.INPUT_REJECTED, str(pump.rejected))
        elif FailureReason.OUTPUT_LIMIT in stop_causes:
            failure = Failure(FailureReason.OUTPUT_LIMIT, f"output over {limits.output_bytes} B")
        elif failure is None and exit_code:
            failure = _exit_failure(exit_code, memory_bytes, limits)
        return RunReport(
            exit_code=exit_code,
            failure=failure,
            usage=Usage(
                wall_seconds=time.perf_counter() - started,
                fuel_consumed=None if fuel_left is None else fuel_budget - fuel_left,
                peak_memory_bytes=memory_bytes,
                output_bytes=output.written,
            ),
            start_seconds=start_seconds,
        )


def _remaining_fuel(store: wasmtime.Store) -> int | None:
    try:
        return store.get_fuel()
    except wasmtime.WasmtimeError:
        return None


def _exit_failure(exit_code: int, memory_bytes: int | None, limits: JobLimits) -> Failure:
    if memory_bytes is not None and memory_bytes >= limits.memory_bytes - _MEMORY_CAP_SLACK:
        return Failure(
            FailureReason.MEMORY_LIMIT,
            f"exit {exit_code} with linear memory at {memory_bytes} of {limits.memory_bytes} B",
        )
    return Failure(FailureReason.NONZERO_EXIT, f"exit {exit_code}")


def _classify_trap(
    trap: wasmtime.Trap, stop_causes: list[FailureReason], limits: JobLimits
) -> Failure:
    code = trap.trap_code
    if code == wasmtime.TrapCode.OUT_OF_FUEL:
        return Failure(FailureReason.FUEL_EXHAUSTED, f"fuel budget {limits.fuel} spent")
    if code == wasmtime.TrapCode.INTERRUPT:
        if FailureReason.INPUT_REJECTED in stop_causes:
            return Failure(FailureReason.INPUT_REJECTED, "input failed authentication mid-stream")
        if FailureReason.TIMEOUT in stop_causes:
            return Failure(FailureReason.TIMEOUT, f"ran past {limits.wall_seconds} s")
    return Failure(FailureReason.TRAP, _first_line(trap))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__

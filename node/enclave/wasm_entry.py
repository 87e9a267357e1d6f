"""The wasm runtime's child process, executed inside the native sandbox as the sandbox user.

argv[1]: the module, compiled by the daemon with `engine_config()`; argv[2]: the fd the job
arrives on; argv[3]: the fd the outcome leaves by. It loads the module and links WASI, says
`ready`, waits for its one job (argv, fuel and linear-memory cap, as JSON), runs `_start` with
stdin and stdout the job's pipes and stderr nowhere, and reports one JSON line of integers.
The daemon trusts none of that line once the module has run: it reads integers, never text.

Runs standalone (stdlib and wasmtime only): the sandbox holds the Python runtime and this file.
The daemon imports it too, so both compile and load the module with the same settings.
"""

import json
import os
import sys
from typing import Any

import wasmtime

MAX_MEMORIES = 1
"""Multi-memory is off besides: one linear memory, capped by the job's memory limit."""
MAX_TABLES = 4
MAX_TABLE_ELEMENTS = 1 << 18
"""8 bytes each: at most 2 MiB a table, 8 MiB in all, within the runtime's memory allowance."""
MAX_INSTANCES = 1


def engine_config() -> wasmtime.Config:
    config = wasmtime.Config()
    config.consume_fuel = True
    config.wasm_multi_memory = False
    return config


def _outcome(
    engine: wasmtime.Engine, module: wasmtime.Module, job: dict[str, Any]
) -> dict[str, int]:
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    store = wasmtime.Store(engine)
    store.set_limits(
        memory_size=job["memory_bytes"],
        table_elements=MAX_TABLE_ELEMENTS,
        instances=MAX_INSTANCES,
        tables=MAX_TABLES,
        memories=MAX_MEMORIES,
    )
    store.set_fuel(job["fuel"])
    wasi = wasmtime.WasiConfig()
    wasi.argv = job["argv"]
    wasi.inherit_stdin()  # a pipe of the daemon's: reopening it by path is not allowed here
    wasi.inherit_stdout()
    store.set_wasi(wasi)
    outcome: dict[str, int] = {}
    try:
        instance = linker.instantiate(store, module)
    except (wasmtime.WasmtimeError, wasmtime.Trap):
        outcome["instantiate"] = 1
    else:
        start = instance.exports(store)["_start"]
        assert isinstance(start, wasmtime.Func)
        try:
            start(store)
            outcome["exit"] = 0
        except wasmtime.ExitTrap as exc:
            outcome["exit"] = exc.code
        except wasmtime.Trap as exc:
            outcome["trap"] = -1 if exc.trap_code is None else exc.trap_code.value
        except wasmtime.WasmtimeError:
            outcome["trap"] = -1
        memory = instance.exports(store).get("memory")
        if isinstance(memory, wasmtime.Memory):
            outcome["memory_bytes"] = memory.data_len(store)
    outcome["fuel_left"] = store.get_fuel()
    return outcome


def main() -> int:
    artifact, control_fd, report_fd = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    engine = wasmtime.Engine(engine_config())
    module = wasmtime.Module.deserialize_file(engine, artifact)
    os.write(report_fd, b"ready\n")
    with os.fdopen(control_fd, "rb") as control:
        job = json.loads(control.read())
    os.write(report_fd, json.dumps(_outcome(engine, module, job)).encode() + b"\n")
    return 0


if __name__ == "__main__":
    main()
    # Tearing down the interpreter and wasmtime costs tens of milliseconds a job and serves
    # nothing: the report is written, and WASI flushes stdout on every write.
    os._exit(0)

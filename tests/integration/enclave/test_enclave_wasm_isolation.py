"""A wasm job cannot take this process's memory or outlive its deadline: hand-written modules
that grow a table without end, declare several linear memories, or block in a WASI call past
the deadline. Each ends as a failure while this process's peak RSS stays where it was."""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import wasmtime

from node.enclave.errors import WorkloadInvalid
from node.enclave.jobs import FailureReason, JobLimits
from node.enclave.workloads import WasmWorkload

MIB = 1024 * 1024
# What a wasm job may add to this process's peak RSS: nothing of its own, some allocator noise.
RSS_SLACK = 48 * MIB

TABLE_GROW_FOREVER = """
(module
  (table $t 0 funcref)
  (memory (export "memory") 1)
  (func (export "_start")
    (loop $again
      (drop (table.grow $t (ref.null func) (i32.const 65536)))
      (br $again))))
"""

# Six memories of 60 MiB, each under a 64 MiB cap, each touched page by page.
SIX_MEMORIES = (
    "(module"
    + "".join(f" (memory $m{i} 960)" for i in range(6))
    + ' (func (export "_start") (local $a i32)'
    + "".join(
        f" (local.set $a (i32.const 0)) (loop $l{i} (i32.store8 $m{i} (local.get $a)"
        f" (i32.const 1)) (local.set $a (i32.add (local.get $a) (i32.const 4096)))"
        f" (br_if $l{i} (i32.lt_u (local.get $a) (i32.const {960 * 65536}))))"
        for i in range(6)
    )
    + "))"
)

# poll_oneoff on one monotonic-clock subscription of 10 s: a blocking host call, where no
# epoch interrupt reaches.
SLEEP_IN_WASI = """
(module
  (import "wasi_snapshot_preview1" "poll_oneoff"
    (func $poll (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (i64.store (i32.const 0) (i64.const 7))
    (i32.store8 (i32.const 8) (i32.const 0))
    (i32.store (i32.const 16) (i32.const 1))
    (i64.store (i32.const 24) (i64.const 10000000000))
    (i64.store (i32.const 32) (i64.const 0))
    (i32.store16 (i32.const 40) (i32.const 0))
    (drop (call $poll (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 128)))))
"""


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/self/status")


def _peak_rss_growth(run: Callable[[], object]) -> int:
    """How far `run` raises this process's peak RSS (VmHWM), in bytes."""
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    before = _status_kib("VmHWM")
    run()
    return (_status_kib("VmHWM") - before) * 1024


def _module(text: str) -> WasmWorkload:
    return WasmWorkload(bytes(wasmtime.wat2wasm(text)))


def test_a_table_grow_loop_fails_without_growing_this_process(backend, client):
    instance = backend.create_instance(_module(TABLE_GROW_FOREVER))
    limits = JobLimits(wall_seconds=2, memory_bytes=64 * MIB)
    ran = None

    def run() -> None:
        nonlocal ran
        ran = client.run(instance, limits=limits)

    growth = _peak_rss_growth(run)
    assert ran is not None and ran.outcome.failure is not None
    assert ran.outcome.failure.reason in (FailureReason.TIMEOUT, FailureReason.MEMORY_LIMIT)
    assert growth < RSS_SLACK, f"this process grew by {growth >> 20} MiB"


def test_a_multi_memory_module_is_refused_without_growing_this_process(backend, client):
    def run() -> None:
        with pytest.raises(WorkloadInvalid, match="multiple memories"):
            instance = backend.create_instance(_module(SIX_MEMORIES))
            client.run(instance, limits=JobLimits(wall_seconds=10, memory_bytes=64 * MIB))

    growth = _peak_rss_growth(run)
    assert growth < RSS_SLACK, f"this process grew by {growth >> 20} MiB"


def test_a_blocking_wasi_call_ends_at_the_deadline(backend, client):
    instance = backend.create_instance(_module(SLEEP_IN_WASI))
    started = time.monotonic()
    ran = client.run(instance, limits=JobLimits(wall_seconds=1))
    elapsed = time.monotonic() - started
    assert ran.outcome.failure is not None
    assert ran.outcome.failure.reason is FailureReason.TIMEOUT, ran.outcome.failure
    assert elapsed < 4, f"the job ran {elapsed:.1f} s past a 1 s deadline"


# The launch stage that runs as root by design before it execs setpriv (which drops to the
# sandbox user) and bubblewrap: its command line names the runtime's entry point too.
_LAUNCH_STAGE = frozenset({"sh", "dash", "bash", "unshare", "setpriv", "mount"})


def _host_uids_of(marker: bytes) -> dict[int, list[int]]:
    """Host uids of every process past the launch stage whose command line has `marker`."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker not in (entry / "cmdline").read_bytes():
                continue
            status = (entry / "status").read_text()
            if (entry / "comm").read_text().strip() in _LAUNCH_STAGE:
                continue
        except OSError:
            continue
        line = next(line for line in status.splitlines() if line.startswith("Uid:"))
        found[int(entry.name)] = [int(uid) for uid in line.split()[1:]]
    return found


def test_the_wasm_runtime_never_runs_as_host_root(backend, client):
    instance = backend.create_instance(_module(SLEEP_IN_WASI))
    seen: dict[int, list[int]] = {}
    job = threading.Thread(
        target=client.run, args=(instance,), kwargs={"limits": JobLimits(wall_seconds=2)}
    )
    job.start()
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline and job.is_alive():
        seen.update(_host_uids_of(b"/opt/capacloud/wasm_entry.py"))
    job.join()
    assert seen, "no wasm runtime process was seen"
    assert all(0 not in uids for uids in seen.values()), seen


def _wasm_cgroups() -> set[Path]:
    return {p for p in Path("/sys/fs/cgroup").glob("*/capacloud/wasm-*") if p.is_dir()} | {
        p for p in Path("/sys/fs/cgroup").glob("capacloud/wasm-*") if p.is_dir()
    }


def test_a_destroyed_instance_leaves_no_process_or_cgroup(backend, client, wasm_module):
    gc.collect()  # instances of earlier tests close their waiting runtimes
    before = _wasm_cgroups()
    instance = backend.create_instance(WasmWorkload(wasm_module("upper")))
    assert client.run(instance, b"x").outcome.succeeded
    # The next runtime starts after the job, in the background: give it time on a busy machine.
    waited = time.monotonic() + 20
    while not _wasm_cgroups() - before and time.monotonic() < waited:
        time.sleep(0.05)
    assert _wasm_cgroups() - before, "the instance keeps a started runtime in a cgroup"
    instance.destroy()
    # A cgroup with a process left in it cannot be removed: gone means empty and gone.
    assert _wasm_cgroups() - before == set()

"""What this machine offers the enclave runtime, and why anything is missing.

Every check runs the real thing where it is cheap (bubblewrap starts a sandbox, a cgroup is
created and removed, wasmtime compiles a module) rather than trusting that a file exists.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path

import wasmtime

from node.enclave import wasm_entry
from node.enclave.attesters import (
    Attester,
    ConfigfsTsmAttester,
    GpuInfo,
    GramineAttester,
    NvidiaGpuAttester,
    NvmlLibrary,
    PynvmlLibrary,
)
from node.enclave.cgroups import CgroupLimits, CgroupV1Driver, CgroupV2Driver, read_mounts
from node.enclave.errors import AttestationUnavailable, SandboxUnavailable, WorkloadInvalid
from node.enclave.jobs import JobLimits
from node.enclave.native_sandbox import (
    NativeSandbox,
    SandboxCommand,
    detect_native_sandbox,
    job_identity,
    system_binds,
)
from node.enclave.wasm_runner import WasmRunner
from node.enclave.workloads import WasmWorkload
from proofs.claims import TeeKind

TEE_CPU_FLAGS = ("tdx_guest", "sev", "sev_es", "sev_snp", "sgx", "sgx_lc")
_PROBE_TIMEOUT_SECONDS = 10


@dataclass(frozen=True)
class Capability:
    name: str
    available: bool
    detail: str


@dataclass(frozen=True)
class CpuReport:
    model: str
    logical_cores: int
    tee_flags: tuple[str, ...]
    flag_count: int


@dataclass(frozen=True)
class GpuReport:
    gpus: tuple[GpuInfo, ...]
    confidential_computing: bool | None
    detail: str


@dataclass(frozen=True)
class MachineReport:
    architecture: str
    cpu: CpuReport
    memory_bytes: int
    gpu: GpuReport
    attesters: tuple[Capability, ...]
    sandboxes: tuple[Capability, ...]
    notes: tuple[str, ...] = field(default=())

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def probe_cpu(cpuinfo: Path = Path("/proc/cpuinfo")) -> CpuReport:
    model, flags = "unknown", set[str]()
    for line in cpuinfo.read_text().splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and model == "unknown":
            model = value.strip()
        elif key == "flags" and not flags:
            flags = set(value.split())
    return CpuReport(
        model=model,
        logical_cores=os.cpu_count() or 0,
        tee_flags=tuple(f for f in TEE_CPU_FLAGS if f in flags),
        flag_count=len(flags),
    )


def probe_memory(meminfo: Path = Path("/proc/meminfo")) -> int:
    for line in meminfo.read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 0


def probe_gpus(nvml: NvmlLibrary | None = None) -> GpuReport:
    try:
        library = nvml or PynvmlLibrary()
        gpus = tuple(library.gpus())
    except AttestationUnavailable as exc:
        return GpuReport((), None, str(exc))
    if not gpus:
        return GpuReport((), None, "NVML found no GPU")
    try:
        cc = library.confidential_computing_enabled()
    except AttestationUnavailable as exc:
        return GpuReport(gpus, None, str(exc))
    return GpuReport(
        gpus, cc, f"{len(gpus)} GPU(s), confidential computing {'on' if cc else 'off'}"
    )


def probe_attesters(gpu: NvidiaGpuAttester | None = None) -> tuple[Capability, ...]:
    cpu_attesters: list[Attester] = [
        ConfigfsTsmAttester(TeeKind.TDX),
        ConfigfsTsmAttester(TeeKind.SEV_SNP),
        ConfigfsTsmAttester(TeeKind.CCA),
        GramineAttester(),
    ]
    found = []
    for attester in cpu_attesters:
        availability = attester.availability()
        found.append(Capability(attester.kind.label, availability.available, availability.detail))
    if gpu is None:
        try:
            gpu = NvidiaGpuAttester(PynvmlLibrary())
        except AttestationUnavailable as exc:
            found.append(Capability("nvidia-cc", False, str(exc)))
    if gpu is not None:
        availability = gpu.availability()
        found.append(Capability("nvidia-cc", availability.available, availability.detail))
    found.append(
        Capability("sim", True, "always possible; INSECURE, chosen only by name, never a fallback")
    )
    return tuple(found)


def _probe_bubblewrap() -> Capability:
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return Capability("bubblewrap", False, "bwrap not installed: run tools/system-deps.sh")
    try:
        result = subprocess.run(
            [bwrap, "--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent",
             "--ro-bind", "/usr", "/usr", "--symlink", "usr/bin", "/bin", "--symlink", "usr/lib",
             "/lib", "--symlink", "usr/lib64", "/lib64", "--proc", "/proc", "--dev", "/dev",
             "--", "/usr/bin/true"],
            capture_output=True,
            timeout=_PROBE_TIMEOUT_SECONDS,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Capability("bubblewrap", False, f"{bwrap} failed to run: {exc}")
    if result.returncode != 0:
        reason = result.stderr.decode(errors="replace").strip() or f"exit {result.returncode}"
        return Capability("bubblewrap", False, f"{bwrap} cannot create namespaces: {reason}")
    version = subprocess.run([bwrap, "--version"], capture_output=True, text=True).stdout.strip()
    return Capability("bubblewrap", True, f"{version} at {bwrap}: namespaces work")


def _probe_cgroup(driver_class: type[CgroupV1Driver] | type[CgroupV2Driver]) -> Capability:
    name = f"cgroups {driver_class.__name__[6:8].lower()}"
    try:
        driver = driver_class.detect(read_mounts())
        job = driver.create(f"probe-{os.getpid()}", CgroupLimits(64 << 20, 8, 1.0))
        job.remove()
    except (SandboxUnavailable, OSError) as exc:
        return Capability(name, False, str(exc))
    return Capability(name, True, f"memory, pids and cpu limits settable ({driver.version})")


def _probe_seccomp() -> Capability:
    status = Path("/proc/self/status").read_text()
    if "Seccomp:" not in status:
        return Capability("seccomp", False, "kernel built without seccomp")
    if platform.machine() != "x86_64":
        return Capability("seccomp", False, f"filter written for x86_64, not {platform.machine()}")
    return Capability("seccomp", True, "seccomp filters supported (x86_64 filter)")


def _probe_wasmtime() -> Capability:
    try:
        engine = wasmtime.Engine()
        wasmtime.Module(engine, bytes(wasmtime.wat2wasm("(module)")))
    except wasmtime.WasmtimeError as exc:
        return Capability("wasmtime", False, f"cannot compile a module: {exc}")
    from importlib.metadata import version

    return Capability("wasmtime", True, f"wasmtime-py {version('wasmtime')}: fuel, store limits")


def _probe_onnxruntime() -> Capability:
    try:
        import onnxruntime
    except ImportError as exc:
        return Capability("onnxruntime", False, f"not installed: {exc}")
    return Capability("onnxruntime", True, f"onnxruntime {onnxruntime.__version__} (CPU)")


def _probe_wasm_toolchain() -> Capability:
    clang = shutil.which("clang")
    sysroot_libc = Path("/usr/lib/wasm32-wasi/libc.a")
    if clang is None or not sysroot_libc.exists():
        return Capability(
            "wasm toolchain", False,
            "clang or wasi-libc missing (only needed to rebuild workloads/): tools/system-deps.sh",
        )  # fmt: skip
    return Capability("wasm toolchain", True, f"{clang} with wasi-libc")


def _probe_job_identity() -> Capability:
    try:
        identity = job_identity()
    except SandboxUnavailable as exc:
        return Capability("sandbox user", False, str(exc))
    return Capability("sandbox user", True, f"jobs run as host {identity.label}, never as uid 0")


class _Collected:
    def __init__(self) -> None:
        self.data = bytearray()

    @property
    def written(self) -> int:
        return len(self.data)

    def write(self, data: bytes) -> None:
        self.data += data


def _mount_table(mountinfo: str) -> dict[str, tuple[set[str], str, str]]:
    """mount point -> (mount options, fs type, super options), the last mount on each point."""
    table = {}
    for line in mountinfo.splitlines():
        fields = line.split()
        if "-" not in fields:
            continue
        separator = fields.index("-")
        table[fields[4]] = (set(fields[5].split(",")), fields[separator + 1], fields[separator + 3])
    return table


def _tmpfs_size(super_options: str) -> int | None:
    for option in super_options.split(","):
        if option.startswith("size="):
            value = option[5:]
            scale = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}.get(value[-1:], 1)
            return int(value.rstrip("kmg")) * scale
    return None


def _isolation_findings(
    mounts: dict[str, tuple[set[str], str, str]], masked: tuple[str, ...], scratch: int
) -> tuple[list[str], list[str]]:
    """(what holds, what does not) in a job's view of its mounts."""
    holds, missing = [], []
    if "ro" in mounts.get("/proc/sys", (set(), "", ""))[0]:
        holds.append("/proc/sys read-only")
    else:
        missing.append("/proc/sys is writable")
    hidden = [path for path in masked if "ro" in mounts.get(path, (set(), "", ""))[0]]
    if len(hidden) == len(masked):
        holds.append(f"{len(hidden)} host /proc entries masked")
    else:
        missing.append(f"/proc entries not masked: {', '.join(sorted(set(masked) - set(hidden)))}")
    if "ro" in mounts.get("/dev", (set(), "", ""))[0]:
        holds.append("/dev read-only")
    else:
        missing.append("/dev is writable")
    sizes = {}
    for point, (options, fstype, super_options) in mounts.items():
        if "rw" in options and fstype == "tmpfs":
            size = _tmpfs_size(super_options)
            if size is None:
                missing.append(f"{point} is an unsized writable tmpfs")
            else:
                sizes[point] = size
    if sum(sizes.values()) <= scratch:
        holds.append(f"writable: {', '.join(sorted(sizes))}, {sum(sizes.values())} B in all")
    else:
        missing.append(f"writable mounts exceed the {scratch} B scratch limit")
    return holds, missing


def _probe_isolation(sandbox: NativeSandbox) -> Capability:
    """Starts a real job that lists its mounts, and looks at its processes from the host."""
    binds, symlinks = system_binds()
    command = SandboxCommand(
        binds, symlinks, ("/bin/sh", "-c", "cat /proc/self/mountinfo; read _; true")
    )
    limits = JobLimits(wall_seconds=_PROBE_TIMEOUT_SECONDS, memory_bytes=64 << 20,
                       scratch_bytes=1 << 20)  # fmt: skip
    output = _Collected()
    try:
        process = sandbox.start(command, limits)
        try:
            uids = process.host_uids() if process.wait_started(_PROBE_TIMEOUT_SECONDS) else set()
            end = process.supervise(limits, iter(()), output)
        finally:
            process.discard()
    except SandboxUnavailable as exc:
        return Capability("sandbox isolation", False, str(exc))
    if end.exit_code != 0:
        return Capability("sandbox isolation", False, "the probe job did not run; see bubblewrap")
    mounts = _mount_table(output.data.decode(errors="replace"))
    holds, missing = _isolation_findings(mounts, sandbox.masked_entries, limits.scratch_bytes)
    if uids and 0 not in uids:
        holds.insert(0, f"job processes at host uid {', '.join(map(str, sorted(uids)))}")
    else:
        missing.insert(0, f"job processes seen at host uids {sorted(uids) or 'none'}")
    detail = "; ".join(holds) if not missing else "; ".join(missing)
    return Capability("sandbox isolation", not missing, detail)


def _probe_wasm_isolation(sandbox: NativeSandbox) -> Capability:
    """Runs an empty module through the wasm runner and checks multi-memory is refused."""
    empty = WasmWorkload(bytes(wasmtime.wat2wasm('(module (func (export "_start")))')))
    try:
        WasmRunner(
            WasmWorkload(bytes(wasmtime.wat2wasm("(module (memory 1) (memory 1))"))), sandbox
        )
        return Capability("wasm isolation", False, "a module with two memories was accepted")
    except WorkloadInvalid:
        pass
    try:
        runner = WasmRunner(empty, sandbox)
        try:
            report = runner.run((), JobLimits(wall_seconds=_PROBE_TIMEOUT_SECONDS), iter(()),
                                _Collected())  # fmt: skip
        finally:
            runner.close()
    except SandboxUnavailable as exc:
        return Capability("wasm isolation", False, str(exc))
    if report.failure is not None:
        return Capability("wasm isolation", False, f"an empty module failed: {report.failure}")
    return Capability(
        "wasm isolation", True,
        "each job in a child process in the native sandbox (its cgroup, rlimits, killed at the "
        f"deadline); store limits: {wasm_entry.MAX_MEMORIES} memory, {wasm_entry.MAX_TABLES} "
        f"tables of {wasm_entry.MAX_TABLE_ELEMENTS} elements, {wasm_entry.MAX_INSTANCES} "
        "instance; multi-memory off",
    )  # fmt: skip


def _probe_protections() -> tuple[Capability, ...]:
    try:
        sandbox = detect_native_sandbox()
    except SandboxUnavailable as exc:
        return (
            Capability("sandbox isolation", False, f"no native sandbox: {exc}"),
            Capability("wasm isolation", False, f"no native sandbox: {exc}"),
        )
    return _probe_isolation(sandbox), _probe_wasm_isolation(sandbox)


def probe_sandboxes() -> tuple[Capability, ...]:
    return (
        _probe_bubblewrap(),
        _probe_cgroup(CgroupV2Driver),
        _probe_cgroup(CgroupV1Driver),
        _probe_seccomp(),
        _probe_job_identity(),
        *_probe_protections(),
        _probe_wasmtime(),
        _probe_onnxruntime(),
        _probe_wasm_toolchain(),
    )


def probe_machine(nvml: NvmlLibrary | None = None) -> MachineReport:
    gpu_report = probe_gpus(nvml)
    gpu_attester = NvidiaGpuAttester(nvml) if nvml is not None else None
    sandboxes = probe_sandboxes()
    notes = []
    by_name = {c.name: c for c in sandboxes}
    cgroups_ok = by_name["cgroups v1"].available or by_name["cgroups v2"].available
    native_ok = (
        all(
            by_name[name].available
            for name in ("bubblewrap", "seccomp", "sandbox user", "sandbox isolation")
        )
        and cgroups_ok
    )
    notes.append(
        "native sandbox (exec, onnx): "
        + (
            "ready"
            if native_ok
            else "unavailable: see bubblewrap, cgroups, seccomp, sandbox user and isolation above"
        )
    )
    wasm_ok = native_ok and by_name["wasmtime"].available and by_name["wasm isolation"].available
    notes.append(
        "wasm sandbox: "
        + (
            "ready"
            if wasm_ok
            else "unavailable: see the native sandbox, wasmtime and wasm isolation"
        )
    )
    return MachineReport(
        architecture=platform.machine(),
        cpu=probe_cpu(),
        memory_bytes=probe_memory(),
        gpu=gpu_report,
        attesters=probe_attesters(gpu_attester),
        sandboxes=sandboxes,
        notes=tuple(notes),
    )

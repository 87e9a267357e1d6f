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
from node.enclave.errors import AttestationUnavailable, SandboxUnavailable
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
        import wasmtime

        engine = wasmtime.Engine()
        wasmtime.Module(engine, bytes(wasmtime.wat2wasm("(module)")))
    except (ImportError, wasmtime.WasmtimeError) as exc:
        return Capability("wasmtime", False, f"cannot compile a module: {exc}")
    from importlib.metadata import version

    return Capability("wasmtime", True, f"wasmtime-py {version('wasmtime')}: fuel, epochs, limits")


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


def probe_sandboxes() -> tuple[Capability, ...]:
    return (
        _probe_bubblewrap(),
        _probe_cgroup(CgroupV2Driver),
        _probe_cgroup(CgroupV1Driver),
        _probe_seccomp(),
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
    native_ok = by_name["bubblewrap"].available and cgroups_ok and by_name["seccomp"].available
    notes.append(
        "native sandbox (exec, onnx): "
        + ("ready" if native_ok else "unavailable: see bubblewrap, cgroups and seccomp above")
    )
    notes.append("wasm sandbox: " + ("ready" if by_name["wasmtime"].available else "unavailable"))
    return MachineReport(
        architecture=platform.machine(),
        cpu=probe_cpu(),
        memory_bytes=probe_memory(),
        gpu=gpu_report,
        attesters=probe_attesters(gpu_attester),
        sandboxes=sandboxes,
        notes=tuple(notes),
    )

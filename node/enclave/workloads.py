"""The three workload kinds and their measurements.

- wasm: measurement = sha256(module bytes).
- onnx: measurement = sha256(tag || sha256(model) || runner version); the runner version names
  the runner script's own hash and the onnxruntime version, so a changed runner is a new
  measurement.
- exec: measurement = sha256(tag || tree hash of the root filesystem || argv), where the tree
  hash covers every path, type, executable bit, symlink target and file content.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import NewType

from node.enclave.errors import WorkloadInvalid

WorkloadMeasurement = NewType("WorkloadMeasurement", bytes)
"""32 bytes; the sim evidence's measurement and the instance's identity."""

ONNX_TAG = b"capacloud.onnx.v1\x00"
EXEC_TAG = b"capacloud.exec.v1\x00"
ONNX_RUNNER_SCRIPT = Path(__file__).with_name("onnx_entry.py")


class WorkloadKind(Enum):
    WASM = "wasm"
    ONNX = "onnx"
    EXEC = "exec"


@dataclass(frozen=True)
class WasmWorkload:
    module: bytes
    name: str = "module.wasm"

    @property
    def kind(self) -> WorkloadKind:
        return WorkloadKind.WASM

    def measure(self) -> WorkloadMeasurement:
        return WorkloadMeasurement(hashlib.sha256(self.module).digest())


@dataclass(frozen=True)
class OnnxWorkload:
    model: bytes

    @property
    def kind(self) -> WorkloadKind:
        return WorkloadKind.ONNX

    def measure(self) -> WorkloadMeasurement:
        model_hash = hashlib.sha256(self.model).digest()
        return WorkloadMeasurement(
            hashlib.sha256(ONNX_TAG + model_hash + onnx_runner_version().encode()).digest()
        )


@dataclass(frozen=True)
class ExecWorkload:
    rootfs: Path
    """Mounted read-only as the sandbox's root; every top-level entry becomes /<entry>."""
    argv: tuple[str, ...]

    @property
    def kind(self) -> WorkloadKind:
        return WorkloadKind.EXEC

    def measure(self) -> WorkloadMeasurement:
        if not self.argv:
            raise WorkloadInvalid("exec workload needs a command")
        encoded_argv = b"".join(len(a.encode()).to_bytes(4, "big") + a.encode() for a in self.argv)
        return WorkloadMeasurement(
            hashlib.sha256(EXEC_TAG + tree_hash(self.rootfs) + encoded_argv).digest()
        )


Workload = WasmWorkload | OnnxWorkload | ExecWorkload


def onnx_runner_version() -> str:
    try:
        import onnxruntime
    except ImportError as exc:
        raise WorkloadInvalid(f"onnxruntime is not installed: {exc}") from exc
    script = hashlib.sha256(ONNX_RUNNER_SCRIPT.read_bytes()).hexdigest()[:16]
    return f"capa-onnx-runner/1+{script} onnxruntime/{onnxruntime.__version__}"


def _file_digest(path: Path) -> bytes:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.digest()


def tree_hash(root: Path) -> bytes:
    """sha256 over a canonical listing of `root`; refuses devices, sockets and fifos."""
    if not root.is_dir():
        raise WorkloadInvalid(f"root filesystem {root} is not a directory")
    listing = hashlib.sha256()
    try:
        for directory, dirnames, filenames in os.walk(root, followlinks=False):
            dirnames.sort()
            base = Path(directory)
            for name in sorted([*dirnames, *filenames]):
                path = base / name
                relative = path.relative_to(root).as_posix().encode()
                info = path.lstat()
                if stat.S_ISLNK(info.st_mode):
                    entry = b"L" + os.readlink(path).encode()
                elif stat.S_ISDIR(info.st_mode):
                    entry = b"D"
                elif stat.S_ISREG(info.st_mode):
                    executable = b"x" if info.st_mode & 0o111 else b"-"
                    entry = b"F" + executable + _file_digest(path)
                else:
                    raise WorkloadInvalid(f"{path}: only files, directories and symlinks allowed")
                listing.update(len(relative).to_bytes(4, "big") + relative + entry + b"\n")
    except OSError as exc:
        raise WorkloadInvalid(f"cannot read root filesystem {root}: {exc}") from exc
    return listing.digest()

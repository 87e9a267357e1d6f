"""onnx workloads: the fixed runner (`onnx_entry.py`) under onnxruntime in the native sandbox.

The sandbox sees the host's /usr, this Python runtime and its packages, the runner and the
model, all read-only; no /etc, no network, no sockets (which also silences onnxruntime's
telemetry, besides the runner switching it off).
"""

from __future__ import annotations

import math
import shutil
import sys
import tempfile
import weakref
from collections.abc import Iterator
from pathlib import Path

from node.enclave.jobs import JobLimits, RunReport
from node.enclave.native_sandbox import Bind, NativeSandbox, SandboxCommand, python_runtime_binds
from node.enclave.output import OutputWriter
from node.enclave.workloads import ONNX_RUNNER_SCRIPT, OnnxWorkload

_MODEL_PATH = "/opt/capacloud/model.onnx"
_RUNNER_PATH = "/opt/capacloud/onnx_entry.py"


class OnnxRunner:
    def __init__(self, workload: OnnxWorkload, sandbox: NativeSandbox) -> None:
        # The model is measured, not secret: it may sit in a host file the sandbox reads.
        self._model_dir = Path(tempfile.mkdtemp(prefix="capacloud-model-"))
        self._model_dir.chmod(0o711)  # the sandbox user reaches the model, nothing else here
        model_file = self._model_dir / "model.onnx"
        model_file.write_bytes(workload.model)
        model_file.chmod(0o444)
        self._finalizer = weakref.finalize(self, shutil.rmtree, self._model_dir, True)
        binds, symlinks = python_runtime_binds()
        self._binds = (
            *binds,
            Bind(model_file, _MODEL_PATH),
            Bind(ONNX_RUNNER_SCRIPT, _RUNNER_PATH),
        )
        self._symlinks = symlinks
        self._python = sys.executable
        self._sandbox = sandbox

    def run(
        self,
        args: tuple[str, ...],
        limits: JobLimits,
        plaintext: Iterator[bytes],
        output: OutputWriter,
    ) -> RunReport:
        threads = max(1, math.floor(limits.cpus))
        command = SandboxCommand(
            binds=self._binds,
            symlinks=self._symlinks,
            argv=(self._python, "-I", _RUNNER_PATH, _MODEL_PATH, str(threads)),
            env=(("PATH", "/usr/bin:/bin"), ("OMP_NUM_THREADS", str(threads))),
        )
        return self._sandbox.run(command, limits, plaintext, output)

    def close(self) -> None:
        self._finalizer()

"""exec workloads: a native command from a measured root filesystem, in the native sandbox."""

from __future__ import annotations

from collections.abc import Iterator

from node.enclave.errors import WorkloadInvalid
from node.enclave.jobs import JobLimits, RunReport
from node.enclave.native_sandbox import Bind, NativeSandbox, SandboxCommand
from node.enclave.output import OutputWriter
from node.enclave.workloads import ExecWorkload

_RESERVED = frozenset({"proc", "dev", "tmp", "work"})


class ExecRunner:
    def __init__(self, workload: ExecWorkload, sandbox: NativeSandbox) -> None:
        entries = sorted(workload.rootfs.iterdir())
        clashes = _RESERVED.intersection(entry.name for entry in entries)
        if clashes:
            raise WorkloadInvalid(
                f"root filesystem may not provide {', '.join(sorted(clashes))}: the sandbox does"
            )
        # A top-level symlink is recreated, never bound: binding would follow it on the host.
        self._binds = tuple(
            Bind(entry, f"/{entry.name}") for entry in entries if not entry.is_symlink()
        )
        self._symlinks = tuple(
            (str(entry.readlink()), f"/{entry.name}") for entry in entries if entry.is_symlink()
        )
        self._argv = workload.argv
        self._sandbox = sandbox

    def run(
        self,
        args: tuple[str, ...],
        limits: JobLimits,
        plaintext: Iterator[bytes],
        output: OutputWriter,
    ) -> RunReport:
        command = SandboxCommand(
            binds=self._binds, symlinks=self._symlinks, argv=(*self._argv, *args)
        )
        return self._sandbox.run(command, limits, plaintext, output)

    def close(self) -> None:
        pass  # the root filesystem belongs to whoever made the workload

"""A classic-BPF seccomp filter for the native sandbox, built here so no libseccomp is needed.

bubblewrap loads it (`--seccomp FD`) right before it executes the workload. It allows
everything except: every socket syscall (the workload gets no network and no local IPC
sockets, even inside its empty network namespace), and the syscalls that reshape the kernel's
view of the sandbox (mount, namespaces, ptrace, bpf, modules, kexec, keyrings, io_uring, which
bypasses seccomp for the I/O it submits). Those fail with EPERM; a foreign architecture or the
x32 ABI, which would renumber syscalls, kills the process.
"""

from __future__ import annotations

import platform
import struct

from node.enclave.errors import SandboxUnavailable

_AUDIT_ARCH_X86_64 = 0xC000003E
_X32_SYSCALL_BIT = 0x40000000
_SECCOMP_RET_KILL_PROCESS = 0x80000000
_SECCOMP_RET_ERRNO = 0x00050000
_SECCOMP_RET_ALLOW = 0x7FFF0000
_EPERM = 1
_BPF_LD_W_ABS = 0x20
_BPF_JEQ_K = 0x15
_BPF_JGE_K = 0x35
_BPF_RET_K = 0x06
_OFFSET_NR = 0
_OFFSET_ARCH = 4

DENIED_SYSCALLS_X86_64: dict[str, int] = {
    "socket": 41,
    "connect": 42,
    "accept": 43,
    "sendto": 44,
    "recvfrom": 45,
    "sendmsg": 46,
    "recvmsg": 47,
    "shutdown": 48,
    "bind": 49,
    "listen": 50,
    "getsockname": 51,
    "getpeername": 52,
    "socketpair": 53,
    "setsockopt": 54,
    "getsockopt": 55,
    "ptrace": 101,
    "pivot_root": 155,
    "mount": 165,
    "umount2": 166,
    "init_module": 175,
    "delete_module": 176,
    "kexec_load": 246,
    "add_key": 248,
    "request_key": 249,
    "keyctl": 250,
    "unshare": 272,
    "accept4": 288,
    "perf_event_open": 298,
    "recvmmsg": 299,
    "sendmmsg": 307,
    "setns": 308,
    "finit_module": 313,
    "kexec_file_load": 320,
    "bpf": 321,
    "userfaultfd": 323,
    "io_uring_setup": 425,
    "io_uring_enter": 426,
    "io_uring_register": 427,
    "open_tree": 428,
    "move_mount": 429,
    "fsopen": 430,
    "fsconfig": 431,
    "fsmount": 432,
    "fspick": 433,
}


def _instruction(code: int, jt: int, jf: int, k: int) -> bytes:
    return struct.pack("<HBBI", code, jt, jf, k)


def sandbox_filter() -> bytes:
    """The filter as bubblewrap reads it: an array of `struct sock_filter`."""
    if platform.machine() != "x86_64":
        raise SandboxUnavailable(
            f"the seccomp filter is written for x86_64, this machine is {platform.machine()}"
        )
    errno_eperm = _SECCOMP_RET_ERRNO | _EPERM
    program = [
        _instruction(_BPF_LD_W_ABS, 0, 0, _OFFSET_ARCH),
        _instruction(_BPF_JEQ_K, 1, 0, _AUDIT_ARCH_X86_64),
        _instruction(_BPF_RET_K, 0, 0, _SECCOMP_RET_KILL_PROCESS),
        _instruction(_BPF_LD_W_ABS, 0, 0, _OFFSET_NR),
        _instruction(_BPF_JGE_K, 0, 1, _X32_SYSCALL_BIT),
        _instruction(_BPF_RET_K, 0, 0, _SECCOMP_RET_KILL_PROCESS),
    ]
    for number in sorted(DENIED_SYSCALLS_X86_64.values()):
        program.append(_instruction(_BPF_JEQ_K, 0, 1, number))
        program.append(_instruction(_BPF_RET_K, 0, 0, errno_eperm))
    program.append(_instruction(_BPF_RET_K, 0, 0, _SECCOMP_RET_ALLOW))
    return b"".join(program)

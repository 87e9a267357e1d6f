"""Detached processes the devnet starts, and stopping exactly those again.

Each process starts in a session of its own (it outlives `capa devnet up` and a Ctrl-C in
the terminal that ran it) with its output appended to a log file. It is remembered by pid
and by its start time in clock ticks since boot: a pid the kernel handed to some other
process after ours exited has another start time, so `down` never signals a stranger.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from node.devnet.errors import DevnetError

POLL_S = 0.05


@dataclass(frozen=True)
class ProcessRecord:
    """A process this devnet started: its pid and when it started (ticks since boot)."""

    pid: int
    start_ticks: int

    def to_json(self) -> dict[str, int]:
        return {"pid": self.pid, "start_ticks": self.start_ticks}


def _stat_fields(pid: int) -> list[str] | None:
    """/proc/<pid>/stat after the command name (which may hold spaces and parentheses)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return raw[raw.rindex(")") + 2 :].split()


def start_ticks(pid: int) -> int | None:
    fields = _stat_fields(pid)
    # Field 22 of stat is the start time; fields[0] here is field 3 (the state).
    return int(fields[19]) if fields is not None else None


def is_running(record: ProcessRecord) -> bool:
    """True while the recorded process exists and is not a zombie waiting to be reaped."""
    fields = _stat_fields(record.pid)
    if fields is None or int(fields[19]) != record.start_ticks:
        return False
    return fields[0] not in ("Z", "X")


def spawn(
    argv: Sequence[str], *, log: Path, cwd: Path, env: Mapping[str, str]
) -> tuple[subprocess.Popen[bytes], ProcessRecord]:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        try:
            process = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                env=dict(env),
                start_new_session=True,
            )
        except OSError as exc:
            raise DevnetError(f"cannot start {argv[0]}: {exc.strerror}") from exc
    ticks = start_ticks(process.pid)
    if ticks is None:  # exited (and was reaped) before we could look: keep a record anyway
        ticks = -1
    return process, ProcessRecord(process.pid, ticks)


def wait_gone(record: ProcessRecord, timeout: float, reap: subprocess.Popen[bytes] | None) -> bool:
    """Wait until the process is gone; True if it went within `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        if reap is not None:
            reap.poll()  # our own child: reap it, or it stays a zombie
        if not is_running(record):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_S)


@dataclass(frozen=True)
class Stoppable:
    """A recorded process to stop, and its Popen when this Python started it (to reap)."""

    name: str
    record: ProcessRecord
    reap: subprocess.Popen[bytes] | None = None


def stop_all(
    targets: Sequence[Stoppable], *, grace: float, sig: signal.Signals = signal.SIGTERM
) -> list[tuple[str, str]]:
    """Stop these processes together: `sig` to each, then SIGKILL to the process group of
    any still alive after `grace` seconds; what each left behind in its group goes too.
    Returns (name, outcome) with outcome "not running", "stopped" or "killed"."""
    outcomes: dict[str, str] = {}
    signalled = []
    for target in targets:
        if not is_running(target.record):
            # Gone before: its pid may be someone else's by now, so no group signal either.
            if target.reap is not None:
                target.reap.poll()
            outcomes[target.name] = "not running"
            continue
        _signal(target.record.pid, sig)
        signalled.append(target)
    deadline = time.monotonic() + (0.0 if sig is signal.SIGKILL else grace)
    for target in signalled:
        if sig is not signal.SIGKILL and wait_gone(
            target.record, max(0.0, deadline - time.monotonic()), target.reap
        ):
            outcomes[target.name] = "stopped"
            continue
        _signal_group(target.record.pid, signal.SIGKILL)
        if not wait_gone(target.record, 10.0, target.reap):
            raise DevnetError(f"{target.name} (pid {target.record.pid}) survived SIGKILL")
        outcomes[target.name] = "stopped" if sig is signal.SIGKILL else "killed"
    for target in signalled:
        # It was ours and alive a moment ago, and the kernel does not hand out a pid that
        # is still some group's id: this reaches only what our process left in its group.
        _signal_group(target.record.pid, signal.SIGKILL)
    return [(t.name, outcomes[t.name]) for t in targets]


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def log_tail(path: Path, lines: int) -> list[str]:
    """The last `lines` lines of a log file (nothing if it does not exist)."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 64 * 1024))
            text = handle.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return []
    return text.splitlines()[-lines:] if lines > 0 else []

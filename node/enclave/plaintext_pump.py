"""Moves an opened input from its record iterator into a pipe the sandbox reads as stdin.

Runs in a thread so the workload starts before the whole input is decrypted; plaintext only
passes through memory and a kernel pipe, never a file.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator

from node.enclave.errors import SealingError


class InputPump:
    def __init__(
        self, records: Iterator[bytes], write_fd: int, on_rejected: Callable[[], None]
    ) -> None:
        self._records = records
        self._write_fd = write_fd
        self._on_rejected = on_rejected
        self._stopping = threading.Event()
        self.rejected: SealingError | None = None
        self._thread = threading.Thread(target=self._pump, name="enclave-input", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _pump(self) -> None:
        try:
            for record in self._records:
                view = memoryview(record)
                while view and not self._stopping.is_set():
                    written = os.write(self._write_fd, view)
                    view = view[written:]
                if self._stopping.is_set():
                    return
        except SealingError as exc:
            # Tampering found mid-stream: the workload must not finish on a forged input.
            self.rejected = exc
            self._on_rejected()
        except (BrokenPipeError, OSError):
            pass  # the workload stopped reading; what it did not read is not its input
        finally:
            os.close(self._write_fd)

    def stop(self) -> None:
        self._stopping.set()

    def join(self) -> None:
        self._thread.join()

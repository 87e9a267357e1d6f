"""Where a client daemon keeps each job's files, and the one place that writes them.

    <data_dir>/jobs/<job id>/input          the plaintext input, as the user handed it over
    <data_dir>/jobs/<job id>/output.key     the X25519 key the output is sealed to
    <data_dir>/jobs/<job id>/input.sealed   the input sealed to the chosen enclave
    <data_dir>/jobs/<job id>/output.sealed  the output as the provider served it
    <data_dir>/jobs/<job id>/output         the opened output (checked against the chain first)

Plaintext and keys are this user's only (0600 in a 0700 folder). The plaintext input is
deleted once the sealed input is on its way to the provider it was sealed for: nothing
else needs it, and the less plaintext lies around, the better.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from node.enclave.envelope import seal_job_input
from node.enclave.sealing import Direction, open_stream, public_key_bytes
from node.keys.files import replace_secret_file


class JobFiles:
    def __init__(self, data_dir: Path, job_id: str) -> None:
        self.folder = data_dir / "jobs" / job_id
        self.job_id = job_id

    def ensure(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.folder.chmod(0o700)

    @property
    def plaintext(self) -> Path:
        return self.folder / "input"

    @property
    def sealed_input(self) -> Path:
        return self.folder / "input.sealed"

    @property
    def sealed_output(self) -> Path:
        return self.folder / "output.sealed"

    @property
    def output(self) -> Path:
        return self.folder / "output"

    @property
    def _key_file(self) -> Path:
        return self.folder / "output.key"

    def store_plaintext(self, data: bytes) -> None:
        self.ensure()
        replace_secret_file(self.plaintext, data)

    def output_key(self) -> X25519PrivateKey:
        """The job's output key, made on first use and kept for the job's life."""
        self.ensure()
        if self._key_file.exists():
            return X25519PrivateKey.from_private_bytes(self._key_file.read_bytes())
        key = X25519PrivateKey.generate()
        raw = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        replace_secret_file(self._key_file, raw)
        return key

    def seal_for(self, enclave_hpke_key: bytes) -> tuple[bytes, int]:
        """Seal the plaintext (with the output key inside) to an enclave; (sha256, size)."""
        key = public_key_bytes(self.output_key())
        partial = self.sealed_input.with_name("input.sealed.partial")
        with self.plaintext.open("rb") as source, partial.open("wb") as sink:
            seal_job_input(enclave_hpke_key, bytes.fromhex(self.job_id[2:]), key, source, sink)
            sink.flush()
            os.fsync(sink.fileno())
        os.replace(partial, self.sealed_input)
        digest = hashlib.sha256()
        with self.sealed_input.open("rb") as handle:
            while block := handle.read(1 << 20):
                digest.update(block)
        return digest.digest(), self.sealed_input.stat().st_size

    def forget_plaintext(self) -> None:
        self.plaintext.unlink(missing_ok=True)

    def open_output(self, sealed: bytes) -> tuple[str, int]:
        """Keep the sealed output as served, open it with the job's output key into `output`;
        (sha256 hex, size) of the opened output. SealingError when it does not open: then
        no `output` is left behind."""
        self.ensure()
        replace_secret_file(self.sealed_output, sealed)
        key = self.output_key()
        digest = hashlib.sha256()
        size = 0
        partial = self.output.with_name("output.partial")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "wb") as sink, self.sealed_output.open("rb") as source:
                job_id = bytes.fromhex(self.job_id[2:])
                for record in open_stream(key, job_id, Direction.OUTPUT, source):
                    digest.update(record)
                    size += len(record)
                    sink.write(record)
                sink.flush()
                os.fsync(sink.fileno())
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        os.replace(partial, self.output)
        return digest.hexdigest(), size

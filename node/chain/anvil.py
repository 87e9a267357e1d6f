"""Start a local anvil devnet on a free loopback port (tests, demo, benchmarks)."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from node.chain.errors import RpcUnavailable

_REPO_ROOT = Path(__file__).resolve().parents[2]
_NPM_ANVIL = _REPO_ROOT / "node_modules" / "@foundry-rs" / "anvil-linux-amd64" / "bin" / "anvil"

# anvil's default mnemonic ("test test ... junk") derives these keys; they hold devnet ETH only.
DEV_PRIVATE_KEYS = (
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
    "0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a",
    "0x8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba",
    "0x92db14e403b83dfe3df233f83dfa3a0d7096f21ca9b0d6d6b8d88b2b4ec1564e",
    "0x4bbbf85ce3377467afe5d46f804f221813b2bb87f24d81f60f1fcdbf7cbf4356",
    "0xdbda1821b80551c9d65939329250298aa3472ba22feea921c0cf5d620ea67b97",
    "0x2a871d0798f97d79848a013d4936a73bf4cc922c825d33c1cf7073dff6d409c6",
)


def anvil_binary() -> str:
    if _NPM_ANVIL.exists():
        return str(_NPM_ANVIL)
    found = shutil.which("anvil")
    if found is None:
        raise RpcUnavailable("anvil not found: run `make deps` (npm ci installs it)")
    return found


def anvil_command(*, chain_id: int = 31337, block_time: float | None = None) -> list[str]:
    """anvil on 127.0.0.1, any free port, `DEV_PRIVATE_KEYS` funded.

    With `block_time`, blocks also come at that interval besides one per transaction
    (mixed mining): chain time moves and confirmations accrue while nobody sends anything.
    """
    args = [anvil_binary(), "--host", "127.0.0.1", "--port", "0", "--chain-id", str(chain_id)]
    args += ["--accounts", str(len(DEV_PRIVATE_KEYS))]
    if block_time is not None:
        args += ["--block-time", f"{block_time:g}", "--mixed-mining"]
    return args


def listening_url(line: str) -> str | None:
    """The RPC URL from anvil's "Listening on HOST:PORT" line; None for any other line."""
    if not line.startswith("Listening on "):
        return None
    return "http://" + line.split("Listening on ", 1)[1].strip()


@dataclass(frozen=True)
class AnvilNode:
    rpc_url: str
    chain_id: int
    process: subprocess.Popen[str]


@contextmanager
def run_anvil(*, chain_id: int = 31337, timeout: float = 30.0) -> Iterator[AnvilNode]:
    """Run anvil on 127.0.0.1 with an OS-chosen port; yields once it listens."""
    args = anvil_command(chain_id=chain_id)
    env = {**os.environ, "NO_COLOR": "1"}
    proc = subprocess.Popen(
        args,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        url = _wait_for_listening(proc, timeout)
        yield AnvilNode(rpc_url=url, chain_id=chain_id, process=proc)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_for_listening(proc: subprocess.Popen[str], timeout: float) -> str:
    """Read anvil's output until it prints the address it listens on."""
    assert proc.stdout is not None
    found: list[str] = []
    seen: list[str] = []
    ready = threading.Event()

    def reader() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if not ready.is_set():
                seen.append(line)
                url = listening_url(line)
                if url is not None:
                    found.append(url)
                    ready.set()
        ready.set()  # process ended

    threading.Thread(target=reader, daemon=True).start()
    if not ready.wait(timeout) or not found:
        proc.kill()
        tail = "".join(seen[-20:])
        raise RpcUnavailable(f"anvil did not start within {timeout:.0f}s:\n{tail}")
    return found[0]

"""Runs one attack against a target node process while honest peers keep using it.

The target (target_node.py) and the attacker (adversary.py) are separate processes; this
process hosts the honest peers: one that stays connected (evidence fetch + 256 KiB
upload) and, at every probe, a fresh identity that dials in and fetches evidence. RSS is
the target's own, read from /proc.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from node.p2p.config import GossipParams, P2PConfig
from node.p2p.errors import P2PError
from node.p2p.evidence_protocol import fetch_evidence
from node.p2p.identity import Multiaddr, NodeIdentity, PeerAddress
from node.p2p.node import P2PNode
from node.p2p.transfer import upload_input

HERE = Path(__file__).resolve().parent
# To watch a test fail on older code, point this at that tree's copy of target_node.py.
TARGET_SCRIPT = Path(os.environ.get("P2P_ATTACK_TARGET", HERE / "target_node.py"))
KIB = 1024
PROBE_TIMEOUT_S = 8.0


class Target:
    """A provider node in its own process."""

    def __init__(self, directory: Path, overrides: dict[str, Any] | None = None) -> None:
        self._log = directory / "target.log"
        store = directory / "inputs"
        self.process = subprocess.Popen(
            [sys.executable, str(TARGET_SCRIPT), str(store), json.dumps(overrides or {})],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log.open("w"),
            text=True,
        )
        ready = self._readline(30.0).split()
        if len(ready) != 3 or ready[0] != "READY":
            raise AssertionError(f"target did not start: {ready}\n{self.log_tail()}")
        self.address = PeerAddress.parse(ready[1])
        self.topic = ready[2]

    def _readline(self, timeout_s: float) -> str:
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], timeout_s)
        if not ready:
            raise AssertionError(f"target did not answer in {timeout_s} s\n{self.log_tail()}")
        return self.process.stdout.readline()

    def alive(self) -> bool:
        return self.process.poll() is None

    def responsive(self) -> bool:
        """Alive and answering: a node whose trio loop ended cannot answer `stats`."""
        try:
            return self.alive() and "rss_mib" in self.stats()
        except (AssertionError, OSError, ValueError):
            return False

    def rss_mib(self) -> float:
        try:
            status = Path(f"/proc/{self.process.pid}/status").read_text()
        except OSError:
            return 0.0
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def stats(self) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write("stats\n")
        self.process.stdin.flush()
        stats: dict[str, Any] = json.loads(self._readline(10.0))
        return stats

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self._log.read_text().splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.alive():
            assert self.process.stdin is not None
            self.process.stdin.close()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@dataclass
class Outcome:
    attacker: dict[str, Any]
    baseline_mib: float
    peak_mib: float = 0.0
    after_mib: float = 0.0
    # (served, tried) for the connected honest peer and for fresh identities
    existing_during: list[bool] = field(default_factory=list)
    fresh_during: list[bool] = field(default_factory=list)
    existing_after: list[bool] = field(default_factory=list)
    fresh_after: list[bool] = field(default_factory=list)
    alive: bool = True

    def summary(self) -> str:
        return (
            f"attacker={self.attacker} rss baseline={self.baseline_mib:.0f} "
            f"peak={self.peak_mib:.0f} after={self.after_mib:.0f} MiB; "
            f"served during: existing {sum(self.existing_during)}/{len(self.existing_during)}, "
            f"fresh {sum(self.fresh_during)}/{len(self.fresh_during)}; after: existing "
            f"{sum(self.existing_after)}/{len(self.existing_after)}, fresh "
            f"{sum(self.fresh_after)}/{len(self.fresh_after)}; alive={self.alive}"
        )

    def assert_survived(self, target: Target, *, rss_growth_mib: float) -> None:
        """The node is up, stayed within the stated RSS growth during and after, and
        honest peers (connected and newly dialling) were served during and after."""
        detail = f"{self.summary()}\n{target.log_tail()}"
        assert self.alive and target.alive(), f"the target died\n{detail}"
        assert self.peak_mib - self.baseline_mib < rss_growth_mib, f"RSS during\n{detail}"
        assert self.after_mib - self.baseline_mib < rss_growth_mib, f"RSS after\n{detail}"
        assert any(self.existing_during), f"connected peer not served during\n{detail}"
        assert any(self.fresh_during), f"new peer not served during\n{detail}"
        assert all(self.existing_after), f"connected peer not served after\n{detail}"
        assert all(self.fresh_after), f"new peer not served after\n{detail}"


def client_config() -> P2PConfig:
    return P2PConfig(
        chain_id=31337,
        market_address="0x5FbDB2315678afecb367f032d93F642f64180aa3",
        listen_addrs=(Multiaddr("/ip4/127.0.0.1/tcp/0"),),
        dial_timeout_s=5.0,
        gossip=GossipParams(republish_interval_s=30.0),
    )


async def probe_connected(node: P2PNode, address: PeerAddress) -> bool:
    """Evidence and a 256 KiB upload, reconnecting first if the connection was lost."""
    try:
        with trio.fail_after(PROBE_TIMEOUT_S):
            if not node.host.is_connected(address.peer_id):
                await node.host.connect(address)
            bundle = await fetch_evidence(node.host, address.peer_id, timeout_s=5.0)
            await upload_input(
                node.host, address.peer_id, os.urandom(32), os.urandom(256 * KIB), timeout_s=5.0
            )
        return bundle.tee_kind == 5
    except (P2PError, trio.TooSlowError):
        return False


async def probe_fresh(address: PeerAddress) -> bool:
    """A new identity dials in and fetches evidence."""
    node = P2PNode(NodeIdentity.generate(), client_config())
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(node.run)
            try:
                with trio.fail_after(PROBE_TIMEOUT_S):
                    await node.host.connect(address)
                    bundle = await fetch_evidence(node.host, address.peer_id, timeout_s=5.0)
                return bundle.tee_kind == 5
            except (P2PError, trio.TooSlowError):
                return False
            finally:
                # Cancelling the node would leave its socket open until collected.
                await node.host.disconnect(address.peer_id)
                nursery.cancel_scope.cancel()
    except (P2PError, OSError):
        return False


async def assert_serves(honest: P2PNode, target: Target) -> None:
    """The connected honest peer and a fresh identity are both served."""
    assert await probe_connected(honest, target.address), target.log_tail()
    assert await probe_fresh(target.address), target.log_tail()


def serves(target: Target) -> None:
    """`assert_serves` with a new honest peer, from synchronous test code."""

    async def scenario() -> None:
        honest = P2PNode(NodeIdentity.generate(), client_config())
        async with trio.open_nursery() as nursery:
            await nursery.start(honest.run)
            await assert_serves(honest, target)
            nursery.cancel_scope.cancel()

    trio.run(scenario)


def run_attack(
    target: Target,
    attack: str,
    *options: str,
    timeout_s: float = 60.0,
    settle_s: float = 1.0,
) -> Outcome:
    async def scenario() -> Outcome:
        honest = P2PNode(NodeIdentity.generate(), client_config())
        async with trio.open_nursery() as nursery:
            await nursery.start(honest.run)
            await assert_serves(honest, target)
            outcome = Outcome({}, target.rss_mib())
            outcome.peak_mib = outcome.baseline_mib
            command = [
                sys.executable,
                str(HERE / "adversary.py"),
                attack,
                str(target.address),
                target.topic,
                *options,
            ]
            with trio.fail_after(timeout_s):
                process = await trio.lowlevel.open_process(command, stdout=subprocess.PIPE)
                started, finished = trio.Event(), trio.Event()
                output = bytearray()

                async def collect() -> None:
                    assert process.stdout is not None
                    async for chunk in process.stdout:
                        output.extend(chunk)
                        if b"ATTACKING" in output:
                            started.set()
                    await process.wait()
                    started.set()
                    finished.set()

                async def sample_rss() -> None:
                    while not finished.is_set():
                        outcome.peak_mib = max(outcome.peak_mib, target.rss_mib())
                        await trio.sleep(0.1)

                async with trio.open_nursery() as attack_nursery:
                    attack_nursery.start_soon(collect)
                    attack_nursery.start_soon(sample_rss)
                    await started.wait()
                    while not finished.is_set():
                        outcome.existing_during.append(
                            await probe_connected(honest, target.address)
                        )
                        outcome.fresh_during.append(await probe_fresh(target.address))
                        with trio.move_on_after(0.5):
                            await finished.wait()
            lines = output.decode().strip().splitlines()
            outcome.attacker = json.loads(lines[-1]) if lines else {"error": "no output"}
            await trio.sleep(settle_s)
            outcome.alive = target.alive()
            for _ in range(2):
                outcome.existing_after.append(await probe_connected(honest, target.address))
                outcome.fresh_after.append(await probe_fresh(target.address))
            outcome.after_mib = target.rss_mib()
            nursery.cancel_scope.cancel()
        return outcome

    return trio.run(scenario)

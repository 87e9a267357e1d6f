"""Acceptance against js-libp2p 2.9 (tests/interop/js, pinned in its package-lock.json):
connect both ways, ping and identify both ways, GossipSub both ways, a 10 MiB stream both ways.

Skipped when Node.js or `npm ci` in tests/interop/js has not been run.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import trio

from node.p2p.framing import FramedStream
from node.p2p.identity import PeerAddress, PeerId, libp2p_id

JS_DIR = Path(__file__).resolve().parents[2] / "interop" / "js"
TOPIC = "capa-interop"
BLOB = "/capa-interop/blob/1"
TEN_MIB = 10 * 1024 * 1024


@pytest.fixture(autouse=True)
def _js_libp2p_installed() -> None:
    """`make test` installs js-libp2p; a machine without it fails here, it never skips."""
    if shutil.which("node") is None or not (JS_DIR / "node_modules").is_dir():
        pytest.fail(
            "interop needs Node.js and `npm ci` in tests/interop/js (`make deps` does both)",
            pytrace=False,
        )


class JsPeer:
    def __init__(self, process: trio.Process) -> None:
        self._process = process
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []

    async def event(self, kind: str, timeout_s: float = 45.0) -> dict[str, Any]:
        with trio.fail_after(timeout_s):
            while True:
                for i, event in enumerate(self.events):
                    if event["event"] == kind:
                        return self.events.pop(i)
                await self._read_line()

    async def call(self, cmd: str, **args: Any) -> dict[str, Any]:
        self._next_id += 1
        request = {"id": self._next_id, "cmd": cmd, **args}
        assert self._process.stdin is not None
        await self._process.stdin.send_all(json.dumps(request).encode() + b"\n")
        reply = await self.event("reply", 30.0)
        assert reply["ok"], reply
        return reply

    async def _read_line(self) -> None:
        assert self._process.stdout is not None
        while b"\n" not in self._buffer:
            data = await self._process.stdout.receive_some(65536)
            if not data:
                raise RuntimeError("js peer exited")
            self._buffer += data
        line, self._buffer = self._buffer.split(b"\n", 1)
        self.events.append(json.loads(line))


async def blob_handler(peer: PeerId, stream: FramedStream) -> None:
    raw = stream._stream
    digest, size = hashlib.sha256(), 0
    while True:
        try:
            data = await raw.read(1 << 20)
        except Exception:
            break
        if not data:
            break
        digest.update(data)
        size += len(data)
    assert size == TEN_MIB
    await raw.write(digest.digest())


def test_interop_with_js_libp2p(kit: Any) -> None:
    async def scenario() -> None:
        node = kit.node()
        node.host.set_stream_handler(BLOB, blob_handler, deadline_s=60.0)
        process = await trio.lowlevel.open_process(
            ["node", "--import", "./polyfill.mjs", "peer.mjs", TOPIC],
            cwd=JS_DIR,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        try:
            async with kit.running(node) as nursery:
                await exercise(kit, node, JsPeer(process))
                nursery.cancel_scope.cancel()
        finally:
            process.kill()
            with trio.move_on_after(5):
                await process.wait()

    trio.run(scenario)


async def exercise(kit: Any, node: Any, js: JsPeer) -> None:
    ready = await js.event("ready")
    js_address = PeerAddress.parse(ready["addrs"][0])
    py_address = str(kit.address_of(node))
    pubsub = node.gossip._pubsub
    subscription = await pubsub.subscribe(TOPIC)

    # JS dials Python over a fresh connection; then Python dials JS over another.
    await js.call("dial", addr=py_address)
    assert await node.host.ping(js_address.peer_id) < 1.0
    await node.host.disconnect(js_address.peer_id)
    assert not node.host.is_connected(js_address.peer_id)
    await node.host.connect(js_address)
    assert (await js.call("ping", addr=py_address))["rtt"] >= 0
    protocols = (await js.call("protocols", peer=str(node.peer_id)))["protocols"]
    assert "/ipfs/ping/1.0.0" in protocols and "/meshsub/1.1.0" in protocols
    with trio.fail_after(30):
        while "/ipfs/id/1.0.0" not in node.host.protocols_of(js_address.peer_id):
            await node.host.ping(js_address.peer_id)

    # GossipSub both ways.
    await pubsub.wait_for_subscription(libp2p_id(js_address.peer_id), TOPIC, 30.0)
    await js.event("subscription")
    await pubsub.publish(TOPIC, b"from python")
    assert bytes.fromhex((await js.event("message"))["data"]) == b"from python"
    await js.call("publish", data=b"from js".hex())
    with trio.fail_after(30):
        message = await subscription.get()
        while message.from_id == node.host.libp2p.get_id().to_bytes():  # our own publish
            message = await subscription.get()
    assert message.data == b"from js"

    # 10 MiB each way over a custom protocol.
    reply = await js.call("send", addr=py_address, size=TEN_MIB)
    assert reply["reply"] == reply["sent_sha256"]
    payload = bytes(range(256)) * (TEN_MIB // 256)
    stream = await node.host.open_stream(js_address.peer_id, BLOB, 10.0)
    raw = stream._stream
    for i in range(0, TEN_MIB, 1 << 20):
        await raw.write(payload[i : i + (1 << 20)])
    await raw.close()
    with trio.fail_after(60):
        answer = await raw.read(32)
    assert answer == hashlib.sha256(payload).digest()
    received = await js.event("blob_received")
    assert received["size"] == TEN_MIB

"""P2P bench: offer propagation across N node processes, and bulk transfer throughput.

    .venv/bin/python bench/p2p/run.py                      # N = 10 and 30, 60 s windows
    .venv/bin/python bench/p2p/run.py --window 30 --sizes 10

Propagation: node 0 is the bootstrap (rendezvous point); every node is a provider that
publishes a new offer (a higher nonce) every --interval seconds at a random phase, and
records when each other provider's listing arrives. Delivery = received / (published x
(N - 1)); latency = arrival - the moment the provider handed the offer to its publisher.

Transfer: --megabytes of random bytes from this process to a server process on loopback,
over /capa/input/1, over a plain libp2p (Noise + Yamux) stream, and over raw TCP.

Prints a table, then (last line) one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import logging
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from eth_account import Account

from node.chain.typed_data import Offer
from node.p2p.config import GossipParams, P2PConfig, StreamLimits
from node.p2p.framing import FramedStream
from node.p2p.identity import Multiaddr, NodeIdentity, PeerAddress, PeerId
from node.p2p.node import P2PNode, ProviderServices
from node.p2p.offers import ListingDetails
from node.p2p.transfer import upload_input
from scheduler.models import TcbStatus

CHAIN_ID = 31337
MARKET = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
PLAIN_PROTOCOL = "/capa-bench/plain/1"
MIB = 1024 * 1024


def node_config(bootstrap: str | None, server: bool, interval: float) -> P2PConfig:
    return P2PConfig(
        chain_id=CHAIN_ID,
        market_address=MARKET,
        listen_addrs=(Multiaddr("/ip4/127.0.0.1/tcp/0"),),
        bootstrap_peers=(PeerAddress.parse(bootstrap),) if bootstrap else (),
        rendezvous_server=server,
        gossip=GossipParams(republish_interval_s=max(interval * 6, 60.0)),
        streams=StreamLimits(read_timeout_s=30.0),
    )


def make_offer(provider: str, nonce: int) -> Offer:
    return Offer(provider, 5, b"\x01" * 32, 10**9, 3600, int(time.time()) + 3600, bytes(32), nonce)


# ----------------------------------------------------------------- propagation: one node


async def run_node(args: argparse.Namespace) -> None:
    key = os.urandom(32)
    provider = Account.from_key(key).address
    node = P2PNode(
        NodeIdentity.generate(), node_config(args.bootstrap, args.index == 0, args.interval)
    )
    published: list[tuple[str, int, float]] = []
    received: list[tuple[str, int, float]] = []

    async def record() -> None:
        async for update in node.gossip.updates:
            listing = update.listing
            if listing.provider != provider.lower():
                received.append((listing.provider, listing.offer.nonce, update.received_at))

    async with trio.open_nursery() as nursery:
        await nursery.start(node.run)
        nursery.start_soon(record)
        print("READY", node.host.listen_addresses()[0], flush=True)
        line = await trio.to_thread.run_sync(sys.stdin.readline)
        start_at, window = (float(x) for x in line.split()[1:3])
        phase = random.uniform(0, args.interval)
        nonce = 0
        while True:
            at = start_at + phase + nonce * args.interval
            if at >= start_at + window:
                break
            await trio.sleep(max(0.0, at - time.time()))
            nonce += 1
            published.append((provider.lower(), nonce, time.time()))
            node.gossip.advertise(make_offer(provider, nonce), DETAILS, key)
        await trio.sleep(max(0.0, start_at + window + args.drain - time.time()))
        Path(args.out).write_text(
            json.dumps(
                {
                    "published": published,
                    "received": received,
                    "peers": len(node.host.connected_peers()),
                    "mesh": len(node.gossip.mesh_peers()),
                    "rejected": node.gossip.rejected,
                }
            )
        )
        nursery.cancel_scope.cancel()


DETAILS = ListingDetails(cpu_cores=8, memory_mib=16384, tcb_status=TcbStatus.UP_TO_DATE)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def propagation(n: int, window: float, interval: float, drain: float) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="capa-p2p-bench-"))
    procs: list[subprocess.Popen[str]] = []

    def spawn(index: int, bootstrap: str | None) -> subprocess.Popen[str]:
        cmd = [
            sys.executable,
            __file__,
            "--role",
            "node",
            "--index",
            str(index),
            "--interval",
            str(interval),
            "--drain",
            str(drain),
            "--out",
            str(tmp / f"node{index}.json"),
        ]
        if bootstrap:
            cmd += ["--bootstrap", bootstrap]
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        procs.append(proc)
        return proc

    def ready(proc: subprocess.Popen[str]) -> str:
        assert proc.stdout is not None
        line = proc.stdout.readline().split()
        if not line or line[0] != "READY":
            raise RuntimeError(f"a node failed to start: {line}")
        return line[1]

    try:
        boot = ready(spawn(0, None))
        for i in range(1, n):
            ready(spawn(i, boot))
        # Let GossipSub heartbeats graft the meshes before the clock starts.
        time.sleep(3.0)
        start_at = time.time() + 1.0
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write(f"GO {start_at} {window}\n")
            proc.stdin.flush()
        for proc in procs:
            proc.wait(timeout=window + drain + 60)
        results = [json.loads((tmp / f"node{i}.json").read_text()) for i in range(n)]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    sent = {(p, k): t for r in results for p, k, t in r["published"]}
    latencies = []
    for r in results:
        for p, k, t in r["received"]:
            if (p, k) in sent:
                latencies.append(t - sent[(p, k)])
    expected = len(sent) * (n - 1)
    return {
        "nodes": n,
        "published": len(sent),
        "expected_deliveries": expected,
        "delivered": len(latencies),
        "delivery_ratio": len(latencies) / expected if expected else 0.0,
        "p50_s": percentile(latencies, 0.5),
        "p99_s": percentile(latencies, 0.99),
        "max_s": max(latencies) if latencies else float("nan"),
        "mean_peers": sum(r["peers"] for r in results) / n,
        "mean_mesh": sum(r["mesh"] for r in results) / n,
    }


# ---------------------------------------------------------------------- transfer


class HashingStore:
    """Keeps only a running SHA-256, so the bench measures the protocol, not storage.

    Jobs whose id starts with UNCHECKED skip hashing and report the announced hash: that
    row isolates what the end-to-end hash check itself costs.
    """

    UNCHECKED = b"unchecked"

    async def begin(self, job_id: bytes, peer: PeerId, size: int, sha256: bytes) -> Any:
        return _HashingUpload(job_id.startswith(self.UNCHECKED), sha256)

    async def sealed_input(self, job_id: bytes) -> None:
        return None

    async def release(self, job_id: bytes) -> None:
        pass


class _HashingUpload:
    offset = 0

    def __init__(self, unchecked: bool, announced: bytes) -> None:
        self._unchecked = unchecked
        self._announced = announced
        self._running = hashlib.sha256()

    async def append(self, data: bytes) -> None:
        if not self._unchecked:
            # hashlib releases the GIL: hashing overlaps with reading the next chunks.
            await trio.to_thread.run_sync(self._running.update, data)

    async def finish(self) -> bool:
        return self._unchecked or self._running.digest() == self._announced

    async def close(self) -> None:
        pass


class NoEvidence:
    async def current_evidence(self, enclave_key: str | None = None) -> None:
        return None

    async def quote(self, *args: Any) -> Any:
        raise NotImplementedError

    async def result(self, *args: Any) -> None:
        return None


async def run_transfer_server(args: argparse.Namespace) -> None:
    none = NoEvidence()
    node = P2PNode(
        NodeIdentity.generate(),
        node_config(None, False, 10.0),
        ProviderServices(none, none, HashingStore(), none),
    )

    async def plain(peer: PeerId, stream: FramedStream) -> None:
        raw = stream._stream
        total = 0
        while True:
            try:
                data = await raw.read(MIB)
            except Exception:
                break
            if not data:
                break
            total += len(data)
        await raw.write(str(total).encode())

    node.host.set_stream_handler(PLAIN_PROTOCOL, plain, deadline_s=None)

    async def tcp_handler(conn: trio.SocketStream) -> None:
        total = 0
        while data := await conn.receive_some(MIB):
            total += len(data)
        await conn.send_all(str(total).encode())
        await conn.aclose()

    async with trio.open_nursery() as nursery:
        await nursery.start(node.run)
        listeners = await nursery.start(
            functools.partial(trio.serve_tcp, tcp_handler, 0, host="127.0.0.1")
        )
        port = listeners[0].socket.getsockname()[1]
        print("READY", node.host.listen_addresses()[0], port, flush=True)
        await trio.to_thread.run_sync(sys.stdin.readline)
        nursery.cancel_scope.cancel()


async def transfer_client(server: str, tcp_port: int, size: int) -> dict[str, float]:
    data = os.urandom(size)
    # The client already holds this hash: its JobRequest commits to it.
    digest = hashlib.sha256(data).digest()
    node = P2PNode(NodeIdentity.generate(), node_config(None, False, 10.0))
    address = PeerAddress.parse(server)
    out: dict[str, float] = {}
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run)
        await node.host.connect(address)
        for round_ in range(2):  # the first round warms up; the second is reported
            start = time.perf_counter()
            stream = await node.host.open_stream(address.peer_id, PLAIN_PROTOCOL, 10.0)
            raw = stream._stream
            view = memoryview(data)
            for i in range(0, size, MIB):
                await raw.write(bytes(view[i : i + MIB]))
            await raw.close()
            assert int(await raw.read(64)) == size
            out["plain_libp2p_s"] = time.perf_counter() - start

            start = time.perf_counter()
            await upload_input(
                node.host, address.peer_id, os.urandom(32), data, sha256=digest, timeout_s=30.0
            )
            out["input_protocol_s"] = time.perf_counter() - start

            start = time.perf_counter()
            unchecked = HashingStore.UNCHECKED + os.urandom(32 - len(HashingStore.UNCHECKED))
            await upload_input(
                node.host, address.peer_id, unchecked, data, sha256=digest, timeout_s=30.0
            )
            out["input_protocol_unhashed_s"] = time.perf_counter() - start

            start = time.perf_counter()
            conn = await trio.open_tcp_stream("127.0.0.1", tcp_port)
            for i in range(0, size, MIB):
                await conn.send_all(view[i : i + MIB])
            await conn.send_eof()
            assert int(await conn.receive_some(64)) == size
            await conn.aclose()
            out["raw_tcp_s"] = time.perf_counter() - start
            del round_
        nursery.cancel_scope.cancel()
    return out


def transfer(megabytes: int) -> dict[str, float]:
    size = megabytes * 1000 * 1000
    proc = subprocess.Popen(
        [sys.executable, __file__, "--role", "transfer-server"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdin is not None
        _, server, port = proc.stdout.readline().split()
        times = trio.run(transfer_client, server, int(port), size)
        proc.stdin.write("STOP\n")
        proc.stdin.flush()
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    result: dict[str, float] = {"megabytes": megabytes}
    for name in ("input_protocol", "input_protocol_unhashed", "plain_libp2p", "raw_tcp"):
        result[f"{name}_MBps"] = size / 1e6 / times[f"{name}_s"]
    result["input_vs_plain"] = result["input_protocol_MBps"] / result["plain_libp2p_MBps"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--role", default="bench", choices=["bench", "node", "transfer-server"])
    parser.add_argument("--sizes", default="10,30", help="network sizes N, comma separated")
    parser.add_argument("--window", type=float, default=60.0, help="publishing window, seconds")
    parser.add_argument(
        "--interval", type=float, default=10.0, help="seconds between offers per provider"
    )
    parser.add_argument("--drain", type=float, default=5.0, help="seconds to wait after the window")
    parser.add_argument("--megabytes", type=int, default=100)
    parser.add_argument("--index", type=int, default=0)
    parser.add_argument("--bootstrap")
    parser.add_argument("--out")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    if args.role == "node":
        trio.run(run_node, args)
        return
    if args.role == "transfer-server":
        trio.run(run_transfer_server, args)
        return

    figures: dict[str, Any] = {
        "propagation": [],
        "interval_s": args.interval,
        "window_s": args.window,
    }
    print(
        f"offer propagation: one offer per provider every {args.interval:g} s, window {args.window:g} s"
    )
    print(
        f"{'N':>4} {'published':>9} {'delivered':>11} {'ratio':>7} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'peers':>6} {'mesh':>5}"
    )
    for n in (int(x) for x in args.sizes.split(",")):
        r = propagation(n, args.window, args.interval, args.drain)
        figures["propagation"].append(r)
        print(
            f"{n:>4} {r['published']:>9} {r['delivered']:>5}/{r['expected_deliveries']:<5} "
            f"{r['delivery_ratio']:>7.2%} {r['p50_s'] * 1000:>8.1f} {r['p99_s'] * 1000:>8.1f} "
            f"{r['max_s'] * 1000:>8.1f} {r['mean_peers']:>6.1f} {r['mean_mesh']:>5.1f}"
        )
    t = transfer(args.megabytes)
    figures["transfer"] = t
    print(f"\ntransfer of {args.megabytes} MB on loopback (second of two rounds)")
    print(
        f"  /capa/input/1        {t['input_protocol_MBps']:8.1f} MB/s  ({t['input_vs_plain']:.2f}x plain)"
    )
    print(
        f"  /capa/input/1, provider skips the SHA-256 check {t['input_protocol_unhashed_MBps']:8.1f} MB/s"
    )
    print(f"  plain libp2p stream  {t['plain_libp2p_MBps']:8.1f} MB/s")
    print(f"  raw TCP              {t['raw_tcp_MBps']:8.1f} MB/s")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()

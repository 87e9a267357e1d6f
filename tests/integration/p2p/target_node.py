"""The node under attack: a provider P2PNode in its own process, built as the p2p tests
build one, so that its RSS is its own and a crash is a dead process.

    python target_node.py STORE_DIR [CONFIG_JSON]

Prints `READY <address>` once listening; then each `stats` line on stdin is answered with
one JSON line (RSS, penalties, refused connections); EOF on stdin stops it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
from pathlib import Path
from typing import Any

import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from node.p2p import config as p2p_config
from node.p2p.errors import RemoteRefused
from node.p2p.evidence_protocol import EvidenceBundle
from node.p2p.identity import Multiaddr, NodeIdentity
from node.p2p.node import P2PNode, ProviderServices

CHAIN_ID = 31337
MARKET = "0x5FbDB2315678afecb367f032d93F642f64180aa3"


class Services:
    async def current_evidence(self, enclave_key: str | None = None) -> EvidenceBundle:
        return EvidenceBundle(5, b'{"format":"capacloud-sim-evidence"}', "sim://none", 1700000000)

    async def quote(self, *args: Any) -> Any:
        raise RemoteRefused("busy")

    async def result(self, *args: Any) -> None:
        return None


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def build_config(overrides: dict[str, Any]) -> Any:
    sections = {
        "streams": p2p_config.StreamLimits,
        "admission": getattr(p2p_config, "AdmissionLimits", None),
        "peer_limits": getattr(p2p_config, "PeerLimits", None),
        "penalties": p2p_config.PenaltyPolicy,
    }
    values: dict[str, Any] = {}
    for key, value in overrides.items():
        section = sections.get(key)
        if section is not None:
            values[key] = section(**value)
        else:
            values[key] = value
    base = p2p_config.P2PConfig(
        chain_id=CHAIN_ID,
        market_address=MARKET,
        listen_addrs=(Multiaddr("/ip4/127.0.0.1/tcp/0"),),
        dial_timeout_s=5.0,
    )
    return dataclasses.replace(base, **values)


def input_store(directory: Path) -> Any:
    try:
        from node.p2p.input_store import FileInputStore
    except ImportError:  # the code before the file-backed store (to show a test fails)
        from node.p2p.transfer import MemoryInputStore  # type: ignore[attr-defined]

        return MemoryInputStore()
    return FileInputStore(directory)


def stats(node: P2PNode) -> dict[str, Any]:
    penalties = node.penalties
    accounts = getattr(penalties, "_accounts", {})
    gater = getattr(node.host, "gater", None)
    return {
        "rss_mib": round(rss_mib(), 1),
        "connected": len(node.host.connected_peers()),
        "points": {str(p): round(penalties.points(p), 1) for p in accounts},
        "banned": [str(p) for p in accounts if penalties.is_banned(p)],
        "refused": dict(getattr(gater, "refused", {})),
        "inbound": getattr(gater, "established_inbound", None),
    }


async def main() -> None:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    directory = Path(sys.argv[1])
    overrides = json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}
    services = Services()
    node = P2PNode(
        NodeIdentity.generate(),
        build_config(overrides),
        ProviderServices(services, services, input_store(directory), services),  # type: ignore[arg-type]
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run)
        print("READY", node.host.listen_addresses()[0], node.config.offer_topic, flush=True)
        while True:
            line = await trio.to_thread.run_sync(sys.stdin.readline, abandon_on_cancel=True)
            if not line:
                break
            print(json.dumps(stats(node)), flush=True)
        nursery.cancel_scope.cancel()


if __name__ == "__main__":
    trio.run(main)

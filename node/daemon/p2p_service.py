"""The p2p node in the daemon: its settings from `[p2p]`, its key from the identity file,
run under `P2PSupervisor`, and a `PeerSeen` state change for each peer that stays
connected (what /v1/peers lists)."""

from __future__ import annotations

import logging

from node.config.model import NodeConfig
from node.daemon.errors import DaemonError
from node.daemon.state_service import StateService
from node.keys.identity import NodeIdentity
from node.p2p.approve_protocol import ApprovalResponder
from node.p2p.config import AdmissionLimits, P2PConfig, PeerLimits, PenaltyPolicy
from node.p2p.errors import ConfigError
from node.p2p.identity import Multiaddr, PeerAddress
from node.p2p.identity import NodeIdentity as P2PIdentity
from node.p2p.node import ProviderServices
from node.p2p.supervisor import P2PSupervisor, SeenPeer, SupervisorPolicy
from node.state.changes import PeerSeen

log = logging.getLogger(__name__)

PEER_STORE_FILE = "peers.json"


def p2p_config_for(config: NodeConfig) -> P2PConfig:
    section = config.p2p
    market = config.require_market()
    try:
        return P2PConfig(
            chain_id=config.chain.chain_id,
            market_address=market,
            listen_addrs=tuple(Multiaddr(a) for a in section.listen_addrs),
            bootstrap_peers=tuple(PeerAddress.parse(p) for p in section.bootstrap_peers),
            rendezvous_server=section.rendezvous_server,
            target_connections=section.target_connections,
            max_connections=section.max_connections,
            peer_store_path=config.node.data_dir / PEER_STORE_FILE,
            admission=AdmissionLimits(
                max_pending_handshakes=section.max_pending_handshakes,
                max_pending_handshakes_per_ip=min(8, section.max_pending_handshakes),
                max_inbound_connections_per_ip=section.max_connections_per_ip,
            ),
            peer_limits=PeerLimits(
                max_inbound_streams_per_peer=section.max_streams_per_peer,
                max_inbound_streams_per_conn=min(64, section.max_streams_per_peer),
            ),
            penalties=PenaltyPolicy(ban_duration_s=section.ban_duration),
        )
    except ConfigError as exc:
        raise DaemonError(f"[p2p] in {config.source}: {exc}") from exc


def p2p_supervisor_for(
    config: NodeConfig,
    identity: NodeIdentity,
    service: StateService,
    policy: SupervisorPolicy | None = None,
    provider: ProviderServices | None = None,
    approvals: ApprovalResponder | None = None,
) -> P2PSupervisor | None:
    """None when the config turns p2p off or names no market to scope it to."""
    if not config.p2p.enabled:
        log.info("p2p is off (p2p.enabled = false)")
        return None
    if config.chain.market is None:
        log.info("p2p is off: no chain.market to scope offers and topics to")
        return None

    async def record(seen: SeenPeer) -> None:
        addrs = ",".join(str(a.addr) for a in seen.addresses)
        await service.submit([PeerSeen(seen.peer_id, addrs, seen.seen_at)])

    return P2PSupervisor(
        P2PIdentity.from_private_key(identity.seed),
        p2p_config_for(config),
        provider=provider,
        approvals=approvals,
        on_peer_seen=record,
        policy=policy,
    )

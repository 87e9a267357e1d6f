"""The verifier's components: effect handlers, producers of state changes, p2p services."""

from __future__ import annotations

from node.daemon.wiring import NodeContext, RoleParts
from node.state import changes as sc
from node.state import effects as fx

# What this role's components handle and produce (held to the daemon by tests/unit/daemon).
HANDLED_EFFECTS: frozenset[type[fx.Effect]] = frozenset()
PRODUCED_CHANGES: frozenset[type[sc.StateChange]] = frozenset()


def build_verifier(ctx: NodeContext) -> RoleParts:
    return RoleParts()

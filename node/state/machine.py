"""The one entry point: route a state change to its role's handler.

Each role's table (`HANDLERS` in client.py, provider.py, verifier.py) lists every change
the role can receive, the shared ones included; a change outside its table is a wiring
error (`UnexpectedChange`), never silently dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from node.config.model import Role
from node.state import client, provider, verifier
from node.state.changes import StateChange
from node.state.errors import UnexpectedChange
from node.state.model import Identity, StateView, Step

Handler = Callable[[Identity, StateView, Any], Step]

HANDLERS_BY_ROLE: Mapping[Role, Mapping[type[StateChange], Handler]] = {
    Role.PROVIDER: provider.HANDLERS,
    Role.CLIENT: client.HANDLERS,
    Role.VERIFIER: verifier.HANDLERS,
}


def transition(me: Identity, view: StateView, change: StateChange) -> Step:
    """Pure: the same identity, state and change always give the same step."""
    handler = HANDLERS_BY_ROLE[me.role].get(type(change))
    if handler is None:
        raise UnexpectedChange(me.role.value, change)
    return handler(me, view, change)

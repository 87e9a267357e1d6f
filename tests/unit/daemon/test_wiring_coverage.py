"""Every effect has a production handler and every state change a production producer.

An effect nothing handles stays pending forever; a state change nothing produces is a
transition no one can reach. Both lists are checked against the code, not a registry the
code could forget to fill.
"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

from node.daemon import client_role, provider_role, verifier_role
from node.state import changes as sc
from node.state import effects as fx

NODE = Path(__file__).resolve().parents[3] / "node"

# Abstract bases: never constructed themselves.
BASES = {sc.StateChange, sc.ChainEvent, sc.CliAction, fx.Effect}

# Handled by the daemon for every role (node/daemon/daemon.py registers the sender).
COMMON_EFFECTS = {fx.SendTransaction}


def _subclasses(module: object, base: type) -> set[type]:
    return {
        c
        for _, c in inspect.getmembers(module, inspect.isclass)
        if issubclass(c, base) and c.__module__ == getattr(module, "__name__", "")
    } - BASES


def _constructed_outside_state() -> set[str]:
    """Names called as constructors anywhere in node/ except the state machine itself."""
    names: set[str] = set()
    for path in NODE.rglob("*.py"):
        if "state" in path.relative_to(NODE).parts[:1]:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                func = node.func
                if isinstance(func, ast.Name):
                    names.add(func.id)
                elif isinstance(func, ast.Attribute):
                    names.add(func.attr)
    return names


def test_every_effect_has_a_handler_in_some_role() -> None:
    handled = (
        COMMON_EFFECTS
        | provider_role.HANDLED_EFFECTS
        | verifier_role.HANDLED_EFFECTS
        | client_role.HANDLED_EFFECTS
    )
    missing = {c.__name__ for c in _subclasses(fx, fx.Effect)} - {c.__name__ for c in handled}
    assert not missing, f"effects no role handles: {sorted(missing)}"


def test_every_state_change_is_constructed_by_production_code() -> None:
    constructed = _constructed_outside_state()
    missing = {c.__name__ for c in _subclasses(sc, sc.StateChange)} - constructed
    assert not missing, f"state changes nothing in node/ produces: {sorted(missing)}"


def test_declared_producers_construct_what_they_declare() -> None:
    constructed = _constructed_outside_state()
    for role in (provider_role, verifier_role, client_role):
        absent = {c.__name__ for c in role.PRODUCED_CHANGES} - constructed
        assert not absent, f"{role.__name__} declares but never builds {sorted(absent)}"

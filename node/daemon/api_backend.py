"""What the API sees of the running daemon: status, projection tables, actions as changes."""

from __future__ import annotations

import json
import uuid
from typing import Any

from node import __version__
from node.api.errors import BadRequest
from node.chain.rpc import FailoverRpc
from node.chain.watcher import ChainWatcher
from node.daemon.state_service import StateService
from node.keys.identity import NodeIdentity
from node.state import changes as sc
from node.state.errors import InvalidValue
from node.state.values import to_address, to_job_id
from node.store.store import Store

# The least time a provider asks for when it takes a posted job and names none: enough for the
# input upload and a short job. acceptJob refuses a deadline closer than this, so an accept that
# waited long to be mined cannot leave the provider a job it has no time to finish.
DEFAULT_ACCEPT_MIN_DURATION_S = 600


class DaemonApiBackend:
    def __init__(
        self,
        service: StateService,
        store: Store,
        identity: NodeIdentity,
        rpc: FailoverRpc | None,
        watcher: ChainWatcher | None,
    ) -> None:
        self._service = service
        self._store = store
        self._identity = identity
        self._rpc = rpc
        self._watcher = watcher

    def status(self) -> dict[str, Any]:
        cursor = self._watcher.cursor if self._watcher else None
        return {
            "version": __version__,
            "role": self._service.me.role.value,
            "address": self._service.me.address,
            "peer_id": self._identity.peer_id,
            "state_seq": self._service.state.last_seq,
            "jobs": len(self._service.state.jobs),
            "effects_pending": len(self._service.state.pending),
            "chain": {
                "rpc_url": self._rpc.active_url if self._rpc else None,
                "confirmed_block": cursor.number if cursor else None,
            },
        }

    def rows(self, table: str, where: dict[str, str], limit: int) -> list[dict[str, Any]]:
        return self._store.query(table, where=where, limit=limit)

    async def act(self, action: dict[str, Any]) -> dict[str, Any]:
        change = self._to_change(action)
        outcome = await self._service.request(change)
        return {
            "origin": outcome.origin,
            "seq": outcome.seq,
            "duplicate": outcome.seq is None,
            "rejected": outcome.rejected,
        }

    def _to_change(self, action: dict[str, Any]) -> sc.StateChange:
        request_id = str(action.get("request_id") or uuid.uuid4())
        name = action["action"]
        try:
            match name:
                case "accept_job":
                    min_duration = int(action.get("min_duration", DEFAULT_ACCEPT_MIN_DURATION_S))
                    if min_duration < 0:
                        raise BadRequest("min_duration: expected a number of seconds >= 0")
                    return sc.AcceptJobRequested(
                        request_id,
                        to_job_id(action["job_id"]),
                        to_address(action["enclave_key"]),
                        min_duration,
                    )
                case "claim_timeout":
                    return sc.ClaimTimeoutRequested(request_id, to_job_id(action["job_id"]))
                case "cancel_job":
                    return sc.CancelJobRequested(request_id, to_job_id(action["job_id"]))
                case "withdraw":
                    amount = int(action["amount"])
                    if amount <= 0:
                        raise BadRequest("amount: expected a positive number of wei")
                    to = action.get("to") or self._service.me.address
                    return sc.WithdrawRequested(request_id, amount, to_address(to))
                case "match_job" | "post_job":
                    cls = sc.MatchJobRequested if name == "match_job" else sc.PostJobRequested
                    if not isinstance(action.get("args"), list):
                        raise BadRequest("args: expected the contract call's arguments as a list")
                    return cls(
                        request_id,
                        to_job_id(action["job_id"]),
                        json.dumps(action["args"]),
                        int(action.get("value", 0)),
                    )
        except KeyError as exc:
            raise BadRequest(f"{name}: missing {exc.args[0]}") from exc
        except (InvalidValue, ValueError, TypeError) as exc:
            raise BadRequest(f"{name}: {exc}") from exc
        raise BadRequest(f"unknown action {name!r}")

"""What the API sees of the running daemon: status, projection tables, actions as changes."""

from __future__ import annotations

import json
import uuid
from typing import Any

import trio
from eth_abi.exceptions import EncodingError

from node import __version__
from node.api.errors import InvalidAction, Unavailable
from node.api.models import (
    AcceptJob,
    Action,
    ActionOutcome,
    CancelJob,
    ChainPosition,
    ClaimTimeout,
    MatchJob,
    NodeStatus,
    PostJob,
    Withdraw,
)
from node.chain.errors import ChainError
from node.chain.rpc import FailoverRpc
from node.chain.sender import encode_market_call
from node.chain.typed_data import job_id_for
from node.chain.watcher import ChainWatcher
from node.config.model import Role
from node.daemon.state_service import StateService
from node.keys.identity import NodeIdentity
from node.state import changes as sc
from node.state.errors import InvalidValue
from node.state.values import to_address, to_job_id
from node.store.store import Store

REQUEST_TIMEOUT = 10.0  # seconds an action may wait for the state service to record it


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

    @property
    def role(self) -> Role:
        return self._service.me.role

    def status(self) -> NodeStatus:
        cursor = self._watcher.cursor if self._watcher else None
        return NodeStatus(
            version=__version__,
            role=self._service.me.role,
            address=self._service.me.address,
            peer_id=self._identity.peer_id,
            state_seq=self._service.state.last_seq,
            jobs=len(self._service.state.jobs),
            effects_pending=len(self._service.state.pending),
            chain=ChainPosition(
                rpc_url=self._rpc.active_url if self._rpc else None,
                confirmed_block=cursor.number if cursor else None,
            ),
        )

    def rows(self, table: str, where: dict[str, str], limit: int) -> list[dict[str, Any]]:
        return self._store.query(table, where=where, limit=limit)

    async def act(self, action: Action, *, job_id: str | None = None) -> ActionOutcome:
        change = self._to_change(action, job_id)
        try:
            outcome = await self._service.request(change, timeout=REQUEST_TIMEOUT)
        except trio.TooSlowError as exc:
            raise Unavailable(
                f"the node did not record the action within {REQUEST_TIMEOUT:.0f} s"
            ) from exc
        except trio.ClosedResourceError as exc:
            raise Unavailable("the node is stopping") from exc
        return ActionOutcome(
            origin=outcome.origin,
            seq=outcome.seq,
            duplicate=outcome.seq is None,
            rejected=outcome.rejected,
        )

    def _to_change(self, action: Action, job_id: str | None) -> sc.StateChange:
        request_id = action.request_id or str(uuid.uuid4())
        try:
            match action:
                case AcceptJob():
                    return sc.AcceptJobRequested(
                        request_id,
                        to_job_id(_required(job_id)),
                        to_address(action.enclave_key),
                        int(action.min_duration),
                    )
                case ClaimTimeout():
                    return sc.ClaimTimeoutRequested(request_id, to_job_id(_required(job_id)))
                case CancelJob():
                    return sc.CancelJobRequested(request_id, to_job_id(_required(job_id)))
                case Withdraw():
                    to = to_address(action.to) if action.to else self._service.me.address
                    return sc.WithdrawRequested(request_id, int(action.amount), to)
                case MatchJob() | PostJob():
                    return self._new_job(request_id, action)
        except InvalidValue as exc:
            raise InvalidAction(str(exc)) from exc
        raise InvalidAction(f"no such action: {type(action).__name__}")

    def _new_job(self, request_id: str, action: MatchJob | PostJob) -> sc.StateChange:
        request = action.request.to_request()
        job_id = to_job_id(job_id_for(self._service.me.address, request.nonce))
        args: list[object] = [_json_ready(request.as_abi_tuple())]
        if isinstance(action, MatchJob):
            args += [_json_ready(action.offer.to_offer().as_abi_tuple()), action.signature.lower()]
        function = "matchJob" if isinstance(action, MatchJob) else "postJob"
        encoded = json.dumps(args)
        try:
            # The sender encodes these again when it sends: refuse here what it could not.
            encode_market_call(function, encoded)
        except (ChainError, EncodingError, ValueError, TypeError, OverflowError) as exc:
            raise InvalidAction(f"{function}: arguments the market cannot take: {exc}") from exc
        if isinstance(action, MatchJob):
            return sc.MatchJobRequested(request_id, job_id, encoded, int(action.value))
        return sc.PostJobRequested(request_id, job_id, encoded, int(action.value))


def _required(job_id: str | None) -> str:
    if job_id is None:
        raise InvalidAction("this action needs a job id")
    return job_id


def _json_ready(value: object) -> object:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, tuple | list):
        return [_json_ready(v) for v in value]
    return value

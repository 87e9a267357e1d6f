"""What the API sees of the running daemon: status, projection tables, actions as changes."""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

from node import __version__
from node.api import paths
from node.api.errors import InvalidAction, NotFound, NotReady, Unavailable
from node.api.models import (
    AcceptJob,
    Action,
    ActionOutcome,
    CancelJob,
    ChainPosition,
    ClaimTimeout,
    EnclaveKeyView,
    EvidenceCheck,
    NodeStatus,
    ProviderStatus,
    StagedInput,
    SubmitJob,
    SubmittedJob,
    Withdraw,
    enclave_key_of,
)
from node.chain.rpc import FailoverRpc
from node.chain.typed_data import job_id_for
from node.chain.watcher import ChainWatcher
from node.config.model import Role
from node.daemon.job_files import JobFiles
from node.daemon.state_service import StateService
from node.keys.files import replace_secret_file
from node.keys.identity import NodeIdentity
from node.state import changes as sc
from node.state.errors import InvalidValue
from node.state.model import JobStatus, KeyStatus
from node.state.values import to_address, to_hash32, to_job_id
from node.store.store import Store
from proofs.claims import TeeKind

# Any TEE kind the market knows (bit i: TeeKind i); the client's policy still decides.
ANY_TEE_KIND = sum(1 << kind for kind in TeeKind)
REQUEST_TIMEOUT = 10.0  # seconds an action may wait for the state service to record it


class DaemonApiBackend:
    def __init__(
        self,
        service: StateService,
        store: Store,
        identity: NodeIdentity,
        rpc: FailoverRpc | None,
        watcher: ChainWatcher | None,
        *,
        data_dir: Path,
        max_input: int = 0,
        backend: str = "",
        sim_host: Callable[[], str | None] = lambda: None,
        evidence_of: Callable[[str], tuple[bool, int] | None] = lambda enclave_key: None,
    ) -> None:
        self._evidence_of = evidence_of
        self._backend = backend
        self._sim_host = sim_host
        self._data_dir = data_dir
        self._staging = data_dir / "staged"
        self._max_input = max_input
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
                head_time=(self._watcher.head_time or None) if self._watcher else None,
            ),
            provider=self._provider_status() if self.role is Role.PROVIDER else None,
        )

    def _provider_status(self) -> ProviderStatus:
        state = self._service.state
        keys = [
            EnclaveKeyView(
                enclave_key=key.enclave_key,
                workload=key.workload,
                tee_kind=key.tee_kind,
                measurement=key.measurement,
                status=key.status.value,
                expires_at=key.expires_at,
                reason=key.reason,
            )
            for key in state.keys.values()
            if key.status is not KeyStatus.RETIRED
        ]
        waiting = []
        if not state.facts.registered:
            waiting.append(
                "not registered in the provider registry"
                + (" (registering)" if state.facts.registering else "")
            )
        if not any(k.status is KeyStatus.REGISTERED for k in state.keys.values()):
            refused = [k.reason for k in state.keys.values() if k.status is KeyStatus.REFUSED]
            why = f": {'; '.join(refused)}" if refused else ""
            waiting.append(f"no enclave key registered yet, so no offer is out{why}")
        return ProviderStatus(
            backend=self._backend,
            insecure=self._backend == "sim",
            sim_host=self._sim_host() if self._backend == "sim" else None,
            registered=state.facts.registered,
            keys=keys,
            unspent_earnings=str(state.facts.earned),
            waiting_for=waiting,
        )

    def rows(self, table: str, where: dict[str, str], limit: int) -> list[dict[str, Any]]:
        found = self._store.query(table, where=where, limit=limit)
        if table == "offers":
            return [self._with_evidence(row) for row in found]
        return found

    def _with_evidence(self, row: dict[str, Any]) -> dict[str, Any]:
        """An offer row with this client's own check of the enclave key it names."""
        checked = None
        enclave_key = enclave_key_of(row.get("body", ""))
        if enclave_key is not None:
            checked = self._evidence_of(enclave_key)
        if checked is None:
            return {**row, "evidence": EvidenceCheck.UNCHECKED, "evidence_checked_at": 0}
        accepted, at = checked
        verdict = EvidenceCheck.VERIFIED if accepted else EvidenceCheck.REFUSED
        return {**row, "evidence": verdict, "evidence_checked_at": at}

    async def act(self, action: Action, *, job_id: str | None = None) -> ActionOutcome:
        return await self._record(self._to_change(action, job_id))

    async def _record(self, change: sc.StateChange) -> ActionOutcome:
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
        except InvalidValue as exc:
            raise InvalidAction(str(exc)) from exc
        raise InvalidAction(f"no such action: {type(action).__name__}")

    # ------------------------------------------------------------------ client jobs

    async def stage_input(self, data: bytes) -> StagedInput:
        if not data:
            raise InvalidAction("the input is empty")
        if len(data) > self._max_input:
            raise InvalidAction(
                f"the input is {len(data)} B; this client takes at most {self._max_input} B "
                "(client.max_input_bytes)"
            )
        digest = hashlib.sha256(data).hexdigest()
        folder = self._staging
        await trio.to_thread.run_sync(replace_secret_file, folder / digest, data)
        return StagedInput(input_id="0x" + digest, size=len(data))

    async def submit(self, action: SubmitJob) -> SubmittedJob:
        request_id = action.request_id or str(uuid.uuid4())
        me = self._service.me.address
        # The nonce follows from the request id: a retried submission is the same job.
        nonce = int.from_bytes(
            hashlib.sha256(f"capa-job:{me}:{request_id}".encode()).digest(), "big"
        )
        job_id = to_job_id(job_id_for(me, nonce))
        files = JobFiles(self._data_dir, job_id)
        staged = self._staging / action.input_id[2:].lower()
        if not files.plaintext.exists():
            if not staged.exists():
                raise InvalidAction(
                    f"no staged input {action.input_id}: stage it first (POST {paths.INPUTS})"
                )
            files.ensure()
            staged.replace(files.plaintext)
        size = files.plaintext.stat().st_size
        try:
            change = sc.JobSubmitRequested(
                request_id,
                job_id,
                nonce,
                action.workload.value,
                to_hash32(action.measurement),
                action.tee_kinds or ANY_TEE_KIND,
                action.min_tcb_status,
                int(action.max_price),
                int(action.timeout_s),
                int(action.cpu_cores),
                int(action.memory_mib),
                size,
                int(time.time()),
            )
        except InvalidValue as exc:
            raise InvalidAction(str(exc)) from exc
        outcome = await self._record(change)
        return SubmittedJob(**outcome.model_dump(), job_id=job_id)

    def output_of(self, job_id: str) -> Path:
        job = self._service.state.jobs.get(to_job_id(job_id))
        if job is None:
            raise NotFound(f"no job {job_id}")
        if job.status is not JobStatus.VERIFIED:
            why = f": {job.error}" if job.error else ""
            raise NotReady(f"job {job_id} is {job.status.value}, not verified{why}")
        path = JobFiles(self._data_dir, job.job_id).output
        if not path.exists():
            raise NotFound(f"job {job_id}: its output file is gone from {path}")
        return path


def _required(job_id: str | None) -> str:
    if job_id is None:
        raise InvalidAction("this action needs a job id")
    return job_id

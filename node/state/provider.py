"""Provider transitions: boot and attest, bid, take jobs, run them in the enclave, settle.

Boot: `ProviderBooted` (registry entry read) -> register when needed -> each enclave
instance (`EnclaveStarted`) asks the verifier committee (`RequestApprovals`), registers its
key, then publishes a standing offer. A key lives as long as its instance: a new boot
retires the keys of the last one, and jobs whose input was sealed to them can no longer run.

Job: `QuoteRequested` (bid rules from scheduler/, pure) -> `JobMatched` (capacity held) ->
`InputReceived` -> `StartJob` -> `JobExecuted` -> submitResult, or a batch signed by the
enclave -> `JobSettled` -> capacity freed, offer published again.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

import base58

from node.state import changes as sc
from node.state.effects import (
    Contract,
    Publish,
    RequestApprovals,
    RotateEnclave,
    SendTransaction,
    Settlement,
    SignBatch,
    StartJob,
)
from node.state.model import (
    NO_STEP,
    EnclaveKey,
    Identity,
    Job,
    JobStatus,
    KeyStatus,
    NodeFacts,
    StateView,
    Step,
    matched_job,
    posted_job,
)
from node.state.shared import SHARED_HANDLERS, drop_pending, ignore, tx_action, tx_job
from node.state.values import Address, JobId, effect_id
from scheduler.bidding import BidAction, ProviderState, decide_bid
from scheduler.capacity import CapacityLedger
from scheduler.errors import SchedulerError
from scheduler.models import JobId as SchedulerJobId
from scheduler.models import (
    JobRequirements,
    Measurement,
    ResourceOffer,
    Resources,
    TcbStatus,
    TeeKind,
    Timestamp,
    Wei,
    WorkloadKind,
    provider_address,
)
from scheduler.models import PeerId as SchedulerPeerId

# Jobs that hold capacity: from the match until the result is on its way.
_HOLDING = frozenset({JobStatus.ASSIGNED, JobStatus.RUNNING, JobStatus.READY, JobStatus.SUBMITTING})
# Not yet on chain for us: a quote we gave (resources remembered for the match).
QUOTED = JobStatus.OPEN


def _job_resources(job: Job) -> Resources:
    return Resources(cpu_cores=max(job.cpu_cores, 1), memory_mib=max(job.memory_mib, 0))


def capacity(me: Identity, jobs: Iterable[Job]) -> CapacityLedger:
    total = Resources(cpu_cores=me.provider.cpu_cores, memory_mib=me.provider.memory_mib)
    held = {SchedulerJobId(j.job_id): _job_resources(j) for j in jobs if j.status in _HOLDING}
    # A job matched from a standing offer holds its share even past a full machine: the
    # chain assigned it, so the ledger is clamped rather than refused.
    reserved = sum(held.values(), Resources())
    if not reserved.fits_within(total):
        total = Resources(
            cpu_cores=max(total.cpu_cores, reserved.cpu_cores),
            memory_mib=max(total.memory_mib, reserved.memory_mib),
        )
    return CapacityLedger(total, held)


def _live_registered(keys: Iterable[EnclaveKey], boot_id: str) -> list[EnclaveKey]:
    return [k for k in keys if k.status is KeyStatus.REGISTERED and k.boot_id == boot_id]


def _publish_all(
    me: Identity,
    facts: NodeFacts,
    keys: Iterable[EnclaveKey],
    jobs: Iterable[Job],
) -> tuple[NodeFacts, tuple[Publish, ...]]:
    """A fresh standing offer for every registered key, sized to the capacity left.

    Each publication has its own number, so a newer listing never settles under an older
    one's id."""
    ledger = capacity(me, jobs)
    free = ledger.free
    out = []
    number = facts.publications
    for key in _live_registered(keys, facts.boot_id):
        number += 1
        listing = {
            "tee_kind": key.tee_kind,
            "measurement": key.measurement,
            "workload": key.workload_kind,
            "cpu_cores": free.cpu_cores,
            "memory_mib": free.memory_mib,
            "price_per_hour": me.provider.floor_price_per_hour,
            "min_duration": me.provider.min_duration_s,
            "max_duration": me.provider.max_duration_s,
            "load_permille": ledger.utilization_permille,
            # The standing offer's EIP-712 nonce: a match spends it, so every publication
            # has its own, and a newer one always outranks an older one in the book.
            "nonce": number,
            "valid_until": key.expires_at,
        }
        out.append(
            Publish(
                effect_id("publish", key.enclave_key, number),
                key.enclave_key,
                json.dumps(listing, sort_keys=True),
            )
        )
    return replace(facts, publications=number), tuple(out)


def _peer_id_hex(peer_id: str) -> str:
    """The registry keeps the peer id as its multihash bytes; config and p2p speak base58."""
    return "0x" + base58.b58decode(peer_id).hex()


def _with(jobs: Iterable[Job], *changed: Job) -> list[Job]:
    """The jobs as they will be once `changed` are applied."""
    by_id = {j.job_id: j for j in jobs}
    by_id.update({j.job_id: j for j in changed})
    return list(by_id.values())


# ---------------------------------------------------------------- boot and keys


def handle_provider_booted(me: Identity, view: StateView, change: sc.ProviderBooted) -> Step:
    facts = replace(
        view.facts,
        boot_id=change.boot_id,
        registered=change.registered and change.active,
        registering=False,
    )
    effects: tuple[SendTransaction, ...] = ()
    rejected = ""
    if not facts.registered:
        if change.registered:
            rejected = "this provider is registered but not active (jailed or exited)"
        elif me.provider.stake <= 0:
            rejected = (
                "this provider is not registered: set provider.stake to register at start, "
                "or register with `capa provider register`"
            )
        else:
            send = SendTransaction(
                effect_id("register", change.boot_id),
                "register",
                json.dumps([_peer_id_hex(me.provider.peer_id), me.provider.stake]),
                me.provider.stake,
                Contract.REGISTRY,
            )
            effects = (send,)
            facts = replace(facts, registering=True)
    # Keys of earlier boots died with their instances, and so did what waited on them.
    lost = tuple(
        replace(k, status=KeyStatus.RETIRED, reason="its instance ended with a restart")
        for k in view.enclave_keys.values()
        if k.boot_id != change.boot_id
        and k.status in (KeyStatus.ATTESTING, KeyStatus.REGISTERING, KeyStatus.REGISTERED)
    )
    # Every instance of an earlier boot ended, that of a key a rotation retired too: it still
    # ran the jobs sealed to it.
    dead_keys = {k.enclave_key for k in view.enclave_keys.values() if k.boot_id != change.boot_id}
    ended = "its enclave instance ended with a restart"
    # A job that needs its instance to run can no longer run: give it back at once (the
    # client is refunded now, and no timeout slashes a job released before its deadline).
    # A job matched from a standing offer does not record its key, but whatever key the
    # client sealed to was of an earlier boot.
    failed = tuple(
        replace(j, status=JobStatus.FAILED, error=ended)
        for j in view.values()
        if j.status in (JobStatus.ASSIGNED, JobStatus.RUNNING)
        and (j.enclave_key is None or j.enclave_key in dead_keys)
    )
    release = tuple(
        SendTransaction(effect_id("releaseJob", j.job_id), "releaseJob", json.dumps([j.job_id]), 0)
        for j in failed
    )
    # A result the instance signed outlives it: one waiting for a batch the instance will
    # never sign now goes out on its own signature.
    unsigned_batches = [
        e
        for n in range(1, view.facts.batches + 1)
        if isinstance(e := view.pending_effect(effect_id("batch", str(n))), SignBatch)
        and e.enclave_key in dead_keys
    ]
    in_unsigned = {j for e in unsigned_batches for j in json.loads(e.job_ids)}
    alone = tuple(
        replace(j, status=JobStatus.SUBMITTING)
        for j in view.values()
        if j.enclave_key in dead_keys
        and (
            j.status is JobStatus.READY
            or (j.status is JobStatus.SUBMITTING and j.job_id in in_unsigned)
        )
    )
    submit = tuple(
        SendTransaction(
            effect_id("submitResult", j.job_id),
            "submitResult",
            json.dumps([j.job_id, j.output_hash, j.enclave_signature]),
            0,
        )
        for j in alone
    )
    settled = tuple(
        Settlement(e, False, ended)
        for e in (
            *(effect_id("start", j.job_id) for j in failed),
            *(effect_id("approve", k.enclave_key) for k in lost),
            *(effect_id("rotate", k.enclave_key) for k in lost),
            *(e.effect_id for e in unsigned_batches),
        )
    )
    return Step(
        jobs=(*failed, *alone),
        keys=lost,
        facts=facts,
        effects=(*effects, *release, *submit),
        settled=settled,
        rejected=rejected,
    )


def handle_enclave_started(me: Identity, view: StateView, change: sc.EnclaveStarted) -> Step:
    key = EnclaveKey(
        change.enclave_key,
        change.boot_id,
        change.workload,
        change.workload_kind,
        change.tee_kind,
        change.measurement,
        change.hpke_public_key,
        KeyStatus.ATTESTING,
    )
    if change.boot_id != view.facts.boot_id:
        return Step(keys=(replace(key, status=KeyStatus.RETIRED, reason="from an earlier boot"),))
    effects: tuple[RequestApprovals, ...] = ()
    if view.facts.registered:
        effects = (RequestApprovals(effect_id("approve", change.enclave_key), change.enclave_key),)
    return Step(keys=(key,), effects=effects)


def _approvals_for_waiting_keys(view: StateView) -> tuple[RequestApprovals, ...]:
    return tuple(
        RequestApprovals(effect_id("approve", k.enclave_key), k.enclave_key)
        for k in view.enclave_keys.values()
        if k.status is KeyStatus.ATTESTING and k.boot_id == view.facts.boot_id
    )


def handle_key_approved(me: Identity, view: StateView, change: sc.KeyApproved) -> Step:
    done = Settlement(effect_id("approve", change.enclave_key), True)
    key = view.enclave_keys.get(change.enclave_key)
    if key is None or key.status is not KeyStatus.ATTESTING:
        return Step(settled=(done,))
    attestation = json.loads(change.attestation)
    send = SendTransaction(
        effect_id("registerKey", change.enclave_key),
        "registerKey",
        json.dumps([attestation["abi"], json.loads(change.signatures)]),
        0,
        Contract.VERIFIER,
    )
    registering = replace(
        key, status=KeyStatus.REGISTERING, expires_at=int(attestation["expiresAt"]), reason=""
    )
    return Step(keys=(registering,), effects=(send,), settled=(done,))


def handle_key_refused(me: Identity, view: StateView, change: sc.KeyRefused) -> Step:
    done = Settlement(effect_id("approve", change.enclave_key), False, change.reason)
    key = view.enclave_keys.get(change.enclave_key)
    if key is None or key.status is not KeyStatus.ATTESTING:
        return Step(settled=(done,))
    refused = replace(key, status=KeyStatus.REFUSED, reason=change.reason)
    return Step(keys=(refused,), settled=(done,))


def handle_key_expiring(me: Identity, view: StateView, change: sc.KeyExpiring) -> Step:
    key = view.enclave_keys.get(change.enclave_key)
    if key is None or key.status is not KeyStatus.REGISTERED:
        return NO_STEP
    rotate = RotateEnclave(effect_id("rotate", change.enclave_key), key.workload)
    return Step(effects=(rotate,))


def _key_registered(
    me: Identity, view: StateView, enclave_key: Address, settled: Settlement
) -> Step:
    key = view.enclave_keys.get(enclave_key)
    if key is None or key.status is not KeyStatus.REGISTERING:
        return Step(settled=(settled,))
    registered = replace(key, status=KeyStatus.REGISTERED)
    # The newest key of a workload takes over its offers; an older one keeps running the
    # jobs already sealed to it until they end, and settles them.
    retired = tuple(
        replace(k, status=KeyStatus.RETIRED, reason=f"replaced by {key.enclave_key}")
        for k in view.enclave_keys.values()
        if k.workload == key.workload
        and k.enclave_key != key.enclave_key
        and k.status is KeyStatus.REGISTERED
    )
    rotate_done = tuple(Settlement(effect_id("rotate", k.enclave_key), True) for k in retired)
    keys = {k.enclave_key: k for k in view.enclave_keys.values()}
    keys.update({k.enclave_key: k for k in (*retired, registered)})
    facts, publish = _publish_all(me, view.facts, keys.values(), view.values())
    return Step(
        keys=(registered, *retired),
        facts=facts,
        effects=publish,
        settled=(settled, *rotate_done),
    )


# ---------------------------------------------------------------- bidding


def _key_for(view: StateView, measurement: str, tee_kinds: int) -> EnclaveKey | None:
    for key in _live_registered(view.enclave_keys.values(), view.facts.boot_id):
        if key.measurement == measurement and tee_kinds & (1 << key.tee_kind):
            return key
    return None


def handle_quote_requested(me: Identity, view: StateView, change: sc.QuoteRequested) -> Step:
    terms = me.provider
    known = view.get(change.job_id)
    if known is not None and known.status is not QUOTED:
        return Step(rejected=f"job {change.job_id} is already {known.status.value} here")
    key = _key_for(view, change.measurement, change.tee_kinds)
    if key is None:
        return Step(
            rejected=f"no registered enclave here runs measurement {change.measurement} "
            "under an accepted TEE kind"
        )
    duration = change.deadline - change.chain_time
    if duration < terms.min_duration_s:
        return Step(
            rejected=f"deadline leaves {max(duration, 0)} s, this provider needs at least "
            f"{terms.min_duration_s} s"
        )
    duration = min(duration, terms.max_duration_s)
    try:
        tee = TeeKind(key.tee_kind)
        requirements = JobRequirements(
            job_id=SchedulerJobId(change.job_id),
            workload=WorkloadKind(key.workload_kind),
            accepted_tee_kinds=frozenset({tee}),
            max_price_per_hour=Wei(change.max_price * 3600 // max(duration, 1)),
            deadline=Timestamp(change.deadline),
            duration_s=duration,
            min_tcb_status=TcbStatus.REVOKED,
            allowed_measurements=frozenset({Measurement(change.measurement)}),
            cpu_cores=change.cpu_cores,
            memory_mib=change.memory_mib,
        )
        ledger = capacity(me, view.values())
        own = ResourceOffer(
            provider=provider_address(me.address),
            peer_id=SchedulerPeerId(terms.peer_id or "self"),
            nonce=0,
            price_per_hour=Wei(terms.floor_price_per_hour),
            cpu_cores=ledger.total.cpu_cores,
            memory_mib=ledger.total.memory_mib,
            tee_kind=tee,
            measurement=Measurement(key.measurement),
            tcb_status=TcbStatus.UP_TO_DATE,
            valid_from=Timestamp(change.chain_time - 1),
            valid_until=Timestamp(change.chain_time + terms.quote_ttl_s),
            workloads=frozenset({WorkloadKind(key.workload_kind)}),
        )
        decision = decide_bid(
            requirements,
            ProviderState(own, ledger, Wei(terms.floor_price_per_hour), terms.surge_permille),
            Timestamp(change.chain_time),
        )
    except (SchedulerError, ValueError) as exc:
        return Step(rejected=f"cannot bid on this request: {exc}")
    if decision.action is not BidAction.BID or decision.price_per_hour is None:
        return Step(rejected=f"{decision.action.value}: {decision.reason}")
    price = -(-decision.price_per_hour * duration // 3600)  # ceil: never under the rate
    if price > change.max_price:
        return Step(rejected=f"asks {price} wei, the job pays at most {change.max_price} wei")
    reply = {
        "price": price,
        "tee_kind": key.tee_kind,
        "measurement": key.measurement,
        "enclave_key": key.enclave_key,
        "min_duration": terms.min_duration_s,
        "max_duration": terms.max_duration_s,
        "valid_until": change.chain_time + terms.quote_ttl_s,
        "reason": decision.reason,
    }
    quoted = Job(
        change.job_id,
        QUOTED,
        client=change.client,
        provider=me.address,
        price=price,
        deadline=change.deadline,
        measurement=change.measurement,
        cpu_cores=change.cpu_cores,
        memory_mib=change.memory_mib,
        enclave_key=key.enclave_key,
    )
    return Step(jobs=(quoted,), reply=json.dumps(reply, sort_keys=True))


# ---------------------------------------------------------------- jobs


def handle_job_matched(me: Identity, view: StateView, change: sc.JobMatched) -> Step:
    if change.provider != me.address:
        known = view.get(change.job_id)
        if known is not None and known.status is QUOTED:
            return Step(jobs=(replace(known, status=JobStatus.TAKEN),))
        return NO_STEP
    known = view.get(change.job_id)
    if known is not None and known.status is not QUOTED:
        return NO_STEP
    job = matched_job(change, JobStatus.ASSIGNED)
    if known is not None:
        job = replace(
            job,
            cpu_cores=known.cpu_cores,
            memory_mib=known.memory_mib,
            measurement=known.measurement,
            enclave_key=known.enclave_key,
        )
    facts, publish = _publish_all(
        me, view.facts, view.enclave_keys.values(), _with(view.values(), job)
    )
    return Step(jobs=(job,), facts=facts, effects=publish)


def handle_job_posted(me: Identity, view: StateView, change: sc.JobPosted) -> Step:
    if change.job_id in view:
        return NO_STEP
    return Step(jobs=(posted_job(change),))


def handle_accept_job(me: Identity, view: StateView, change: sc.AcceptJobRequested) -> Step:
    known = view.get(change.job_id)
    if known is None or known.status is not JobStatus.OPEN or known.provider is not None:
        status = known.status.value if known else "unknown"
        return Step(rejected=f"job {change.job_id} is not open (it is {status})")
    send = SendTransaction(
        effect_id("acceptJob", change.job_id),
        "acceptJob",
        json.dumps([change.job_id, change.enclave_key, change.min_duration]),
        0,
    )
    accepting = replace(known, status=JobStatus.ACCEPTING, enclave_key=change.enclave_key)
    return Step(jobs=(accepting,), effects=(send,))


def handle_job_accepted(me: Identity, view: StateView, change: sc.JobAccepted) -> Step:
    known = view.get(change.job_id)
    accept = effect_id("acceptJob", change.job_id)
    if change.provider != me.address:
        if known is None:
            return NO_STEP
        lost = Settlement(accept, False, f"accepted by {change.provider}")
        return Step(jobs=(replace(known, status=JobStatus.TAKEN),), settled=(lost,))
    if known is None or known.status not in (JobStatus.OPEN, JobStatus.ACCEPTING):
        return Step(settled=(Settlement(accept, True),))
    job = replace(known, status=JobStatus.ASSIGNED, provider=change.provider, error="")
    return Step(jobs=(job,), settled=(Settlement(accept, True),))


def handle_input_received(me: Identity, view: StateView, change: sc.InputReceived) -> Step:
    job = view.get(change.job_id)
    if job is None or job.provider != me.address:
        return Step(rejected=f"job {change.job_id} is not assigned to this provider")
    if job.status is not JobStatus.ASSIGNED:
        return Step(rejected=f"job {change.job_id} is {job.status.value}, not waiting for input")
    if change.input_hash != job.input_hash:
        return Step(rejected=f"input hash {change.input_hash} is not the job's {job.input_hash}")
    key = view.enclave_keys.get(change.enclave_key)
    if (
        key is None
        or key.boot_id != view.facts.boot_id
        or key.status
        not in (
            KeyStatus.REGISTERED,
            KeyStatus.RETIRED,
        )
    ):
        return Step(rejected=f"enclave key {change.enclave_key} is not running here")
    running = replace(job, status=JobStatus.RUNNING, enclave_key=change.enclave_key)
    start = StartJob(
        effect_id("start", job.job_id),
        job.job_id,
        change.input_hash,
        job.deadline,
        change.enclave_key,
    )
    # The input server signs the InputReceipt over exactly the job's on-chain task.
    reply = json.dumps({"spec_hash": job.spec_hash, "input_hash": job.input_hash})
    return Step(jobs=(running,), effects=(start,), reply=reply)


def handle_job_executed(me: Identity, view: StateView, change: sc.JobExecuted) -> Step:
    start = effect_id("start", change.job_id)
    job = view.get(change.job_id)
    if job is None or job.status is not JobStatus.RUNNING:
        return Step(settled=(Settlement(start, False, "job no longer running"),))
    done = Settlement(start, True)
    if me.provider.batch_size <= 1:
        submit = SendTransaction(
            effect_id("submitResult", change.job_id),
            "submitResult",
            json.dumps([change.job_id, change.output_hash, change.enclave_signature]),
            0,
        )
        submitting = replace(
            job,
            status=JobStatus.SUBMITTING,
            output_hash=change.output_hash,
            enclave_signature=change.enclave_signature,
        )
        return Step(jobs=(submitting,), effects=(submit,), settled=(done,))
    ready = replace(
        job,
        status=JobStatus.READY,
        output_hash=change.output_hash,
        enclave_signature=change.enclave_signature,
        ready_at=change.chain_time,
    )
    waiting = [
        j for j in view.values() if j.status is JobStatus.READY and j.enclave_key == job.enclave_key
    ]
    if len(waiting) + 1 < me.provider.batch_size:
        return Step(jobs=(ready,), settled=(done,))
    return _sign_batch(view, [*waiting, ready], settled=(done,))


def _sign_batch(view: StateView, jobs: list[Job], settled: tuple[Settlement, ...] = ()) -> Step:
    jobs = sorted(jobs, key=lambda j: (j.ready_at, j.job_id))
    enclave_key = jobs[0].enclave_key
    assert enclave_key is not None
    number = view.facts.batches + 1
    batch_id = f"{number}"
    sign = SignBatch(
        effect_id("batch", batch_id),
        batch_id,
        enclave_key,
        json.dumps([j.job_id for j in jobs]),
        json.dumps([j.output_hash for j in jobs]),
    )
    submitting = tuple(replace(j, status=JobStatus.SUBMITTING) for j in jobs)
    facts = replace(view.facts, batches=number)
    return Step(jobs=submitting, facts=facts, effects=(sign,), settled=settled)


def handle_batch_due(me: Identity, view: StateView, change: sc.BatchDue) -> Step:
    due = [
        j
        for j in view.values()
        if j.status is JobStatus.READY and j.enclave_key == change.enclave_key
    ]
    if not due or min(j.ready_at for j in due) + me.provider.batch_max_wait_s > change.chain_time:
        return NO_STEP
    return _sign_batch(view, due)


def handle_batch_signed(me: Identity, view: StateView, change: sc.BatchSigned) -> Step:
    done = Settlement(effect_id("batch", change.batch_id), True)
    send = SendTransaction(
        effect_id("submitResults", f"batch-{change.batch_id}"),
        "submitResults",
        json.dumps(
            [json.loads(change.job_ids), json.loads(change.output_hashes), change.signature]
        ),
        0,
    )
    return Step(effects=(send,), settled=(done,))


def handle_job_execution_failed(
    me: Identity, view: StateView, change: sc.JobExecutionFailed
) -> Step:
    stopped = Settlement(effect_id("start", change.job_id), False, change.reason)
    job = view.get(change.job_id)
    if job is None or job.status is not JobStatus.RUNNING:
        return Step(settled=(stopped,))
    failed = replace(job, status=JobStatus.FAILED, error=change.reason)
    # Give the job back at once: the client is refunded now instead of at the deadline, the
    # reserved stake is freed, and no timeout can slash a job given back in time.
    release = SendTransaction(
        effect_id("releaseJob", change.job_id), "releaseJob", json.dumps([change.job_id]), 0
    )
    facts, publish = _publish_all(
        me, view.facts, view.enclave_keys.values(), _with(view.values(), failed)
    )
    return Step(jobs=(failed,), facts=facts, effects=(release, *publish), settled=(stopped,))


def handle_job_settled(me: Identity, view: StateView, change: sc.JobSettled) -> Step:
    job = view.get(change.job_id)
    if job is None or change.provider != me.address:
        return NO_STEP
    if job.status is JobStatus.SETTLED:
        return NO_STEP
    settled_job = replace(
        job, status=JobStatus.SETTLED, output_hash=change.output_hash, payout=change.payout
    )
    submitted = effect_id("submitResult", change.job_id)
    done = (
        Settlement(submitted, True),
        *drop_pending(view, change.job_id, "job settled", keep=submitted),
    )
    facts = replace(view.facts, earned=view.facts.earned + change.payout)
    effects: list[Any] = []
    threshold = me.provider.withdraw_threshold
    if threshold > 0 and facts.earned >= threshold:
        effects.append(
            SendTransaction(
                effect_id("withdraw", "earnings", change.job_id),
                "withdraw",
                json.dumps([facts.earned, me.address]),
                0,
            )
        )
        facts = replace(facts, earned=0)
    facts, publish = _publish_all(
        me, facts, view.enclave_keys.values(), _with(view.values(), settled_job)
    )
    effects.extend(publish)
    return Step(jobs=(settled_job,), facts=facts, effects=tuple(effects), settled=done)


def handle_job_refunded(
    me: Identity, view: StateView, change: sc.JobRefunded | sc.JobReleased
) -> Step:
    job = view.get(change.job_id)
    if job is None or job.provider != me.address:
        return NO_STEP
    released = effect_id("releaseJob", change.job_id)
    why = "job given back" if isinstance(change, sc.JobReleased) else "job refunded"
    dropped = (
        Settlement(released, True),
        *drop_pending(view, change.job_id, why, keep=released),
    )
    refunded = replace(job, status=JobStatus.REFUNDED)
    facts, publish = _publish_all(
        me, view.facts, view.enclave_keys.values(), _with(view.values(), refunded)
    )
    return Step(jobs=(refunded,), facts=facts, effects=publish, settled=dropped)


def handle_job_cancelled(me: Identity, view: StateView, change: sc.JobCancelled) -> Step:
    job = view.get(change.job_id)
    if job is None:
        return NO_STEP
    dropped = drop_pending(view, change.job_id, "job cancelled")
    return Step(jobs=(replace(job, status=JobStatus.CANCELLED),), settled=dropped)


# ---------------------------------------------------------------- our transactions


def handle_tx_confirmed(me: Identity, view: StateView, change: sc.TxConfirmed) -> Step:
    done = Settlement(change.effect_id, True)
    match tx_action(change.effect_id):
        case "registerKey":
            return _key_registered(me, view, Address(tx_job(change.effect_id)), done)
        case "register":
            facts = replace(view.facts, registered=True, registering=False)
            # Keys started before the registration was on chain ask for approvals now.
            return Step(facts=facts, effects=_approvals_for_waiting_keys(view), settled=(done,))
    return Step(settled=(done,))


def handle_tx_reverted(me: Identity, view: StateView, change: sc.TxReverted) -> Step:
    settled = (Settlement(change.effect_id, False, change.reason),)
    action = tx_action(change.effect_id)
    subject = tx_job(change.effect_id)
    if action == "registerKey":
        key = view.enclave_keys.get(Address(subject))
        if key is None:
            return Step(settled=settled)
        refused = replace(key, status=KeyStatus.REFUSED, reason=f"registerKey: {change.reason}")
        return Step(keys=(refused,), settled=settled)
    if action == "register":
        facts = replace(view.facts, registering=False)
        return Step(facts=facts, settled=settled)
    job = view.get(JobId(subject))
    if job is None:
        return Step(settled=settled)
    if action == "acceptJob" and job.status is JobStatus.ACCEPTING:
        return Step(
            jobs=(replace(job, status=JobStatus.OPEN, error=change.reason),), settled=settled
        )
    # A refused submission leaves the job on chain: the client's refund ends it.
    return Step(jobs=(replace(job, error=change.reason),), settled=settled)


HANDLERS: dict[type[sc.StateChange], Callable[[Identity, StateView, Any], Step]] = {
    **SHARED_HANDLERS,
    sc.ProviderBooted: handle_provider_booted,
    sc.EnclaveStarted: handle_enclave_started,
    sc.KeyApproved: handle_key_approved,
    sc.KeyRefused: handle_key_refused,
    sc.KeyExpiring: handle_key_expiring,
    sc.QuoteRequested: handle_quote_requested,
    sc.JobMatched: handle_job_matched,
    sc.JobPosted: handle_job_posted,
    sc.AcceptJobRequested: handle_accept_job,
    sc.JobAccepted: handle_job_accepted,
    sc.InputReceived: handle_input_received,
    sc.JobExecuted: handle_job_executed,
    sc.JobExecutionFailed: handle_job_execution_failed,
    sc.BatchDue: handle_batch_due,
    sc.BatchSigned: handle_batch_signed,
    sc.JobSettled: handle_job_settled,
    sc.JobRefunded: handle_job_refunded,
    sc.JobReleased: handle_job_refunded,
    sc.JobCancelled: handle_job_cancelled,
    sc.TxConfirmed: handle_tx_confirmed,
    sc.TxReverted: handle_tx_reverted,
}


__all__ = ["HANDLERS", "capacity", "ignore"]

"""Provider transitions step by step: each step compared whole, from a state built directly.

A wrong provider transition runs a job it will not be paid for, gives back one it could have
run, loses a result or withdraws the wrong amount; so each test states the exact step, and
the edges on both sides (durations, prices, batch sizes and waits, thresholds, capacity).
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from node.config.model import Role
from node.state import changes as sc
from node.state.effects import (
    Contract,
    Effect,
    Publish,
    RequestApprovals,
    RotateEnclave,
    SendTransaction,
    Settlement,
    SignBatch,
    StartJob,
)
from node.state.machine import transition
from node.state.model import (
    NO_STEP,
    EnclaveKey,
    Identity,
    Job,
    JobStatus,
    KeyStatus,
    NodeFacts,
    NodeState,
    ProviderTerms,
    StateView,
    Step,
)
from node.state.values import Address, BlockNumber, EffectId, Hash32, JobId, TxHash

ME = Address("0x70997970C51812dc3A010C7d01b50e0d17dc79C8")
SOMEONE = Address("0x9965507D1a55bcC2695C58ba16FB37d819B0A4dc")
CLIENT = Address("0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC")
ENCLAVE = Address("0x15d34AAf54267DB7D7c367839AAf71A00a2C6A65")
NEWER = Address("0x976EA74026E726554dB657fA54763abd0C3a0aa9")
OLD = Address("0x14dC79964da2C08b23698B3D3cc7Ca32193d9955")
SPARE = Address("0x23618e81E3f5cdF7f54C3d65f7FBc0aBf5B21E8f")
JOB = JobId("0x" + "11" * 32)
JOB2 = JobId("0x" + "12" * 32)
JOB3 = JobId("0x" + "13" * 32)
MEASUREMENT = Hash32("0x" + "ab" * 32)
SEALED = Hash32("0x" + "5e" * 32)
SPEC = Hash32("0x" + "5c" * 32)
OUT = Hash32("0x" + "0a" * 32)
OUT2 = Hash32("0x" + "0b" * 32)
TX = TxHash("0x" + "7a" * 32)

TERMS = ProviderTerms(
    peer_id="12D3KooWProvider",
    cpu_cores=4,
    memory_mib=4096,
    floor_price_per_hour=3600,
    surge_permille=0,
    min_duration_s=60,
    max_duration_s=3600,
    quote_ttl_s=120,
)
PROVIDER = Identity(Role.PROVIDER, ME, provider=TERMS)
FACTS = NodeFacts(boot_id="boot-2", registered=True, publications=10, batches=4, earned=5)

KEY = EnclaveKey(
    ENCLAVE, "boot-2", "upper", "wasm", 5, MEASUREMENT, "0x33", KeyStatus.REGISTERED, 9_999
)


def _me(**terms: int) -> Identity:
    return Identity(Role.PROVIDER, ME, provider=replace(TERMS, **terms))  # type: ignore[arg-type]


def _view(
    *jobs: Job,
    keys: tuple[EnclaveKey, ...] = (KEY,),
    facts: NodeFacts = FACTS,
    pending: tuple[Effect, ...] = (),
) -> StateView:
    state = NodeState()
    state.jobs = {job.job_id: job for job in jobs}
    state.keys = {key.enclave_key: key for key in keys}
    state.facts = facts
    state.pending = {effect.effect_id: effect for effect in pending}
    return StateView(state)


def _event(cls: type, *fields: object) -> sc.StateChange:
    return cls(BlockNumber(7), Hash32("0x" + "22" * 32), TX, "log-7", *fields)  # type: ignore[no-any-return]


def _id(action: str, subject: str, *more: object) -> EffectId:
    return EffectId(":".join([action, subject, *(str(m) for m in more)]))


def _publish(key: EnclaveKey, number: int, cores: int, memory: int, load: int) -> Publish:
    listing = {
        "cpu_cores": cores,
        "load_permille": load,
        "max_duration": 3600,
        "measurement": key.measurement,
        "memory_mib": memory,
        "min_duration": 60,
        "nonce": number,
        "price_per_hour": 3600,
        "tee_kind": key.tee_kind,
        "valid_until": key.expires_at,
        "workload": key.workload_kind,
    }
    return Publish(_id("publish", key.enclave_key, number), key.enclave_key, json.dumps(listing))


def _tx(
    action: str, subject: str, args: list[object], value: int = 0, **kw: Contract
) -> SendTransaction:
    return SendTransaction(_id(action, subject), action, json.dumps(args), value, **kw)


ASSIGNED = Job(
    JOB,
    JobStatus.ASSIGNED,
    client=CLIENT,
    provider=ME,
    price=1_800,
    deadline=2_800,
    input_hash=SEALED,
    spec_hash=SPEC,
    cpu_cores=1,
    memory_mib=1024,
    measurement=MEASUREMENT,
    enclave_key=ENCLAVE,
)
RUNNING = replace(ASSIGNED, status=JobStatus.RUNNING)


# ---------------------------------------------------------------- capacity in the offers


def test_a_match_holds_its_share_and_republishes_every_live_key() -> None:
    keys = (
        KEY,
        replace(KEY, enclave_key=NEWER, workload="lower", tee_kind=6, expires_at=8_888),
        replace(KEY, enclave_key=OLD, boot_id="boot-1"),  # an earlier boot's
        replace(KEY, enclave_key=SPARE, status=KeyStatus.ATTESTING),  # not on chain yet
    )
    held = replace(RUNNING, job_id=JOB2, cpu_cores=0, memory_mib=0)  # counts as one core
    change = _event(sc.JobMatched, JOB, CLIENT, ME, 1_800, 2_800, SPEC, SEALED)
    quoted = replace(ASSIGNED, status=JobStatus.OPEN, cpu_cores=2, memory_mib=512)
    step = transition(PROVIDER, _view(held, quoted, keys=keys), change)
    # 3 of 4 cores held (750 permille), 512 of 4096 MiB
    assert step == Step(
        jobs=(replace(ASSIGNED, cpu_cores=2, memory_mib=512),),
        facts=replace(FACTS, publications=12),
        effects=(_publish(KEY, 11, 1, 3584, 750), _publish(keys[1], 12, 1, 3584, 750)),
    )


def test_jobs_held_past_a_full_machine_leave_nothing_free_rather_than_fail() -> None:
    held = (
        replace(RUNNING, job_id=JOB2, cpu_cores=3, memory_mib=3000),
        replace(ASSIGNED, job_id=JOB3, status=JobStatus.SUBMITTING, cpu_cores=3, memory_mib=3000),
    )
    change = _event(sc.JobMatched, JOB, CLIENT, ME, 1_800, 2_800, SPEC, SEALED)
    step = transition(PROVIDER, _view(*held, replace(ASSIGNED, status=JobStatus.OPEN)), change)
    assert step.effects == (_publish(KEY, 11, 0, 0, 1000),)


@pytest.mark.parametrize(
    "status", [JobStatus.OPEN, JobStatus.SETTLED, JobStatus.FAILED, JobStatus.REFUNDED]
)
def test_jobs_not_between_match_and_result_hold_nothing(status: JobStatus) -> None:
    idle = replace(RUNNING, job_id=JOB2, status=status, cpu_cores=3, memory_mib=3000)
    change = _event(sc.JobMatched, JOB, CLIENT, ME, 1_800, 2_800, SPEC, SEALED)
    step = transition(PROVIDER, _view(idle), change)
    assert step.effects == (_publish(KEY, 11, 3, 4096, 250),)


# ---------------------------------------------------------------- boot


def _lost_world() -> tuple[StateView, dict[str, object]]:
    """A provider with jobs at every stage under keys of the last boot and of this one."""
    keys = (
        replace(KEY, boot_id="boot-1"),  # registered, last boot
        replace(KEY, enclave_key=NEWER, boot_id="boot-1", status=KeyStatus.ATTESTING),
        replace(KEY, enclave_key=OLD, boot_id="boot-1", status=KeyStatus.REFUSED, reason="no"),
        replace(KEY, enclave_key=SPARE, boot_id="boot-2"),  # already of the new boot
    )
    jobs = (
        replace(ASSIGNED, job_id=JobId("0x" + "a1" * 32)),
        replace(RUNNING, job_id=JobId("0x" + "a2" * 32)),
        replace(RUNNING, job_id=JobId("0x" + "a3" * 32), enclave_key=SPARE),
        replace(
            RUNNING,
            job_id=JobId("0x" + "a4" * 32),
            status=JobStatus.READY,
            output_hash=OUT,
            enclave_signature="0x04",
        ),
        replace(
            RUNNING,
            job_id=JobId("0x" + "a5" * 32),
            status=JobStatus.SUBMITTING,
            output_hash=OUT2,
            enclave_signature="0x05",
        ),
        # submitted on its own already: stays as it is
        replace(RUNNING, job_id=JobId("0x" + "a6" * 32), status=JobStatus.SUBMITTING),
        replace(RUNNING, job_id=JobId("0x" + "a7" * 32), status=JobStatus.SETTLED),
    )
    unsigned = SignBatch(_id("batch", "2"), "2", ENCLAVE, json.dumps([jobs[4].job_id]), "[]")
    other_key = SignBatch(_id("batch", "1"), "1", SPARE, json.dumps([jobs[5].job_id]), "[]")
    view = _view(
        *jobs,
        keys=keys,
        facts=NodeFacts(boot_id="boot-1", registered=True, batches=3),
        pending=(other_key, unsigned),
    )
    return view, {"keys": keys, "jobs": jobs, "unsigned": unsigned}


def test_a_restart_retires_the_last_boots_keys_and_settles_what_waited_on_them() -> None:
    view, world = _lost_world()
    keys: tuple[EnclaveKey, ...] = world["keys"]  # type: ignore[assignment]
    jobs: tuple[Job, ...] = world["jobs"]  # type: ignore[assignment]
    step = transition(PROVIDER, view, sc.ProviderBooted("boot-2", True, True, 0))
    ended = "its enclave instance ended with a restart"
    retired = tuple(
        replace(k, status=KeyStatus.RETIRED, reason="its instance ended with a restart")
        for k in keys[:2]
    )
    failed = tuple(replace(j, status=JobStatus.FAILED, error=ended) for j in jobs[:2])
    alone = tuple(replace(j, status=JobStatus.SUBMITTING) for j in jobs[3:5])
    assert step == Step(
        jobs=(*failed, *alone),
        keys=retired,
        facts=NodeFacts(boot_id="boot-2", registered=True, registering=False, batches=3),
        effects=(
            *(_tx("releaseJob", j.job_id, [j.job_id]) for j in jobs[:2]),
            _tx("submitResult", jobs[3].job_id, [jobs[3].job_id, OUT, "0x04"]),
            _tx("submitResult", jobs[4].job_id, [jobs[4].job_id, OUT2, "0x05"]),
        ),
        settled=(
            Settlement(_id("start", jobs[0].job_id), False, ended),
            Settlement(_id("start", jobs[1].job_id), False, ended),
            Settlement(_id("approve", ENCLAVE), False, ended),
            Settlement(_id("approve", NEWER), False, ended),
            Settlement(_id("rotate", ENCLAVE), False, ended),
            Settlement(_id("rotate", NEWER), False, ended),
            Settlement(_id("batch", "2"), False, ended),
        ),
    )


def test_a_restart_gives_back_jobs_under_a_rotated_out_key_and_a_standing_offer() -> None:
    # The key ENCLAVE was replaced by a rotation before the restart: retired already, it still
    # ran the jobs sealed to it, and its instance ends with the restart like any other.
    rotated = replace(KEY, boot_id="boot-1", status=KeyStatus.RETIRED, reason="replaced")
    running = replace(RUNNING, job_id=JOB2)
    # Matched from a standing offer: the match does not say which key the client sealed to,
    # but every key of the last boot is gone.
    standing = replace(ASSIGNED, job_id=JOB3, enclave_key=None)
    ready = replace(
        RUNNING, status=JobStatus.READY, output_hash=OUT, enclave_signature="0x01", ready_at=5
    )
    view = _view(
        running, standing, ready, keys=(rotated,), facts=NodeFacts(boot_id="boot-1", batches=1)
    )
    step = transition(PROVIDER, view, sc.ProviderBooted("boot-2", True, True, 0))
    ended = "its enclave instance ended with a restart"
    assert step == Step(
        jobs=(
            replace(running, status=JobStatus.FAILED, error=ended),
            replace(standing, status=JobStatus.FAILED, error=ended),
            replace(ready, status=JobStatus.SUBMITTING),
        ),
        facts=NodeFacts(boot_id="boot-2", registered=True, batches=1),
        effects=(
            _tx("releaseJob", JOB2, [JOB2]),
            _tx("releaseJob", JOB3, [JOB3]),
            _tx("submitResult", JOB, [JOB, OUT, "0x01"]),
        ),
        settled=(
            Settlement(_id("start", JOB2), False, ended),
            Settlement(_id("start", JOB3), False, ended),
        ),
    )


def test_a_key_still_registering_dies_with_its_instance_too() -> None:
    registering = replace(KEY, boot_id="boot-1", status=KeyStatus.REGISTERING)
    view = _view(keys=(registering,), facts=NodeFacts(boot_id="boot-1", registered=True))
    step = transition(PROVIDER, view, sc.ProviderBooted("boot-2", True, True, 0))
    assert step.keys == (
        replace(registering, status=KeyStatus.RETIRED, reason="its instance ended with a restart"),
    )


def test_a_restart_found_registered_ends_a_registration_under_way() -> None:
    view = _view(keys=(), facts=replace(FACTS, registered=False, registering=True))
    step = transition(_me(stake=5), view, sc.ProviderBooted("boot-3", True, True, 5))
    assert step == Step(facts=replace(FACTS, boot_id="boot-3", registered=True, registering=False))


def test_a_registered_but_inactive_provider_is_refused() -> None:
    step = transition(_me(stake=5), _view(keys=()), sc.ProviderBooted("boot-3", True, False, 5))
    assert step == Step(
        facts=replace(FACTS, boot_id="boot-3", registered=False),
        rejected="this provider is registered but not active (jailed or exited)",
    )


def test_an_unregistered_provider_without_a_stake_is_refused_with_the_fix() -> None:
    step = transition(_me(stake=0), _view(keys=()), sc.ProviderBooted("boot-3", False, False, 0))
    assert step == Step(
        facts=replace(FACTS, boot_id="boot-3", registered=False),
        rejected=(
            "this provider is not registered: set provider.stake to register at start, "
            "or register with `capa provider register`"
        ),
    )


def test_an_unregistered_provider_with_a_stake_registers_with_exactly_it() -> None:
    me = Identity(Role.PROVIDER, ME, provider=replace(TERMS, stake=1, peer_id="p"))
    step = transition(me, _view(keys=()), sc.ProviderBooted("boot-3", False, True, 0))
    register = _tx("register", "boot-3", ["0x2f", 1], 1, contract=Contract.REGISTRY)
    assert step == Step(
        facts=replace(FACTS, boot_id="boot-3", registered=False, registering=True),
        effects=(register,),
    )


def test_an_enclave_of_this_boot_asks_for_approvals_once_registered() -> None:
    change = sc.EnclaveStarted("boot-2", "upper", "onnx", 6, MEASUREMENT, NEWER, "0x34")
    key = EnclaveKey(NEWER, "boot-2", "upper", "onnx", 6, MEASUREMENT, "0x34", KeyStatus.ATTESTING)
    assert transition(PROVIDER, _view(), change) == Step(
        keys=(key,), effects=(RequestApprovals(_id("approve", NEWER), NEWER),)
    )
    unregistered = _view(facts=replace(FACTS, registered=False))
    assert transition(PROVIDER, unregistered, change) == Step(keys=(key,))
    late = replace(change, boot_id="boot-1")
    assert transition(PROVIDER, _view(), late) == Step(
        keys=(
            replace(key, boot_id="boot-1", status=KeyStatus.RETIRED, reason="from an earlier boot"),
        )
    )


def test_registration_confirmed_asks_approvals_for_the_keys_of_this_boot_waiting() -> None:
    keys = (
        replace(KEY, status=KeyStatus.ATTESTING),
        replace(KEY, enclave_key=NEWER, status=KeyStatus.ATTESTING, boot_id="boot-1"),
        replace(KEY, enclave_key=OLD),
    )
    view = _view(keys=keys, facts=replace(FACTS, registered=False, registering=True))
    change = sc.TxConfirmed(_id("register", "boot-2"), TX, BlockNumber(3))
    assert transition(PROVIDER, view, change) == Step(
        facts=replace(FACTS, registered=True, registering=False),
        effects=(RequestApprovals(_id("approve", ENCLAVE), ENCLAVE),),
        settled=(Settlement(_id("register", "boot-2"), True),),
    )


# ---------------------------------------------------------------- keys


ATTESTING = replace(KEY, status=KeyStatus.ATTESTING, expires_at=0, reason="asked twice")


def test_an_approved_key_is_registered_on_the_verifier_contract() -> None:
    attestation = json.dumps({"abi": [1, "0x02"], "expiresAt": 12_345})
    change = sc.KeyApproved(ENCLAVE, attestation, '["0xa", "0xb"]')
    send = _tx("registerKey", ENCLAVE, [[1, "0x02"], ["0xa", "0xb"]], contract=Contract.VERIFIER)
    assert transition(PROVIDER, _view(keys=(ATTESTING,)), change) == Step(
        keys=(replace(ATTESTING, status=KeyStatus.REGISTERING, expires_at=12_345, reason=""),),
        effects=(send,),
        settled=(Settlement(_id("approve", ENCLAVE), True),),
    )


def test_a_refused_key_keeps_the_committees_reason() -> None:
    change = sc.KeyRefused(ENCLAVE, "sim evidence is INSECURE")
    assert transition(PROVIDER, _view(keys=(ATTESTING,)), change) == Step(
        keys=(replace(ATTESTING, status=KeyStatus.REFUSED, reason="sim evidence is INSECURE"),),
        settled=(Settlement(_id("approve", ENCLAVE), False, "sim evidence is INSECURE"),),
    )


@pytest.mark.parametrize("keys", [(), (KEY,), (replace(KEY, status=KeyStatus.RETIRED),)])
def test_committee_answers_for_a_key_not_attesting_only_settle(
    keys: tuple[EnclaveKey, ...],
) -> None:
    approved = sc.KeyApproved(ENCLAVE, '{"abi": [], "expiresAt": 1}', "[]")
    assert transition(PROVIDER, _view(keys=keys), approved) == Step(
        settled=(Settlement(_id("approve", ENCLAVE), True),)
    )
    refused = sc.KeyRefused(ENCLAVE, "no")
    assert transition(PROVIDER, _view(keys=keys), refused) == Step(
        settled=(Settlement(_id("approve", ENCLAVE), False, "no"),)
    )


def test_an_expiring_registered_key_starts_a_new_instance_of_its_workload() -> None:
    change = sc.KeyExpiring(ENCLAVE, 9_000)
    assert transition(PROVIDER, _view(), change) == Step(
        effects=(RotateEnclave(_id("rotate", ENCLAVE), "upper"),)
    )
    for keys in ((), (replace(KEY, status=KeyStatus.RETIRED),)):
        assert transition(PROVIDER, _view(keys=keys), change) == NO_STEP


def test_a_key_registered_on_chain_takes_over_the_offers_of_its_workload() -> None:
    new = replace(KEY, enclave_key=NEWER, status=KeyStatus.REGISTERING, expires_at=20_000)
    other_workload = replace(KEY, enclave_key=OLD, workload="lower")
    refused = replace(KEY, enclave_key=SPARE, status=KeyStatus.REFUSED)
    view = _view(keys=(KEY, new, other_workload, refused))
    change = sc.TxConfirmed(_id("registerKey", NEWER), TX, BlockNumber(3))
    registered = replace(new, status=KeyStatus.REGISTERED)
    assert transition(PROVIDER, view, change) == Step(
        keys=(registered, replace(KEY, status=KeyStatus.RETIRED, reason=f"replaced by {NEWER}")),
        facts=replace(FACTS, publications=12),
        effects=(_publish(registered, 11, 4, 4096, 0), _publish(other_workload, 12, 4, 4096, 0)),
        settled=(
            Settlement(_id("registerKey", NEWER), True),
            Settlement(_id("rotate", ENCLAVE), True),
        ),
    )


@pytest.mark.parametrize("keys", [(), (KEY,)])
def test_a_key_confirmation_not_waited_for_only_settles(keys: tuple[EnclaveKey, ...]) -> None:
    change = sc.TxConfirmed(_id("registerKey", ENCLAVE), TX, BlockNumber(3))
    assert transition(PROVIDER, _view(keys=keys), change) == Step(
        settled=(Settlement(_id("registerKey", ENCLAVE), True),)
    )


def test_another_confirmation_only_settles() -> None:
    change = sc.TxConfirmed(_id("submitResult", JOB), TX, BlockNumber(3))
    assert transition(PROVIDER, _view(RUNNING), change) == Step(
        settled=(Settlement(_id("submitResult", JOB), True),)
    )


# ---------------------------------------------------------------- quotes


def _quote(
    *,
    measurement: Hash32 = MEASUREMENT,
    tee_kinds: int = 1 << 5,
    max_price: int = 10**6,
    deadline: int = 1_000 + 1_800,
    cores: int = 1,
    memory: int = 256,
) -> sc.QuoteRequested:
    return sc.QuoteRequested(
        "q-1", JOB, CLIENT, measurement, tee_kinds, max_price, deadline, cores, memory, 1_000
    )


def _quoted(price: int, deadline: int = 2_800, cores: int = 1, memory: int = 256) -> Job:
    return Job(
        JOB,
        JobStatus.OPEN,
        client=CLIENT,
        provider=ME,
        price=price,
        deadline=deadline,
        measurement=MEASUREMENT,
        cpu_cores=cores,
        memory_mib=memory,
        enclave_key=ENCLAVE,
    )


def _reply(price: int, reason: str) -> str:
    reply = {
        "price": price,
        "tee_kind": 5,
        "measurement": MEASUREMENT,
        "enclave_key": ENCLAVE,
        "min_duration": 60,
        "max_duration": 3600,
        "valid_until": 1_120,
        "reason": reason,
    }
    return json.dumps(reply, sort_keys=True)


FLOOR_BID = "bid 0.0000000000000036 ETH/h: floor 0.0000000000000036 ETH/h, utilization after "


def test_a_quote_prices_the_duration_the_deadline_leaves_at_the_floor() -> None:
    step = transition(PROVIDER, _view(), _quote())
    assert step == Step(jobs=(_quoted(1_800),), reply=_reply(1_800, FLOOR_BID + "admission 25.0%"))


def test_a_quote_surges_with_the_utilization_the_job_would_cause() -> None:
    me = _me(surge_permille=500)
    step = transition(me, _view(replace(RUNNING, job_id=JOB2)), _quote(cores=1, memory=1024))
    # two of four cores after admission: 3600 * (1 + 0.5 * 0.5) = 4500 wei/h for half an hour
    reason = (
        "bid 0.0000000000000045 ETH/h: floor 0.0000000000000036 ETH/h, "
        "utilization after admission 50.0%"
    )
    assert step == Step(jobs=(_quoted(2_250, memory=1024),), reply=_reply(2_250, reason))


@pytest.mark.parametrize("deadline, duration", [(1_060, 60), (1_061, 61)])
def test_a_deadline_leaving_exactly_the_minimum_is_quoted(deadline: int, duration: int) -> None:
    step = transition(PROVIDER, _view(), _quote(deadline=deadline))
    assert step.jobs == (_quoted(duration, deadline=deadline),)
    assert json.loads(step.reply)["price"] == duration


@pytest.mark.parametrize("deadline, left", [(1_059, 59), (900, 0)])
def test_a_deadline_leaving_less_than_the_minimum_is_refused(deadline: int, left: int) -> None:
    assert transition(PROVIDER, _view(), _quote(deadline=deadline)) == Step(
        rejected=f"deadline leaves {left} s, this provider needs at least 60 s"
    )


def test_a_far_deadline_is_priced_for_the_longest_duration_only() -> None:
    step = transition(PROVIDER, _view(), _quote(deadline=1_000 + 10 * 3600))
    assert json.loads(step.reply)["price"] == 3_600


def test_a_surged_price_is_capped_at_what_the_job_pays_per_hour() -> None:
    # 3600 wei/h surged by 500 permille at 250 permille use is 4050 wei/h; the job pays
    # 1900 wei for 1800 s, 3800 wei/h: that is bid, and the whole price is exactly 1900 wei.
    step = transition(_me(surge_permille=500), _view(), _quote(max_price=1_900))
    reason = (
        "bid 0.0000000000000038 ETH/h: floor 0.0000000000000036 ETH/h, "
        "utilization after admission 25.0%"
    )
    assert step == Step(jobs=(_quoted(1_900),), reply=_reply(1_900, reason))


def test_a_one_second_job_is_priced_per_second() -> None:
    step = transition(_me(min_duration_s=1), _view(), _quote(deadline=1_001, max_price=1))
    assert json.loads(step.reply)["price"] == 1
    assert step.jobs == (_quoted(1, deadline=1_001),)


def test_the_memory_asked_counts_in_the_utilization_bid_on() -> None:
    step = transition(_me(surge_permille=1000), _view(), _quote(memory=3_072))
    # 3072 of 4096 MiB is 750 permille, more than the one core of four: 3600 * 1.75 wei/h
    reason = (
        "bid 0.0000000000000063 ETH/h: floor 0.0000000000000036 ETH/h, "
        "utilization after admission 75.0%"
    )
    assert step == Step(jobs=(_quoted(3_150, memory=3_072),), reply=_reply(3_150, reason))


def test_a_price_rounds_up_to_the_wei() -> None:
    # 3600 wei/h for 61 s is 61 wei; at 3599 wei/h it is 60.98..., asked as 61
    step = transition(_me(floor_price_per_hour=3_599), _view(), _quote(deadline=1_061))
    assert json.loads(step.reply)["price"] == 61


def test_a_job_paying_exactly_the_price_is_quoted_and_one_wei_less_is_not() -> None:
    assert (
        json.loads(transition(PROVIDER, _view(), _quote(max_price=1_800)).reply)["price"] == 1_800
    )
    # 1799 wei for 1800 s is 3598 wei/h, under the 3600 floor
    assert transition(PROVIDER, _view(), _quote(max_price=1_799)) == Step(
        rejected=(
            "decline: max price 0.000000000000003598 ETH/h is below our floor "
            "0.0000000000000036 ETH/h"
        )
    )


def test_the_hourly_ceiling_is_the_jobs_price_over_its_duration() -> None:
    # 1801 wei for 1800 s: 3602 wei/h (rounded down), above a 3601 floor; the floor is bid,
    # and half an hour of it (1800.5 wei) rounds up to 1801 wei, which the job still pays.
    step = transition(_me(floor_price_per_hour=3_601), _view(), _quote(max_price=1_801))
    assert json.loads(step.reply)["price"] == 1_801


def test_no_quote_without_a_registered_enclave_for_the_measurement_and_kind() -> None:
    refused = Step(
        rejected=f"no registered enclave here runs measurement {SPEC} under an accepted TEE kind"
    )
    assert transition(PROVIDER, _view(), _quote(measurement=SPEC)) == refused
    wrong_kind = _quote(tee_kinds=(1 << 4) | (1 << 6))
    assert transition(PROVIDER, _view(), wrong_kind) == Step(
        rejected=f"no registered enclave here runs measurement {MEASUREMENT} under an "
        "accepted TEE kind"
    )
    retired = _view(keys=(replace(KEY, status=KeyStatus.RETIRED),))
    assert transition(PROVIDER, retired, _quote()).rejected.startswith("no registered enclave")
    earlier = _view(keys=(replace(KEY, boot_id="boot-1"),))
    assert transition(PROVIDER, earlier, _quote()).rejected.startswith("no registered enclave")


def test_a_quote_for_a_job_already_taken_on_here_is_refused_and_a_requote_allowed() -> None:
    assert transition(PROVIDER, _view(RUNNING), _quote()) == Step(
        rejected=f"job {JOB} is already running here"
    )
    again = transition(PROVIDER, _view(_quoted(5)), _quote())
    assert again.jobs == (_quoted(1_800),)


def test_a_quote_that_does_not_fit_is_declined_or_deferred_with_the_reason() -> None:
    assert transition(PROVIDER, _view(), _quote(cores=5)) == Step(
        rejected="decline: needs 5 CPU cores, offers 4"
    )
    busy = replace(RUNNING, job_id=JOB2, cpu_cores=4)
    assert transition(PROVIDER, _view(busy), _quote()) == Step(
        rejected=("defer: full now: needs 1 CPU cores, 0 free; will bid again when capacity frees")
    )


def test_a_request_the_scheduler_cannot_read_is_refused_with_its_words() -> None:
    step = transition(PROVIDER, _view(), _quote(cores=-1))
    assert step.rejected.startswith("cannot bid on this request: ")
    assert step.jobs == () and step.reply == ""


# ---------------------------------------------------------------- matches and open jobs


def _matched(provider: Address = ME) -> sc.StateChange:
    return _event(sc.JobMatched, JOB, CLIENT, provider, 1_700, 2_900, SPEC, SEALED)


def test_a_match_of_a_standing_offer_takes_the_chains_terms() -> None:
    step = transition(PROVIDER, _view(), _matched())
    job = Job(
        JOB,
        JobStatus.ASSIGNED,
        client=CLIENT,
        provider=ME,
        price=1_700,
        deadline=2_900,
        input_hash=SEALED,
        spec_hash=SPEC,
    )
    assert step == Step(
        jobs=(job,),
        facts=replace(FACTS, publications=11),
        effects=(_publish(KEY, 11, 3, 4096, 250),),
    )


def test_a_match_of_our_quote_keeps_what_the_quote_reserved() -> None:
    quoted = replace(_quoted(1_800), enclave_key=NEWER, measurement=SPEC, memory_mib=2048)
    step = transition(PROVIDER, _view(quoted), _matched())
    assert step.jobs == (
        replace(
            ASSIGNED,
            price=1_700,
            deadline=2_900,
            cpu_cores=1,
            memory_mib=2048,
            measurement=SPEC,
            enclave_key=NEWER,
        ),
    )
    assert step.effects == (_publish(KEY, 11, 3, 2048, 500),)


def test_a_match_for_a_job_already_past_its_quote_changes_nothing() -> None:
    assert transition(PROVIDER, _view(RUNNING), _matched()) == NO_STEP


def test_a_match_to_another_provider_marks_our_quote_taken_and_nothing_else() -> None:
    assert transition(PROVIDER, _view(_quoted(5)), _matched(SOMEONE)) == Step(
        jobs=(replace(_quoted(5), status=JobStatus.TAKEN),)
    )
    assert transition(PROVIDER, _view(RUNNING), _matched(SOMEONE)) == NO_STEP
    assert transition(PROVIDER, _view(), _matched(SOMEONE)) == NO_STEP


def test_a_posted_job_is_recorded_open_with_its_escrow_once() -> None:
    change = _event(sc.JobPosted, JOB, CLIENT, 5_000, 2_900, 0b100000, SPEC, SEALED)
    posted = Job(
        JOB,
        JobStatus.OPEN,
        client=CLIENT,
        price=5_000,
        deadline=2_900,
        input_hash=SEALED,
        spec_hash=SPEC,
        tee_kinds=0b100000,
    )
    assert transition(PROVIDER, _view(), change) == Step(jobs=(posted,))
    assert transition(PROVIDER, _view(posted), change) == NO_STEP


OPEN = Job(JOB, JobStatus.OPEN, client=CLIENT, price=5_000, deadline=2_900, input_hash=SEALED)


def test_accepting_an_open_job_sends_accept_job_with_the_key_and_duration() -> None:
    step = transition(PROVIDER, _view(OPEN), sc.AcceptJobRequested("r", JOB, ENCLAVE, 600))
    assert step == Step(
        jobs=(replace(OPEN, status=JobStatus.ACCEPTING, enclave_key=ENCLAVE),),
        effects=(_tx("acceptJob", JOB, [JOB, ENCLAVE, 600]),),
    )


@pytest.mark.parametrize(
    "jobs, status",
    [
        ((), "unknown"),
        ((replace(OPEN, status=JobStatus.ACCEPTING),), "accepting"),
        ((replace(_quoted(5)),), "open"),  # our own quote: not an open job to accept
    ],
)
def test_accepting_a_job_that_is_not_open_is_refused(jobs: tuple[Job, ...], status: str) -> None:
    step = transition(PROVIDER, _view(*jobs), sc.AcceptJobRequested("r", JOB, ENCLAVE, 600))
    assert step == Step(rejected=f"job {JOB} is not open (it is {status})")


@pytest.mark.parametrize("status", [JobStatus.OPEN, JobStatus.ACCEPTING])
def test_our_acceptance_on_chain_assigns_the_job(status: JobStatus) -> None:
    job = replace(OPEN, status=status, error="an earlier revert")
    step = transition(PROVIDER, _view(job), _event(sc.JobAccepted, JOB, ME))
    assert step == Step(
        jobs=(replace(job, status=JobStatus.ASSIGNED, provider=ME, error=""),),
        settled=(Settlement(_id("acceptJob", JOB), True),),
    )


def test_our_acceptance_of_a_job_we_do_not_follow_only_settles() -> None:
    for view in (_view(), _view(RUNNING)):
        assert transition(PROVIDER, view, _event(sc.JobAccepted, JOB, ME)) == Step(
            settled=(Settlement(_id("acceptJob", JOB), True),)
        )


def test_an_acceptance_by_another_provider_loses_the_job_for_us() -> None:
    step = transition(PROVIDER, _view(OPEN), _event(sc.JobAccepted, JOB, SOMEONE))
    assert step == Step(
        jobs=(replace(OPEN, status=JobStatus.TAKEN),),
        settled=(Settlement(_id("acceptJob", JOB), False, f"accepted by {SOMEONE}"),),
    )
    assert transition(PROVIDER, _view(), _event(sc.JobAccepted, JOB, SOMEONE)) == NO_STEP


# ---------------------------------------------------------------- running


def test_the_input_of_an_assigned_job_starts_it_in_the_enclave_it_was_sealed_to() -> None:
    for key in (KEY, replace(KEY, status=KeyStatus.RETIRED)):
        step = transition(
            PROVIDER, _view(ASSIGNED, keys=(key,)), sc.InputReceived(JOB, SEALED, 9, ENCLAVE)
        )
        assert step == Step(
            jobs=(replace(ASSIGNED, status=JobStatus.RUNNING),),
            effects=(StartJob(_id("start", JOB), JOB, SEALED, 2_800, ENCLAVE),),
            reply=json.dumps({"spec_hash": SPEC, "input_hash": SEALED}),
        )


@pytest.mark.parametrize(
    "job, keys, change, why",
    [
        (
            None,
            (KEY,),
            sc.InputReceived(JOB, SEALED, 9, ENCLAVE),
            "is not assigned to this provider",
        ),
        (
            replace(ASSIGNED, provider=SOMEONE),
            (KEY,),
            sc.InputReceived(JOB, SEALED, 9, ENCLAVE),
            "is not assigned to this provider",
        ),
        (
            RUNNING,
            (KEY,),
            sc.InputReceived(JOB, SEALED, 9, ENCLAVE),
            "is running, not waiting for input",
        ),
        (
            ASSIGNED,
            (KEY,),
            sc.InputReceived(JOB, OUT, 9, ENCLAVE),
            f"input hash {OUT} is not the job's {SEALED}",
        ),
        (
            ASSIGNED,
            (KEY,),
            sc.InputReceived(JOB, SEALED, 9, NEWER),
            f"enclave key {NEWER} is not running here",
        ),
        (
            ASSIGNED,
            (replace(KEY, boot_id="boot-1"),),
            sc.InputReceived(JOB, SEALED, 9, ENCLAVE),
            f"enclave key {ENCLAVE} is not running here",
        ),
        (
            ASSIGNED,
            (replace(KEY, status=KeyStatus.REGISTERING),),
            sc.InputReceived(JOB, SEALED, 9, ENCLAVE),
            f"enclave key {ENCLAVE} is not running here",
        ),
    ],
)
def test_input_that_cannot_start_the_job_is_refused_with_why(
    job: Job | None, keys: tuple[EnclaveKey, ...], change: sc.InputReceived, why: str
) -> None:
    view = _view(keys=keys) if job is None else _view(job, keys=keys)
    prefix = "" if why.startswith(("input hash", "enclave key")) else f"job {JOB} "
    assert transition(PROVIDER, view, change) == Step(rejected=prefix + why)


def test_a_result_without_batching_is_submitted_on_the_enclaves_signature() -> None:
    for me in (_me(batch_size=1), _me(batch_size=0)):
        step = transition(me, _view(RUNNING), sc.JobExecuted(JOB, OUT, "0xsig", 1_100))
        assert step == Step(
            jobs=(
                replace(
                    RUNNING, status=JobStatus.SUBMITTING, output_hash=OUT, enclave_signature="0xsig"
                ),
            ),
            effects=(_tx("submitResult", JOB, [JOB, OUT, "0xsig"]),),
            settled=(Settlement(_id("start", JOB), True),),
        )


@pytest.mark.parametrize("job", [None, ASSIGNED])
def test_a_result_for_a_job_not_running_is_dropped(job: Job | None) -> None:
    view = _view() if job is None else _view(job)
    assert transition(PROVIDER, view, sc.JobExecuted(JOB, OUT, "0xsig", 1)) == Step(
        settled=(Settlement(_id("start", JOB), False, "job no longer running"),)
    )


def _ready(job_id: JobId, at: int, key: Address = ENCLAVE) -> Job:
    return replace(
        RUNNING,
        job_id=job_id,
        status=JobStatus.READY,
        output_hash=OUT2,
        enclave_signature="0x02",
        ready_at=at,
        enclave_key=key,
    )


def test_a_result_waits_until_its_batch_is_full_then_the_batch_is_signed() -> None:
    me = _me(batch_size=3)
    others = (_ready(JOB2, 90), _ready(JOB3, 80, key=NEWER))
    step = transition(me, _view(RUNNING, *others), sc.JobExecuted(JOB, OUT, "0x01", 100))
    ready = replace(
        RUNNING, status=JobStatus.READY, output_hash=OUT, enclave_signature="0x01", ready_at=100
    )
    assert step == Step(jobs=(ready,), settled=(Settlement(_id("start", JOB), True),))
    full = (_ready(JOB2, 100), _ready(JOB3, 90))  # JOB2 ties on time, orders by id
    step = transition(me, _view(RUNNING, *full), sc.JobExecuted(JOB, OUT, "0x01", 100))
    batch = SignBatch(
        _id("batch", "5"),
        "5",
        ENCLAVE,
        json.dumps([JOB3, JOB, JOB2]),
        json.dumps([OUT2, OUT, OUT2]),
    )
    assert step == Step(
        jobs=(
            replace(full[1], status=JobStatus.SUBMITTING),
            replace(ready, status=JobStatus.SUBMITTING),
            replace(full[0], status=JobStatus.SUBMITTING),
        ),
        facts=replace(FACTS, batches=5),
        effects=(batch,),
        settled=(Settlement(_id("start", JOB), True),),
    )


@pytest.mark.parametrize("now, due", [(129, False), (130, True), (131, True)])
def test_a_partial_batch_goes_out_once_its_oldest_result_waited_long_enough(
    now: int, due: bool
) -> None:
    me = _me(batch_size=5, batch_max_wait_s=30)
    view = _view(_ready(JOB, 100), _ready(JOB2, 110), _ready(JOB3, 10, key=NEWER))
    step = transition(me, view, sc.BatchDue(ENCLAVE, now))
    if not due:
        assert step == NO_STEP
        return
    batch = SignBatch(
        _id("batch", "5"), "5", ENCLAVE, json.dumps([JOB, JOB2]), json.dumps([OUT2, OUT2])
    )
    assert step == Step(
        jobs=tuple(
            replace(_ready(j, t), status=JobStatus.SUBMITTING) for j, t in ((JOB, 100), (JOB2, 110))
        ),
        facts=replace(FACTS, batches=5),
        effects=(batch,),
    )


def test_no_batch_is_due_without_a_ready_result_of_the_key() -> None:
    view = _view(_ready(JOB3, 10, key=NEWER), RUNNING)
    assert transition(PROVIDER, view, sc.BatchDue(ENCLAVE, 10**9)) == NO_STEP


def test_a_signed_batch_is_submitted_as_signed() -> None:
    change = sc.BatchSigned("5", json.dumps([JOB, JOB2]), json.dumps([OUT, OUT2]), "0xbatch")
    assert transition(PROVIDER, _view(), change) == Step(
        effects=(_tx("submitResults", "batch-5", [[JOB, JOB2], [OUT, OUT2], "0xbatch"]),),
        settled=(Settlement(_id("batch", "5"), True),),
    )


def test_a_failed_run_gives_the_job_back_and_frees_its_share() -> None:
    step = transition(PROVIDER, _view(RUNNING), sc.JobExecutionFailed(JOB, "ran past 60 s"))
    assert step == Step(
        jobs=(replace(RUNNING, status=JobStatus.FAILED, error="ran past 60 s"),),
        facts=replace(FACTS, publications=11),
        effects=(_tx("releaseJob", JOB, [JOB]), _publish(KEY, 11, 4, 4096, 0)),
        settled=(Settlement(_id("start", JOB), False, "ran past 60 s"),),
    )
    assert transition(PROVIDER, _view(ASSIGNED), sc.JobExecutionFailed(JOB, "late")) == Step(
        settled=(Settlement(_id("start", JOB), False, "late"),)
    )


# ---------------------------------------------------------------- endings


SUBMITTING = replace(RUNNING, status=JobStatus.SUBMITTING, output_hash=OUT)


def _pending_for_job() -> tuple[Effect, ...]:
    return (
        _tx("submitResult", JOB, []),
        StartJob(_id("start", JOB), JOB, SEALED, 1, ENCLAVE),
        _tx("releaseJob", JOB, []),
        _tx("acceptJob", JOB2, []),
    )


def test_a_settlement_records_the_payout_and_frees_the_capacity() -> None:
    view = _view(SUBMITTING, pending=_pending_for_job())
    step = transition(PROVIDER, view, _event(sc.JobSettled, JOB, ME, OUT2, 1_650))
    assert step == Step(
        jobs=(replace(SUBMITTING, status=JobStatus.SETTLED, output_hash=OUT2, payout=1_650),),
        facts=replace(FACTS, earned=1_655, publications=11),
        effects=(_publish(KEY, 11, 4, 4096, 0),),
        settled=(
            Settlement(_id("submitResult", JOB), True),
            Settlement(_id("start", JOB), False, "job settled"),
            Settlement(_id("releaseJob", JOB), False, "job settled"),
        ),
    )


@pytest.mark.parametrize(
    "threshold, withdrawn", [(1_655, True), (1_656, False), (1, True), (0, False)]
)
def test_earnings_are_withdrawn_once_they_reach_the_threshold(
    threshold: int, withdrawn: bool
) -> None:
    me = _me(withdraw_threshold=threshold)
    step = transition(me, _view(SUBMITTING), _event(sc.JobSettled, JOB, ME, OUT, 1_650))
    if withdrawn:
        assert step.facts == replace(FACTS, earned=0, publications=11)
        assert step.effects == (
            SendTransaction(
                _id("withdraw", "earnings", JOB), "withdraw", json.dumps([1_655, ME]), 0
            ),
            _publish(KEY, 11, 4, 4096, 0),
        )
    else:
        assert step.facts == replace(FACTS, earned=1_655, publications=11)
        assert step.effects == (_publish(KEY, 11, 4, 4096, 0),)


@pytest.mark.parametrize(
    "jobs, provider",
    [((), ME), ((SUBMITTING,), SOMEONE), ((replace(SUBMITTING, status=JobStatus.SETTLED),), ME)],
)
def test_a_settlement_not_ours_or_seen_already_changes_nothing(
    jobs: tuple[Job, ...], provider: Address
) -> None:
    change = _event(sc.JobSettled, JOB, provider, OUT, 1_650)
    assert transition(PROVIDER, _view(*jobs), change) == NO_STEP


@pytest.mark.parametrize(
    "change, why",
    [
        (_event(sc.JobRefunded, JOB, CLIENT, 1_800, 100), "job refunded"),
        (_event(sc.JobReleased, JOB, CLIENT, ME, 1_800), "job given back"),
    ],
)
def test_a_refund_or_release_ends_the_job_and_frees_its_share(
    change: sc.StateChange, why: str
) -> None:
    step = transition(PROVIDER, _view(RUNNING, pending=_pending_for_job()), change)
    assert step == Step(
        jobs=(replace(RUNNING, status=JobStatus.REFUNDED),),
        facts=replace(FACTS, publications=11),
        effects=(_publish(KEY, 11, 4, 4096, 0),),
        settled=(
            Settlement(_id("releaseJob", JOB), True),
            Settlement(_id("submitResult", JOB), False, why),
            Settlement(_id("start", JOB), False, why),
        ),
    )
    assert transition(PROVIDER, _view(), change) == NO_STEP
    assert transition(PROVIDER, _view(replace(RUNNING, provider=SOMEONE)), change) == NO_STEP


def test_a_cancelled_job_ends_with_every_wait() -> None:
    change = _event(sc.JobCancelled, JOB, CLIENT, 5_000)
    step = transition(PROVIDER, _view(OPEN, pending=_pending_for_job()), change)
    assert step == Step(
        jobs=(replace(OPEN, status=JobStatus.CANCELLED),),
        settled=(
            Settlement(_id("submitResult", JOB), False, "job cancelled"),
            Settlement(_id("start", JOB), False, "job cancelled"),
            Settlement(_id("releaseJob", JOB), False, "job cancelled"),
        ),
    )
    assert transition(PROVIDER, _view(), change) == NO_STEP


# ---------------------------------------------------------------- reverted transactions


def test_a_reverted_key_registration_refuses_the_key_with_the_reason() -> None:
    registering = replace(KEY, status=KeyStatus.REGISTERING)
    change = sc.TxReverted(_id("registerKey", ENCLAVE), TX, "QuoteStale")
    assert transition(PROVIDER, _view(keys=(registering,)), change) == Step(
        keys=(replace(registering, status=KeyStatus.REFUSED, reason="registerKey: QuoteStale"),),
        settled=(Settlement(_id("registerKey", ENCLAVE), False, "QuoteStale"),),
    )
    assert transition(PROVIDER, _view(keys=()), change) == Step(
        settled=(Settlement(_id("registerKey", ENCLAVE), False, "QuoteStale"),)
    )


def test_a_reverted_registration_is_no_longer_under_way() -> None:
    view = _view(RUNNING, facts=replace(FACTS, registered=False, registering=True))
    change = sc.TxReverted(_id("register", "boot-2"), None, "StakeTooLow")
    assert transition(PROVIDER, view, change) == Step(
        facts=replace(FACTS, registered=False, registering=False),
        settled=(Settlement(_id("register", "boot-2"), False, "StakeTooLow"),),
    )


def test_a_reverted_acceptance_reopens_the_job_with_the_reason() -> None:
    accepting = replace(OPEN, status=JobStatus.ACCEPTING, enclave_key=ENCLAVE)
    change = sc.TxReverted(_id("acceptJob", JOB), TX, "AlreadyAccepted")
    assert transition(PROVIDER, _view(accepting), change) == Step(
        jobs=(replace(accepting, status=JobStatus.OPEN, error="AlreadyAccepted"),),
        settled=(Settlement(_id("acceptJob", JOB), False, "AlreadyAccepted"),),
    )


@pytest.mark.parametrize(
    "action, job",
    [
        ("acceptJob", OPEN),  # no longer accepting: nothing to reopen
        ("submitResult", SUBMITTING),
        ("releaseJob", replace(OPEN, status=JobStatus.ACCEPTING)),
    ],
)
def test_another_reverted_transaction_keeps_the_job_and_records_why(action: str, job: Job) -> None:
    change = sc.TxReverted(_id(action, JOB), TX, "Nope")
    assert transition(PROVIDER, _view(job), change) == Step(
        jobs=(replace(job, error="Nope"),),
        settled=(Settlement(_id(action, JOB), False, "Nope"),),
    )
    assert transition(PROVIDER, _view(), change) == Step(
        settled=(Settlement(_id(action, JOB), False, "Nope"),)
    )

"""The capacity ledger's exact figures, refusals and shortfall texts, on both sides of each edge."""

from __future__ import annotations

import pytest

from scheduler.capacity import CapacityLedger, describe_shortfall, utilization_permille
from scheduler.errors import DuplicateReservationError, OverCommitError, UnknownReservationError
from scheduler.models import JobId, Resources

MACHINE = Resources(gpus=4, cpu_cores=16, memory_mib=65536)


def test_utilization_is_the_most_used_resource_in_whole_permille() -> None:
    assert utilization_permille(Resources(1, 8, 16384), MACHINE) == 500
    assert utilization_permille(Resources(0, 2, 16384), MACHINE) == 250
    figure = utilization_permille(Resources(0, 0, 1), Resources(0, 3, 3))
    assert figure == 333 and isinstance(figure, int)
    assert utilization_permille(Resources(0, 2, 0), Resources(0, 3, 1)) == 666


def test_utilization_of_a_machine_without_gpus_ignores_the_gpu_share() -> None:
    cpu_only = Resources(gpus=0, cpu_cores=8, memory_mib=4096)
    assert utilization_permille(Resources(0, 2, 1024), cpu_only) == 250
    assert utilization_permille(Resources(), Resources()) == 0


def test_utilization_counts_a_machine_with_a_single_unit() -> None:
    one_gpu = Resources(gpus=1, cpu_cores=16, memory_mib=65536)
    assert utilization_permille(Resources(gpus=1), one_gpu) == 1000
    assert utilization_permille(Resources(cpu_cores=1), Resources(0, 1, 0)) == 1000


def test_utilization_is_capped_at_1000() -> None:
    assert utilization_permille(Resources(gpus=6), MACHINE) == 1000
    assert utilization_permille(Resources(gpus=4), MACHINE) == 1000


def test_ledger_figures_follow_reservations() -> None:
    ledger = CapacityLedger(MACHINE).reserve(JobId("a"), Resources(1, 4, 8192))
    assert ledger.reserved == Resources(1, 4, 8192)
    assert ledger.free == Resources(3, 12, 57344)
    assert ledger.utilization_permille == 250
    assert CapacityLedger(MACHINE).utilization_permille == 0
    assert CapacityLedger(Resources()).utilization_permille == 0


def test_a_reservation_of_exactly_the_free_capacity_fits_one_unit_more_does_not() -> None:
    ledger = CapacityLedger(MACHINE).reserve(JobId("a"), Resources(1, 4, 8192))
    exact = Resources(3, 12, 57344)
    assert ledger.can_reserve(exact)
    assert ledger.reserve(JobId("b"), exact).free == Resources()
    for over in (Resources(4, 12, 57344), Resources(3, 13, 57344), Resources(3, 12, 57345)):
        assert not ledger.can_reserve(over)
        assert ledger.could_ever_fit(over)
    assert not ledger.could_ever_fit(Resources(5, 0, 0))
    assert ledger.could_ever_fit(MACHINE)


def test_over_commit_names_the_job_and_each_short_resource() -> None:
    ledger = CapacityLedger(MACHINE).reserve(JobId("a"), Resources(2, 8, 32768))
    with pytest.raises(OverCommitError) as refused:
        ledger.reserve(JobId("b"), Resources(4, 8, 65536))
    assert str(refused.value) == "job b: needs 4 GPUs, 2 free; needs 64 GiB memory, 32 GiB free"


def test_a_second_reservation_for_a_job_is_refused_even_when_it_fits() -> None:
    ledger = CapacityLedger(MACHINE).reserve(JobId("a"), Resources(1, 1, 1))
    with pytest.raises(DuplicateReservationError) as refused:
        ledger.reserve(JobId("a"), Resources(1, 1, 1))
    assert str(refused.value) == "job a already holds a reservation"


def test_release_returns_the_capacity_and_refuses_unknown_jobs() -> None:
    ledger = (
        CapacityLedger(MACHINE)
        .reserve(JobId("a"), Resources(1, 2, 1024))
        .reserve(JobId("b"), Resources(2, 2, 2048))
    )
    released = ledger.release(JobId("a"))
    assert dict(released.reservations) == {JobId("b"): Resources(2, 2, 2048)}
    assert released.free == Resources(2, 14, 63488)
    with pytest.raises(UnknownReservationError) as refused:
        released.release(JobId("a"))
    assert str(refused.value) == "job a holds no reservation"


def test_a_ledger_built_over_capacity_is_refused_with_both_totals() -> None:
    with pytest.raises(OverCommitError) as refused:
        CapacityLedger(Resources(1, 1, 1), {JobId("x"): Resources(1, 2, 1)})
    assert str(refused.value) == (
        "reservations Resources(gpus=1, cpu_cores=2, memory_mib=1) exceed "
        "capacity Resources(gpus=1, cpu_cores=1, memory_mib=1)"
    )
    exact = CapacityLedger(Resources(1, 2, 1), {JobId("x"): Resources(1, 2, 1)})
    assert exact.free == Resources()


@pytest.mark.parametrize(
    ("need", "available", "text"),
    [
        (Resources(2, 4, 1024), Resources(2, 4, 1024), "fits"),
        (Resources(3, 4, 1024), Resources(2, 4, 1024), "needs 3 GPUs, 2 free"),
        (Resources(2, 5, 1024), Resources(2, 4, 1024), "needs 5 CPU cores, 4 free"),
        (Resources(2, 4, 513), Resources(2, 4, 512), "needs 513 MiB memory, 512 MiB free"),
        (Resources(0, 0, 2048), Resources(0, 0, 1536), "needs 2 GiB memory, 1.5 GiB free"),
        (
            Resources(8, 32, 131072),
            Resources(1, 2, 2048),
            "needs 8 GPUs, 1 free; needs 32 CPU cores, 2 free; needs 128 GiB memory, 2 GiB free",
        ),
    ],
)
def test_shortfall_text(need: Resources, available: Resources, text: str) -> None:
    assert describe_shortfall(need, available, "free") == text


def test_shortfall_uses_the_callers_word_for_what_is_available() -> None:
    assert describe_shortfall(Resources(2, 0, 0), Resources(1, 0, 0), "on the machine") == (
        "needs 2 GPUs, 1 on the machine"
    )
    ledger = CapacityLedger(MACHINE).reserve(JobId("a"), Resources(4, 0, 0))
    assert ledger.shortfall(Resources(1, 16, 0)) == "needs 1 GPUs, 0 free"

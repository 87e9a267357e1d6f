"""Domain values refuse input that cannot describe a real offer, job or machine."""

from typing import Any

import pytest

from scheduler.errors import (
    InvalidAddressError,
    InvalidInputError,
    InvalidMeasurementError,
    InvalidPriceError,
    InvalidRequirementError,
    InvalidTimeWindowError,
    NegativeResourceError,
    SchedulerError,
)
from scheduler.models import (
    GpuModel,
    GpuOffer,
    GpuRequirement,
    JobId,
    JobRequirements,
    Measurement,
    PeerId,
    ProviderAddress,
    ResourceOffer,
    Resources,
    TcbStatus,
    TeeKind,
    Timestamp,
    Wei,
    WorkloadKind,
    provider_address,
)
from scheduler.units import format_eth, format_mib, format_price_per_hour

MEASUREMENT = Measurement("11" * 32)


def offer(**overrides: Any) -> ResourceOffer:
    fields: dict[str, Any] = {
        "provider": ProviderAddress("0x" + "ab" * 20),
        "peer_id": PeerId("peer"),
        "nonce": 0,
        "price_per_hour": Wei(10),
        "cpu_cores": 4,
        "memory_mib": 1024,
        "tee_kind": TeeKind.TDX,
        "measurement": MEASUREMENT,
        "tcb_status": TcbStatus.UP_TO_DATE,
        "valid_from": Timestamp(0),
        "valid_until": Timestamp(100),
    }
    fields.update(overrides)
    return ResourceOffer(**fields)


def job(**overrides: Any) -> JobRequirements:
    fields: dict[str, Any] = {
        "job_id": JobId("j"),
        "workload": WorkloadKind.WASM,
        "accepted_tee_kinds": frozenset({TeeKind.TDX}),
        "max_price_per_hour": Wei(10),
        "deadline": Timestamp(1000),
        "duration_s": 10,
    }
    fields.update(overrides)
    return JobRequirements(**fields)


def test_enum_values_match_the_contracts() -> None:
    assert {k.name: k.value for k in TeeKind} == {
        "SGX": 1,
        "TDX": 2,
        "SEV_SNP": 3,
        "NVIDIA_CC": 4,
        "SIM": 5,
        "CCA": 6,
    }
    assert [s.value for s in TcbStatus] == list(range(7))
    assert TcbStatus.REVOKED < TcbStatus.OUT_OF_DATE < TcbStatus.UP_TO_DATE
    assert int(TcbStatus.CONFIGURATION_AND_SW_HARDENING_NEEDED) == 3
    assert TcbStatus.SW_HARDENING_NEEDED.label == "SWHardeningNeeded"
    assert TeeKind.SIM.label == "SIM (INSECURE)"
    assert not TeeKind.SIM.is_hardware and TeeKind.SGX.is_hardware


def test_errors_form_one_hierarchy_of_value_errors() -> None:
    assert issubclass(NegativeResourceError, InvalidInputError)
    assert issubclass(InvalidInputError, ValueError)
    assert issubclass(InvalidInputError, SchedulerError)


def test_measurement_is_normalized_and_validated() -> None:
    assert Measurement("0x" + "AB" * 32).hex == "ab" * 32
    assert Measurement.from_bytes(bytes(32)) == Measurement("00" * 32)
    assert Measurement("ab" * 32).short == "0xabababab…"
    for bad in ("ab" * 31, "zz" * 32, ""):
        with pytest.raises(InvalidMeasurementError):
            Measurement(bad)
    with pytest.raises(InvalidMeasurementError):
        Measurement.from_bytes(bytes(31))


def test_provider_address_is_validated_and_lower_cased() -> None:
    assert provider_address("0x" + "AB" * 20) == "0x" + "ab" * 20
    assert offer(provider=ProviderAddress("0x" + "CD" * 20)).provider == "0x" + "cd" * 20
    with pytest.raises(InvalidAddressError):
        provider_address("0x1234")


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"cpu_cores": -1}, NegativeResourceError),
        ({"memory_mib": -1}, NegativeResourceError),
        ({"price_per_hour": Wei(-1)}, InvalidPriceError),
        ({"valid_until": Timestamp(0)}, InvalidTimeWindowError),
        ({"load_permille": 1001}, InvalidRequirementError),
        ({"evidence_verified": True}, InvalidTimeWindowError),
    ],
)
def test_offer_rejects_impossible_values(overrides: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        offer(**overrides)


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"cpu_cores": -2}, NegativeResourceError),
        ({"max_price_per_hour": Wei(-5)}, InvalidPriceError),
        ({"duration_s": 0}, InvalidTimeWindowError),
        ({"accepted_tee_kinds": frozenset()}, InvalidRequirementError),
        ({"max_latency_ms": -1}, NegativeResourceError),
    ],
)
def test_job_rejects_impossible_values(overrides: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        job(**overrides)


def test_gpu_values_reject_zero_and_negative_counts() -> None:
    with pytest.raises(NegativeResourceError):
        GpuOffer(GpuModel("H100"), -1, 1, True)
    with pytest.raises(NegativeResourceError):
        GpuOffer(GpuModel("H100"), 80, 0, True)
    with pytest.raises(InvalidRequirementError):
        GpuRequirement(0)


def test_resources_arithmetic_and_fit() -> None:
    machine = Resources(8, 64, 1024)
    need = Resources(2, 8, 512)
    assert machine - need == Resources(6, 56, 512)
    assert need + need == Resources(4, 16, 1024)
    assert need.fits_within(machine)
    assert not Resources(9, 1, 1).fits_within(machine)
    with pytest.raises(NegativeResourceError):
        need - machine


def test_job_and_offer_resources_include_gpus() -> None:
    gpu_job = job(gpu=GpuRequirement(4), cpu_cores=8, memory_mib=2048)
    assert gpu_job.resources == Resources(4, 8, 2048)
    assert offer(gpu=GpuOffer(GpuModel("H100"), 80, 8, True)).resources == Resources(8, 4, 1024)
    assert job().resources.gpus == 0


def test_units_render_readably() -> None:
    assert format_eth(12 * 10**15) == "0.012"
    assert format_eth(10**19) == "10"
    assert format_price_per_hour(10**16) == "0.01 ETH/h"
    assert format_mib(80 * 1024) == "80 GiB"
    assert format_mib(1536) == "1.5 GiB"
    assert format_mib(512) == "512 MiB"

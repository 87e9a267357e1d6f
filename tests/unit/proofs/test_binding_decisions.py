"""The key binding: its exact bytes, and each refusal of `check_binding` and the GPU nonce checks.

The expected report data is built here word by word from the layout in proofs/binding.py's
docstring (the one the AttestationVerifier contract recomputes), not through eth_abi.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from eth_utils.crypto import keccak

from proofs.binding import (
    GPU_NONCE_TAG,
    KEY_BINDING_TAG,
    KeyBinding,
    check_binding,
    check_gpu_bound_to_cpu,
    gpu_nonce_for,
)
from proofs.errors import BindingMismatch

EXPIRES_AT = 1_735_736_400  # 2025-01-01T13:00:00Z
BINDING = KeyBinding(
    chain_id=31337,
    verifier="0x" + "aa" * 20,
    provider="0x" + "bb" * 20,
    enclave_key="0x" + "cc" * 20,
    hpke_public_key=b"\x04" * 32,
    nonce=b"\x07" * 32,
    expires_at=EXPIRES_AT,
)
EXPIRY = datetime(2025, 1, 1, 13, 0, tzinfo=UTC)


def _word(value: int | bytes) -> bytes:
    if isinstance(value, int):
        return value.to_bytes(32, "big")
    return value.rjust(32, b"\x00")


def _expected_report_data(binding: KeyBinding) -> bytes:
    encoded = b"".join(
        [
            _word(keccak(text="CapaCloud.KeyBinding.v1")),
            _word(binding.chain_id),
            _word(bytes.fromhex(binding.verifier.removeprefix("0x"))),
            _word(bytes.fromhex(binding.provider.removeprefix("0x"))),
            _word(bytes.fromhex(binding.enclave_key.removeprefix("0x"))),
            _word(keccak(binding.hpke_public_key)),
            _word(binding.nonce),
            _word(binding.expires_at),
        ]
    )
    return keccak(encoded) + bytes(32)


def _message(exc: pytest.ExceptionInfo[BaseException]) -> str:
    return str(exc.value)


def test_tags_are_the_documented_hashes() -> None:
    assert keccak(text="CapaCloud.KeyBinding.v1") == KEY_BINDING_TAG
    assert keccak(text="CapaCloud.GpuNonce.v1") == GPU_NONCE_TAG


def test_report_data_is_the_documented_layout() -> None:
    data = BINDING.report_data()
    assert data == _expected_report_data(BINDING)
    assert len(data) == 64 and data[32:] == bytes(32)


@pytest.mark.parametrize(
    "change",
    [
        {"chain_id": 1},
        {"verifier": "0x" + "ab" * 20},
        {"provider": "0x" + "ba" * 20},
        {"enclave_key": "0x" + "cd" * 20},
        {"hpke_public_key": b"\x05" * 32},
        {"nonce": b"\x08" * 32},
        {"expires_at": EXPIRES_AT + 1},
    ],
)
def test_every_field_is_bound(change: dict[str, object]) -> None:
    other = replace(BINDING, **change)  # type: ignore[arg-type]
    assert other.report_data() == _expected_report_data(other)
    assert other.report_data() != BINDING.report_data()


def test_addresses_bind_the_same_in_any_letter_case() -> None:
    checksummed = replace(BINDING, verifier="0x" + "AA" * 20, provider="0x" + "Bb" * 20)
    assert checksummed.report_data() == BINDING.report_data()


@pytest.mark.parametrize("length", [0, 31, 33])
def test_a_nonce_that_is_not_32_bytes_is_refused(length: int) -> None:
    with pytest.raises(ValueError) as refused:
        replace(BINDING, nonce=b"\x07" * length).report_data()
    assert _message(refused) == "nonce must be 32 bytes"


def test_expires_is_the_utc_instant_of_expires_at() -> None:
    assert BINDING.expires() == EXPIRY
    assert BINDING.expires().utcoffset() == timedelta(0)


def test_check_binding_accepts_its_own_report_data_until_just_before_expiry() -> None:
    check_binding(BINDING.report_data(), BINDING, EXPIRY - timedelta(microseconds=1))
    check_binding(BINDING.report_data(), BINDING, EXPIRY - timedelta(days=365))


def test_check_binding_refuses_a_binding_at_and_after_expires_at() -> None:
    for at in (EXPIRY, EXPIRY + timedelta(seconds=1)):
        with pytest.raises(BindingMismatch) as refused:
            check_binding(BINDING.report_data(), BINDING, at)
        assert _message(refused) == "key binding expired at 2025-01-01T13:00:00+00:00"


@pytest.mark.parametrize(
    "report_data",
    [
        replace(BINDING, nonce=b"\x08" * 32).report_data(),
        # The reserved half must be zero: the same digest with anything after it is refused.
        BINDING.report_data()[:32] + b"\x01" + bytes(31),
        BINDING.report_data()[:32],
        b"",
    ],
)
def test_check_binding_refuses_report_data_of_any_other_binding(report_data: bytes) -> None:
    with pytest.raises(BindingMismatch) as refused:
        check_binding(report_data, BINDING, EXPIRY - timedelta(hours=1))
    assert _message(refused) == "report data does not bind these keys, provider and nonce"


def test_check_binding_names_the_mismatch_before_the_expiry() -> None:
    with pytest.raises(BindingMismatch) as refused:
        check_binding(bytes(64), BINDING, EXPIRY + timedelta(days=1))
    assert _message(refused) == "report data does not bind these keys, provider and nonce"


def test_gpu_nonce_is_the_tagged_hash_of_all_64_bytes() -> None:
    cpu = BINDING.report_data()
    assert gpu_nonce_for(cpu) == keccak(keccak(text="CapaCloud.GpuNonce.v1") + cpu)
    assert gpu_nonce_for(cpu) != keccak(cpu)
    assert gpu_nonce_for(cpu[:63] + b"\x01") != gpu_nonce_for(cpu)


@pytest.mark.parametrize("length", [0, 32, 63, 65])
def test_gpu_nonce_needs_exactly_64_bytes_of_cpu_report_data(length: int) -> None:
    with pytest.raises(ValueError) as refused:
        gpu_nonce_for(b"\x01" * length)
    assert _message(refused) == "CPU report data must be 64 bytes"


def test_gpu_bound_to_cpu_accepts_the_derived_nonce_and_refuses_any_other() -> None:
    cpu = BINDING.report_data()
    check_gpu_bound_to_cpu(gpu_nonce_for(cpu), cpu)
    other_cpu = replace(BINDING, nonce=b"\x08" * 32).report_data()
    for nonce in (gpu_nonce_for(other_cpu), cpu[:32], bytes(32)):
        with pytest.raises(BindingMismatch) as refused:
            check_gpu_bound_to_cpu(nonce, cpu)
        assert _message(refused) == "GPU evidence nonce is not derived from the CPU report data"

"""The provider's small parts on their own: capacity from the probe, the sealed-output store,
the TCB status it proposes for its keys."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import trio
from eth_account import Account

from node.config.loader import load_config
from node.config.model import NodeConfig
from node.daemon.provider_attestor import proposed_tcb_status
from node.daemon.provider_boot import with_probed_capacity
from node.daemon.provider_results import ResultStore
from node.enclave.attesters import SimAttester
from node.enclave.workloads import WorkloadMeasurement
from node.p2p.identity import PeerId
from proofs.binding import KeyBinding
from proofs.claims import TcbStatus
from proofs.receipts import Result


def _config(tmp_path: Path, role: str, provider: str = "") -> NodeConfig:
    path = tmp_path / "capa.toml"
    path.write_text(
        f"""
[node]
role = "{role}"

[chain]
rpc_urls = ["http://127.0.0.1:8545"]
chain_id = 31337

[provider]
backend = "sim"
{provider}
"""
    )
    return load_config(path, env={})


def test_capacity_of_zero_is_what_this_machine_has(tmp_path: Path) -> None:
    probed = with_probed_capacity(_config(tmp_path, "provider")).provider
    assert probed.cpu_cores == os.cpu_count()
    meminfo = Path("/proc/meminfo").read_text().split("\n")[0].split()
    assert probed.memory_mib == int(meminfo[1]) // 1024


def test_capacity_in_config_is_kept_and_other_roles_are_untouched(tmp_path: Path) -> None:
    config = _config(tmp_path, "provider", "cpu_cores = 3\nmemory_mib = 0")
    probed = with_probed_capacity(config).provider
    assert probed.cpu_cores == 3 and probed.memory_mib > 0
    client = _config(tmp_path, "client")
    assert with_probed_capacity(client) is client


def _result(job_id: bytes) -> Result:
    return Result(job_id, "0x" + "11" * 20, b"\x01" * 32, b"\x02" * 32, b"\x03" * 32)


def test_sealed_outputs_survive_a_restart_and_partial_ones_do_not(tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "outputs")
    done, interrupted = os.urandom(32), os.urandom(32)
    store.partial_path(done).write_bytes(b"sealed output")
    store.commit(done, _result(done), b"\x07" * 65)
    store.partial_path(interrupted).write_bytes(b"half")

    again = ResultStore(tmp_path / "outputs")
    assert not again.partial_path(interrupted).exists()
    assert again.find(interrupted) is None
    found = again.find(done)
    assert found is not None and found.result == _result(done)
    served = trio.run(again.result, PeerId("peer"), done)
    assert served is not None and served.output == b"sealed output"
    assert served.receipt_signature == b"\x07" * 65


def test_an_unreadable_receipt_is_no_result(tmp_path: Path) -> None:
    store = ResultStore(tmp_path)
    job = os.urandom(32)
    (tmp_path / f"{job.hex()}.sealed").write_bytes(b"x")
    (tmp_path / f"{job.hex()}.json").write_text("{not json")
    assert store.find(job) is None
    assert trio.run(store.result, PeerId("peer"), job) is None


def test_a_key_without_an_established_tcb_proposes_the_lowest_status() -> None:
    binding = KeyBinding(
        1, "0x" + "22" * 20, "0x" + "33" * 20, "0x" + "44" * 20, b"k", b"n" * 32, 9
    )
    sim = SimAttester(bytes(Account.create().key)).evidence(
        binding.report_data(), WorkloadMeasurement(b"m" * 32)
    )
    at = datetime.now(UTC)
    assert proposed_tcb_status(sim.evidence, at) == int(TcbStatus.REVOKED)
    assert proposed_tcb_status(b"not evidence", at) == int(TcbStatus.REVOKED)

"""The devnet's parts that need no chain: configs it writes, its state file, the options it
refuses, and stopping exactly the processes it recorded."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from node.cli.main import app
from node.config.loader import load_config
from node.config.model import Role
from node.devnet.chain import Workload
from node.devnet.errors import DevnetError, DevnetMissing, StateFileInvalid
from node.devnet.launcher import Devnet, DevnetOptions, default_workloads
from node.devnet.node_files import base_settings, merge_settings, render_toml, write_config
from node.devnet.processes import (
    ProcessRecord,
    Stoppable,
    is_running,
    spawn,
    start_ticks,
    stop_all,
)
from node.devnet.state import DevnetState, NodeRecord, load_state
from node.enclave.workloads import OnnxWorkload, WasmWorkload

PEER = "12D3KooWAKoDc2J1jWYRusDGMWUJ9m5nE49WAQgyjw2sLEJRF94X"


def _settings(tmp_path: Path) -> dict[str, dict[str, object]]:
    base = base_settings(
        Role.PROVIDER,
        rpc_url="http://127.0.0.1:8545",
        chain_id=31337,
        market="0x" + "ab" * 20,
        start_block=7,
        p2p_port=4555,
        bootstrap_peers=[f"/ip4/127.0.0.1/tcp/4001/p2p/{PEER}"],
        rendezvous_server=False,
        confirmations=1,
        poll_interval=0.25,
        log_level="info",
    )
    odd = tmp_path / 'dir "quoted" \\ back é'
    return merge_settings(
        base,
        {
            "provider": {
                "backend": "sim",
                "stake": "2eth",
                "workloads": [
                    {"name": "upper", "kind": "wasm", "path": str(odd / "upper.wasm")},
                    {"name": "model", "kind": "onnx", "path": "model.onnx"},
                ],
            }
        },
    )


def test_written_config_reads_back_as_the_node_reads_it(tmp_path: Path) -> None:
    path = write_config(tmp_path, _settings(tmp_path))
    config = load_config(path, env={})
    assert config.node.role is Role.PROVIDER
    assert config.chain.start_block == 7 and config.chain.confirmations == 1
    assert config.p2p.listen_addrs == ("/ip4/127.0.0.1/tcp/4555",)
    assert config.p2p.bootstrap_peers == (f"/ip4/127.0.0.1/tcp/4001/p2p/{PEER}",)
    assert config.keys.password_file == tmp_path / "password"
    assert config.provider.stake == 2 * 10**18
    first, second = config.provider.workloads
    assert first.path == tmp_path / 'dir "quoted" \\ back é' / "upper.wasm"
    assert (second.kind, second.path) == ("onnx", tmp_path / "model.onnx")


def test_a_setting_the_node_would_refuse_stops_the_devnet_before_any_start(
    tmp_path: Path,
) -> None:
    settings = merge_settings(_settings(tmp_path), {"provider": {"backend": "quantum"}})
    with pytest.raises(DevnetError, match=r"provider\.backend"):
        write_config(tmp_path, settings)
    assert not (tmp_path / "capa.toml").exists()
    with pytest.raises(DevnetError, match="cannot write"):
        render_toml({"node": {"role": object()}})


def test_state_file_round_trip_and_every_way_it_can_be_wrong(tmp_path: Path) -> None:
    with pytest.raises(DevnetMissing, match="capa devnet up --dir"):
        load_state(tmp_path)
    state = DevnetState(
        tmp_path,
        chain_id=31337,
        rpc_url="http://127.0.0.1:1",
        anvil=ProcessRecord(10, 20),
        contracts={"JobMarket": "0x" + "ab" * 20},
        nodes=(
            NodeRecord(
                "client",
                Role.CLIENT,
                tmp_path / "client",
                "0x" + "cd" * 20,
                PEER,
                9,
                ProcessRecord(11, 21),
                "http://127.0.0.1:2",
            ),
        ),
    )
    state.save()
    assert load_state(tmp_path) == state
    assert state.processes() == [
        ("client", ProcessRecord(11, 21)),
        ("anvil", ProcessRecord(10, 20)),
    ]
    (tmp_path / "devnet.json").write_text("{not json")
    with pytest.raises(StateFileInvalid, match="cannot be read as JSON"):
        load_state(tmp_path)
    (tmp_path / "devnet.json").write_text(json.dumps({"format": "other/1"}))
    with pytest.raises(StateFileInvalid, match="format"):
        load_state(tmp_path)
    raw = state.to_json()
    del raw["nodes"][0]["peer_id"]
    (tmp_path / "devnet.json").write_text(json.dumps(raw))
    with pytest.raises(StateFileInvalid, match="'peer_id' missing"):
        load_state(tmp_path)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (DevnetOptions(verifiers=0), "at least one verifier"),
        (DevnetOptions(verifiers=2, threshold=3), "threshold 3: expected 1 to 2"),
        (DevnetOptions(providers=-1), "cannot be negative"),
        (DevnetOptions(block_time=0), "block_time"),
        (
            DevnetOptions(providers=2, settings={"provider-3": {"p2p": {"enabled": False}}}),
            "settings for provider-3: no such role or node",
        ),
        (
            DevnetOptions(workloads=(Workload("a", "wasm", Path("x.wasm")),) * 2),
            "two workloads share a name",
        ),
    ],
)
def test_options_that_cannot_make_a_devnet_are_refused_before_anything_starts(
    tmp_path: Path, options: DevnetOptions, message: str
) -> None:
    with pytest.raises(DevnetError, match=message):
        Devnet.up(tmp_path / "net", options)
    assert not (tmp_path / "net").exists()


def test_a_directory_with_other_files_is_not_taken_over(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(DevnetError, match="not empty and holds no devnet"):
        Devnet.up(tmp_path, DevnetOptions())
    assert (tmp_path / "notes.txt").read_text() == "mine"
    assert not (tmp_path / "devnet.json").exists()


def test_served_workloads_are_measured_as_the_node_measures_them(tmp_path: Path) -> None:
    served = default_workloads()
    assert {w.name for w in served} >= {"upper", "sha256"}
    assert "hostile" not in {w.name for w in served}
    for workload in served:
        data = workload.path.read_bytes()
        assert workload.measure() == WasmWorkload(data).measure()
    with pytest.raises(DevnetError, match="cannot be read"):
        Workload("gone", "wasm", tmp_path / "gone.wasm").measure()
    model = tmp_path / "model.onnx"
    model.write_bytes(b"an onnx model's bytes")
    onnx = DevnetOptions(workloads=(), onnx_models=(model,)).served()
    assert onnx == (Workload("model", "onnx", model),)
    assert onnx[0].measure() == OnnxWorkload(model.read_bytes()).measure()
    (tmp_path / "x.bin").write_bytes(b"\0asm")
    with pytest.raises(DevnetError, match="is not wasm or onnx"):
        Workload("x", "exec", tmp_path / "x.bin").measure()


def _sleeper(tmp_path: Path, script: str) -> tuple[subprocess.Popen[bytes], ProcessRecord]:
    return spawn(
        ["sh", "-c", script], log=tmp_path / "log", cwd=tmp_path, env={"PATH": "/usr/bin:/bin"}
    )


def test_stop_all_never_signals_a_pid_whose_start_time_is_not_the_recorded_one(
    tmp_path: Path,
) -> None:
    process, record = _sleeper(tmp_path, "exec sleep 60")
    try:
        stranger = ProcessRecord(record.pid, record.start_ticks + 1)
        assert not is_running(stranger)
        assert stop_all([Stoppable("other", stranger)], grace=1.0) == [("other", "not running")]
        assert process.poll() is None
        assert stop_all([Stoppable("mine", record, process)], grace=5.0) == [("mine", "stopped")]
        assert process.returncode == -signal.SIGTERM
    finally:
        process.kill()
        process.wait()


def test_stop_all_kills_after_the_grace_and_takes_what_the_process_left_in_its_group(
    tmp_path: Path,
) -> None:
    # The leader ignores SIGTERM; its background child would outlive it.
    process, record = _sleeper(
        tmp_path, "trap '' TERM; sleep 60 & echo $! > child; while :; do sleep 1; done"
    )
    try:
        deadline = time.monotonic() + 10
        while not (tmp_path / "child").exists() or not (tmp_path / "child").read_text().strip():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        child = int((tmp_path / "child").read_text())
        assert stop_all([Stoppable("stubborn", record, process)], grace=0.5) == [
            ("stubborn", "killed")
        ]
        assert process.returncode == -signal.SIGKILL
        deadline = time.monotonic() + 10
        while Path(f"/proc/{child}").exists() and "Z" not in _state(child):
            assert time.monotonic() < deadline, "the group's leftover survived"
            time.sleep(0.05)
    finally:
        process.kill()
        process.wait()


def _state(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return "X"
    return stat[stat.rindex(")") + 2]


def test_cli_without_a_devnet_says_so_in_one_line(tmp_path: Path) -> None:
    runner = CliRunner()
    for command in (["status"], ["down"], ["logs"]):
        result = runner.invoke(app, ["devnet", *command, "--dir", str(tmp_path / "none")])
        assert result.exit_code == 2, result.output
        assert "no devnet in" in result.stderr
        assert result.stderr.strip().count("\n") == 0
    missing = runner.invoke(
        app, ["devnet", "up", "--dir", str(tmp_path), "--onnx", str(tmp_path / "m.onnx")]
    )
    assert missing.exit_code == 2 and "no such file" in missing.stderr


def test_up_refuses_in_one_line_while_a_recorded_process_lives_and_touches_nothing(
    tmp_path: Path,
) -> None:
    ticks = start_ticks(os.getpid())
    assert ticks is not None
    # This test's own process stands in for a devnet's anvil that is still running.
    (tmp_path / "client").mkdir()
    (tmp_path / "client" / "node.log").write_text("kept")
    node = NodeRecord("client", Role.CLIENT, tmp_path / "client", "0x" + "cd" * 20, PEER, 9)
    DevnetState(tmp_path, 31337, anvil=ProcessRecord(os.getpid(), ticks), nodes=(node,)).save()
    result = CliRunner().invoke(app, ["devnet", "up", "--dir", str(tmp_path)])
    assert result.exit_code == 1
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert "a devnet is running in" in result.stderr and "(anvil)" in result.stderr
    assert (tmp_path / "client" / "node.log").read_text() == "kept"
    assert load_state(tmp_path).anvil == ProcessRecord(os.getpid(), ticks)

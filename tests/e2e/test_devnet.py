"""`capa devnet` as a user runs it, and the `Devnet` API the e2e scenarios drive: anvil and
every node as separate processes, checked on chain, through each node's API, and in the
process table after `down`."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from click.testing import Result
from eth_utils.address import to_checksum_address
from typer.testing import CliRunner

from node.chain.anvil import run_anvil
from node.chain.client import ChainClient
from node.chain.manifest import read_manifest
from node.chain.market import Market
from node.cli.main import app
from node.config.loader import load_config
from node.devnet.chain import SIM
from node.devnet.errors import NodeFailed
from node.devnet.health import not_ready
from node.devnet.launcher import WASM_DIR, Devnet, DevnetOptions, capa_command, node_environment
from node.devnet.processes import Stoppable, is_running, spawn, stop_all
from node.devnet.state import load_state

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
CAPA = [sys.executable, "-c", "from node.cli.main import main; main()"]


def capa_process(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """`capa` as its own process: the daemons `up` starts must outlive it."""
    return subprocess.run(
        [*CAPA, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**node_environment(), "COLUMNS": "200"},
    )


def capa(*args: str) -> Result:
    """`capa` in this process, for the commands that only read the state file and ask."""
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})


def _pids(directory: Path) -> dict[str, int]:
    state = load_state(directory)
    return {name: process.pid for name, process in state.processes()}


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def test_cli_up_status_logs_refuses_a_second_up_and_down_leaves_nothing(tmp_path: Path) -> None:
    directory = tmp_path / "net"
    up = capa_process(
        "devnet", "up", "--dir", str(directory), "--providers", "0", "--verifiers", "2", "--json"
    )
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        summary = json.loads(up.stdout)
        assert "INSECURE" in summary["insecure"]
        names = [n["name"] for n in summary["nodes"]]
        assert names == ["verifier-1", "verifier-2", "client"]

        # The chain is governed as the nodes need it.
        manifest = read_manifest(Path(summary["deployment"]))
        assert manifest.sim_allowed
        assert summary["contracts"]["JobMarket"] == manifest.market
        market = Market(ChainClient(summary["rpc_url"]), manifest.deployment())
        assert market.kind_policy(SIM).enabled
        assert market.committee() == (2, 2)
        verifiers = [n for n in summary["nodes"] if n["role"] == "verifier"]
        for verifier in verifiers:
            assert market.is_committee_member(verifier["address"])
        for module in WASM_DIR.glob("*.wasm"):
            approved = market.measurement(SIM, hashlib.sha256(module.read_bytes()).digest())
            # The module built to attack its sandbox is never served, so never approved.
            assert (approved.id != 0) == (module.name != "hostile.wasm"), module.name
        for node in summary["nodes"]:
            assert market.client.balance(node["address"]) > 0

        # Every node answers on its own API as itself, with the token its files hold.
        for node in summary["nodes"]:
            config = load_config(Path(node["config"]), env={})
            token = config.api.token_file.read_text().strip()
            answer = httpx.get(
                f"{node['api_url']}/v1/status", headers={"Authorization": f"Bearer {token}"}
            )
            assert answer.status_code == 200
            assert answer.json()["peer_id"] == node["peer_id"]
            assert answer.json()["role"] == node["role"]
            assert to_checksum_address(answer.json()["address"]) == node["address"]
            assert config.chain.market == manifest.market
            if node["name"] == "verifier-1":
                assert config.p2p.rendezvous_server and not config.p2p.bootstrap_peers
            else:
                assert config.p2p.bootstrap_peers == (verifiers[0]["multiaddr"],)
        assert summary["client_config"] == next(
            n["config"] for n in summary["nodes"] if n["role"] == "client"
        )

        status = capa("devnet", "status", "--dir", str(directory), "--json")
        assert status.exit_code == 0, status.stderr
        report = json.loads(status.stdout)
        assert report["healthy"] and report["anvil"]["head"] >= manifest.deploy_block
        assert [n["status"]["peer_id"] for n in report["nodes"]] == [
            n["peer_id"] for n in summary["nodes"]
        ]

        logs = capa("devnet", "logs", "client", "--dir", str(directory))
        assert logs.exit_code == 0 and "daemon ready" in logs.stdout
        every = capa("devnet", "logs", "--dir", str(directory), "-n", "5")
        assert every.exit_code == 0
        for name in ("anvil", *names):
            assert f"==> {name} " in every.stdout
        unknown = capa("devnet", "logs", "provider-9", "--dir", str(directory))
        assert unknown.exit_code == 2 and "no node 'provider-9'" in unknown.stderr

        again = capa_process("devnet", "up", "--dir", str(directory))
        assert again.returncode == 1
        assert again.stderr.strip().count("\n") == 0, again.stderr
        assert "a devnet is running in" in again.stderr
        assert "capa devnet down" in again.stderr
        # The refusal touched nothing: the same processes still run.
        assert json.loads(capa("devnet", "status", "--dir", str(directory), "--json").stdout)[
            "healthy"
        ]
    finally:
        pids = _pids(directory) if (directory / "devnet.json").exists() else {}
        down = capa("devnet", "down", "--dir", str(directory), "--json")
    assert down.exit_code == 0, down.stderr
    assert json.loads(down.stdout)["stopped"] == {name: "stopped" for name in pids}
    assert pids and not [name for name, pid in pids.items() if _alive(pid)]
    after = capa("devnet", "status", "--dir", str(directory))
    assert after.exit_code == 1 and "stopped" in after.stdout
    # The logs stay for a post-mortem, and a new `up` may reuse the directory.
    assert (directory / "client" / "node.log").exists()


def test_api_reports_an_early_exit_then_takes_the_directory_over_kill_9_and_restart(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "net"
    # A provider configured for another chain stops at start with one line; the launcher
    # must say which node, show that line, and stop everything it had started.
    options = DevnetOptions(
        providers=1, verifiers=1, settings={"provider-1": {"chain": {"chain_id": 1}}}
    )
    with pytest.raises(NodeFailed) as failed:
        Devnet.up(directory, options)
    assert failed.value.name == "provider-1"
    assert "exited during start-up" in str(failed.value)
    assert any("chain.chain_id is 1 but" in line for line in failed.value.log_tail)
    state = load_state(directory)
    assert state.anvil is not None and state.node("client") is not None
    assert not [name for name, process in state.processes() if is_running(process)]

    # A new `up` takes the directory over from the stopped devnet.
    with Devnet.up(directory, DevnetOptions(providers=0, verifiers=1)) as net:
        assert {n.name for n in net.nodes} == {"verifier-1", "client"}
        assert not (directory / "provider-1").exists()
        client = net.client
        before = client.status()
        first_pid = client.pid
        assert first_pid is not None and client.running
        client.kill()
        assert not client.running and not _alive(first_pid)
        with pytest.raises(NodeFailed, match="client exited"):
            net.check_running()
        # Its neighbours are untouched.
        assert all(v.running for v in net.verifiers)
        client.restart()
        assert client.running and client.pid != first_pid
        after = client.status()
        assert after.peer_id == before.peer_id and after.address == before.address
        # The same store: nothing recorded before the crash was lost.
        assert after.state_seq >= before.state_seq
        restarted = load_state(net.directory).node("client")
        assert restarted is not None and restarted.process is not None
        assert restarted.process.pid == client.pid
        # A node whose offer never reaches the client is named, with its log; a verifier
        # stands in for a provider that never publishes.
        with pytest.raises(NodeFailed, match="verifier-1 has no offer") as late:
            net.wait_for_offers([net.node("verifier-1")], timeout=2)
        assert late.value.log_tail
        # An RPC outage with the chain kept: nothing answers, then the same chain does.
        head = int(net.rpc("eth_blockNumber"), 16)
        with net.chain_paused(), pytest.raises(httpx.TimeoutException):
            httpx.post(
                net.rpc_url,
                json={"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber", "params": []},
                timeout=1.0,
            )
        assert int(net.rpc("eth_blockNumber"), 16) >= head
        assert net.rpc("eth_getCode", [net.contracts["JobMarket"], "latest"]) != "0x"
        pids = [process.pid for _, process in net.state.processes()]
    assert not [pid for pid in pids if _alive(pid)]


def test_node_environment_drops_the_users_capa_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAPA_KEYSTORE_PASSWORD", "the user's own node")
    monkeypatch.setenv("CAPA_CHAIN_MARKET", "0x" + "11" * 20)
    env = node_environment()
    assert not [name for name in env if name.startswith("CAPA_")]
    assert env["PATH"] == os.environ["PATH"]


def test_prepare_deploys_and_writes_configs_for_nodes_started_elsewhere(tmp_path: Path) -> None:
    """`capa devnet prepare`, as docker-compose.yml's deployer runs it: the chain governed and
    every node's folder written, no process started; the nodes, started by someone else, join;
    a second prepare refuses while they answer, and takes the folder over once they stop."""
    directory = tmp_path / "net"
    with run_anvil() as anvil:
        args = ("devnet", "prepare", "--dir", str(directory), "--rpc-url", anvil.rpc_url)
        done = capa_process(*args, "--providers", "0", "--json")
        assert done.returncode == 0, done.stdout + done.stderr
        summary = json.loads(done.stdout)
        assert summary["anvil_pid"] is None and "INSECURE" in summary["insecure"]
        assert [(n["name"], n["pid"]) for n in summary["nodes"]] == [
            ("verifier-1", None),
            ("client", None),
        ]
        manifest = read_manifest(Path(summary["deployment"]))
        market = Market(ChainClient(anvil.rpc_url), manifest.deployment())
        assert market.kind_policy(SIM).enabled and market.committee() == (1, 1)
        for node in summary["nodes"]:
            assert market.client.balance(node["address"]) > 0
            config = load_config(Path(node["config"]), env={})
            assert config.chain.rpc_urls == (anvil.rpc_url,)
            assert config.chain.market == manifest.market
        assert not list(directory.glob("*/api.url"))  # nothing runs

        verifier = directory / "verifier-1"
        assert "has not published its API" in str(not_ready(verifier))
        process, record = spawn(
            [*capa_command(), "node", "run", "-c", str(verifier / "capa.toml")],
            log=verifier / "node.log",
            cwd=verifier,
            env=node_environment(),
        )
        try:
            deadline = time.monotonic() + 120
            while (reason := not_ready(verifier)) is not None:
                assert process.poll() is None, (verifier / "node.log").read_text()
                assert time.monotonic() < deadline, reason
                time.sleep(0.2)
            again = capa_process(*args)
            assert again.returncode == 1
            assert again.stderr.strip().count("\n") == 0, again.stderr
            assert "are running (verifier-1), started outside `capa devnet`" in again.stderr
            assert load_config(verifier / "capa.toml", env={}).chain.market == manifest.market
        finally:
            stop_all([Stoppable("verifier-1", record, process)], grace=10)
        redone = capa_process(*args, "--providers", "0", "--json")
        assert redone.returncode == 0, redone.stderr
        assert json.loads(redone.stdout)["contracts"]["JobMarket"] != manifest.market

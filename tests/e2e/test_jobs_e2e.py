"""Jobs through separate daemons: anvil, a verifier, providers and a client, each a `capa node
run` process talking over libp2p on loopback, and `capa job submit` as a user runs it.

Every check reads what a user or an auditor could read: the CLI's JSON, the chain, each
node's API, and the files each node left on disk.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from node.chain.client import ChainClient
from node.chain.market import JobState, Market
from node.devnet.launcher import WASM_DIR, Devnet, DevnetOptions, NodeHandle, node_environment

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
CAPA = [sys.executable, "-c", "from node.cli.main import main; main()"]
UPPER = WASM_DIR / "upper.wasm"
BPS = 10_000


def _model() -> bytes:
    rng = np.random.default_rng(7)
    weights = rng.standard_normal((8, 4)).astype(np.float32)
    bias = rng.standard_normal(4).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w"], ["xw"]),
            helper.make_node("Add", ["xw", "b"], ["y"]),
        ],
        "dense",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 4])],
        initializer=[
            helper.make_tensor("w", TensorProto.FLOAT, weights.shape, weights.flatten()),
            helper.make_tensor("b", TensorProto.FLOAT, bias.shape, bias),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def submit(
    client_config: Path, *args: str, timeout: float = 240
) -> tuple[int, dict[str, Any], str]:
    """`capa job submit ... --json` as its own process; (exit status, JSON, stderr)."""
    done = subprocess.run(
        [*CAPA, "job", "submit", "-c", str(client_config), "--json", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=node_environment(),
    )
    # A failed job prints its summary, then the error object: the summary comes first.
    text = done.stdout.strip()
    answer = json.JSONDecoder().raw_decode(text)[0] if text.startswith("{") else {}
    return done.returncode, answer, done.stderr + text


def market_of(net: Devnet) -> Market:
    return Market.at(ChainClient(net.rpc_url), net.contracts["JobMarket"])


def files_of(directory: Path) -> Iterator[Path]:
    for root, _, names in os.walk(directory):
        for name in names:
            yield Path(root) / name


def wait_for(predicate: Any, what: str, timeout: float = 90.0) -> Any:
    """Poll a node's API until `predicate()` is truthy (other processes: no event to wait on)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Devnet]:
    folder = tmp_path_factory.mktemp("market")
    model = folder / "dense.onnx"
    model.write_bytes(_model())
    options = DevnetOptions(providers=2, verifiers=1, onnx_models=(model,))
    with Devnet.up(folder / "net", options) as devnet:
        yield devnet


def _provider(net: Devnet, address: str) -> NodeHandle:
    (found,) = [p for p in net.providers if p.address.lower() == address.lower()]
    return found


def test_a_wasm_and_an_onnx_job_settle_and_the_money_moves_as_the_contract_says(
    net: Devnet, tmp_path: Path
) -> None:
    market = market_of(net)
    fee_bps = market.parameters()["fee_bps"]
    credits_before = {p.address: market.balance_of(p.address) for p in net.providers}
    fees_before = market.fees_accrued()
    client_before = market.balance_of(net.client.address)

    (tmp_path / "text").write_bytes(b"confidential words")
    code, wasm, err = submit(
        net.client.config,
        "--wasm", str(UPPER),
        "--input", str(tmp_path / "text"),
        "--output", str(tmp_path / "upper.out"),
    )  # fmt: skip
    assert code == 0, err
    assert wasm["state"] == "verified" and wasm["insecure"] is True
    assert (tmp_path / "upper.out").read_bytes() == b"CONFIDENTIAL WORDS"
    assert wasm["match_tx"] and wasm["settle_tx"] and "INSECURE" in wasm["tee_kind"]

    x = np.arange(16, dtype=np.float32).reshape(2, 8)
    feeds = io.BytesIO()
    np.savez(feeds, x=x)
    (tmp_path / "x.npz").write_bytes(feeds.getvalue())
    model = net.directory.parent / "dense.onnx"
    code, inference, err = submit(
        net.client.config,
        "--onnx", str(model),
        "--input", str(tmp_path / "x.npz"),
        "--output", str(tmp_path / "y.npz"),
    )  # fmt: skip
    assert code == 0, err
    loaded = onnx.load_from_string(model.read_bytes())
    weights = {t.name: onnx.numpy_helper.to_array(t) for t in loaded.graph.initializer}
    with np.load(tmp_path / "y.npz", allow_pickle=False) as outputs:
        np.testing.assert_allclose(outputs["y"], x @ weights["w"] + weights["b"], rtol=1e-5)

    # Each job: the price escrowed at the match, the provider credited the price less the
    # protocol fee, the fee accrued, nothing taken from the client's market balance.
    payouts: dict[str, int] = {}
    fees = 0
    head = market.client.block_number()
    for job in (wasm, inference):
        job_id = bytes.fromhex(job["job_id"][2:])
        assert market.job(job_id).state is JobState.SETTLED
        price = int(job["price"])  # as JobMatched escrowed it (settlement clears the record)
        fee = price * fee_bps // BPS
        fees += fee
        settled = market.settled_payouts(
            job["provider"], from_block=0, to_block=head, log_range=10_000
        )
        assert [payout for jid, payout, _ in settled if jid == job_id] == [price - fee]
        payouts[job["provider"]] = payouts.get(job["provider"], 0) + price - fee
    for provider in net.providers:
        gained = market.balance_of(provider.address) - credits_before[provider.address]
        assert gained == payouts.get(provider.address, 0), provider.name
    assert market.fees_accrued() - fees_before == fees
    assert market.balance_of(net.client.address) == client_before


def test_the_plaintext_never_reaches_a_provider_or_a_verifier(net: Devnet, tmp_path: Path) -> None:
    marker = os.urandom(12).hex().encode()
    (tmp_path / "secret").write_bytes(b"patient record " + marker)
    code, _, err = submit(
        net.client.config,
        "--wasm", str(UPPER),
        "--input", str(tmp_path / "secret"),
        "--output", str(tmp_path / "out"),
    )  # fmt: skip
    assert code == 0, err
    assert marker.upper() in (tmp_path / "out").read_bytes()
    for node in [*net.providers, *net.verifiers]:
        for path in files_of(node.directory):
            data = path.read_bytes()
            assert marker not in data and marker.upper() not in data, path


def test_a_provider_killed_after_taking_the_input_settles_once_or_refunds_never_both(
    net: Devnet, tmp_path: Path
) -> None:
    market = market_of(net)
    (tmp_path / "text").write_bytes(b"survive a crash")
    credits_before = {p.address: market.balance_of(p.address) for p in net.providers}
    earlier = {j["job_id"] for j in net.client.get("/v1/jobs")["jobs"]}
    submitting = subprocess.Popen(
        # The timeout leaves room above the providers' minimum duration (60 s): a deadline
        # closer than that is one matchJob refuses.
        [*CAPA, "job", "submit", "-c", str(net.client.config), "--json", "--timeout", "150",
         "--wasm", str(UPPER), "--input", str(tmp_path / "text"),
         "--output", str(tmp_path / "out")],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=node_environment(),
    )  # fmt: skip
    try:
        # The provider holds the input once the client has its signed input receipt.
        def delivered() -> dict[str, Any] | None:
            jobs = [j for j in net.client.get("/v1/jobs")["jobs"] if j["job_id"] not in earlier]
            ended = [j for j in jobs if j["status"] in ("failed", "refunded", "cancelled")]
            assert not ended, f"the job ended before the provider took its input: {ended}"
            taken = [j for j in jobs if j["status"] in ("delivered", "settled", "verified")]
            return taken[0] if taken and taken[0]["provider"] else None

        job = wait_for(delivered, "the input receipt")
        victim = _provider(net, job["provider"])
        victim.kill()  # SIGKILL: no shutdown, as a crash
        victim.restart()
        out, err = submitting.communicate(timeout=240)
    finally:
        if submitting.poll() is None:
            submitting.kill()
    answer = json.JSONDecoder().raw_decode(out.strip())[0]  # the summary, before any error
    on_chain = market.job(bytes.fromhex(job["job_id"][2:]))
    gained = market.balance_of(victim.address) - credits_before[victim.address]
    if answer["state"] == "verified":
        assert submitting.returncode == 0, err
        assert on_chain.state is JobState.SETTLED
        price = int(answer["price"])
        fee = price * market.parameters()["fee_bps"] // BPS
        settled = market.settled_payouts(
            victim.address, from_block=0, to_block=market.client.block_number(), log_range=10_000
        )
        paid = [payout for jid, payout, _ in settled if jid.hex() == job["job_id"][2:]]
        assert paid == [price - fee], (paid, settled)  # paid once
        assert gained == price - fee, (gained, victim.address, answer)
        assert (tmp_path / "out").read_bytes() == b"SURVIVE A CRASH"
    else:
        assert answer["state"] == "refunded", answer
        assert submitting.returncode != 0
        assert on_chain.state in (JobState.REFUNDED, JobState.RELEASED), on_chain.state
        assert gained == 0  # nothing paid for a job given back
    # Afterwards the restarted provider serves again.
    net.wait_for_offers([victim])


def capa(client_config: Path, *args: str, timeout: float = 240) -> tuple[int, str, str]:
    """A `capa` command against the client, as its own process; (exit status, stdout, stderr)."""
    done = subprocess.run(
        [*CAPA, *args, "-c", str(client_config)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=node_environment(),
    )
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, done.stdout, done.stderr


def test_a_detached_job_is_watched_to_its_end_and_its_result_fetched(
    net: Devnet, tmp_path: Path
) -> None:
    (tmp_path / "text").write_bytes(b"watch me")
    code, out, err = capa(
        net.client.config, "job", "submit", "--json", "--detach",
        "--wasm", str(UPPER), "--input", str(tmp_path / "text"),
    )  # fmt: skip
    assert code == 0, err
    submitted = json.loads(out)
    assert submitted["detached"] is True and submitted["state"] == "submitted"
    job_id = submitted["job_id"]

    code, out, err = capa(net.client.config, "job", "watch", job_id)
    assert code == 0, err
    # Plain lines (not a terminal), one per change of stage; a sim provider is quick, so the
    # job may be at any stage (or done) by the time the watch starts.
    lines = [line.strip() for line in out.splitlines() if line.startswith("  ")]
    assert lines[-1].startswith("verified: output checked and decrypted: 8 B"), out
    assert all(a != b for a, b in itertools.pairwise(lines)), out

    code, out, err = capa(
        net.client.config, "job", "result", job_id, "-o", str(tmp_path / "out"), "--json"
    )
    assert code == 0, err
    assert (tmp_path / "out").read_bytes() == b"WATCH ME"
    assert json.loads(out)["output_sha256"] == hashlib.sha256(b"WATCH ME").hexdigest()
    code, _, err = capa(net.client.config, "job", "result", job_id, "-o", str(tmp_path / "out"))
    assert code == 2 and "refusing to overwrite" in err


def test_offers_lists_the_sim_providers_as_insecure_and_says_why_none_takes_a_tdx_job(
    net: Devnet, tmp_path: Path
) -> None:
    providers = {p.address.lower() for p in net.providers}
    code, out, err = capa(net.client.config, "offers", "--json")
    assert code == 0, err
    offers = json.loads(out)["offers"]
    assert {o["provider"].lower() for o in offers} == providers
    assert all(o["tee_kind"] == "sim" and o["evidence"].startswith("INSECURE") for o in offers)
    # The jobs before this one had the client check the evidence of a provider's key.
    assert "verified" in {o["evidence_check"] for o in offers}, offers

    spec = tmp_path / "job.toml"
    spec.write_text(f'wasm = "{UPPER}"\ntee = "tdx"\n')
    code, out, err = capa(net.client.config, "offers", "--why", str(spec), "--json")
    assert code == 4, err
    answer = json.loads(out)
    assert {o["provider"].lower() for o in answer["offers"]} == providers
    for offer in answer["offers"]:
        assert offer["why"].startswith("INSECURE: simulated enclave (SIM)"), offer
    code, out, _ = capa(net.client.config, "offers", "--why", str(spec))
    assert code == 4 and out.count("-> INSECURE: simulated enclave") == len(offers)


def test_a_verifier_with_the_default_policy_refuses_sim_and_the_provider_says_why(
    tmp_path: Path,
) -> None:
    options = DevnetOptions(providers=1, verifiers=1, verifier_allow_sim=False, wait_offers=False)
    with Devnet.up(tmp_path / "net", options) as strict:
        (provider,) = strict.providers

        def refused() -> list[Any]:
            keys = provider.status().provider.keys  # type: ignore[union-attr]
            return [k for k in keys if k.status == "refused"]

        keys = wait_for(refused, "the committee's refusal")
        assert "INSECURE" in keys[0].reason, keys[0].reason
        status = provider.status().provider
        assert status is not None and status.insecure
        assert any("no enclave key registered" in w for w in status.waiting_for)
        approvals = strict.verifiers[0].get("/v1/approvals")["approvals"]
        assert approvals and all(a["status"] == "refused" for a in approvals)
        assert strict.client.get("/v1/offers")["offers"] == []


def test_a_candidate_failing_the_clients_policy_never_gets_the_input(tmp_path: Path) -> None:
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"allow_sim": True}))
    options = DevnetOptions(
        providers=2,
        verifiers=1,
        settings={
            # The cheaper provider ranks first; the client's policy then refuses it.
            "provider-1": {"provider": {"price_per_hour": str(10**15)}},
            "client": {"client": {"policy_file": str(policy)}},
        },
    )
    with Devnet.up(tmp_path / "net", options) as pinned:
        first, second = pinned.providers
        host = second.status().provider.sim_host  # type: ignore[union-attr]
        policy.write_text(json.dumps({"allow_sim": True, "sim_hosts": [host]}))
        pinned.client.stop()
        pinned.client.restart()
        # The restarted client must hear both providers live (its offer book is in memory):
        # a restarted provider attests and publishes afresh.

        def offers_of(node: NodeHandle) -> int:
            rows = pinned.client.get("/v1/offers")["offers"]
            return sum(1 for o in rows if o["provider"].lower() == node.address.lower())

        for provider in (first, second):
            heard = offers_of(provider)
            provider.stop()
            provider.restart()  # its sim host key stays: the pin holds
            wait_for(lambda p=provider, h=heard: offers_of(p) > h, f"{provider.name}'s offer", 180)
        # Every key each one registered anew offered, for the workload asked too (a first
        # new offer may be another workload's).
        pinned.wait_for_offers([first, second], timeout=180)
        (tmp_path / "in").write_bytes(b"for the second only")
        code, job, err = submit(
            pinned.client.config,
            "--wasm", str(UPPER),
            "--input", str(tmp_path / "in"),
            "--output", str(tmp_path / "out"),
        )  # fmt: skip
        assert code == 0, err
        # The cheaper first provider ranks first; the policy drops it as a tried candidate.
        assert job["provider"].lower() == second.address.lower()
        assert "sim_hosts" in (job["tried"] or ""), job
        assert first.get("/v1/jobs")["jobs"] == []  # never matched, never sent the input
        inputs = first.directory / "inputs"
        assert not inputs.exists() or not any(files_of(inputs))

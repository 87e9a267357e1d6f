"""Fault drills on a devnet: anvil and separate `capa node run` daemons, one fault at a time.

Each drill breaks one thing a real deployment loses now and then (the RPC endpoint, block
production, a verifier, the client daemon in the middle of an upload, room in a provider's
input store), then checks what a user and an auditor can read afterwards: the job's state
on chain and in each daemon, and the balances the market holds. The drills share one
devnet: each leaves it as it found it (every node up, the chain mining), which the
`healthy` fixture checks after each.

Waits are for what the daemons publish (their API, their metrics, their files on disk),
never for a fixed time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from node.api.models import enclave_key_of
from node.chain.client import ChainClient
from node.chain.market import JobState, Market
from node.devnet.launcher import WASM_DIR, Devnet, DevnetOptions, NodeHandle, node_environment

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
CAPA = [sys.executable, "-c", "from node.cli.main import main; main()"]
UPPER = WASM_DIR / "upper.wasm"
BPS = 10_000
MIB = 1 << 20
# Jobs are matched with this much time to their deadline: above the providers' minimum
# duration (60 s) with room for a loaded machine.
JOB_TIMEOUT_S = 150
# The drills' provider-2 is the cheaper one, so jobs go there first; its input store is
# small, so a large input cannot go there.
CHEAP = 10**15
STORE_CAP = 1 * MIB
ENDED = ("failed", "refunded", "cancelled")
T = TypeVar("T")


def eventually(probe: Callable[[], T | None], what: str, timeout: float = 120.0) -> T:
    """Ask `probe` until it answers something truthy (the daemons are other processes: there
    is no event here to wait on, only their published state)."""
    deadline = time.monotonic() + timeout
    while True:
        answer = probe()
        if answer:
            return answer
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)


def metric(node: NodeHandle, name: str, **labels: str) -> float:
    """The sum of a metric's samples on the node's /metrics (0 when it has none yet)."""
    assert node.api_url is not None
    text = httpx.get(
        node.api_url + "/metrics", headers={"Authorization": f"Bearer {node.token}"}, timeout=5.0
    ).text
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def sent_count(net: Devnet, node: NodeHandle, block: str = "latest") -> int:
    """Transactions the node's account has had mined (its next nonce); with "pending",
    those waiting in anvil's pool too."""
    return int(net.rpc("eth_getTransactionCount", [node.address, block]), 16)


def logged(node: NodeHandle, needle: str) -> list[str]:
    """The lines of the node's log that hold `needle`."""
    return [line for line in node.log.read_text().splitlines() if needle in line]


def client_jobs(net: Devnet) -> dict[str, dict[str, Any]]:
    return {j["job_id"]: j for j in net.client.get("/v1/jobs")["jobs"]}


def start_submit(net: Devnet, data: Path, output: Path) -> subprocess.Popen[str]:
    """`capa job submit` of upper.wasm on `data`, as its own process (the drill acts meanwhile)."""
    return subprocess.Popen(
        [*CAPA, "job", "submit", "-c", str(net.client.config), "--json",
         "--timeout", str(JOB_TIMEOUT_S), "--wasm", str(UPPER),
         "--input", str(data), "--output", str(output)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=node_environment(),
    )  # fmt: skip


def finish(submitting: subprocess.Popen[str], timeout: float = 300) -> tuple[dict[str, Any], str]:
    """The submit's JSON summary (printed before any error) and its stderr."""
    try:
        out, err = submitting.communicate(timeout=timeout)
    finally:
        if submitting.poll() is None:
            submitting.kill()
            submitting.communicate()
    text = out.strip()
    summary = json.JSONDecoder().raw_decode(text)[0] if text.startswith("{") else {}
    return summary, err + text


def new_job(net: Devnet, earlier: set[str], statuses: tuple[str, ...]) -> dict[str, Any] | None:
    """The one job the client took since `earlier`, once its status is one of `statuses`."""
    jobs = [j for jid, j in client_jobs(net).items() if jid not in earlier]
    ended = [j for j in jobs if j["status"] in ENDED and j["status"] not in statuses]
    assert not ended, f"the job ended early: {ended}"
    assert len(jobs) <= 1, jobs
    return jobs[0] if jobs and jobs[0]["status"] in statuses and jobs[0]["provider"] else None


class Ledger:
    """The market's balances before a drill, to check what each job moved."""

    def __init__(self, net: Devnet) -> None:
        self.net = net
        self.market = Market.at(ChainClient(net.rpc_url), net.contracts["JobMarket"])
        self.fee_bps = self.market.parameters()["fee_bps"]
        self.accounts = [net.client, *net.providers]
        self.before = {n.address: self.market.balance_of(n.address) for n in self.accounts}
        self.stake_before = {
            p.address: self.market.locked_stake_of(p.address) for p in net.providers
        }

    def gained(self, node: NodeHandle) -> int:
        return self.market.balance_of(node.address) - self.before[node.address]

    def paid_once(self, job: dict[str, Any]) -> None:
        """The job settled on chain, its provider was paid once (the price less the fee)
        and nobody else gained anything."""
        job_id = bytes.fromhex(job["job_id"][2:])
        assert self.market.job(job_id).state is JobState.SETTLED
        price = int(job["price"])
        payout = price - price * self.fee_bps // BPS
        settled = self.market.settled_payouts(
            job["provider"], from_block=0, to_block=self.market.client.block_number(),
            log_range=10_000,
        )  # fmt: skip
        assert [p for jid, p, _ in settled if jid == job_id] == [payout], settled
        for node in self.accounts:
            expected = payout if node.address.lower() == job["provider"].lower() else 0
            assert self.gained(node) == expected, (node.name, self.gained(node), job)
        for provider in self.net.providers:
            # The job's stake reservation is released again: no slash, nothing left locked.
            locked = self.market.locked_stake_of(provider.address)
            assert locked == self.stake_before[provider.address], provider.name


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Devnet]:
    folder = tmp_path_factory.mktemp("drills")
    options = DevnetOptions(
        providers=2,
        # Two verifiers, both needed for a key: one down blocks every new registration.
        verifiers=2,
        settings={
            "provider-2": {
                "provider": {"price_per_hour": str(CHEAP), "input_store_bytes": STORE_CAP}
            }
        },
    )
    with Devnet.up(folder / "net", options) as devnet:
        yield devnet


@pytest.fixture
def healthy(net: Devnet) -> Iterator[Devnet]:
    """The shared devnet, checked whole after the drill: every node running, the chain
    mining, every provider offering."""
    yield net
    net.check_running()
    head = ChainClient(net.rpc_url).block_number()
    eventually(lambda: ChainClient(net.rpc_url).block_number() > head, "a new block", 30)
    net.wait_for_offers()


def test_an_rpc_outage_mid_job_every_daemon_recovers_and_the_job_settles(
    healthy: Devnet, tmp_path: Path
) -> None:
    net = healthy
    ledger = Ledger(net)
    earlier = set(client_jobs(net))
    (tmp_path / "in").write_bytes(b"through an outage")
    submitting = start_submit(net, tmp_path / "in", tmp_path / "out")
    try:
        eventually(
            lambda: new_job(net, earlier, ("assigned", "delivered", "settled")),
            "the job's match",
        )
        head = ChainClient(net.rpc_url).block_number()
        failures = {n.name: metric(n, "capa_rpc_failures_total") for n in net.nodes}
        with net.chain_paused():
            # The outage lasts until every daemon has had a request fail on it.
            eventually(
                lambda: all(
                    metric(n, "capa_rpc_failures_total") > failures[n.name] for n in net.nodes
                ),
                "every daemon to meet the outage",
            )
            net.check_running()
        summary, err = finish(submitting)
    finally:
        if submitting.poll() is None:
            submitting.kill()
    assert summary.get("state") == "verified", err
    assert (tmp_path / "out").read_bytes() == b"THROUGH AN OUTAGE"
    ledger.paid_once(summary)
    # Every daemon follows the chain again past where it stood before the outage.
    for node in net.nodes:
        eventually(lambda n=node: metric(n, "capa_chain_head_block") > head, f"{node.name}'s head")


def test_a_stuck_transaction_is_bumped_and_mined_once(healthy: Devnet, tmp_path: Path) -> None:
    net = healthy
    ledger = Ledger(net)
    nonce_before = sent_count(net, net.client)
    bumped = metric(net.client, "capa_tx_bumped_total")
    earlier = set(client_jobs(net))
    (tmp_path / "in").write_bytes(b"stuck then mined")
    # No block is mined from here on: the client's matchJob waits in the pool, unmined.
    net.rpc("evm_setIntervalMining", [0])
    try:
        submitting = start_submit(net, tmp_path / "in", tmp_path / "out")
        try:
            eventually(lambda: new_job(net, earlier, ("requested",)), "the matchJob", 120)
            # The devnet's nodes bump after 15 s without a receipt.
            eventually(
                lambda: metric(net.client, "capa_tx_bumped_total") > bumped, "a fee bump", 120
            )
        except BaseException:
            submitting.kill()
            raise
    finally:
        net.rpc("evm_setIntervalMining", [int(net.options.block_time)])
    summary, err = finish(submitting)
    assert summary.get("state") == "verified", err
    assert (tmp_path / "out").read_bytes() == b"STUCK THEN MINED"
    ledger.paid_once(summary)
    # One matchJob, mined once under one nonce: the client's account sent one transaction.
    assert sent_count(net, net.client) == nonce_before + 1
    sent = [
        t for t in net.client.get("/v1/transactions")["transactions"]
        if t["effect_id"].startswith("matchJob") and summary["job_id"] in t["effect_id"]
    ]  # fmt: skip
    assert len(sent) == 1 and sent[0]["status"] == "confirmed", sent
    receipt = net.rpc("eth_getTransactionReceipt", [sent[0]["mined_hash"]])
    assert receipt is not None and int(receipt["status"], 16) == 1
    assert summary["match_tx"].lower() == sent[0]["mined_hash"].lower()


def test_a_provider_booting_while_a_verifier_is_down_waits_then_serves(
    healthy: Devnet, tmp_path: Path
) -> None:
    net = healthy
    verifier = net.node("verifier-2")
    provider = net.node("provider-2")
    verifier.stop()
    try:
        provider.stop()
        provider.restart()
        attempts = metric(provider, "capa_effect_failures_total", kind="RequestApprovals")

        def waiting() -> list[str] | None:
            status = provider.status().provider
            assert status is not None
            registered = [k for k in status.keys if k.status == "registered"]
            assert not registered, f"a key registered with a verifier down: {registered}"
            tried = metric(provider, "capa_effect_failures_total", kind="RequestApprovals")
            return status.waiting_for if tried > attempts + 1 else None

        # It asks, fails, and asks again; meanwhile it says why no job can come.
        reasons = eventually(waiting, "the provider to retry its approvals", 180)
        assert any("no enclave key registered" in r for r in reasons), reasons
        keys = {k.enclave_key.lower() for k in provider.status().provider.keys}  # type: ignore[union-attr]
        assert keys, "the restarted provider made no enclave key"
        offered = {
            (enclave_key_of(o["body"]) or "").lower()
            for o in net.client.get("/v1/offers")["offers"]
        }
        assert not keys & offered, "an offer for a key no committee registered"
    finally:
        if not verifier.running:
            verifier.restart()

    def registered() -> bool:
        status = provider.status().provider
        return status is not None and any(k.status == "registered" for k in status.keys)

    eventually(registered, "the key's registration once the verifier is back", 180)
    assert provider.status().provider.waiting_for == []  # type: ignore[union-attr]
    net.wait_for_offers([provider])
    ledger = Ledger(net)
    (tmp_path / "in").write_bytes(b"after the committee")
    summary, err = finish(start_submit(net, tmp_path / "in", tmp_path / "out"))
    assert summary.get("state") == "verified", err
    assert summary["provider"].lower() == provider.address.lower()  # the cheaper one
    ledger.paid_once(summary)


def test_an_input_too_large_for_a_providers_store_goes_elsewhere_before_any_escrow(
    healthy: Devnet, tmp_path: Path
) -> None:
    net = healthy
    small = net.node("provider-2")  # the cheaper one, with a store of STORE_CAP bytes
    ledger = Ledger(net)
    (tmp_path / "in").write_bytes(b"a" * STORE_CAP)  # its envelope makes it too large
    summary, err = finish(start_submit(net, tmp_path / "in", tmp_path / "out"))
    assert summary.get("state") == "verified", err
    assert summary["provider"].lower() != small.address.lower()
    assert (tmp_path / "out").read_bytes() == b"A" * STORE_CAP
    ledger.paid_once(summary)  # the small provider gained nothing, nothing of it is locked
    # The client said why the cheaper provider was passed over, before anything was paid.
    ranking = logged(net.client, f"job {summary['job_id']} -> ")
    assert len(ranking) == 1 and "input too large" in ranking[0], ranking
    assert summary["job_id"] not in {j["job_id"] for j in small.get("/v1/jobs")["jobs"]}
    assert not list((small.directory / "inputs").glob(summary["job_id"][2:] + "*"))


def test_the_client_restarted_during_the_upload_resumes_it_and_the_job_settles(
    healthy: Devnet, tmp_path: Path
) -> None:
    net = healthy
    ledger = Ledger(net)
    earlier = set(client_jobs(net))
    data = os.urandom(6 * MIB).hex().encode()[: 12 * MIB]
    (tmp_path / "in").write_bytes(data)
    submitting = start_submit(net, tmp_path / "in", tmp_path / "out")
    try:
        job = eventually(lambda: new_job(net, earlier, ("assigned",)), "the job's match", 180)
        provider = next(p for p in net.providers if p.address.lower() == job["provider"].lower())
        part = provider.directory / "inputs" / (job["job_id"][2:] + ".part")
        eventually(lambda: part.exists() and part.stat().st_size > 0, "the upload's first bytes")
        net.client.kill()
    finally:
        submitting.kill()
        submitting.communicate()
    assert part.exists(), "the upload was whole before the kill: nothing left to resume"
    held = part.stat().st_size
    net.client.restart()

    def ended() -> dict[str, Any] | None:
        found = client_jobs(net).get(job["job_id"])
        return found if found and found["status"] in ("verified", *ENDED) else None

    final = eventually(ended, "the job to end", 300)
    assert final["status"] == "verified", final
    ledger.paid_once(final)
    # The provider kept the bytes it had; the client's second attempt sent only the rest.
    sealed = provider.directory / "inputs" / (job["job_id"][2:] + ".sealed")
    delivered = logged(net.client, f"job {job['job_id']}: input delivered")
    assert len(delivered) == 1, delivered
    assert 0 < held < len(data) and f"resumed from {held})" in delivered[0], (held, delivered)
    assert not sealed.exists()  # ran and released


def test_a_reorg_across_a_settlement_converges_on_the_canonical_chain_and_nobody_acts_twice(
    healthy: Devnet, tmp_path: Path
) -> None:
    net = healthy
    ledger = Ledger(net)
    sent_before = {n.name: sent_count(net, n) for n in net.nodes}
    reorgs = {n.name: metric(n, "capa_chain_reorgs_total") for n in net.nodes}
    (tmp_path / "in").write_bytes(b"settled twice?")
    # Blocks are mined by hand around the match: the snapshot holds the match and nothing
    # after it, however fast the provider settles.
    net.rpc("evm_setIntervalMining", [0])
    try:
        submitting = start_submit(net, tmp_path / "in", tmp_path / "out")
        try:
            eventually(
                lambda: sent_count(net, net.client, "pending") > sent_before["client"],
                "the matchJob in anvil's pool",
            )
            net.rpc("evm_mine")
            fork = ChainClient(net.rpc_url).block_number()
            snapshot = net.rpc("evm_snapshot")
        except BaseException:
            submitting.kill()
            raise
    finally:
        net.rpc("evm_setIntervalMining", [int(net.options.block_time)])
    summary, err = finish(submitting)
    assert summary.get("state") == "verified", err
    job = client_jobs(net)[summary["job_id"]]
    provider = next(p for p in net.providers if p.address.lower() == job["provider"].lower())

    def provider_job() -> dict[str, Any]:
        (seen,) = [j for j in provider.get("/v1/jobs")["jobs"] if j["job_id"] == job["job_id"]]
        return dict(seen)

    eventually(lambda: provider_job()["status"] == "settled", "the provider's settlement")
    earned = int(provider.status().provider.unspent_earnings)  # type: ignore[union-attr]

    def settled_on_chain() -> list[int]:
        found = ledger.market.settled_payouts(
            provider.address, from_block=0, to_block=ledger.market.client.block_number(),
            log_range=10_000,
        )  # fmt: skip
        return [block for jid, _, block in found if jid.hex() == job["job_id"][2:]]

    (settled_at,) = settled_on_chain()
    assert settled_at > fork, "the settlement came too early for this drill"
    # A deep reorg: every daemon has confirmed blocks well above the settlement, so the
    # fork lies below all the blocks it holds in memory.
    for node in net.nodes:
        eventually(
            lambda n=node: metric(n, "capa_chain_confirmed_block") > settled_at + 3,
            f"{node.name} to confirm past the settlement",
        )
    head = ledger.market.client.block_number()
    # The blocks since the match are dropped; anvil mines a new chain from there, longer
    # than the old one, without the dropped transactions.
    net.rpc("evm_revert", [snapshot])
    for node in net.nodes:
        eventually(
            lambda n=node: metric(n, "capa_chain_reorgs_total") > reorgs[n.name],
            f"{node.name} to see the reorg",
        )
    eventually(lambda: ledger.market.client.block_number() > head + 2, "a longer chain")
    # The canonical chain settles the job again, once: the provider's own transaction.
    eventually(settled_on_chain, "the settlement on the new chain", 180)
    assert len(settled_on_chain()) == 1
    ledger.paid_once(summary)
    # Nobody sent anything new: the client's matchJob and the provider's settlement, once.
    for node in net.nodes:
        expected = sent_before[node.name] + (1 if node.name in ("client", provider.name) else 0)
        assert sent_count(net, node) == expected, node.name
    assert client_jobs(net)[job["job_id"]]["status"] == "verified"
    assert provider_job()["status"] == "settled"
    assert int(provider.status().provider.unspent_earnings) == earned  # type: ignore[union-attr]
    fetched = logged(net.client, f"job {job['job_id']}: output verified")
    assert len(fetched) == 1, fetched

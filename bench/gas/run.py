"""Gas of the market's transactions on a fresh anvil, beside iExec PoCo's anchors.

Run: `make bench-gas` (or `.venv/bin/python bench/gas/run.py`). Figures are receipt
gasUsed: what the sender pays, 21,000 base and calldata included, storage refunds deducted.
"Steady" rows are what a provider or client pays once its ledger slots and nonce word
exist (every transaction after its first); "first" rows are a brand-new account's cost.
matchJob takes a quote bound to the request; matchJob_standing spends a standing offer's
nonce. claimTimeout is the proven timeout (with the provider's input receipt: refund, slash,
the client's share credited); claimTimeout_noReceipt only refunds. Prints a table, then one
JSON line.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from node.chain.anvil import DEV_PRIVATE_KEYS, run_anvil
from node.chain.client import ChainClient
from node.chain.deploy import MarketConfig, deploy_market
from node.chain.devnet import SeededProvider, match_quoted, quote, seed_provider
from node.chain.market import Market
from node.chain.typed_data import (
    JobRequest,
    KeyAttestation,
    Result,
    ResultBatch,
    batch_root,
    sign_message,
)

TDX = 2
MEASUREMENT = keccak(b"bench measurement")
PRICE = 10**16
STAKE = 10**21

# iExec PoCo (Boost path), as published for comparison: matchOrders and pushResult.
IEXEC_MATCH_ORDERS = 487_000
IEXEC_PUSH_RESULT = 243_000

GOALS = {
    "matchJob": 130_000,
    "submitResult": 65_000,
    "claimTimeout": 70_000,
    "registerKey_k1": 100_000,
    "batch_per_job_100": 15_000,
}


@dataclass
class Bench:
    market: Market
    client: LocalAccount
    seeded: SeededProvider
    nonce: int = 0

    def match(
        self, *, duration: int = 3600, standing: bool = False
    ) -> tuple[bytes, JobRequest, int]:
        """A quote bound to the request (the usual path), or a standing offer it spends."""
        self.nonce += 1
        request = JobRequest(
            spec_hash=keccak(b"spec %d" % self.nonce),
            input_hash=keccak(b"input %d" % self.nonce),
            tee_kinds=1 << TDX,
            measurement=bytes(32),
            min_tcb_status=1,
            max_price=PRICE,
            deadline=self.market.latest_timestamp() + duration,
            nonce=self.nonce,
        )
        if standing:
            offer, signature = quote(
                self.market,
                self.seeded,
                price=PRICE,
                request_hash=bytes(32),
                nonce=self.nonce,
                min_duration=duration // 2,
                max_duration=duration,
            )
            receipt = self.market.match_job(self.client, request, offer, signature)
        else:
            receipt = match_quoted(
                self.market,
                self.client,
                self.seeded,
                request,
                price=PRICE,
                min_duration=duration // 2,
                max_duration=duration,
            )
        return request.job_id(self.client.address), request, int(receipt["gasUsed"])

    def result(self, job_id: bytes, request: JobRequest, output: bytes) -> Result:
        address = self.seeded.account.address
        return Result(job_id, address, request.spec_hash, request.input_hash, output)

    def result_signature(self, job_id: bytes, request: JobRequest, output: bytes) -> bytes:
        result = self.result(job_id, request, output)
        return sign_message(self.market.market_domain, result, self.seeded.enclave.key)

    def submit(self, job_id: bytes, request: JobRequest) -> int:
        output = keccak(b"output " + job_id)
        sig = self.result_signature(job_id, request, output)
        receipt = self.market.submit_result(self.seeded.account, job_id, output, sig)
        return int(receipt["gasUsed"])

    def batch(self, n: int) -> int:
        jobs = [self.match()[:2] for _ in range(n)]
        outputs = [keccak(b"output " + j) for j, _ in jobs]
        leaves = [
            self.result(j, r, o).hash_struct() for (j, r), o in zip(jobs, outputs, strict=True)
        ]
        batch = ResultBatch(self.seeded.account.address, batch_root(leaves), n)
        sig = sign_message(self.market.market_domain, batch, self.seeded.enclave.key)
        receipt = self.market.submit_results(
            self.seeded.account, [j for j, _ in jobs], outputs, sig
        )
        return int(receipt["gasUsed"])

    def timeout(self, *, proven: bool = True) -> int:
        job_id, request, _ = self.match(duration=60)
        input_receipt = b""
        if proven:
            input_receipt = self.market.sign_input_receipt(
                self.seeded.account, job_id, request.spec_hash, request.input_hash
            )
        deadline = self.market.job(job_id).deadline
        self.market.client.w3.provider.make_request("evm_mine", [deadline + 1])  # type: ignore[arg-type]
        receipt = self.market.claim_timeout(self.client, job_id, input_receipt)
        return int(receipt["gasUsed"])


def register_key_gas(rpc_url: str, accounts: list[LocalAccount], k: int) -> int:
    chain = ChainClient(rpc_url)
    governance = accounts[0]
    market = Market(chain, deploy_market(chain, governance, MarketConfig()))
    committee = accounts[5 : 5 + k]
    seed_provider(
        market, governance, committee, accounts[1], tee_kind=TDX, measurement=MEASUREMENT,
        stake=STAKE,
    )  # fmt: skip
    # Measure a second key: the policy and committee slots exist, as they do in production.
    enclave = Account.create()
    now = market.latest_timestamp()
    att = KeyAttestation(
        provider=accounts[1].address,
        enclave_key=enclave.address,
        tee_kind=TDX,
        measurement=MEASUREMENT,
        tcb_status=6,
        evidence_hash=keccak(b"evidence"),
        expires_at=now + 86400,
    )
    receipt = market.register_key(accounts[1], att, market.committee_signatures(att, committee))
    return int(receipt["gasUsed"])


def main() -> None:
    accounts = [Account.from_key(k) for k in DEV_PRIVATE_KEYS]
    figures: dict[str, int] = {}
    extra: dict[str, int] = {}
    with run_anvil() as anvil:
        chain = ChainClient(anvil.rpc_url)
        governance, provider, client = accounts[0], accounts[1], accounts[2]
        market = Market(chain, deploy_market(chain, governance, MarketConfig()))
        seeded = seed_provider(
            market, governance, accounts[5:6], provider, tee_kind=TDX, measurement=MEASUREMENT,
            stake=STAKE,
        )  # fmt: skip
        bench = Bench(market, client, seeded)

        job_id, request, extra["matchJob_first"] = bench.match()
        extra["submitResult_first"] = bench.submit(job_id, request)
        extra["claimTimeout_first"] = bench.timeout()
        job_id, request, figures["matchJob"] = bench.match()
        figures["submitResult"] = bench.submit(job_id, request)
        figures["claimTimeout"] = bench.timeout()
        figures["claimTimeout_noReceipt"] = bench.timeout(proven=False)
        extra["matchJob_standing_first"] = bench.match(standing=True)[2]  # its nonce word is new
        figures["matchJob_standing"] = bench.match(standing=True)[2]

        open_request = JobRequest(
            spec_hash=keccak(b"open spec"),
            input_hash=keccak(b"open input"),
            tee_kinds=1 << TDX,
            measurement=bytes(32),
            min_tcb_status=1,
            max_price=PRICE,
            deadline=market.latest_timestamp() + 3600,
            nonce=10**6,
        )
        figures["postJob"] = int(market.post_job(client, open_request)["gasUsed"])
        open_id = open_request.job_id(client.address)
        accept = market.accept_job(provider, open_id, seeded.enclave.address, 60)
        figures["acceptJob"] = int(accept["gasUsed"])

        for n in (1, 10, 100):
            figures[f"batch_per_job_{n}"] = bench.batch(n) // n

        figures["registerKey_k1"] = register_key_gas(anvil.rpc_url, accounts, 1)
        figures["registerKey_k3"] = register_key_gas(anvil.rpc_url, accounts, 3)

    table = Table(title="CapaCloud JobMarket gas (receipt gasUsed, anvil)")
    table.add_column("operation")
    table.add_column("gas", justify="right")
    table.add_column("goal", justify="right")
    table.add_column("vs iExec", justify="right")
    anchors = {"matchJob": IEXEC_MATCH_ORDERS, "submitResult": IEXEC_PUSH_RESULT}
    for name, gas in figures.items():
        goal = GOALS.get(name)
        verdict = "" if goal is None else f"{goal:,} {'ok' if gas <= goal else 'MISSED'}"
        anchor = anchors.get(name)
        ratio = "" if anchor is None else f"{gas / anchor:.2f}x of {anchor:,}"
        table.add_row(name, f"{gas:,}", verdict, ratio)
    for name, gas in extra.items():
        table.add_row(f"{name} (new account)", f"{gas:,}", "", "")
    Console().print(table)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()

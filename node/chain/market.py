"""Typed bindings for the deployed market: one method per contract action the node uses."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from eth_account.signers.local import LocalAccount
from web3.contract import Contract
from web3.logs import DISCARD
from web3.types import EventData, TxReceipt

from node.chain.client import ChainClient
from node.chain.deploy import Deployment
from node.chain.typed_data import (
    Eip712Domain,
    InputReceipt,
    JobRequest,
    KeyAttestation,
    Offer,
    job_market_domain,
    key_attestation_abi,
    sign_message,
    verifier_domain,
)


class JobState(IntEnum):
    NONE = 0
    POSTED = 1
    ACCEPTED = 2
    SETTLED = 3
    REFUNDED = 4
    CANCELLED = 5
    RELEASED = 6


@dataclass(frozen=True)
class OnChainJob:
    client: str
    price: int
    provider: str
    deadline: int
    state: JobState
    tee_kinds: int
    min_tcb_status: int
    measurement_id: int
    task_hash: bytes  # hashStruct(Task{specHash, inputHash})


class Market:
    """The three contracts of one deployment, called through one ChainClient."""

    def __init__(self, client: ChainClient, deployment: Deployment) -> None:
        self.client = client
        self.deployment = deployment
        self.registry: Contract = client.contract("ProviderRegistry", deployment.registry)
        self.verifier: Contract = client.contract("AttestationVerifier", deployment.verifier)
        self.market: Contract = client.contract("JobMarket", deployment.market)
        self.token = str(client.call("JobMarket", self.market.functions.TOKEN()))

    # ------------------------------------------------------------------ domains

    @property
    def market_domain(self) -> Eip712Domain:
        return job_market_domain(self.deployment.chain_id, self.deployment.market)

    @property
    def verifier_domain(self) -> Eip712Domain:
        return verifier_domain(self.deployment.chain_id, self.deployment.verifier)

    # ------------------------------------------------------------------ governance

    def set_committee(
        self, governance: LocalAccount, add: list[str], remove: list[str], threshold: int
    ) -> TxReceipt:
        fn = self.verifier.functions.setCommittee(add, remove, threshold)
        return self.client.transact("AttestationVerifier", fn, governance)

    def set_kind_policy(
        self, governance: LocalAccount, tee_kind: int, enabled: bool, min_tcb_status: int
    ) -> TxReceipt:
        fn = self.verifier.functions.setKindPolicy(tee_kind, enabled, min_tcb_status)
        return self.client.transact("AttestationVerifier", fn, governance)

    def approve_measurement(
        self, governance: LocalAccount, tee_kind: int, measurement: bytes, not_after: int
    ) -> TxReceipt:
        fn = self.verifier.functions.approveMeasurement(tee_kind, measurement, not_after)
        return self.client.transact("AttestationVerifier", fn, governance)

    def revoke_measurement(
        self, revoker: LocalAccount, tee_kind: int, measurement: bytes
    ) -> TxReceipt:
        fn = self.verifier.functions.revokeMeasurement(tee_kind, measurement)
        return self.client.transact("AttestationVerifier", fn, revoker)

    # ------------------------------------------------------------------ providers

    def register_provider(self, provider: LocalAccount, peer_id: bytes, stake: int) -> TxReceipt:
        fn = self.registry.functions.register(peer_id, stake)
        return self.client.transact("ProviderRegistry", fn, provider, value=self._native(stake))

    def register_key(
        self, sender: LocalAccount, attestation: KeyAttestation, signatures: list[bytes]
    ) -> TxReceipt:
        fn = self.verifier.functions.registerKey(key_attestation_abi(attestation), signatures)
        return self.client.transact("AttestationVerifier", fn, sender)

    def committee_signatures(
        self, attestation: KeyAttestation, members: list[LocalAccount]
    ) -> list[bytes]:
        """Signatures of `members` over the attestation, ordered as registerKey wants them."""
        ordered = sorted(members, key=lambda m: int(m.address, 16))
        return [sign_message(self.verifier_domain, attestation, m.key) for m in ordered]

    def submit_result(
        self, sender: LocalAccount, job_id: bytes, output_hash: bytes, signature: bytes
    ) -> TxReceipt:
        fn = self.market.functions.submitResult(job_id, output_hash, signature)
        return self.client.transact("JobMarket", fn, sender)

    def submit_results(
        self,
        sender: LocalAccount,
        job_ids: list[bytes],
        output_hashes: list[bytes],
        signature: bytes,
    ) -> TxReceipt:
        fn = self.market.functions.submitResults(job_ids, output_hashes, signature)
        return self.client.transact("JobMarket", fn, sender)

    def accept_job(
        self, provider: LocalAccount, job_id: bytes, enclave_key: str, min_duration: int
    ) -> TxReceipt:
        """Take a posted job with `enclave_key`; refused if less than `min_duration` is left."""
        fn = self.market.functions.acceptJob(job_id, enclave_key, min_duration)
        return self.client.transact("JobMarket", fn, provider)

    def release_job(self, provider: LocalAccount, job_id: bytes) -> TxReceipt:
        """Give an accepted job back before its deadline: full refund, no slash."""
        fn = self.market.functions.releaseJob(job_id)
        return self.client.transact("JobMarket", fn, provider)

    def sign_input_receipt(
        self, provider: LocalAccount, job_id: bytes, spec_hash: bytes, input_hash: bytes
    ) -> bytes:
        """The provider's signature over InputReceipt{jobId, Task}: its acknowledgement that
        the job's sealed input arrived, which `claim_timeout` needs to slash it."""
        return sign_message(
            self.market_domain, InputReceipt(job_id, spec_hash, input_hash), provider.key
        )

    # ------------------------------------------------------------------ clients

    def match_job(
        self,
        client: LocalAccount,
        request: JobRequest,
        offer: Offer,
        offer_signature: bytes,
        *,
        value: int | None = None,
    ) -> TxReceipt:
        fn = self.market.functions.matchJob(
            request.as_abi_tuple(), offer.as_abi_tuple(), offer_signature
        )
        pay = self._native(offer.price) if value is None else value
        return self.client.transact("JobMarket", fn, client, value=pay)

    def post_job(self, client: LocalAccount, request: JobRequest) -> TxReceipt:
        fn = self.market.functions.postJob(request.as_abi_tuple())
        return self.client.transact("JobMarket", fn, client, value=self._native(request.max_price))

    def claim_timeout(
        self, sender: LocalAccount, job_id: bytes, input_receipt: bytes = b""
    ) -> TxReceipt:
        """After the deadline: refund; with the provider's input receipt also slash it.

        Without a receipt only the client may claim until the dispute window has passed."""
        fn = self.market.functions.claimTimeout(job_id, input_receipt)
        return self.client.transact("JobMarket", fn, sender)

    def withdraw(self, account: LocalAccount, amount: int, to: str | None = None) -> TxReceipt:
        fn = self.market.functions.withdraw(amount, to or account.address)
        return self.client.transact("JobMarket", fn, account)

    def withdraw_compensation(self, account: LocalAccount, to: str | None = None) -> TxReceipt:
        """Take the client's shares of slashes out of the registry."""
        fn = self.registry.functions.withdrawCompensation(to or account.address)
        return self.client.transact("ProviderRegistry", fn, account)

    # ------------------------------------------------------------------ views

    def events(self, receipt: TxReceipt, contract: str, event: str) -> list[EventData]:
        """Decoded `event` logs of `contract` in `receipt` (other contracts' logs skipped)."""
        bound = {"JobMarket": self.market, "AttestationVerifier": self.verifier}.get(
            contract, self.registry
        )
        return list(bound.events[event]().process_receipt(receipt, errors=DISCARD))

    def job(self, job_id: bytes) -> OnChainJob:
        raw = self.client.call("JobMarket", self.market.functions.getJob(job_id))
        return OnChainJob(
            client=raw[0],
            price=raw[1],
            provider=raw[2],
            deadline=raw[3],
            state=JobState(raw[4]),
            tee_kinds=raw[5],
            min_tcb_status=raw[6],
            measurement_id=raw[7],
            task_hash=bytes(raw[8]),
        )

    def latest_timestamp(self) -> int:
        """The newest block's time: what deadlines and validity are checked against."""
        return int(self.client.w3.eth.get_block("latest")["timestamp"])

    def balance_of(self, account: str) -> int:
        return int(self.client.call("JobMarket", self.market.functions.balanceOf(account)))

    def fees_accrued(self) -> int:
        return int(self.client.call("JobMarket", self.market.functions.feesAccrued()))

    def locked_stake_of(self, provider: str) -> int:
        """Stake the provider's open jobs reserve (and a proven timeout would slash)."""
        return int(self.client.call("JobMarket", self.market.functions.lockedStakeOf(provider)))

    def stake_of(self, provider: str) -> int:
        raw = self.client.call("ProviderRegistry", self.registry.functions.providerOf(provider))
        return int(raw[0])

    def compensation_of(self, client: str) -> int:
        """The client's shares of slashes, waiting in the registry."""
        fn = self.registry.functions.compensationOf(client)
        return int(self.client.call("ProviderRegistry", fn))

    def _native(self, amount: int) -> int:
        """The msg.value to send: the amount itself when the market pays in native currency."""
        return amount if int(self.token, 16) == 0 else 0

"""Typed bindings for the deployed market: one method per contract action the node uses."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address
from web3.contract import Contract
from web3.logs import DISCARD
from web3.types import EventData, TxReceipt

from node.chain.client import ChainClient
from node.chain.deploy import Deployment
from node.chain.errors import ChainError
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


class ProviderStatus(IntEnum):
    NONE = 0
    ACTIVE = 1
    JAILED = 2
    EXITED = 3


@dataclass(frozen=True)
class ProviderInfo:
    """A provider's standing in the registry and the market, read in one go."""

    address: str
    status: ProviderStatus
    stake: int
    free_stake: int  # what requestUnbond may take: the stake no open job reserves
    locked_stake: int  # reserved by open jobs (slashable on a proven timeout)
    slashed: int  # slashed, waiting for governance's sweep
    unbonding: int
    unlock_at: int  # when `unbonding` may be withdrawn (0: nothing unbonding)
    registered_at: int
    peer_id: bytes
    eligible: bool  # takes new jobs: active and staked at least the minimum


@dataclass(frozen=True)
class KindPolicy:
    enabled: bool
    min_tcb_status: int


@dataclass(frozen=True)
class MeasurementInfo:
    id: int  # 0: never approved
    tee_kind: int
    not_after: int
    revoked: bool


# The part of ERC-20 the market's payment token needs from us.
_ERC20_ABI = [
    {
        "type": "function",
        "name": name,
        "stateMutability": mutability,
        "inputs": [{"name": f"a{i}", "type": t} for i, t in enumerate(inputs)],
        "outputs": [{"name": "", "type": output}],
    }
    for name, mutability, inputs, output in (
        ("approve", "nonpayable", ("address", "uint256"), "bool"),
        ("allowance", "view", ("address", "address"), "uint256"),
        ("balanceOf", "view", ("address",), "uint256"),
    )
]
NATIVE = "0x0000000000000000000000000000000000000000"


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

    @classmethod
    def at(cls, client: ChainClient, market: str, *, start_block: int = 0) -> Market:
        """The deployment around the JobMarket at `market`: it names its registry, verifier
        and treasury, the registry its governance. Refuses an address with no market."""
        if client.code_size(market) == 0:
            raise ChainError(f"no contract at {market} on chain {client.chain_id}")
        bound = client.contract("JobMarket", market)
        registry = str(client.call("JobMarket", bound.functions.REGISTRY()))
        verifier = str(client.call("JobMarket", bound.functions.VERIFIER()))
        treasury = str(client.call("JobMarket", bound.functions.TREASURY()))
        owner = client.contract("ProviderRegistry", registry).functions.owner()
        deployment = Deployment(
            chain_id=client.chain_id,
            registry=registry,
            verifier=verifier,
            market=to_checksum_address(market),
            governance=str(client.call("ProviderRegistry", owner)),
            treasury=treasury,
            block_number=start_block,
        )
        return cls(client, deployment)

    @property
    def native(self) -> bool:
        """Whether the market pays in the chain's currency (else in the ERC-20 `token`)."""
        return int(self.token, 16) == 0

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
        self.approve_token(provider, self.deployment.registry, stake)
        fn = self.registry.functions.register(peer_id, stake)
        return self.client.transact("ProviderRegistry", fn, provider, value=self._native(stake))

    def add_stake(self, provider: LocalAccount, amount: int) -> TxReceipt:
        self.approve_token(provider, self.deployment.registry, amount)
        fn = self.registry.functions.addStake(amount)
        return self.client.transact("ProviderRegistry", fn, provider, value=self._native(amount))

    def request_unbond(self, provider: LocalAccount, amount: int) -> TxReceipt:
        """Start unbonding `amount` of the free stake (it restarts the delay for all of it)."""
        fn = self.registry.functions.requestUnbond(amount)
        return self.client.transact("ProviderRegistry", fn, provider)

    def exit_market(self, provider: LocalAccount) -> TxReceipt:
        """Leave for good: no new jobs; the free stake starts unbonding."""
        return self.client.transact("ProviderRegistry", self.registry.functions.exit(), provider)

    def withdraw_unbonded(self, provider: LocalAccount) -> TxReceipt:
        fn = self.registry.functions.withdrawUnbonded()
        return self.client.transact("ProviderRegistry", fn, provider)

    def approve_token(self, owner: LocalAccount, spender: str, amount: int) -> TxReceipt | None:
        """For an ERC-20 market: let `spender` pull `amount` unless it may already."""
        if self.native or amount == 0:
            return None
        token = self.client.w3.eth.contract(address=to_checksum_address(self.token), abi=_ERC20_ABI)
        allowed = int(self.client.call("ERC20", token.functions.allowance(owner.address, spender)))
        if allowed >= amount:
            return None
        return self.client.transact("ERC20", token.functions.approve(spender, amount), owner)

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

    def deposit(self, account: LocalAccount, amount: int) -> TxReceipt:
        """Add to the account's free balance in the market (it pays jobs from there)."""
        self.approve_token(account, self.deployment.market, amount)
        fn = self.market.functions.deposit(amount)
        return self.client.transact("JobMarket", fn, account, value=self._native(amount))

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
        with self.client.errors("eth_getBlockByNumber"):
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

    def provider_info(self, provider: str) -> ProviderInfo:
        registry = self.registry.functions
        stake, slashed, status, registered_at = self.client.call(
            "ProviderRegistry", registry.providerOf(provider)
        )
        unbonding, unlock_at = self.client.call("ProviderRegistry", registry.unbonding(provider))
        return ProviderInfo(
            address=to_checksum_address(provider),
            status=ProviderStatus(status),
            stake=int(stake),
            free_stake=int(self.client.call("ProviderRegistry", registry.freeStakeOf(provider))),
            locked_stake=self.locked_stake_of(provider),
            slashed=int(slashed),
            unbonding=int(unbonding),
            unlock_at=int(unlock_at),
            registered_at=int(registered_at),
            peer_id=bytes(self.client.call("ProviderRegistry", registry.peerIdOf(provider))),
            eligible=bool(self.client.call("ProviderRegistry", registry.isEligible(provider))),
        )

    def min_stake(self) -> int:
        return int(self.client.call("ProviderRegistry", self.registry.functions.MIN_STAKE()))

    def unbonding_delay(self) -> int:
        fn = self.registry.functions.unbondingDelay()
        return int(self.client.call("ProviderRegistry", fn))

    def token_balance(self, account: str) -> int:
        """The account's balance of the payment asset outside the market."""
        if self.native:
            return self.client.balance(account)
        token = self.client.w3.eth.contract(address=to_checksum_address(self.token), abi=_ERC20_ABI)
        return int(self.client.call("ERC20", token.functions.balanceOf(account)))

    def kind_policy(self, tee_kind: int) -> KindPolicy:
        fn = self.verifier.functions.kindPolicy(tee_kind)
        enabled, min_tcb = self.client.call("AttestationVerifier", fn)
        return KindPolicy(bool(enabled), int(min_tcb))

    def measurement(self, tee_kind: int, measurement: bytes) -> MeasurementInfo:
        calls = self.verifier.functions
        found = int(
            self.client.call("AttestationVerifier", calls.measurementIdOf(tee_kind, measurement))
        )
        if found == 0:
            return MeasurementInfo(0, tee_kind, 0, False)
        _, kind, not_after, revoked = self.client.call(
            "AttestationVerifier", calls.measurementStatus(found)
        )
        return MeasurementInfo(found, int(kind), int(not_after), bool(revoked))

    def committee(self) -> tuple[int, int]:
        """(threshold, size) of the verifier committee."""
        calls = self.verifier.functions
        threshold = int(self.client.call("AttestationVerifier", calls.threshold()))
        size = int(self.client.call("AttestationVerifier", calls.committeeSize()))
        return threshold, size

    def is_committee_member(self, account: str) -> bool:
        fn = self.verifier.functions.isCommitteeMember(account)
        return bool(self.client.call("AttestationVerifier", fn))

    def parameters(self) -> dict[str, int]:
        """The deployment's fixed parameters (and the registry's current unbonding delay),
        named as `MarketConfig` names them."""
        market, registry = self.market.functions, self.registry.functions
        return {
            "min_stake": self.min_stake(),
            "max_job_duration": int(self.client.call("JobMarket", market.MAX_JOB_DURATION())),
            "dispute_window": int(self.client.call("JobMarket", market.DISPUTE_WINDOW())),
            "unbonding_delay": int(self.client.call("ProviderRegistry", registry.unbondingDelay())),
            "fee_bps": int(self.client.call("JobMarket", market.FEE_BPS())),
            "slash_bps": int(self.client.call("JobMarket", market.SLASH_BPS())),
            "slash_client_bps": int(self.client.call("JobMarket", market.SLASH_CLIENT_BPS())),
        }

    def committee_members(self, *, from_block: int, to_block: int, log_range: int) -> list[str]:
        """The committee as its CommitteeChanged events built it (the contract keeps a
        mapping, which cannot be listed), asked for `log_range` blocks at a time."""
        event = self.verifier.events.CommitteeChanged()
        members: dict[str, None] = {}
        start = from_block
        while start <= to_block:
            end = min(start + log_range - 1, to_block)
            with self.client.errors("eth_getLogs"):
                logs = event.get_logs(from_block=start, to_block=end)
            for log in sorted(logs, key=lambda entry: (entry["blockNumber"], entry["logIndex"])):
                for removed in log["args"]["removed"]:
                    members.pop(to_checksum_address(removed), None)
                for added in log["args"]["added"]:
                    members[to_checksum_address(added)] = None
            start = end + 1
        return list(members)

    def sim_allowed(self) -> bool:
        return bool(self.client.call("AttestationVerifier", self.verifier.functions.SIM_ALLOWED()))

    def settled_payouts(
        self, provider: str, *, from_block: int, to_block: int, log_range: int
    ) -> list[tuple[bytes, int, int]]:
        """(job id, payout, block) of every JobSettled of `provider` in the block range,
        asked for `log_range` blocks at a time (endpoints cap eth_getLogs ranges)."""
        event = self.market.events.JobSettled()
        found: list[tuple[bytes, int, int]] = []
        start = from_block
        while start <= to_block:
            end = min(start + log_range - 1, to_block)
            with self.client.errors("eth_getLogs"):
                logs = event.get_logs(
                    from_block=start, to_block=end, argument_filters={"provider": provider}
                )
            found.extend(
                (bytes(log["args"]["jobId"]), int(log["args"]["payout"]), int(log["blockNumber"]))
                for log in logs
            )
            start = end + 1
        return found

    def compensation_of(self, client: str) -> int:
        """The client's shares of slashes, waiting in the registry."""
        fn = self.registry.functions.compensationOf(client)
        return int(self.client.call("ProviderRegistry", fn))

    def _native(self, amount: int) -> int:
        """The msg.value to send: the amount itself when the market pays in native currency."""
        return amount if self.native else 0

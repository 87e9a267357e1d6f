"""Reverts in words: every custom error of the three contracts as a sentence a person can act on.

`decode_revert` names the error and its arguments; this module says what they mean: amounts
with units, chain times as dates, TEE kinds and job states by name, roles by their use. A
test holds every error in the committed ABIs to having words here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from eth_utils.crypto import keccak

from node.amounts import format_amount
from node.chain.errors import ContractRevert
from node.chain.market import JobState, ProviderStatus
from node.times import format_duration, format_timestamp
from proofs.claims import TcbStatus, TeeKind

_ROLES = {
    bytes(32): "the admin role (it sets the committee)",
    keccak(
        text="APPROVER_ROLE"
    ): "the approver role (it sets kind policies and approves measurements)",
    keccak(text="REVOKER_ROLE"): "the revoker role (it revokes measurements and keys)",
}


def _kind(value: int) -> str:
    try:
        return TeeKind(value).label
    except ValueError:
        return f"TEE kind {value} (unknown)"


def _kinds(mask: int) -> str:
    names = [_kind(bit) for bit in range(1, 8) if mask & (1 << bit)]
    return ", ".join(names) if names else "none"


def _tcb(value: int) -> str:
    try:
        return TcbStatus(value).name.lower().replace("_", "-")
    except ValueError:
        return f"TCB status {value}"


def _state(value: int) -> str:
    try:
        return JobState(value).name.lower()
    except ValueError:
        return f"state {value}"


def _status(value: int) -> str:
    try:
        return ProviderStatus(value).name.lower()
    except ValueError:
        return f"status {value}"


def _role(value: bytes) -> str:
    return _ROLES.get(bytes(value), "role 0x" + bytes(value).hex())


def _job(job_id: bytes) -> str:
    return "job 0x" + bytes(job_id).hex()


def _hex(value: bytes) -> str:
    return "0x" + bytes(value).hex()


_Words = Callable[..., str]

# One entry per error name. Arguments arrive in ABI order; shared names (ZeroAmount,
# ZeroAddress, ...) have one wording that fits every contract declaring them.
WORDS: dict[str, _Words] = {
    # ---------------------------------------------------------------- JobMarket
    "AmbiguousMeasurement": lambda kinds: (
        f"a measurement names the image of one TEE kind, but the request accepts {_kinds(kinds)}"
    ),
    "BadInputReceipt": lambda signer, provider: (
        f"the input receipt is signed by {signer}, not by the job's provider {provider}"
    ),
    "BadOfferSignature": lambda signer, provider: (
        f"the offer is signed by {signer}, not by its provider {provider}"
    ),
    "DeadlineNotPassed": lambda deadline: (
        f"the job's deadline has not passed yet: it is {format_timestamp(deadline)}"
    ),
    "DeadlinePassed": lambda deadline: f"the deadline passed at {format_timestamp(deadline)}",
    "DeadlineTooFar": lambda deadline, latest: (
        f"the deadline {format_timestamp(deadline)} is later than the longest job allows "
        f"({format_timestamp(latest)})"
    ),
    "DeadlineTooSoon": lambda deadline, earliest: (
        f"the deadline {format_timestamp(deadline)} leaves less than the provider's minimum "
        f"duration (it needs {format_timestamp(earliest)} or later)"
    ),
    "DisputeWindowOpen": lambda until: (
        "without the provider's input receipt only the client may claim this timeout until "
        f"{format_timestamp(until)}"
    ),
    "EmptyBatch": lambda: "the batch names no job",
    "InvalidConfig": lambda: (
        "the market's parameters are out of range (fee at most 10%, slash shares at most 100%, "
        "a treasury address)"
    ),
    "JobExists": lambda job_id: f"{_job(job_id)} exists already: use another request nonce",
    "KindNotAccepted": lambda kind, accepted: (
        f"the job accepts {_kinds(accepted)}, not {_kind(kind)}"
        if kind
        else f"the request's TEE kinds ({_kinds(accepted)}) are not a valid set"
    ),
    "LengthMismatch": lambda: "the batch has a different number of job ids and output hashes",
    "MeasurementMismatch": lambda required, actual: (
        f"the job requires measurement #{required}, the key runs #{actual}"
        if required
        else f"the request names another measurement than the offer's (#{actual})"
    ),
    "MixedProviders": lambda job_id, provider: (
        f"{_job(job_id)} belongs to {provider}: a batch settles jobs of one provider"
    ),
    "NonceUsed": lambda provider, nonce: f"offer nonce {nonce} of {provider} is used or cancelled",
    "NotClient": lambda caller: f"{caller} is not the job's client",
    "NotEnoughGasForSlash": lambda left, needed: (
        f"the transaction's gas ({left} left) cannot pay the slash ({needed} needed): send more gas"
    ),
    "NotProvider": lambda caller: f"{caller} is not the job's provider",
    "NotTreasury": lambda caller: f"{caller} is not the market's treasury",
    "OfferExpired": lambda valid_until: f"the offer expired at {format_timestamp(valid_until)}",
    "OfferForAnotherRequest": lambda offered, requested: (
        "the offer quotes another request (or another client) than this one"
    ),
    "PriceAboveMax": lambda price, max_price: (
        f"the offer's price {format_amount(price)} is above the request's maximum "
        f"{format_amount(max_price)}"
    ),
    "ProviderNotEligible": lambda provider: (
        f"{provider} takes no jobs: not registered, jailed, exited or staked below the minimum"
    ),
    "RegistryOfAnotherMarket": lambda market: (
        f"the registry was deployed for the market at {market}, not this one"
    ),
    "StakeTooLow": lambda needed, stake: (
        f"the provider's stake {format_amount(stake)} does not cover what its open jobs and "
        f"this one reserve ({format_amount(needed)})"
    ),
    "UnknownJob": lambda job_id: f"{_job(job_id)} does not exist",
    "WrongState": lambda job_id, state: f"{_job(job_id)} is {_state(state)}",
    # ---------------------------------------------------------------- AttestationVerifier
    "AccessControlBadConfirmation": lambda: "an account can only renounce its own role",
    "AccessControlUnauthorizedAccount": lambda account, role: (
        f"{account} does not hold {_role(role)}"
    ),
    "AttestationExpired": lambda expires_at: (
        f"the key attestation expired at {format_timestamp(expires_at)}"
    ),
    "InvalidThreshold": lambda threshold, members: (
        f"a threshold of {threshold} needs between 1 and {members} committee members"
    ),
    "KeyAlreadyRegistered": lambda key: f"enclave key {key} is registered already",
    "KeyExpired": lambda key, expires_at: (
        f"enclave key {key} expired at {format_timestamp(expires_at)}"
    ),
    "KeyExpiresBefore": lambda key, expires_at, until: (
        f"enclave key {key} expires at {format_timestamp(expires_at)}, before the job's "
        f"deadline {format_timestamp(until)}"
    ),
    "KeyNotOfOffer": lambda key, kind, measurement_id: (
        f"enclave key {key} is not of the offer's kind {_kind(kind)} and measurement "
        f"#{measurement_id}"
    ),
    "KeyOfAnotherProvider": lambda key, provider: (
        f"enclave key {key} is not registered to {provider}"
    ),
    "KeyRevoked": lambda key: f"enclave key {key} is revoked",
    "KindDisabled": lambda kind: (
        f"TEE kind {_kind(kind)} is disabled on this deployment (`capa chain kind enable`)"
    ),
    "MeasurementExpired": lambda measurement_id, not_after: (
        f"measurement #{measurement_id} expired at {format_timestamp(not_after)}"
    ),
    "MeasurementExpiresBefore": lambda measurement_id, not_after, until: (
        f"measurement #{measurement_id} expires at {format_timestamp(not_after)}, before the "
        f"job's deadline {format_timestamp(until)}"
    ),
    "MeasurementNotAllowed": lambda kind, measurement: (
        f"measurement {_hex(measurement)} is not approved for {_kind(kind)}"
    ),
    "MeasurementRevoked": lambda measurement_id: (
        f"measurement #{measurement_id} is revoked, and revocation is final"
    ),
    "NotEnoughSignatures": lambda valid, threshold: (
        f"{valid} committee signatures given, {threshold} needed"
    ),
    "NotKeyOwnerOrRevoker": lambda caller: f"{caller} is neither the key's provider nor a revoker",
    "SignerNotInCommittee": lambda signer: f"{signer} is not a committee member",
    "SignersNotAscending": lambda signer: (
        f"committee signatures must be ordered by ascending signer address (at {signer})"
    ),
    "SimNotAllowed": lambda: (
        "this deployment refuses the sim kind (no hardware, INSECURE): only a devnet deployed "
        "with --allow-sim accepts it"
    ),
    "UnknownKey": lambda key: f"enclave key {key} is not registered",
    "UnknownTeeKind": lambda kind: f"{_kind(kind)} is not a TEE kind this deployment knows",
    # ---------------------------------------------------------------- ProviderRegistry
    "AlreadyRegistered": lambda provider: (
        f"{provider} is registered already (an exited provider cannot register again)"
    ),
    "EmptyPeerId": lambda: "the libp2p peer id is empty",
    "InsufficientStake": lambda requested, available: (
        f"asked to unbond {format_amount(requested)} but only {format_amount(available)} of "
        "the stake is free (open jobs reserve the rest)"
    ),
    "InvalidStatus": lambda provider, status: f"{provider} is {_status(status)}",
    "NotRegistered": lambda provider: f"{provider} is not a registered provider",
    "NothingToWithdraw": lambda: "there is nothing to withdraw",
    "OnlyMarket": lambda caller: f"only the market may call this, not {caller}",
    "OwnableInvalidOwner": lambda owner: f"{owner} cannot be the registry's governance",
    "OwnableUnauthorizedAccount": lambda account: f"{account} is not the registry's governance",
    "StillUnbonding": lambda unlock_at: f"the stake unlocks at {format_timestamp(unlock_at)}",
    "UnbondingTooLong": lambda delay, maximum: (
        f"an unbonding delay of {format_duration(delay)} is longer than the "
        f"{format_duration(maximum)} allowed"
    ),
    "UnbondingTooShort": lambda delay, minimum: (
        f"an unbonding delay of {format_duration(delay)} is shorter than the longest job plus "
        f"the dispute window ({format_duration(minimum)})"
    ),
    # ---------------------------------------------------------------- shared and OpenZeppelin
    "TcbTooLow": lambda tcb, minimum: (
        f"the key's TCB status {_tcb(tcb)} is below the {_tcb(minimum)} required"
    ),
    "ZeroAmount": lambda: "the amount is zero",
    "ZeroAddress": lambda: "an address is zero",
    "WrongValue": lambda sent, expected: (
        f"sent {format_amount(sent)} with the transaction, {format_amount(expected)} expected"
    ),
    "TokenAmountMismatch": lambda received, expected: (
        f"the token delivered {received} units, {expected} expected (fee-on-transfer and "
        "rebasing tokens are refused)"
    ),
    "SafeERC20FailedOperation": lambda token: f"the token {token} refused the transfer",
    "FailedCall": lambda: "a payment to the recipient failed (it refuses the currency)",
    "ReentrancyGuardReentrantCall": lambda: "a reentrant call was refused",
    "SafeCastOverflowedUintDowncast": lambda bits, value: (
        f"the value {value} does not fit the contract's {bits}-bit field"
    ),
    "ECDSAInvalidSignature": lambda: "the signature is invalid",
    "ECDSAInvalidSignatureLength": lambda length: (
        f"the signature is {length} bytes long, 65 expected"
    ),
    "ECDSAInvalidSignatureS": lambda s: "the signature is malleable (its s value is too high)",
    "InvalidShortString": lambda: "an EIP-712 name or version is malformed",
    "StringTooLong": lambda text: "an EIP-712 name or version is too long",
}


def _insufficient_balance(contract: str, first: int, second: int) -> str:
    # Two errors share this signature: the market's (requested, available) and
    # OpenZeppelin's Address (balance, needed) when a contract cannot pay out.
    if contract == "JobMarket":
        return f"asked for {format_amount(first)} but the free balance is {format_amount(second)}"
    return f"the contract holds {format_amount(first)}, {format_amount(second)} is owed"


def explain_revert(revert: ContractRevert) -> str:
    """The revert as a sentence; the raw error name when its arguments did not decode."""
    args: tuple[Any, ...] = revert.args_decoded
    try:
        if revert.error == "InsufficientBalance":
            return _insufficient_balance(revert.contract, *args)
        if revert.error == "Error" and args:
            return f"reverted: {args[0]}"
        if revert.error == "Panic" and args:
            return f"the contract panicked (code 0x{int(args[0]):02x})"
        words = WORDS.get(revert.error)
        if words is not None:
            return words(*args)
    except TypeError:
        pass  # arguments missing (malformed revert data): fall back to the name
    return str(revert).split(": ", 1)[-1]

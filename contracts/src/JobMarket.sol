// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {IAttestationVerifier} from "./interfaces/IAttestationVerifier.sol";
import {IJobMarket} from "./interfaces/IJobMarket.sol";
import {IProviderRegistry} from "./interfaces/IProviderRegistry.sol";
import {JobRequest, Offer, TeeKind} from "./CapaTypes.sol";
import {PaymentToken} from "./PaymentToken.sol";

/// @title JobMarket
/// @notice Escrow and assignment of confidential compute jobs. A provider is paid only
/// against a result signed by an enclave key the AttestationVerifier holds valid for that
/// provider, with the kind and measurement the job asked for, over the spec and input the
/// client asked for. Money moves through an internal ledger with pull withdrawals.
/// @dev Job ids are derived, not counted: jobId = keccak256(abi.encode(client, nonce)) of
/// the client's JobRequest. A client knows its job id before anything else, so it can seal
/// its input to the enclave with the job id as HPKE info and then put the sealed input's
/// hash in the request; a resent transaction cannot create a second job.
///
/// Faults. A provider is slashed only when it provably had what it needed and did not
/// deliver:
/// - Time: an offer states `minDuration`, the least time it needs; `matchJob` and
///   `acceptJob` refuse a deadline closer than that.
/// - Input: when the client's sealed input has arrived (an upload on /capa/input/1 whose
///   hash matches the job's `inputHash`), the provider signs the EIP-712
///   `InputReceipt{jobId, Task{specHash, inputHash}}` with its account key (the key that
///   signs its offers and holds its stake) and hands it to the client. The account key, not
///   the enclave key: the receipt acknowledges the provider's liability, which starts when
///   its daemon holds the bytes, before any enclave opens them; it stays checkable however
///   the provider's enclave keys are rotated, revoked or expire; and checking it needs no
///   call to the verifier. A provider signs it only while at least its `minDuration` is left.
/// - `claimTimeout(jobId, receipt)` after the deadline refunds the client in full, always.
///   With the receipt it also slashes `price * SLASH_BPS / BPS` of the provider's stake, of
///   which `SLASH_CLIENT_BPS` goes to the client and the rest to governance's sweep. Without
///   one it only refunds: only the client may close a job that way until the dispute window
///   after the deadline has passed, so nobody (the provider included) can close a job
///   without its slash before the client has had the time to present the receipt.
/// - `releaseJob`: before its deadline a provider can give a job back, with a full refund
///   to the client and no slash. The contract cannot tell a job whose input never came or
///   whose input made the workload fail from one the provider chose to drop, so the honest
///   exit is never punished and returns the client's money as early as possible; the slash
///   punishes holding an acknowledged job past its deadline in silence.
/// The refund never depends on the slash: the slash is a bounded call (a fixed gas
/// allowance that the caller must be able to give it, so that a caller cannot make it fail
/// by sending too little gas) whose failure is recorded (`SlashFailed`) but reverts nothing.
///
/// Stake. Each accepted job reserves its slash amount of the provider's stake from match
/// (or accept) until it is settled, released or timed out (`lockedStakeOf`, kept here in
/// the provider's ledger slot so that settling costs no extra write); a provider takes a job
/// only while its stake covers the reservations of all its open jobs plus this one, and the
/// registry lets no reserved stake unbond.
///
/// Binding. The enclave signs `Result{jobId, provider, Task{specHash, inputHash},
/// outputHash}`: a result settles only the spec and input the client asked for, whatever
/// the measurement requirement. The job keeps hashStruct(Task) (one slot) and the events
/// carry both hashes.
contract JobMarket is IJobMarket, PaymentToken, EIP712, ReentrancyGuardTransient {
    using SafeCast for uint256;

    enum State {
        None,
        Posted,
        Accepted,
        Settled,
        Refunded,
        Cancelled,
        Released
    }

    /// @dev Three slots. `teeKinds` is a mask of accepted kinds; `measurementId` zero accepts
    /// any allowlisted measurement of those kinds; `taskHash` is hashStruct(Task{specHash,
    /// inputHash}). In a final state client and price read zero (see `_clearMoneyFields`);
    /// the events keep the full history.
    struct Job {
        address client;
        uint96 price;
        address provider;
        uint40 deadline;
        State state;
        uint8 teeKinds;
        uint8 minTcbStatus;
        uint32 measurementId;
        bytes32 taskHash;
    }

    /// @dev One slot per account: a client's or provider's free balance and, for a provider,
    /// the stake its open jobs reserve and whether it ever invalidated an offer nonce. Settling
    /// credits the one and releases the other in the same write; matching reads the flag with
    /// the reservation, so a quote's nonce is looked up only for a provider that cancels.
    struct Account {
        uint128 balance;
        uint120 lockedStake;
        bool noncesInvalidated;
    }

    struct KeyFacts {
        uint8 teeKind;
        uint32 measurementId;
        uint8 tcbStatus;
    }

    bytes32 public constant OFFER_TYPEHASH = keccak256(
        "Offer(address provider,address enclaveKey,uint8 teeKind,bytes32 measurement,uint256 price,uint64 minDuration,uint64 maxDuration,uint64 validUntil,bytes32 requestHash,uint256 nonce)"
    );
    bytes32 public constant JOB_REQUEST_TYPEHASH = keccak256(
        "JobRequest(bytes32 specHash,bytes32 inputHash,uint8 teeKinds,bytes32 measurement,uint8 minTcbStatus,uint256 maxPrice,uint64 deadline,uint256 nonce)"
    );
    bytes32 public constant TASK_TYPEHASH = keccak256("Task(bytes32 specHash,bytes32 inputHash)");
    bytes32 public constant RESULT_TYPEHASH = keccak256(
        "Result(bytes32 jobId,address provider,Task task,bytes32 outputHash)Task(bytes32 specHash,bytes32 inputHash)"
    );
    bytes32 public constant RESULT_BATCH_TYPEHASH =
        keccak256("ResultBatch(address provider,bytes32 root,uint256 count)");
    bytes32 public constant INPUT_RECEIPT_TYPEHASH =
        keccak256("InputReceipt(bytes32 jobId,Task task)Task(bytes32 specHash,bytes32 inputHash)");

    uint256 internal constant BPS = 10_000;
    uint256 public constant MAX_FEE_BPS = 1_000;
    /// Gas the registry's slash gets: several times what it uses (a new compensation slot
    /// included). A claim that cannot give it this much reverts instead of skipping the slash.
    uint256 public constant SLASH_GAS = 100_000;

    IProviderRegistry public immutable REGISTRY;
    IAttestationVerifier public immutable VERIFIER;
    /// Protocol fee taken from each payout, in basis points.
    uint256 public immutable FEE_BPS;
    /// Stake reserved per job and slashed on a proven timeout, in basis points of the price
    /// (at most the price itself).
    uint256 public immutable SLASH_BPS;
    /// Share of a slash credited to the client let down, in basis points of the slash.
    uint256 public immutable SLASH_CLIENT_BPS;
    address public immutable TREASURY;
    uint64 public immutable MAX_JOB_DURATION;
    /// After a deadline, how long only the client may close a job without a slash.
    uint64 public immutable DISPUTE_WINDOW;

    mapping(bytes32 => Job) internal _jobs;
    /// Free balances (deposits, refunds and earnings waiting to be withdrawn) and reserved stake.
    mapping(address => Account) internal _accounts;
    /// Protocol fees not yet withdrawn to the treasury.
    uint256 public feesAccrued;
    /// Unordered offer nonces per provider: bit (nonce & 255) of word (nonce >> 8).
    mapping(address => mapping(uint256 => uint256)) public nonceBitmap;

    error JobExists(bytes32 jobId);
    error UnknownJob(bytes32 jobId);
    error WrongState(bytes32 jobId, State state);
    error OfferExpired(uint64 validUntil);
    error OfferForAnotherRequest(bytes32 offerRequestHash, bytes32 requestHash);
    error BadOfferSignature(address signer, address provider);
    error NonceUsed(address provider, uint256 nonce);
    error PriceAboveMax(uint256 price, uint256 maxPrice);
    error KindNotAccepted(uint8 teeKind, uint8 accepted);
    error MeasurementMismatch(uint32 required, uint32 actual);
    error AmbiguousMeasurement(uint8 teeKinds);
    error TcbTooLow(uint8 tcbStatus, uint8 minimum);
    error DeadlinePassed(uint64 deadline);
    error DeadlineNotPassed(uint64 deadline);
    error DeadlineTooFar(uint64 deadline, uint64 latest);
    error DeadlineTooSoon(uint64 deadline, uint256 earliest);
    error DisputeWindowOpen(uint64 until);
    error BadInputReceipt(address signer, address provider);
    error ProviderNotEligible(address provider);
    error StakeTooLow(uint256 needed, uint256 stake);
    error RegistryOfAnotherMarket(address market);
    error NotEnoughGasForSlash(uint256 left, uint256 needed);
    error NotClient(address caller);
    error NotProvider(address caller);
    error NotTreasury(address caller);
    error MixedProviders(bytes32 jobId, address provider);
    error EmptyBatch();
    error LengthMismatch();
    error InsufficientBalance(uint256 requested, uint256 available);
    error ZeroAmount();
    error InvalidConfig();
    error ZeroAddress();

    event JobMatched(
        bytes32 indexed jobId,
        address indexed client,
        address indexed provider,
        uint256 price,
        uint64 deadline,
        bytes32 specHash,
        bytes32 inputHash
    );
    event JobPosted(
        bytes32 indexed jobId,
        address indexed client,
        bytes32 specHash,
        bytes32 inputHash,
        uint8 teeKinds,
        bytes32 measurement,
        uint8 minTcbStatus,
        uint256 maxPrice,
        uint64 deadline
    );
    event JobAccepted(bytes32 indexed jobId, address indexed provider);
    /// `payout` is the price less the protocol fee.
    event JobSettled(
        bytes32 indexed jobId, address indexed provider, address enclaveKey, bytes32 outputHash, uint256 payout
    );
    event JobRefunded(bytes32 indexed jobId, address indexed client, uint256 refund, uint256 slashed);
    /// The provider gave the job back before its deadline: full refund, no slash.
    event JobReleased(bytes32 indexed jobId, address indexed client, address indexed provider, uint256 refund);
    /// A proven timeout whose slash the registry refused; the refund went through.
    event SlashFailed(bytes32 indexed jobId, address indexed provider, uint256 amount);
    event JobCancelled(bytes32 indexed jobId, address indexed client, uint256 refund);
    event Deposited(address indexed account, uint256 amount);
    event Withdrawn(address indexed account, address to, uint256 amount);
    event NoncesInvalidated(address indexed provider, uint256 wordPos, uint256 mask);
    event FeesWithdrawn(address indexed treasury, uint256 amount);

    constructor(
        IERC20 token,
        IProviderRegistry registry,
        IAttestationVerifier verifier,
        address treasury,
        uint256 feeBps,
        uint256 slashBps,
        uint256 slashClientBps
    ) PaymentToken(token) EIP712("CapaCloud JobMarket", "1") {
        if (feeBps > MAX_FEE_BPS || slashBps > BPS || slashClientBps > BPS || treasury == address(0)) {
            revert InvalidConfig();
        }
        // The registry was deployed naming this market's address: a registry of another market
        // could neither reserve stake for our jobs nor slash for them.
        address wired = registry.MARKET();
        if (wired != address(this)) revert RegistryOfAnotherMarket(wired);
        REGISTRY = registry;
        VERIFIER = verifier;
        TREASURY = treasury;
        FEE_BPS = feeBps;
        SLASH_BPS = slashBps;
        SLASH_CLIENT_BPS = slashClientBps;
        MAX_JOB_DURATION = registry.MAX_JOB_DURATION();
        DISPUTE_WINDOW = registry.DISPUTE_WINDOW();
    }

    // ---------------------------------------------------------------- clients

    /// @notice Post, escrow and assign in one transaction against a provider-signed offer.
    /// @dev Pays `offer.price` from msg.value (native) first, then from the free balance;
    /// native value beyond the price is credited to the caller's free balance.
    // Accepted (cyclomatic-complexity): one check per line of the match's contract, in the
    // order that fails cheapest first; split up, the checks would cost gas and readability.
    // slither-disable-next-line cyclomatic-complexity
    function matchJob(JobRequest calldata req, Offer calldata offer, bytes calldata offerSignature)
        external
        payable
        returns (bytes32 jobId)
    {
        jobId = jobIdFor(msg.sender, req.nonce);
        if (_jobs[jobId].state != State.None) revert JobExists(jobId);
        if (offer.requestHash != bytes32(0)) {
            bytes32 requestHash = requestHashFor(msg.sender, req);
            if (offer.requestHash != requestHash) revert OfferForAnotherRequest(offer.requestHash, requestHash);
        }
        if (block.timestamp > offer.validUntil) revert OfferExpired(offer.validUntil);
        if (offer.price > req.maxPrice) revert PriceAboveMax(offer.price, req.maxPrice);
        if (!TeeKind.isKnown(offer.teeKind) || req.teeKinds & TeeKind.bit(offer.teeKind) == 0) {
            revert KindNotAccepted(offer.teeKind, req.teeKinds);
        }
        uint64 deadline = _deadline(req.deadline, offer.minDuration, offer.maxDuration);

        address signer = ECDSA.recover(_hashTypedDataV4(hashOffer(offer)), offerSignature);
        if (signer != offer.provider) revert BadOfferSignature(signer, offer.provider);
        // A standing offer is spent here. A quote bound to this request cannot be replayed (its
        // job exists after this call): only its cancellation is honoured, and only a provider
        // that ever invalidated a nonce can have cancelled it.
        if (offer.requestHash == bytes32(0)) _useNonce(offer.provider, offer.nonce);
        bool invalidated = _lockStake(offer.provider, _slashAmount(offer.price));
        if (invalidated && offer.requestHash != bytes32(0) && _isNonceUsed(offer.provider, offer.nonce)) {
            revert NonceUsed(offer.provider, offer.nonce);
        }
        (uint32 measurementId, uint8 tcb) = VERIFIER.checkOfferKey(
            offer.provider, offer.enclaveKey, offer.teeKind, offer.measurement, deadline
        );
        if (req.measurement != bytes32(0) && req.measurement != offer.measurement) {
            revert MeasurementMismatch(0, measurementId);
        }
        if (tcb < req.minTcbStatus) revert TcbTooLow(tcb, req.minTcbStatus);

        _escrow(msg.sender, offer.price);
        _recordMatch(jobId, req, offer, deadline, measurementId);
    }

    function _recordMatch(
        bytes32 jobId,
        JobRequest calldata req,
        Offer calldata offer,
        uint64 deadline,
        uint32 measurementId
    ) internal {
        _storeJob(
            _jobs[jobId],
            Job({
                client: msg.sender,
                price: offer.price.toUint96(),
                provider: offer.provider,
                deadline: uint256(deadline).toUint40(),
                state: State.Accepted,
                teeKinds: TeeKind.bit(offer.teeKind),
                minTcbStatus: req.minTcbStatus,
                measurementId: measurementId,
                taskHash: hashTask(req.specHash, req.inputHash)
            })
        );
        emit JobMatched(jobId, msg.sender, offer.provider, offer.price, deadline, req.specHash, req.inputHash);
    }

    /// @notice Post an open job that any eligible staked provider may accept; escrows maxPrice.
    function postJob(JobRequest calldata req) external payable returns (bytes32 jobId) {
        jobId = jobIdFor(msg.sender, req.nonce);
        if (_jobs[jobId].state != State.None) revert JobExists(jobId);
        if (req.deadline <= block.timestamp) revert DeadlinePassed(req.deadline);
        if (req.teeKinds == 0 || req.teeKinds >> (TeeKind.MAX + 1) != 0 || req.teeKinds & 1 != 0) {
            revert KindNotAccepted(0, req.teeKinds);
        }
        uint32 measurementId;
        if (req.measurement != bytes32(0)) {
            // A measurement names one kind's image: with several kinds it would be ambiguous.
            uint8 kinds = req.teeKinds;
            if (kinds & (kinds - 1) != 0) revert AmbiguousMeasurement(kinds);
            measurementId = VERIFIER.activeMeasurementId(_kindOfBit(kinds), req.measurement);
        }
        _escrow(msg.sender, req.maxPrice);
        _storeJob(
            _jobs[jobId],
            Job({
                client: msg.sender,
                price: req.maxPrice.toUint96(),
                provider: address(0),
                deadline: uint256(req.deadline).toUint40(),
                state: State.Posted,
                teeKinds: req.teeKinds,
                minTcbStatus: req.minTcbStatus,
                measurementId: measurementId,
                taskHash: hashTask(req.specHash, req.inputHash)
            })
        );
        emit JobPosted(
            jobId,
            msg.sender,
            req.specHash,
            req.inputHash,
            req.teeKinds,
            req.measurement,
            req.minTcbStatus,
            req.maxPrice,
            req.deadline
        );
    }

    /// @notice Take a posted job. `enclaveKey` must be a key of the caller that the job's
    /// requirements accept and that stays valid through the deadline, so that a provider
    /// cannot hold a job it could never settle; `minDuration` is the least time the caller
    /// needs (as in its offers): a deadline closer than that is refused.
    function acceptJob(bytes32 jobId, address enclaveKey, uint64 minDuration) external {
        Job storage job = _jobs[jobId];
        if (job.state != State.Posted) revert WrongState(jobId, job.state);
        uint64 deadline = job.deadline;
        if (block.timestamp >= deadline) revert DeadlinePassed(deadline);
        if (deadline < block.timestamp + minDuration) revert DeadlineTooSoon(deadline, block.timestamp + minDuration);
        uint256 latest = block.timestamp + MAX_JOB_DURATION;
        if (deadline > latest) revert DeadlineTooFar(deadline, latest.toUint64());
        _lockStake(msg.sender, _slashAmount(job.price));
        (uint8 kind, uint32 measurementId, uint8 tcb) = VERIFIER.checkKey(msg.sender, enclaveKey, deadline);
        _checkRequirements(job, kind, measurementId, tcb);
        job.provider = msg.sender;
        job.state = State.Accepted;
        emit JobAccepted(jobId, msg.sender);
    }

    /// @notice Withdraw a posted job nobody accepted; the escrow returns to the free balance.
    function cancelJob(bytes32 jobId) external {
        Job storage job = _jobs[jobId];
        if (job.state != State.Posted) revert WrongState(jobId, job.state);
        if (msg.sender != job.client) revert NotClient(msg.sender);
        job.state = State.Cancelled;
        uint256 refund = job.price;
        _clearMoneyFields(job);
        _credit(msg.sender, refund);
        emit JobCancelled(jobId, msg.sender, refund);
    }

    // ---------------------------------------------------------------- providers

    /// @notice Settle a job with its enclave's signature over Result{jobId, provider,
    /// Task{specHash, inputHash}, outputHash}; pays the provider minus the protocol fee and
    /// releases the stake the job reserved. Anyone may relay.
    function submitResult(bytes32 jobId, bytes32 outputHash, bytes calldata enclaveSignature) external {
        Job storage job = _jobs[jobId];
        if (job.state != State.Accepted) revert WrongState(jobId, job.state);
        if (block.timestamp > job.deadline) revert DeadlinePassed(job.deadline);
        address provider = job.provider;
        bytes32 digest = _hashTypedDataV4(_hashResult(jobId, provider, job.taskHash, outputHash));
        address key = ECDSA.recover(digest, enclaveSignature);
        (uint8 kind, uint32 measurementId, uint8 tcb) = VERIFIER.checkKey(provider, key, block.timestamp);
        _checkRequirements(job, kind, measurementId, tcb);

        job.state = State.Settled;
        uint256 price = job.price;
        _clearMoneyFields(job);
        uint256 fee = (price * FEE_BPS) / BPS;
        _creditAndRelease(provider, price - fee, _slashAmount(price));
        feesAccrued += fee;
        emit JobSettled(jobId, provider, key, outputHash, price - fee);
    }

    /// @notice Settle several jobs of one provider with one enclave signature over
    /// ResultBatch{provider, root, count}, where root is the Merkle root of the jobs'
    /// Result struct hashes in the given order (pairs hashed in order, an odd node carried up).
    /// Releases the stake the jobs reserved in the same write that credits the payout.
    /// @dev All or nothing: one bad job reverts the batch, so a resent batch cannot pay twice.
    function submitResults(bytes32[] calldata jobIds, bytes32[] calldata outputHashes, bytes calldata enclaveSignature)
        external
    {
        uint256 n = jobIds.length;
        if (n == 0) revert EmptyBatch();
        if (outputHashes.length != n) revert LengthMismatch();
        address provider = _jobs[jobIds[0]].provider;
        bytes32[] memory leaves = new bytes32[](n);
        for (uint256 i; i < n; ++i) {
            bytes32 jobId = jobIds[i];
            Job storage job = _jobs[jobId];
            if (job.state != State.Accepted) revert WrongState(jobId, job.state);
            if (job.provider != provider) revert MixedProviders(jobId, job.provider);
            if (block.timestamp > job.deadline) revert DeadlinePassed(job.deadline);
            leaves[i] = _hashResult(jobId, provider, job.taskHash, outputHashes[i]);
        }
        address key = ECDSA.recover(
            _hashTypedDataV4(keccak256(abi.encode(RESULT_BATCH_TYPEHASH, provider, merkleRoot(leaves), n))),
            enclaveSignature
        );
        (uint256 payout, uint256 fees, uint256 released) = _settleBatch(jobIds, outputHashes, provider, key);
        _creditAndRelease(provider, payout, released);
        feesAccrued += fees;
    }

    function _settleBatch(bytes32[] calldata jobIds, bytes32[] calldata outputHashes, address provider, address key)
        internal
        returns (uint256 payout, uint256 fees, uint256 released)
    {
        KeyFacts memory facts;
        (facts.teeKind, facts.measurementId, facts.tcbStatus) = VERIFIER.checkKey(provider, key, block.timestamp);
        for (uint256 i; i < jobIds.length; ++i) {
            (uint256 p, uint256 f, uint256 r) = _settleOne(jobIds[i], outputHashes[i], provider, key, facts);
            payout += p;
            fees += f;
            released += r;
        }
    }

    function _settleOne(bytes32 jobId, bytes32 outputHash, address provider, address key, KeyFacts memory facts)
        internal
        returns (uint256 payout, uint256 fee, uint256 released)
    {
        Job storage job = _jobs[jobId];
        // A job listed twice in a batch fails here on its second appearance.
        if (job.state != State.Accepted) revert WrongState(jobId, job.state);
        _checkRequirements(job, facts.teeKind, facts.measurementId, facts.tcbStatus);
        job.state = State.Settled;
        uint256 price = job.price;
        _clearMoneyFields(job);
        fee = (price * FEE_BPS) / BPS;
        payout = price - fee;
        released = _slashAmount(price);
        emit JobSettled(jobId, provider, key, outputHash, payout);
    }

    /// @notice Give back an accepted job before its deadline: the client is refunded in full
    /// and the stake the job reserved is released, without a slash (see the contract's notes:
    /// an input that never came, a workload that failed on it, a key stopped by governance).
    function releaseJob(bytes32 jobId) external {
        Job storage job = _jobs[jobId];
        if (job.state != State.Accepted) revert WrongState(jobId, job.state);
        if (msg.sender != job.provider) revert NotProvider(msg.sender);
        if (block.timestamp > job.deadline) revert DeadlinePassed(job.deadline);
        job.state = State.Released;
        uint256 price = job.price;
        address client = job.client;
        _clearMoneyFields(job);
        _credit(client, price);
        _release(msg.sender, _slashAmount(price));
        emit JobReleased(jobId, client, msg.sender, price);
    }

    /// @notice Invalidate offer nonces (bits of `mask` in word `wordPos`) before anyone uses them.
    function invalidateNonces(uint256 wordPos, uint256 mask) external {
        nonceBitmap[msg.sender][wordPos] |= mask;
        _accounts[msg.sender].noncesInvalidated = true;
        emit NoncesInvalidated(msg.sender, wordPos, mask);
    }

    // ---------------------------------------------------------------- anyone

    /// @notice After an accepted job's deadline: refund the client in full and release the
    /// job's stake reservation; with the provider's `inputReceipt` (its EIP-712 signature over
    /// InputReceipt{jobId, Task}) also slash the reservation, part of it to the client.
    /// Without a receipt only the client may claim until `deadline + DISPUTE_WINDOW`.
    // Accepted (reentrancy-events): the event reports what the slash took, so it follows the
    // call; every state change precedes it, and the callee is the registry fixed at deployment,
    // whose slash calls nothing.
    // slither-disable-next-line reentrancy-events
    function claimTimeout(bytes32 jobId, bytes calldata inputReceipt) external {
        Job storage job = _jobs[jobId];
        if (job.state != State.Accepted) revert WrongState(jobId, job.state);
        uint64 deadline = job.deadline;
        if (block.timestamp <= deadline) revert DeadlineNotPassed(deadline);
        address client = job.client;
        address provider = job.provider;
        bool proven = inputReceipt.length != 0;
        if (proven) {
            address signer =
                ECDSA.recover(_hashTypedDataV4(_hashInputReceipt(jobId, job.taskHash)), inputReceipt);
            if (signer != provider) revert BadInputReceipt(signer, provider);
        } else if (msg.sender != client && block.timestamp <= uint256(deadline) + DISPUTE_WINDOW) {
            revert DisputeWindowOpen(deadline + DISPUTE_WINDOW);
        }
        job.state = State.Refunded;
        uint256 price = job.price;
        _clearMoneyFields(job);
        _credit(client, price);
        uint256 amount = _slashAmount(price);
        _release(provider, amount);
        uint256 slashed;
        if (proven && amount != 0) slashed = _trySlash(jobId, provider, amount, client);
        emit JobRefunded(jobId, client, price, slashed);
    }

    /// @dev The slash gets SLASH_GAS whatever the caller sent (or the claim reverts), so its
    /// failure is the registry's, never the caller's doing; a failure only skips the slash.
    // Accepted (reentrancy-events): SlashFailed can only follow the failed call (see claimTimeout).
    // slither-disable-next-line reentrancy-events
    function _trySlash(bytes32 jobId, address provider, uint256 amount, address client)
        internal
        returns (uint256 slashed)
    {
        uint256 needed = SLASH_GAS + SLASH_GAS / 63 + 5_000;
        if (gasleft() < needed) revert NotEnoughGasForSlash(gasleft(), needed);
        try REGISTRY.slash{gas: SLASH_GAS}(provider, amount, client, (amount * SLASH_CLIENT_BPS) / BPS) returns (
            uint256 s
        ) {
            slashed = s;
        } catch {
            emit SlashFailed(jobId, provider, amount);
        }
    }

    // ---------------------------------------------------------------- ledger

    /// @notice Add to the caller's free balance (msg.value for native, transferFrom for ERC-20).
    function deposit(uint256 amount) external payable nonReentrant {
        if (amount == 0) revert ZeroAmount();
        _pullExact(amount);
        _credit(msg.sender, amount);
        emit Deposited(msg.sender, amount);
    }

    function withdraw(uint256 amount, address to) external nonReentrant {
        Account storage a = _accounts[msg.sender];
        uint256 available = a.balance;
        if (amount == 0) revert ZeroAmount();
        // Native currency sent to address(0) would be burnt, not withdrawn.
        if (to == address(0)) revert ZeroAddress();
        if (amount > available) revert InsufficientBalance(amount, available);
        a.balance = (available - amount).toUint128();
        _push(to, amount);
        emit Withdrawn(msg.sender, to, amount);
    }

    function withdrawFees() external nonReentrant {
        if (msg.sender != TREASURY) revert NotTreasury(msg.sender);
        uint256 amount = feesAccrued;
        if (amount == 0) revert ZeroAmount();
        feesAccrued = 0;
        _push(TREASURY, amount);
        emit FeesWithdrawn(TREASURY, amount);
    }

    // ---------------------------------------------------------------- views

    function getJob(bytes32 jobId) external view returns (Job memory) {
        return _jobs[jobId];
    }

    function jobState(bytes32 jobId) external view returns (State) {
        return _jobs[jobId].state;
    }

    /// @notice Free balance: deposits, refunds and earnings waiting to be withdrawn.
    function balanceOf(address account) external view returns (uint256) {
        return _accounts[account].balance;
    }

    function lockedStakeOf(address provider) external view returns (uint256) {
        return _accounts[provider].lockedStake;
    }

    /// @notice The stake a job of this price reserves, and its slash on a proven timeout.
    function slashAmountOf(uint256 price) external view returns (uint256) {
        return _slashAmount(price);
    }

    function isNonceUsed(address provider, uint256 nonce) external view returns (bool) {
        return _isNonceUsed(provider, nonce);
    }

    function jobIdFor(address client, uint256 nonce) public pure returns (bytes32 id) {
        assembly ("memory-safe") {
            mstore(0x00, client)
            mstore(0x20, nonce)
            id := keccak256(0x00, 0x40)
        }
    }

    /// @notice What a quote binds to: this client's exact request.
    function requestHashFor(address client, JobRequest calldata req) public pure returns (bytes32) {
        return keccak256(abi.encode(client, hashJobRequest(req)));
    }

    /// @dev Both structs are static, so their calldata is already their ABI encoding: hash
    /// it in place behind the typehash. Narrow fields are range-checked first, as the ABI
    /// decoder would, so that no two encodings of one message hash differently.
    function hashOffer(Offer calldata o) public pure returns (bytes32 h) {
        bytes32 typehash = OFFER_TYPEHASH;
        assembly ("memory-safe") {
            // provider, enclaveKey: address; teeKind: uint8; min/maxDuration, validUntil: uint64
            if or(
                or(
                    or(shr(160, calldataload(o)), shr(160, calldataload(add(o, 0x20)))),
                    or(shr(8, calldataload(add(o, 0x40))), shr(64, calldataload(add(o, 0xa0))))
                ),
                or(shr(64, calldataload(add(o, 0xc0))), shr(64, calldataload(add(o, 0xe0))))
            ) { revert(0, 0) }
            let m := mload(0x40)
            mstore(m, typehash)
            calldatacopy(add(m, 0x20), o, 0x140)
            h := keccak256(m, 0x160)
        }
    }

    function hashJobRequest(JobRequest calldata r) public pure returns (bytes32 h) {
        bytes32 typehash = JOB_REQUEST_TYPEHASH;
        assembly ("memory-safe") {
            if or(
                or(shr(8, calldataload(add(r, 0x40))), shr(8, calldataload(add(r, 0x80)))),
                shr(64, calldataload(add(r, 0xc0)))
            ) { revert(0, 0) }
            let m := mload(0x40)
            mstore(m, typehash)
            calldatacopy(add(m, 0x20), r, 0x100)
            h := keccak256(m, 0x120)
        }
    }

    function offerDigest(Offer calldata o) external view returns (bytes32) {
        return _hashTypedDataV4(hashOffer(o));
    }

    /// @notice hashStruct(Task{specHash, inputHash}): what a job keeps of its request.
    function hashTask(bytes32 specHash, bytes32 inputHash) public pure returns (bytes32) {
        return _hashStruct2(TASK_TYPEHASH, specHash, inputHash);
    }

    function resultDigest(bytes32 jobId, address provider, bytes32 taskHash, bytes32 outputHash)
        external
        view
        returns (bytes32)
    {
        return _hashTypedDataV4(_hashResult(jobId, provider, taskHash, outputHash));
    }

    function inputReceiptDigest(bytes32 jobId, bytes32 taskHash) external view returns (bytes32) {
        return _hashTypedDataV4(_hashInputReceipt(jobId, taskHash));
    }

    function resultBatchDigest(address provider, bytes32 root, uint256 count) external view returns (bytes32) {
        return _hashTypedDataV4(keccak256(abi.encode(RESULT_BATCH_TYPEHASH, provider, root, count)));
    }

    function domainSeparator() external view returns (bytes32) {
        return _domainSeparatorV4();
    }

    /// @notice Merkle root: pairs hashed in order, an odd last node carried up unchanged.
    /// @dev Overwrites `leaves` in place.
    function merkleRoot(bytes32[] memory leaves) public pure returns (bytes32) {
        uint256 n = leaves.length;
        while (n > 1) {
            uint256 half = n >> 1;
            for (uint256 i; i < half; ++i) {
                leaves[i] = _hashPair(leaves[2 * i], leaves[2 * i + 1]);
            }
            if (n & 1 == 1) {
                leaves[half] = leaves[n - 1];
                n = half + 1;
            } else {
                n = half;
            }
        }
        return leaves[0];
    }

    // ---------------------------------------------------------------- internal

    function _hashResult(bytes32 jobId, address provider, bytes32 taskHash, bytes32 outputHash)
        internal
        pure
        returns (bytes32 h)
    {
        bytes32 typehash = RESULT_TYPEHASH;
        assembly ("memory-safe") {
            let m := mload(0x40)
            mstore(m, typehash)
            mstore(add(m, 0x20), jobId)
            mstore(add(m, 0x40), provider)
            mstore(add(m, 0x60), taskHash)
            mstore(add(m, 0x80), outputHash)
            h := keccak256(m, 0xa0)
        }
    }

    function _hashInputReceipt(bytes32 jobId, bytes32 taskHash) internal pure returns (bytes32) {
        return _hashStruct2(INPUT_RECEIPT_TYPEHASH, jobId, taskHash);
    }

    /// @dev hashStruct of a struct of two 32-byte words (hashed in scratch memory, unallocated).
    function _hashStruct2(bytes32 typehash, bytes32 a, bytes32 b) internal pure returns (bytes32 h) {
        assembly ("memory-safe") {
            let m := mload(0x40)
            mstore(m, typehash)
            mstore(add(m, 0x20), a)
            mstore(add(m, 0x40), b)
            h := keccak256(m, 0x60)
        }
    }

    function _hashPair(bytes32 a, bytes32 b) internal pure returns (bytes32 h) {
        assembly ("memory-safe") {
            mstore(0x00, a)
            mstore(0x20, b)
            h := keccak256(0x00, 0x40)
        }
    }

    function _checkRequirements(Job storage job, uint8 kind, uint32 measurementId, uint8 tcb) internal view {
        if (job.teeKinds & TeeKind.bit(kind) == 0) revert KindNotAccepted(kind, job.teeKinds);
        uint32 required = job.measurementId;
        if (required != 0 && required != measurementId) revert MeasurementMismatch(required, measurementId);
        if (tcb < job.minTcbStatus) revert TcbTooLow(tcb, job.minTcbStatus);
    }

    /// @dev The request's deadline capped by the offer's and the registry's longest job; at
    /// least `minDuration` away.
    function _deadline(uint64 requested, uint64 minDuration, uint64 maxDuration) internal view returns (uint64) {
        if (requested <= block.timestamp) revert DeadlinePassed(requested);
        uint256 cap = maxDuration < MAX_JOB_DURATION ? maxDuration : MAX_JOB_DURATION;
        uint256 byOffer = block.timestamp + cap;
        uint64 deadline = requested < byOffer ? requested : byOffer.toUint64();
        uint256 earliest = block.timestamp + minDuration;
        if (deadline < earliest) revert DeadlineTooSoon(deadline, earliest);
        return deadline;
    }

    function _slashAmount(uint256 price) internal view returns (uint256) {
        return (price * SLASH_BPS) / BPS;
    }

    /// @dev Reserve `amount` of the provider's stake for a new job: it must be eligible and
    /// its stake must cover what its open jobs reserve already plus this. Returns whether the
    /// provider ever invalidated an offer nonce (read from the same slot).
    function _lockStake(address provider, uint256 amount) internal returns (bool noncesInvalidated) {
        uint256 stake = REGISTRY.eligibleStake(provider);
        if (stake == 0) revert ProviderNotEligible(provider);
        Account storage a = _accounts[provider];
        noncesInvalidated = a.noncesInvalidated;
        if (amount == 0) return noncesInvalidated;
        uint256 locked = a.lockedStake + amount;
        if (locked > stake) revert StakeTooLow(locked, stake);
        a.lockedStake = locked.toUint120();
    }

    function _release(address provider, uint256 amount) internal {
        if (amount != 0) _accounts[provider].lockedStake -= amount.toUint120();
    }

    /// @dev A new job's three slots, each written whole (field by field the compiler reads and
    /// rewrites the packed slots several times).
    function _storeJob(Job storage slot, Job memory job) internal {
        uint256 word0 = uint256(uint160(job.client)) | (uint256(job.price) << 160);
        uint256 word1 = uint256(uint160(job.provider)) | (uint256(job.deadline) << 160)
            | (uint256(uint8(job.state)) << 200) | (uint256(job.teeKinds) << 208)
            | (uint256(job.minTcbStatus) << 216) | (uint256(job.measurementId) << 224);
        bytes32 word2 = job.taskHash;
        assembly ("memory-safe") {
            sstore(slot.slot, word0)
            sstore(add(slot.slot, 1), word1)
            sstore(add(slot.slot, 2), word2)
        }
    }

    function _isNonceUsed(address provider, uint256 nonce) internal view returns (bool) {
        return nonceBitmap[provider][nonce >> 8] & (1 << (nonce & 0xff)) != 0;
    }

    function _useNonce(address provider, uint256 nonce) internal {
        uint256 bit = 1 << (nonce & 0xff);
        uint256 word = nonceBitmap[provider][nonce >> 8];
        if (word & bit != 0) revert NonceUsed(provider, nonce);
        nonceBitmap[provider][nonce >> 8] = word | bit;
    }

    /// @dev Locks `amount` for a new job, funded by msg.value and then the free balance.
    // Slither (msg-value-in-nonpayable) misses its callers, matchJob and postJob, both payable.
    // slither-disable-next-line msg-value-in-nonpayable
    function _escrow(address client, uint256 amount) internal {
        uint256 paid;
        if (_isNative()) {
            paid = msg.value;
        } else if (msg.value != 0) {
            revert WrongValue(msg.value, 0);
        }
        if (paid < amount) {
            uint256 shortfall = amount - paid;
            Account storage a = _accounts[client];
            uint256 available = a.balance;
            if (available < shortfall) revert InsufficientBalance(shortfall, available);
            a.balance = (available - shortfall).toUint128();
        } else if (paid > amount) {
            _credit(client, paid - amount);
        }
    }

    /// @dev Once a job is final its money has moved: clearing client and price (slot 0)
    /// returns a storage refund to whoever closes the job. State, provider, requirements and
    /// task hash stay, so a final state is still provable and never changes. (Clearing the
    /// task hash too would cost more than it returns in a batch, where refunds are capped
    /// at a fifth of the gas used.)
    function _clearMoneyFields(Job storage job) internal {
        assembly ("memory-safe") {
            sstore(job.slot, 0)
        }
    }

    function _credit(address account, uint256 amount) internal {
        _accounts[account].balance += amount.toUint128();
    }

    /// @dev Settling: the provider's earnings in and its reservation out, one slot written.
    function _creditAndRelease(address provider, uint256 payout, uint256 released) internal {
        Account memory a = _accounts[provider];
        a.balance += payout.toUint128();
        a.lockedStake -= released.toUint120();
        _accounts[provider] = a;
    }

    function _kindOfBit(uint8 kinds) internal pure returns (uint8 kind) {
        while (kinds > 1) {
            kinds >>= 1;
            ++kind;
        }
    }
}

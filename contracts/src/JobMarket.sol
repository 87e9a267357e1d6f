// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {IAttestationVerifier} from "./interfaces/IAttestationVerifier.sol";
import {IProviderRegistry} from "./interfaces/IProviderRegistry.sol";
import {JobRequest, Offer, TeeKind} from "./CapaTypes.sol";
import {PaymentToken} from "./PaymentToken.sol";

/// @title JobMarket
/// @notice Escrow and assignment of confidential compute jobs. A provider is paid only
/// against a result signed by an enclave key the AttestationVerifier holds valid for that
/// provider, with the kind and measurement the job asked for. Money moves through an
/// internal ledger with pull withdrawals.
/// @dev Job ids are derived, not counted: jobId = keccak256(abi.encode(client, nonce)) of
/// the client's JobRequest. A client knows its job id before anything else, so it can seal
/// its input to the enclave with the job id as HPKE info and then put the sealed input's
/// hash in the request; a resent transaction cannot create a second job.
contract JobMarket is PaymentToken, EIP712, ReentrancyGuardTransient {
    using SafeCast for uint256;

    enum State {
        None,
        Posted,
        Accepted,
        Settled,
        Refunded,
        Cancelled
    }

    /// @dev Three slots. `teeKinds` is a mask of accepted kinds; `measurementId` zero accepts
    /// any allowlisted measurement of those kinds. In a final state client and price read
    /// zero (see `_clearMoneyFields`); the events keep the full history.
    struct Job {
        address client;
        uint96 price;
        address provider;
        uint40 deadline;
        State state;
        uint8 teeKinds;
        uint8 minTcbStatus;
        uint32 measurementId;
        bytes32 inputHash;
    }

    struct KeyFacts {
        uint8 teeKind;
        uint32 measurementId;
        uint8 tcbStatus;
    }

    bytes32 public constant OFFER_TYPEHASH = keccak256(
        "Offer(address provider,uint8 teeKind,bytes32 measurement,uint256 price,uint64 maxDuration,uint64 validUntil,bytes32 requestHash,uint256 nonce)"
    );
    bytes32 public constant JOB_REQUEST_TYPEHASH = keccak256(
        "JobRequest(bytes32 specHash,bytes32 inputHash,uint8 teeKinds,bytes32 measurement,uint8 minTcbStatus,uint256 maxPrice,uint64 deadline,uint256 nonce)"
    );
    bytes32 public constant RESULT_TYPEHASH =
        keccak256("Result(bytes32 jobId,address provider,bytes32 inputHash,bytes32 outputHash)");
    bytes32 public constant RESULT_BATCH_TYPEHASH =
        keccak256("ResultBatch(address provider,bytes32 root,uint256 count)");

    uint256 internal constant BPS = 10_000;
    uint256 public constant MAX_FEE_BPS = 1_000;

    IProviderRegistry public immutable REGISTRY;
    IAttestationVerifier public immutable VERIFIER;
    /// Protocol fee taken from each payout, in basis points.
    uint256 public immutable FEE_BPS;
    /// Stake slashed on a timeout, in basis points of the job's price.
    uint256 public immutable SLASH_BPS;
    address public immutable TREASURY;
    uint64 public immutable MAX_JOB_DURATION;

    mapping(bytes32 => Job) internal _jobs;
    /// Free balances: deposits, refunds and earnings waiting to be withdrawn.
    mapping(address => uint256) public balanceOf;
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
    error ProviderNotEligible(address provider);
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
        uint256 slashBps
    ) PaymentToken(token) EIP712("CapaCloud JobMarket", "1") {
        if (feeBps > MAX_FEE_BPS || treasury == address(0)) revert InvalidConfig();
        REGISTRY = registry;
        VERIFIER = verifier;
        TREASURY = treasury;
        FEE_BPS = feeBps;
        SLASH_BPS = slashBps;
        MAX_JOB_DURATION = registry.MAX_JOB_DURATION();
    }

    // ---------------------------------------------------------------- clients

    /// @notice Post, escrow and assign in one transaction against a provider-signed offer.
    /// @dev Pays `offer.price` from msg.value (native) first, then from the free balance;
    /// native value beyond the price is credited to the caller's free balance.
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
        if (req.teeKinds & TeeKind.bit(offer.teeKind) == 0 || !TeeKind.isKnown(offer.teeKind)) {
            revert KindNotAccepted(offer.teeKind, req.teeKinds);
        }
        uint64 deadline = _deadline(req.deadline, offer.maxDuration);

        address signer = ECDSA.recover(_hashTypedDataV4(hashOffer(offer)), offerSignature);
        if (signer != offer.provider) revert BadOfferSignature(signer, offer.provider);
        // A quote bound to this request cannot be replayed (its job exists after this call):
        // only honour its cancellation. A standing offer is spent here.
        if (offer.requestHash == bytes32(0)) {
            _useNonce(offer.provider, offer.nonce);
        } else if (_isNonceUsed(offer.provider, offer.nonce)) {
            revert NonceUsed(offer.provider, offer.nonce);
        }
        if (!REGISTRY.isEligible(offer.provider)) revert ProviderNotEligible(offer.provider);
        uint32 measurementId = VERIFIER.activeMeasurementId(offer.teeKind, offer.measurement);
        if (req.measurement != bytes32(0) && req.measurement != offer.measurement) {
            revert MeasurementMismatch(0, measurementId);
        }

        _escrow(msg.sender, offer.price);
        _jobs[jobId] = Job({
            client: msg.sender,
            price: offer.price.toUint96(),
            provider: offer.provider,
            deadline: uint40(deadline),
            state: State.Accepted,
            teeKinds: TeeKind.bit(offer.teeKind),
            minTcbStatus: req.minTcbStatus,
            measurementId: measurementId,
            inputHash: req.inputHash
        });
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
        _jobs[jobId] = Job({
            client: msg.sender,
            price: req.maxPrice.toUint96(),
            provider: address(0),
            deadline: uint256(req.deadline).toUint40(),
            state: State.Posted,
            teeKinds: req.teeKinds,
            minTcbStatus: req.minTcbStatus,
            measurementId: measurementId,
            inputHash: req.inputHash
        });
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
    /// requirements accept, so that a provider cannot hold a job it could never settle.
    function acceptJob(bytes32 jobId, address enclaveKey) external {
        Job storage job = _jobs[jobId];
        if (job.state != State.Posted) revert WrongState(jobId, job.state);
        if (block.timestamp >= job.deadline) revert DeadlinePassed(job.deadline);
        uint64 latest = uint64(block.timestamp) + MAX_JOB_DURATION;
        if (job.deadline > latest) revert DeadlineTooFar(job.deadline, latest);
        if (!REGISTRY.isEligible(msg.sender)) revert ProviderNotEligible(msg.sender);
        _checkKeyFits(job, msg.sender, enclaveKey);
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
    /// inputHash, outputHash}; pays the provider minus the protocol fee. Anyone may relay.
    function submitResult(bytes32 jobId, bytes32 outputHash, bytes calldata enclaveSignature) external {
        Job storage job = _jobs[jobId];
        if (job.state != State.Accepted) revert WrongState(jobId, job.state);
        if (block.timestamp > job.deadline) revert DeadlinePassed(job.deadline);
        address provider = job.provider;
        bytes32 digest = _hashTypedDataV4(_hashResult(jobId, provider, job.inputHash, outputHash));
        address key = ECDSA.recover(digest, enclaveSignature);
        _checkKeyFits(job, provider, key);

        job.state = State.Settled;
        uint256 price = job.price;
        _clearMoneyFields(job);
        uint256 fee = (price * FEE_BPS) / BPS;
        _credit(provider, price - fee);
        feesAccrued += fee;
        emit JobSettled(jobId, provider, key, outputHash, price - fee);
    }

    /// @notice Settle several jobs of one provider with one enclave signature over
    /// ResultBatch{provider, root, count}, where root is the Merkle root of the jobs'
    /// Result struct hashes in the given order (pairs hashed in order, an odd node carried up).
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
            leaves[i] = _hashResult(jobId, provider, job.inputHash, outputHashes[i]);
        }
        address key = ECDSA.recover(
            _hashTypedDataV4(keccak256(abi.encode(RESULT_BATCH_TYPEHASH, provider, merkleRoot(leaves), n))),
            enclaveSignature
        );
        (uint256 payout, uint256 fees) = _settleBatch(jobIds, outputHashes, provider, key);
        _credit(provider, payout);
        feesAccrued += fees;
    }

    function _settleBatch(bytes32[] calldata jobIds, bytes32[] calldata outputHashes, address provider, address key)
        internal
        returns (uint256 payout, uint256 fees)
    {
        KeyFacts memory facts;
        (facts.teeKind, facts.measurementId, facts.tcbStatus) = VERIFIER.checkKey(provider, key);
        for (uint256 i; i < jobIds.length; ++i) {
            (uint256 p, uint256 f) = _settleOne(jobIds[i], outputHashes[i], provider, key, facts);
            payout += p;
            fees += f;
        }
    }

    function _settleOne(bytes32 jobId, bytes32 outputHash, address provider, address key, KeyFacts memory facts)
        internal
        returns (uint256 payout, uint256 fee)
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
        emit JobSettled(jobId, provider, key, outputHash, payout);
    }

    /// @notice Invalidate offer nonces (bits of `mask` in word `wordPos`) before anyone uses them.
    function invalidateNonces(uint256 wordPos, uint256 mask) external {
        nonceBitmap[msg.sender][wordPos] |= mask;
        emit NoncesInvalidated(msg.sender, wordPos, mask);
    }

    // ---------------------------------------------------------------- anyone

    /// @notice After an accepted job's deadline: refund the client and slash the provider.
    function claimTimeout(bytes32 jobId) external {
        Job storage job = _jobs[jobId];
        if (job.state != State.Accepted) revert WrongState(jobId, job.state);
        if (block.timestamp <= job.deadline) revert DeadlineNotPassed(job.deadline);
        job.state = State.Refunded;
        uint256 price = job.price;
        address client = job.client;
        _clearMoneyFields(job);
        _credit(client, price);
        uint256 slashed = REGISTRY.slash(job.provider, (price * SLASH_BPS) / BPS);
        emit JobRefunded(jobId, client, price, slashed);
    }

    // ---------------------------------------------------------------- ledger

    /// @notice Add to the caller's free balance (msg.value for native, transferFrom for ERC-20).
    function deposit(uint256 amount) external payable nonReentrant {
        if (amount == 0) revert ZeroAmount();
        _pullExact(msg.sender, amount);
        _credit(msg.sender, amount);
        emit Deposited(msg.sender, amount);
    }

    function withdraw(uint256 amount, address to) external nonReentrant {
        uint256 available = balanceOf[msg.sender];
        if (amount == 0) revert ZeroAmount();
        // Native currency sent to address(0) would be burnt, not withdrawn.
        if (to == address(0)) revert ZeroAddress();
        if (amount > available) revert InsufficientBalance(amount, available);
        balanceOf[msg.sender] = available - amount;
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
            if or(
                or(shr(160, calldataload(o)), shr(8, calldataload(add(o, 0x20)))),
                or(shr(64, calldataload(add(o, 0x80))), shr(64, calldataload(add(o, 0xa0))))
            ) { revert(0, 0) }
            let m := mload(0x40)
            mstore(m, typehash)
            calldatacopy(add(m, 0x20), o, 0x100)
            h := keccak256(m, 0x120)
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

    function resultDigest(bytes32 jobId, address provider, bytes32 inputHash, bytes32 outputHash)
        external
        view
        returns (bytes32)
    {
        return _hashTypedDataV4(_hashResult(jobId, provider, inputHash, outputHash));
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

    function _hashResult(bytes32 jobId, address provider, bytes32 inputHash, bytes32 outputHash)
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
            mstore(add(m, 0x60), inputHash)
            mstore(add(m, 0x80), outputHash)
            h := keccak256(m, 0xa0)
        }
    }

    function _hashPair(bytes32 a, bytes32 b) internal pure returns (bytes32 h) {
        assembly ("memory-safe") {
            mstore(0x00, a)
            mstore(0x20, b)
            h := keccak256(0x00, 0x40)
        }
    }

    function _checkKeyFits(Job storage job, address provider, address key) internal view {
        (uint8 kind, uint32 measurementId, uint8 tcb) = VERIFIER.checkKey(provider, key);
        _checkRequirements(job, kind, measurementId, tcb);
    }

    function _checkRequirements(Job storage job, uint8 kind, uint32 measurementId, uint8 tcb) internal view {
        if (job.teeKinds & TeeKind.bit(kind) == 0) revert KindNotAccepted(kind, job.teeKinds);
        uint32 required = job.measurementId;
        if (required != 0 && required != measurementId) revert MeasurementMismatch(required, measurementId);
        if (tcb < job.minTcbStatus) revert TcbTooLow(tcb, job.minTcbStatus);
    }

    function _deadline(uint64 requested, uint64 maxDuration) internal view returns (uint64) {
        if (requested <= block.timestamp) revert DeadlinePassed(requested);
        uint64 byOffer = uint64(block.timestamp) + (maxDuration < MAX_JOB_DURATION ? maxDuration : MAX_JOB_DURATION);
        return requested < byOffer ? requested : byOffer;
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
    function _escrow(address client, uint256 amount) internal {
        uint256 paid;
        if (_isNative()) {
            paid = msg.value;
        } else if (msg.value != 0) {
            revert WrongValue(msg.value, 0);
        }
        if (paid < amount) {
            uint256 shortfall = amount - paid;
            uint256 available = balanceOf[client];
            if (available < shortfall) revert InsufficientBalance(shortfall, available);
            balanceOf[client] = available - shortfall;
        } else if (paid > amount) {
            _credit(client, paid - amount);
        }
    }

    /// @dev Once a job is final its money has moved: clearing client and price (slot 0)
    /// returns a storage refund to whoever closes the job. State, provider, requirements and
    /// input hash stay, so a final state is still provable and never changes. (Clearing the
    /// input hash too would cost more than it returns in a batch, where refunds are capped
    /// at a fifth of the gas used.)
    function _clearMoneyFields(Job storage job) internal {
        assembly ("memory-safe") {
            sstore(job.slot, 0)
        }
    }

    function _credit(address account, uint256 amount) internal {
        balanceOf[account] += amount;
    }

    function _kindOfBit(uint8 kinds) internal pure returns (uint8 kind) {
        while (kinds > 1) {
            kinds >>= 1;
            ++kind;
        }
    }
}

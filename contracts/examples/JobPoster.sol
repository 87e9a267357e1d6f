// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {
    ICapaAttestationVerifier, ICapaJobMarket, EnclaveKey, Job, JobRequest, JobState
} from "./ICapaMarket.sol";

/// @title JobPoster: an example contract that posts confidential jobs and reacts to their end
/// @notice It is the client of its jobs: it posts them on a CapaCloud JobMarket (native
/// currency) paying the escrow from its own balance, and then:
/// - when a job settles, anyone (a keeper, the owner's node) hands in the output hash with
///   the enclave's signature from the settling transaction's input: over the market's
///   EIP-712 `Result` (`submitResult`), or over a `ResultBatch` root with the job's Merkle
///   path (`submitResults`). The contract checks that the signature covers this job's task
///   and that the verifier registered the signing key to the job's provider, records the
///   output and emits `ResultAccepted` (the hook to build on);
/// - when a job is refunded, released or cancelled, the escrow is back in this contract's
///   market balance, and `reclaim` sends it to the owner; a proven timeout also credits this
///   contract a share of the provider's slash, which `claimCompensation` sends to the owner.
/// @dev Open jobs (`postJob`) suit inputs that are public or encrypted to a key the
/// workload already knows. An input sealed to one enclave's key needs the provider first: a
/// quote, then `matchJob`, which a client node does off-chain (see docs/integrators.md).
contract JobPoster {
    ICapaJobMarket public immutable MARKET;
    address public immutable OWNER;

    /// Request nonces: each job this contract posts gets the next one.
    uint256 public nextNonce = 1;
    /// Escrow of each job posted here and not yet reclaimed (the market clears a final
    /// job's price, so it is kept here).
    mapping(bytes32 jobId => uint256 escrow) public escrowOf;
    /// The settled output of a job, once its enclave signature was handed in.
    mapping(bytes32 jobId => bytes32 outputHash) public outputOf;

    event Posted(bytes32 indexed jobId, uint256 maxPrice, uint64 deadline);
    event ResultAccepted(bytes32 indexed jobId, bytes32 outputHash, address indexed enclaveKey);
    event Reclaimed(bytes32 indexed jobId, uint8 state, uint256 amount);

    error NotOwner(address caller);
    error NotOurJob(bytes32 jobId);
    error NotSettled(bytes32 jobId, uint8 state);
    error NotRefunded(bytes32 jobId, uint8 state);
    error BadPath();
    error KeyNotOfProvider(address key, address provider);
    error KeyRevoked(address key);
    error NotNative();
    error ZeroPrice();

    constructor(ICapaJobMarket market) {
        if (market.TOKEN() != address(0)) revert NotNative();
        MARKET = market;
        OWNER = msg.sender;
    }

    modifier onlyOwner() {
        if (msg.sender != OWNER) revert NotOwner(msg.sender);
        _;
    }

    /// @notice Funds for jobs, and the market's withdrawals, arrive here.
    receive() external payable {}

    /// @notice Post an open job any eligible provider of `teeKinds` may accept; escrows
    /// `maxPrice` from this contract's balance (value sent along is added to it first).
    function post(
        bytes32 specHash,
        bytes32 inputHash,
        uint8 teeKinds,
        bytes32 measurement,
        uint8 minTcbStatus,
        uint256 maxPrice,
        uint64 deadline
    ) external payable onlyOwner returns (bytes32 jobId) {
        // A zero escrow would read as "not ours" below.
        if (maxPrice == 0) revert ZeroPrice();
        uint256 nonce = nextNonce++;
        // The id is known before the call (derived, not counted): record it first.
        bytes32 expected = MARKET.jobIdFor(address(this), nonce);
        escrowOf[expected] = maxPrice;
        emit Posted(expected, maxPrice, deadline);
        jobId = MARKET.postJob{value: maxPrice}(
            JobRequest(specHash, inputHash, teeKinds, measurement, minTcbStatus, maxPrice, deadline, nonce)
        );
    }

    /// @notice React to a settlement by `submitResult`: record `outputHash` if the job settled
    /// and `enclaveSignature` is its enclave's signature over Result{jobId, provider, task,
    /// outputHash}, by a key the verifier registered to the job's provider and never revoked.
    function acceptResult(bytes32 jobId, bytes32 outputHash, bytes calldata enclaveSignature) external {
        Job memory job = _settledJob(jobId);
        bytes32 digest = MARKET.resultDigest(jobId, job.provider, job.taskHash, outputHash);
        _accept(jobId, outputHash, job.provider, ECDSA.recover(digest, enclaveSignature));
    }

    /// @notice React to a settlement by `submitResults`: as `acceptResult`, with the batch's
    /// signature over ResultBatch{provider, root, count} and this job's path to the root
    /// (`index` among `count` leaves; `path` the sibling of each level that has one, an odd
    /// last node being carried up unhashed, as the market builds the root).
    function acceptBatchedResult(
        bytes32 jobId,
        bytes32 outputHash,
        uint256 index,
        uint256 count,
        bytes32[] calldata path,
        bytes calldata enclaveSignature
    ) external {
        Job memory job = _settledJob(jobId);
        bytes32 node = keccak256(abi.encode(MARKET.RESULT_TYPEHASH(), jobId, job.provider, job.taskHash, outputHash));
        uint256 used;
        for (uint256 n = count; n > 1; n = (n + 1) / 2) {
            if (index % 2 == 1) {
                node = keccak256(abi.encodePacked(path[used++], node));
            } else if (index + 1 < n) {
                node = keccak256(abi.encodePacked(node, path[used++]));
            }
            index /= 2;
        }
        if (used != path.length) revert BadPath();
        bytes32 digest = MARKET.resultBatchDigest(job.provider, node, count);
        _accept(jobId, outputHash, job.provider, ECDSA.recover(digest, enclaveSignature));
    }

    function _settledJob(bytes32 jobId) internal view returns (Job memory job) {
        if (escrowOf[jobId] == 0) revert NotOurJob(jobId);
        job = MARKET.getJob(jobId);
        if (job.state != JobState.SETTLED) revert NotSettled(jobId, job.state);
    }

    function _accept(bytes32 jobId, bytes32 outputHash, address provider, address key) internal {
        EnclaveKey memory registered = ICapaAttestationVerifier(MARKET.VERIFIER()).keyOf(key);
        if (registered.provider != provider) revert KeyNotOfProvider(key, provider);
        if (registered.revoked) revert KeyRevoked(key);
        outputOf[jobId] = outputHash;
        // Spent by the settlement: nothing to reclaim, and the result is accepted once.
        escrowOf[jobId] = 0;
        emit ResultAccepted(jobId, outputHash, key);
    }

    /// @notice Withdraw a posted job nobody accepted yet.
    function cancel(bytes32 jobId) external onlyOwner {
        MARKET.cancelJob(jobId);
    }

    /// @notice After an accepted job's deadline: refund it (with the provider's input
    /// receipt, also slash the provider). This contract is the client, so it may claim
    /// without a receipt as soon as the deadline has passed; anyone may trigger it.
    function claimTimeout(bytes32 jobId, bytes calldata inputReceipt) external {
        if (escrowOf[jobId] == 0) revert NotOurJob(jobId);
        MARKET.claimTimeout(jobId, inputReceipt);
    }

    /// @notice Send a refunded, released or cancelled job's escrow to the owner.
    function reclaim(bytes32 jobId) external {
        uint256 amount = escrowOf[jobId];
        if (amount == 0) revert NotOurJob(jobId);
        uint8 state = MARKET.jobState(jobId);
        if (state != JobState.REFUNDED && state != JobState.RELEASED && state != JobState.CANCELLED) {
            revert NotRefunded(jobId, state);
        }
        escrowOf[jobId] = 0;
        emit Reclaimed(jobId, state, amount);
        MARKET.withdraw(amount, OWNER);
    }

    /// @notice Send this contract's shares of slashes (from proven timeouts) to the owner.
    function claimCompensation() external {
        MARKET.REGISTRY().withdrawCompensation(OWNER);
    }
}

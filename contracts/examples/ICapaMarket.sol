// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

/// @notice The part of a CapaCloud deployment an integrating contract calls, declared on its
/// own so that an integration compiles without the market's sources. Types and numbers are
/// the market's (contracts/src/CapaTypes.sol, JobMarket.sol): keep them in step.

/// @notice A client's request; jobId = keccak256(abi.encode(client, nonce)).
struct JobRequest {
    bytes32 specHash;
    bytes32 inputHash;
    uint8 teeKinds; // bit mask: bit 1 SGX, 2 TDX, 3 SEV-SNP, 4 NVIDIA CC (5 SIM: devnets only)
    bytes32 measurement; // zero: any approved measurement of the kinds
    uint8 minTcbStatus; // 0 revoked .. 6 up to date
    uint256 maxPrice;
    uint64 deadline;
    uint256 nonce;
}

/// @notice JobMarket.getJob's answer. In a final state client and price read zero.
struct Job {
    address client;
    uint96 price;
    address provider;
    uint40 deadline;
    uint8 state; // see JobState
    uint8 teeKinds;
    uint8 minTcbStatus;
    uint32 measurementId;
    bytes32 taskHash; // hashStruct(Task{specHash, inputHash})
}

/// @notice JobMarket.State, as numbers.
library JobState {
    uint8 internal constant NONE = 0;
    uint8 internal constant POSTED = 1;
    uint8 internal constant ACCEPTED = 2;
    uint8 internal constant SETTLED = 3;
    uint8 internal constant REFUNDED = 4;
    uint8 internal constant CANCELLED = 5;
    uint8 internal constant RELEASED = 6;
}

interface ICapaJobMarket {
    function postJob(JobRequest calldata req) external payable returns (bytes32 jobId);
    function cancelJob(bytes32 jobId) external;
    function claimTimeout(bytes32 jobId, bytes calldata inputReceipt) external;
    function withdraw(uint256 amount, address to) external;
    function getJob(bytes32 jobId) external view returns (Job memory);
    function jobState(bytes32 jobId) external view returns (uint8);
    function balanceOf(address account) external view returns (uint256);
    function jobIdFor(address client, uint256 nonce) external pure returns (bytes32);
    function resultDigest(bytes32 jobId, address provider, bytes32 taskHash, bytes32 outputHash)
        external
        view
        returns (bytes32);
    function resultBatchDigest(address provider, bytes32 root, uint256 count) external view returns (bytes32);
    function RESULT_TYPEHASH() external view returns (bytes32);
    function VERIFIER() external view returns (ICapaAttestationVerifier);
    function REGISTRY() external view returns (ICapaProviderRegistry);
    function TOKEN() external view returns (address);
}

/// @notice AttestationVerifier.keyOf's answer: who registered an enclave key, and its state.
struct EnclaveKey {
    address provider;
    uint8 teeKind;
    uint32 measurementId;
    uint40 expiresAt;
    uint8 tcbStatus;
    bool revoked;
}

interface ICapaAttestationVerifier {
    function keyOf(address key) external view returns (EnclaveKey memory);
}

interface ICapaProviderRegistry {
    /// @notice A client's shares of the slashes of providers that let it down.
    function compensationOf(address client) external view returns (uint256);
    function withdrawCompensation(address to) external;
}

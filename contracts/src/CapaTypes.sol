// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";

/// @notice Values shared by the three contracts and by the Python side (proofs/, scheduler/).
/// @dev The numbers are part of the wire format: EIP-712 messages carry them as uint8.
library TeeKind {
    uint8 internal constant SGX = 1;
    uint8 internal constant TDX = 2;
    uint8 internal constant SEV_SNP = 3;
    uint8 internal constant NVIDIA_CC = 4;
    /// Simulated enclave: a real sandbox without hardware. INSECURE; devnets only.
    uint8 internal constant SIM = 5;
    /// Arm CCA realm (platform + realm token).
    uint8 internal constant CCA = 6;
    uint8 internal constant MAX = 6;

    function isKnown(uint8 kind) internal pure returns (bool) {
        return kind >= SGX && kind <= MAX;
    }

    /// Bit `kind` of a kind mask; bit 0 is unused. Reverts for a kind past bit 7.
    function bit(uint8 kind) internal pure returns (uint8) {
        return SafeCast.toUint8(uint256(1) << kind);
    }
}

/// @notice TCB status as verified off-chain, ordered so that higher is better.
library TcbStatus {
    uint8 internal constant REVOKED = 0;
    uint8 internal constant OUT_OF_DATE = 1;
    uint8 internal constant OUT_OF_DATE_CONFIGURATION_NEEDED = 2;
    uint8 internal constant CONFIGURATION_AND_SW_HARDENING_NEEDED = 3;
    uint8 internal constant CONFIGURATION_NEEDED = 4;
    uint8 internal constant SW_HARDENING_NEEDED = 5;
    uint8 internal constant UP_TO_DATE = 6;
}

/// @notice A provider's signed price quote. `requestHash` zero makes it a standing offer that
/// any one request may take; otherwise it binds the quote to one client's exact request:
/// requestHash = keccak256(abi.encode(client, hashStruct(JobRequest))).
/// `enclaveKey` names the attested key (of `teeKind` and `measurement`) that will run the job:
/// the match checks that it stays valid through the job's deadline. `minDuration` is the least
/// time the provider needs, `maxDuration` the most it will hold a job: the job's deadline is
/// the request's, capped by `maxDuration`, and a match that leaves less than `minDuration`
/// is refused.
struct Offer {
    address provider;
    address enclaveKey;
    uint8 teeKind;
    bytes32 measurement;
    uint256 price;
    uint64 minDuration;
    uint64 maxDuration;
    uint64 validUntil;
    bytes32 requestHash;
    uint256 nonce;
}

/// @notice What a client asks for. `teeKinds` is a bit mask of accepted kinds (bit = kind);
/// `measurement` zero accepts any allowlisted measurement of those kinds. `nonce` makes the
/// job: jobId = keccak256(abi.encode(client, nonce)), one job per client and nonce.
struct JobRequest {
    bytes32 specHash;
    bytes32 inputHash;
    uint8 teeKinds;
    bytes32 measurement;
    uint8 minTcbStatus;
    uint256 maxPrice;
    uint64 deadline;
    uint256 nonce;
}

/// @notice What a verifier committee member signs after checking a provider's evidence.
struct KeyAttestation {
    address provider;
    address enclaveKey;
    uint8 teeKind;
    bytes32 measurement;
    uint8 tcbStatus;
    bytes32 evidenceHash;
    uint64 expiresAt;
}

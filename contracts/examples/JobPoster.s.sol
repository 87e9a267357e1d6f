// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {JobPoster} from "./JobPoster.sol";

/// @notice The two cheatcodes a broadcasting script needs (forge-std is not vendored here).
interface BroadcastVm {
    function startBroadcast() external;
    function stopBroadcast() external;
}

/// @notice Drive a deployed JobPoster from the command line with `forge script --broadcast`
/// (docs/integrators.md has the commands). Each function sends from the account forge signs
/// with (`--keystore FILE --password-file FILE`).
contract JobPosterScript {
    BroadcastVm internal constant VM = BroadcastVm(address(uint160(uint256(keccak256("hevm cheat code")))));

    /// @notice Post a job that any provider of `teeKinds` (a bit mask) may accept, with
    /// `duration` seconds to its deadline, sending along what the poster lacks of `maxPrice`.
    function post(
        address payable poster,
        bytes32 specHash,
        bytes32 inputHash,
        uint8 teeKinds,
        uint8 minTcbStatus,
        uint256 maxPrice,
        uint64 duration
    ) external returns (bytes32 jobId) {
        uint256 missing = poster.balance < maxPrice ? maxPrice - poster.balance : 0;
        VM.startBroadcast();
        // Accepted (arbitrary-send-eth): a script the operator runs, paying its own poster.
        // slither-disable-next-line arbitrary-send-eth
        jobId = JobPoster(poster).post{value: missing}(
            specHash, inputHash, teeKinds, bytes32(0), minTcbStatus, maxPrice, uint64(block.timestamp) + duration
        );
        VM.stopBroadcast();
    }

    /// @notice Hand in a settled job's output hash and its enclave's signature (both from the
    /// settling `submitResult` transaction's input).
    function acceptResult(address payable poster, bytes32 jobId, bytes32 outputHash, bytes calldata signature)
        external
    {
        VM.startBroadcast();
        JobPoster(poster).acceptResult(jobId, outputHash, signature);
        VM.stopBroadcast();
    }
}

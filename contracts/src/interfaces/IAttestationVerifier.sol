// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

/// @notice What JobMarket needs from the verifier.
interface IAttestationVerifier {
    /// @notice The compact id of an allowlisted, unrevoked, unexpired measurement; reverts otherwise.
    function activeMeasurementId(uint8 teeKind, bytes32 measurement) external view returns (uint32);

    /// @notice Kind, measurement id and TCB status of `key` if it is valid now for `provider`;
    /// reverts with the reason otherwise (unknown, another provider's, revoked, expired, or its
    /// measurement revoked or expired).
    function checkKey(address provider, address key)
        external
        view
        returns (uint8 teeKind, uint32 measurementId, uint8 tcbStatus);
}

// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

/// @notice What JobMarket needs from the verifier.
interface IAttestationVerifier {
    /// @notice The compact id of an allowlisted, unrevoked, unexpired measurement; reverts otherwise.
    function activeMeasurementId(uint8 teeKind, bytes32 measurement) external view returns (uint32);

    /// @notice Kind, measurement id and TCB status of `key` if it is valid now for `provider`
    /// and stays valid through `until`; reverts with the reason otherwise (unknown, another
    /// provider's, revoked, its kind disabled or its TCB below the kind's floor, expired or
    /// expiring before `until`, or its measurement revoked, expired or expiring before `until`).
    function checkKey(address provider, address key, uint256 until)
        external
        view
        returns (uint8 teeKind, uint32 measurementId, uint8 tcbStatus);

    /// @notice `checkKey`, and that the key is of `teeKind` and `measurement` (as an offer
    /// names them); returns the measurement's id and the key's TCB status.
    function checkOfferKey(address provider, address key, uint8 teeKind, bytes32 measurement, uint256 until)
        external
        view
        returns (uint32 measurementId, uint8 tcbStatus);
}

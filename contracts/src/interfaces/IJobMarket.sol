// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

/// @notice What ProviderRegistry needs from its market.
interface IJobMarket {
    /// @notice Stake of `provider` reserved by its open jobs: the registry lets none of it unbond.
    function lockedStakeOf(address provider) external view returns (uint256);
}

// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

/// @notice What JobMarket needs from the registry.
interface IProviderRegistry {
    function isEligible(address provider) external view returns (bool);

    function slash(address provider, uint256 amount) external returns (uint256 slashed);

    function MAX_JOB_DURATION() external view returns (uint64);
}

// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

/// @notice What JobMarket needs from the registry.
interface IProviderRegistry {
    /// @notice The provider's whole stake if it may take new jobs now (active, at least the
    /// minimum stake), else zero.
    function eligibleStake(address provider) external view returns (uint256);

    /// @notice Take `amount` of the provider's stake; `toBeneficiary` of it is credited to
    /// `beneficiary` (the client let down), the rest waits for governance's sweep.
    function slash(address provider, uint256 amount, address beneficiary, uint256 toBeneficiary)
        external
        returns (uint256 slashed);

    /// @notice The one market that may reserve stake and slash (fixed at deployment).
    function MARKET() external view returns (address);

    function MAX_JOB_DURATION() external view returns (uint64);

    function DISPUTE_WINDOW() external view returns (uint64);
}

// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {Address} from "@openzeppelin/contracts/utils/Address.sol";

/// @notice Moves the deployment's payment asset: native currency when the token is
/// address(0), otherwise one ERC-20 through SafeERC20.
abstract contract PaymentToken {
    using SafeERC20 for IERC20;

    error WrongValue(uint256 sent, uint256 expected);
    error TokenAmountMismatch(uint256 received, uint256 expected);

    /// address(0) means native currency.
    IERC20 public immutable TOKEN;

    constructor(IERC20 token) {
        TOKEN = token;
    }

    function _isNative() internal view returns (bool) {
        return address(TOKEN) == address(0);
    }

    /// @dev Takes exactly `amount` from the caller: msg.value for native, transferFrom
    /// otherwise. Only ever from msg.sender, so no path can spend another account's allowance.
    // Slither (msg-value-in-nonpayable) misses its payable callers: JobMarket.deposit,
    // ProviderRegistry.register and addStake; a non-payable caller gets msg.value 0 as it should.
    // slither-disable-next-line msg-value-in-nonpayable
    function _pullExact(uint256 amount) internal {
        if (_isNative()) {
            if (msg.value != amount) revert WrongValue(msg.value, amount);
            return;
        }
        if (msg.value != 0) revert WrongValue(msg.value, 0);
        _pullToken(amount);
    }

    /// @dev Fee-on-transfer and rebasing tokens would break the ledger invariant: refuse them.
    function _pullToken(uint256 amount) internal {
        if (amount == 0) return;
        uint256 before = TOKEN.balanceOf(address(this));
        TOKEN.safeTransferFrom(msg.sender, address(this), amount);
        uint256 received = TOKEN.balanceOf(address(this)) - before;
        if (received != amount) revert TokenAmountMismatch(received, amount);
    }

    function _push(address to, uint256 amount) internal {
        if (amount == 0) return;
        if (_isNative()) {
            Address.sendValue(payable(to), amount);
        } else {
            TOKEN.safeTransfer(to, amount);
        }
    }
}

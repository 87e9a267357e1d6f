// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

/// @notice Receives native currency and, when armed, calls back into `target` with `data`
/// from receive(), bubbling up the revert.
contract ReentrantReceiver {
    address public target;
    bytes public data;
    bool public armed;
    uint256 public received;

    function arm(address target_, bytes calldata data_) external {
        target = target_;
        data = data_;
        armed = true;
    }

    function disarm() external {
        armed = false;
    }

    /// @notice Call anything as this contract (e.g. deposit, register, withdraw).
    function exec(address to, uint256 value, bytes calldata callData) external payable returns (bytes memory) {
        (bool ok, bytes memory ret) = to.call{value: value}(callData);
        if (!ok) {
            assembly ("memory-safe") {
                revert(add(ret, 0x20), mload(ret))
            }
        }
        return ret;
    }

    receive() external payable {
        received += msg.value;
        if (!armed) return;
        armed = false;
        (bool ok, bytes memory ret) = target.call(data);
        if (!ok) {
            assembly ("memory-safe") {
                revert(add(ret, 0x20), mload(ret))
            }
        }
    }
}

/// @notice Refuses every native transfer.
contract RejectingReceiver {
    function exec(address to, uint256 value, bytes calldata callData) external payable returns (bytes memory) {
        (bool ok, bytes memory ret) = to.call{value: value}(callData);
        if (!ok) {
            assembly ("memory-safe") {
                revert(add(ret, 0x20), mload(ret))
            }
        }
        return ret;
    }
}

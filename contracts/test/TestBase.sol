// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

/// @notice The subset of forge's cheatcodes these tests use (forge-std is not vendored).
interface Vm {
    struct Log {
        bytes32[] topics;
        bytes data;
        address emitter;
    }

    function warp(uint256 newTimestamp) external;
    function roll(uint256 newHeight) external;
    function prank(address sender) external;
    function startPrank(address sender) external;
    function stopPrank() external;
    function deal(address who, uint256 newBalance) external;
    function expectRevert() external;
    function expectRevert(bytes calldata revertData) external;
    function expectRevert(bytes4 revertData) external;
    function expectPartialRevert(bytes4 revertData) external;
    function expectEmit(bool checkTopic1, bool checkTopic2, bool checkTopic3, bool checkData) external;
    function expectEmit(bool checkTopic1, bool checkTopic2, bool checkTopic3, bool checkData, address emitter)
        external;
    function expectEmit() external;
    function expectEmit(address emitter) external;
    function sign(uint256 privateKey, bytes32 digest) external pure returns (uint8 v, bytes32 r, bytes32 s);
    function addr(uint256 privateKey) external pure returns (address);
    function label(address account, string calldata newLabel) external;
    function assume(bool condition) external pure;
    function recordLogs() external;
    function getRecordedLogs() external returns (Log[] memory);
    function etch(address target, bytes calldata newRuntimeBytecode) external;
    function store(address target, bytes32 slot, bytes32 value) external;
    function load(address target, bytes32 slot) external view returns (bytes32);
    function getNonce(address account) external view returns (uint64 nonce);
    function computeCreateAddress(address deployer, uint256 nonce) external pure returns (address);
    function mockCallRevert(address callee, bytes calldata data, bytes calldata revertData) external;
    function snapshotState() external returns (uint256 snapshotId);
    function revertToState(uint256 snapshotId) external returns (bool success);
}

/// @notice A minimal test base: cheatcodes, assertions that revert on failure, helpers.
abstract contract TestBase {
    Vm internal constant vm = Vm(address(uint160(uint256(keccak256("hevm cheat code")))));

    // ------------------------------------------------------------------ assertions

    function fail(string memory why) internal pure {
        revert(why);
    }

    function assertTrue(bool c) internal pure {
        if (!c) revert("assertTrue failed");
    }

    function assertTrue(bool c, string memory why) internal pure {
        if (!c) revert(why);
    }

    function assertFalse(bool c) internal pure {
        if (c) revert("assertFalse failed");
    }

    function assertFalse(bool c, string memory why) internal pure {
        if (c) revert(why);
    }

    function assertEq(uint256 a, uint256 b) internal pure {
        if (a != b) revert(string.concat("assertEq(uint) failed: ", _u(a), " != ", _u(b)));
    }

    function assertEq(uint256 a, uint256 b, string memory why) internal pure {
        if (a != b) revert(string.concat(why, ": ", _u(a), " != ", _u(b)));
    }

    function assertEq(address a, address b) internal pure {
        if (a != b) revert(string.concat("assertEq(address) failed: ", _h(uint160(a)), " != ", _h(uint160(b))));
    }

    function assertEq(address a, address b, string memory why) internal pure {
        if (a != b) revert(string.concat(why, ": ", _h(uint160(a)), " != ", _h(uint160(b))));
    }

    function assertEq(bytes32 a, bytes32 b) internal pure {
        if (a != b) revert(string.concat("assertEq(bytes32) failed: ", _h(uint256(a)), " != ", _h(uint256(b))));
    }

    function assertEq(bytes32 a, bytes32 b, string memory why) internal pure {
        if (a != b) revert(string.concat(why, ": ", _h(uint256(a)), " != ", _h(uint256(b))));
    }

    function assertEq(bool a, bool b) internal pure {
        if (a != b) revert("assertEq(bool) failed");
    }

    function assertEq(bool a, bool b, string memory why) internal pure {
        if (a != b) revert(why);
    }

    function assertEq(bytes memory a, bytes memory b) internal pure {
        if (keccak256(a) != keccak256(b)) revert("assertEq(bytes) failed");
    }

    function assertNotEq(bytes32 a, bytes32 b) internal pure {
        if (a == b) revert("assertNotEq(bytes32) failed");
    }

    function assertNotEq(address a, address b) internal pure {
        if (a == b) revert("assertNotEq(address) failed");
    }

    function assertGt(uint256 a, uint256 b) internal pure {
        if (a <= b) revert(string.concat("assertGt failed: ", _u(a), " <= ", _u(b)));
    }

    function assertGe(uint256 a, uint256 b) internal pure {
        if (a < b) revert(string.concat("assertGe failed: ", _u(a), " < ", _u(b)));
    }

    function assertLt(uint256 a, uint256 b) internal pure {
        if (a >= b) revert(string.concat("assertLt failed: ", _u(a), " >= ", _u(b)));
    }

    function assertLe(uint256 a, uint256 b) internal pure {
        if (a > b) revert(string.concat("assertLe failed: ", _u(a), " > ", _u(b)));
    }

    // ------------------------------------------------------------------ helpers

    function makeAddr(string memory name) internal returns (address a) {
        a = vm.addr(uint256(keccak256(bytes(name))));
        vm.label(a, name);
    }

    /// @dev Maps `x` into [lo, hi] without discarding fuzz runs.
    function bound(uint256 x, uint256 lo, uint256 hi) internal pure returns (uint256) {
        require(lo <= hi, "bound: lo > hi");
        if (x >= lo && x <= hi) return x;
        uint256 size = hi - lo + 1;
        if (size == 0) return x; // full range
        return lo + (x % size);
    }

    /// @dev The address of the contract this test creates after the next one: a registry
    /// created next names the market created right after it.
    function _createdAfterNext() internal view returns (address) {
        return vm.computeCreateAddress(address(this), vm.getNonce(address(this)) + 1);
    }

    function sig(uint256 pk, bytes32 digest) internal pure returns (bytes memory) {
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(pk, digest);
        return abi.encodePacked(r, s, v);
    }

    function _u(uint256 x) private pure returns (string memory) {
        if (x == 0) return "0";
        uint256 len;
        for (uint256 t = x; t != 0; t /= 10) ++len;
        bytes memory b = new bytes(len);
        while (x != 0) {
            b[--len] = bytes1(uint8(48 + (x % 10)));
            x /= 10;
        }
        return string(b);
    }

    function _h(uint256 x) private pure returns (string memory) {
        bytes memory b = new bytes(66);
        b[0] = "0";
        b[1] = "x";
        for (uint256 i; i < 64; ++i) {
            uint8 nib = uint8(x >> (4 * (63 - i))) & 0xf;
            b[2 + i] = bytes1(nib < 10 ? 48 + nib : 87 + nib);
        }
        return string(b);
    }
}

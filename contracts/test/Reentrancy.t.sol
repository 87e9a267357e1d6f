// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {Errors} from "@openzeppelin/contracts/utils/Errors.sol";
import {TestBase} from "./TestBase.sol";
import {ReentrantERC20} from "./mocks/ReentrantERC20.sol";
import {ReentrantReceiver, RejectingReceiver} from "./mocks/ReentrantReceiver.sol";
import {AttestationVerifier} from "../src/AttestationVerifier.sol";
import {ProviderRegistry} from "../src/ProviderRegistry.sol";
import {JobMarket} from "../src/JobMarket.sol";
import {IAttestationVerifier} from "../src/interfaces/IAttestationVerifier.sol";
import {IProviderRegistry} from "../src/interfaces/IProviderRegistry.sol";

/// @notice A malicious ERC-20 calls back into the market and the registry from transfer() and
/// transferFrom(): every such re-entry hits the guard, the outer call reverts, no funds move.
contract ReentrancyERC20Test is TestBase {
    ReentrantERC20 internal evil;
    AttestationVerifier internal verifier;
    ProviderRegistry internal registry;
    JobMarket internal market;
    address internal gov;
    address internal treasury;
    address internal client;
    address internal provider;

    function setUp() public {
        vm.warp(1_700_000_000);
        gov = makeAddr("gov");
        treasury = makeAddr("treasury");
        client = makeAddr("client");
        provider = makeAddr("provider");
        evil = new ReentrantERC20();
        verifier = new AttestationVerifier(gov, false);
        registry = new ProviderRegistry(IERC20(address(evil)), gov, _createdAfterNext(), 1 ether, 1 days, 1 days, 3 days);
        market = new JobMarket(
            IERC20(address(evil)),
            IProviderRegistry(address(registry)),
            IAttestationVerifier(address(verifier)),
            treasury,
            250,
            5_000,
            5_000
        );

        evil.mint(client, 100 ether);
        evil.mint(provider, 100 ether);
        // the token itself holds a free balance in the market, as an attacker would
        evil.mint(address(evil), 10 ether);
        vm.prank(address(evil));
        evil.approve(address(market), type(uint256).max);
        vm.prank(address(evil));
        market.deposit(10 ether);

        vm.prank(client);
        evil.approve(address(market), type(uint256).max);
        vm.prank(client);
        market.deposit(50 ether);
        vm.prank(provider);
        evil.approve(address(registry), type(uint256).max);
        vm.prank(provider);
        registry.register(bytes("peer"), 20 ether);
    }

    function _expectGuard() internal {
        vm.expectRevert(ReentrancyGuardTransient.ReentrancyGuardReentrantCall.selector);
    }

    function _assertMarketUnchanged() internal view {
        assertEq(evil.balanceOf(address(market)), 60 ether);
        assertEq(market.balanceOf(client), 50 ether);
        assertEq(market.balanceOf(address(evil)), 10 ether);
        assertEq(evil.balanceOf(client), 50 ether);
        assertEq(evil.balanceOf(address(evil)), 0);
    }

    function test_withdraw_reenteringWithdrawFails() public {
        evil.arm(address(market), abi.encodeCall(JobMarket.withdraw, (10 ether, address(evil))));
        vm.prank(client);
        _expectGuard();
        market.withdraw(50 ether, client);
        _assertMarketUnchanged();
    }

    function test_withdraw_reenteringDepositFails() public {
        evil.arm(address(market), abi.encodeCall(JobMarket.deposit, (1 ether)));
        vm.prank(client);
        _expectGuard();
        market.withdraw(5 ether, client);
        _assertMarketUnchanged();
    }

    function test_deposit_reenteringWithdrawFails() public {
        evil.arm(address(market), abi.encodeCall(JobMarket.withdraw, (10 ether, address(evil))));
        vm.prank(client);
        _expectGuard();
        market.deposit(10 ether);
        _assertMarketUnchanged();
    }

    function test_withdrawFees_reenteringWithdrawFails() public {
        // a market whose treasury is the token, with fees to take
        JobMarket m = new JobMarket(
            IERC20(address(evil)),
            IProviderRegistry(address(_freshRegistry())),
            IAttestationVerifier(address(verifier)),
            address(evil),
            250,
            5_000,
            5_000
        );
        vm.store(address(m), bytes32(uint256(_feesSlot())), bytes32(uint256(1 ether)));
        evil.mint(address(m), 1 ether);
        assertEq(m.feesAccrued(), 1 ether);
        evil.arm(address(m), abi.encodeCall(JobMarket.withdrawFees, ()));
        vm.prank(address(evil));
        _expectGuard();
        m.withdrawFees();
        assertEq(m.feesAccrued(), 1 ether);
        assertEq(evil.balanceOf(address(m)), 1 ether);
    }

    function _freshRegistry() internal returns (ProviderRegistry) {
        return new ProviderRegistry(IERC20(address(evil)), gov, _createdAfterNext(), 1 ether, 1 days, 1 days, 3 days);
    }

    /// @dev Finds JobMarket.feesAccrued's storage slot by probing (no storage layout file here).
    function _feesSlot() internal returns (uint256) {
        JobMarket probe = new JobMarket(
            IERC20(address(evil)),
            IProviderRegistry(address(_freshRegistry())),
            IAttestationVerifier(address(verifier)),
            treasury,
            250,
            5_000,
            5_000
        );
        for (uint256 slot; slot < 16; ++slot) {
            vm.store(address(probe), bytes32(slot), bytes32(uint256(12345)));
            if (probe.feesAccrued() == 12345) return slot;
            vm.store(address(probe), bytes32(slot), bytes32(0));
        }
        revert("feesAccrued slot not found");
    }

    function test_withdrawUnbonded_reenteringWithdrawUnbondedFails() public {
        vm.prank(provider);
        registry.requestUnbond(5 ether);
        vm.warp(block.timestamp + 3 days);
        evil.arm(address(registry), abi.encodeCall(ProviderRegistry.withdrawUnbonded, ()));
        vm.prank(provider);
        _expectGuard();
        registry.withdrawUnbonded();
        (uint96 amount,) = registry.unbonding(provider);
        assertEq(amount, 5 ether);
        assertEq(evil.balanceOf(address(registry)), 20 ether);
        assertEq(evil.balanceOf(provider), 80 ether);
        // disarmed (the failed call rolled its own disarming back), the same call goes through
        evil.disarm();
        vm.prank(provider);
        registry.withdrawUnbonded();
        assertEq(evil.balanceOf(provider), 85 ether);
    }

    function test_withdrawUnbonded_crossContractReentryPaysOnlyOwnBalance() public {
        // a re-entry into another contract is not blocked by this one's guard; the market's own
        // ledger still only pays the caller's (the token's) free balance, once
        vm.prank(provider);
        registry.requestUnbond(5 ether);
        vm.warp(block.timestamp + 3 days);
        evil.arm(address(market), abi.encodeCall(JobMarket.withdraw, (10 ether, address(evil))));
        vm.prank(provider);
        registry.withdrawUnbonded();
        assertEq(market.balanceOf(address(evil)), 0);
        assertEq(evil.balanceOf(address(evil)), 10 ether);
        assertEq(evil.balanceOf(provider), 85 ether);
        assertEq(evil.balanceOf(address(market)), 50 ether);
    }

    function test_register_reenteringFails() public {
        address p2 = makeAddr("p2");
        evil.mint(p2, 5 ether);
        vm.prank(p2);
        evil.approve(address(registry), type(uint256).max);
        evil.arm(address(registry), abi.encodeCall(ProviderRegistry.addStake, (1 ether)));
        vm.prank(p2);
        _expectGuard();
        registry.register(bytes("p2"), 5 ether);
        assertEq(uint256(registry.providerOf(p2).status), uint256(ProviderRegistry.Status.None));
        assertEq(evil.balanceOf(p2), 5 ether);
    }

    function test_withdrawCompensation_reenteringFails() public {
        vm.prank(address(market));
        registry.slash(provider, 4 ether, client, 3 ether);
        evil.arm(address(registry), abi.encodeCall(ProviderRegistry.withdrawCompensation, (client)));
        vm.prank(client);
        _expectGuard();
        registry.withdrawCompensation(client);
        assertEq(registry.compensationOf(client), 3 ether);
    }

    function test_sweepSlashed_reenteringFails() public {
        vm.prank(address(market));
        registry.slash(provider, 4 ether, client, 0);
        address[] memory ps = new address[](1);
        ps[0] = provider;
        evil.arm(address(registry), abi.encodeCall(ProviderRegistry.withdrawUnbonded, ()));
        vm.prank(gov);
        _expectGuard();
        registry.sweepSlashed(ps, treasury);
        assertEq(registry.providerOf(provider).slashed, 4 ether);
        assertEq(evil.balanceOf(treasury), 0);
    }
}

/// @notice Native currency: a receiver re-entering from receive() is stopped by the guard.
contract ReentrancyNativeTest is TestBase {
    AttestationVerifier internal verifier;
    ProviderRegistry internal registry;
    JobMarket internal market;
    ReentrantReceiver internal attacker;
    address internal gov;
    address internal treasury;
    address internal victim;

    function setUp() public {
        vm.warp(1_700_000_000);
        gov = makeAddr("gov");
        treasury = makeAddr("treasury");
        victim = makeAddr("victim");
        verifier = new AttestationVerifier(gov, false);
        registry = new ProviderRegistry(IERC20(address(0)), gov, _createdAfterNext(), 1 ether, 1 days, 1 days, 3 days);
        market = new JobMarket(
            IERC20(address(0)),
            IProviderRegistry(address(registry)),
            IAttestationVerifier(address(verifier)),
            treasury,
            250,
            5_000,
            5_000
        );
        attacker = new ReentrantReceiver();
        vm.deal(address(attacker), 10 ether);
        vm.deal(victim, 40 ether);
        vm.prank(victim);
        market.deposit{value: 40 ether}(40 ether);
        attacker.exec(address(market), 5 ether, abi.encodeCall(JobMarket.deposit, (5 ether)));
    }

    function test_withdraw_reenteringFromReceiveFails() public {
        attacker.arm(address(market), abi.encodeCall(JobMarket.withdraw, (5 ether, address(attacker))));
        vm.expectRevert(ReentrancyGuardTransient.ReentrancyGuardReentrantCall.selector);
        attacker.exec(address(market), 0, abi.encodeCall(JobMarket.withdraw, (5 ether, address(attacker))));
        assertEq(address(market).balance, 45 ether);
        assertEq(market.balanceOf(address(attacker)), 5 ether);
        assertEq(market.balanceOf(victim), 40 ether);
        assertEq(address(attacker).balance, 5 ether);
    }

    function test_withdraw_reenteringDepositFromReceiveFails() public {
        attacker.arm(address(market), abi.encodeCall(JobMarket.deposit, (1 ether)));
        vm.expectRevert(ReentrancyGuardTransient.ReentrancyGuardReentrantCall.selector);
        attacker.exec(address(market), 0, abi.encodeCall(JobMarket.withdraw, (5 ether, address(attacker))));
        assertEq(address(market).balance, 45 ether);
        assertEq(market.balanceOf(address(attacker)), 5 ether);
    }

    function test_withdraw_toPlainReceiverWorks() public {
        attacker.exec(address(market), 0, abi.encodeCall(JobMarket.withdraw, (5 ether, address(attacker))));
        assertEq(address(attacker).balance, 10 ether);
        assertEq(attacker.received(), 5 ether);
        assertEq(address(market).balance, 40 ether);
        assertEq(market.balanceOf(address(attacker)), 0);
    }

    function test_withdraw_toRejectingReceiverKeepsBalance() public {
        RejectingReceiver r = new RejectingReceiver();
        vm.prank(victim);
        vm.expectRevert(Errors.FailedCall.selector);
        market.withdraw(1 ether, address(r));
        assertEq(market.balanceOf(victim), 40 ether);
        assertEq(address(market).balance, 45 ether);
    }

    function test_withdrawUnbonded_reenteringFromReceiveFails() public {
        attacker.exec(address(registry), 5 ether, abi.encodeCall(ProviderRegistry.register, (bytes("evil"), 5 ether)));
        attacker.exec(address(registry), 0, abi.encodeCall(ProviderRegistry.requestUnbond, (2 ether)));
        vm.warp(block.timestamp + 3 days);
        attacker.arm(address(registry), abi.encodeCall(ProviderRegistry.withdrawUnbonded, ()));
        vm.expectRevert(ReentrancyGuardTransient.ReentrancyGuardReentrantCall.selector);
        attacker.exec(address(registry), 0, abi.encodeCall(ProviderRegistry.withdrawUnbonded, ()));
        (uint96 amount,) = registry.unbonding(address(attacker));
        assertEq(amount, 2 ether);
        assertEq(address(registry).balance, 5 ether);
        // once, without re-entry
        attacker.disarm();
        attacker.exec(address(registry), 0, abi.encodeCall(ProviderRegistry.withdrawUnbonded, ()));
        assertEq(address(registry).balance, 3 ether);
        assertEq(attacker.received(), 2 ether);
    }
}

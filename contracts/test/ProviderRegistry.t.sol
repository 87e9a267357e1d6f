// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {Fixture} from "./Fixture.sol";
import {FeeOnTransferERC20} from "./mocks/MockERC20.sol";
import {ProviderRegistry} from "../src/ProviderRegistry.sol";
import {JobMarket} from "../src/JobMarket.sol";
import {IAttestationVerifier} from "../src/interfaces/IAttestationVerifier.sol";
import {IProviderRegistry} from "../src/interfaces/IProviderRegistry.sol";
import {PaymentToken} from "../src/PaymentToken.sol";

contract ProviderRegistryTest is Fixture {
    address internal alice;

    function setUp() public virtual {
        _deploy(false);
        alice = makeAddr("alice");
    }

    function _status(address p) internal view returns (ProviderRegistry.Status) {
        return registry.providerOf(p).status;
    }

    function _stake(address p) internal view returns (uint256) {
        return registry.providerOf(p).stake;
    }

    function _slashed(address p) internal view returns (uint256) {
        return registry.providerOf(p).slashed;
    }

    function _unbonding(address p) internal view returns (uint256 amount, uint256 unlockAt) {
        (uint96 a, uint40 u) = registry.unbonding(p);
        return (a, u);
    }

    function _registerAlice(uint256 amount) internal {
        _give(alice, amount);
        vm.prank(alice);
        registry.register{value: _isNative() ? amount : 0}(bytes("alice-peer"), amount);
    }

    // ------------------------------------------------------------------ constructor / governance

    function test_constructor_params() public view {
        assertEq(registry.MAX_JOB_DURATION(), MAX_JOB);
        assertEq(registry.DISPUTE_WINDOW(), DISPUTE);
        assertEq(registry.unbondingDelay(), UNBONDING);
        assertEq(registry.MIN_STAKE(), MIN_STAKE);
        assertEq(registry.owner(), gov);
        assertEq(registry.MARKET(), address(market));
        assertEq(address(registry.TOKEN()), address(0));
    }

    function test_constructor_revertsWhenUnbondingTooShort() public {
        vm.expectRevert(
            abi.encodeWithSelector(ProviderRegistry.UnbondingTooShort.selector, MAX_JOB + DISPUTE - 1, MAX_JOB + DISPUTE)
        );
        new ProviderRegistry(IERC20(address(0)), gov, stranger, MIN_STAKE, MAX_JOB, DISPUTE, MAX_JOB + DISPUTE - 1);
    }

    function test_constructor_acceptsExactMinimumDelay() public {
        ProviderRegistry r =
            new ProviderRegistry(IERC20(address(0)), gov, stranger, MIN_STAKE, MAX_JOB, DISPUTE, MAX_JOB + DISPUTE);
        assertEq(r.unbondingDelay(), MAX_JOB + DISPUTE);
    }

    function test_setUnbondingDelay() public {
        vm.expectEmit(address(registry));
        emit ProviderRegistry.UnbondingDelaySet(5 days);
        vm.prank(gov);
        registry.setUnbondingDelay(5 days);
        assertEq(registry.unbondingDelay(), 5 days);
    }

    function test_setUnbondingDelay_revertsTooShort() public {
        vm.prank(gov);
        vm.expectRevert(abi.encodeWithSelector(ProviderRegistry.UnbondingTooShort.selector, 1 days, MAX_JOB + DISPUTE));
        registry.setUnbondingDelay(1 days);
    }

    /// An unbounded delay wrapped in its uint40 field and unlocked at once (finding 6).
    function test_setUnbondingDelay_revertsTooLong() public {
        uint64 max = registry.MAX_UNBONDING_DELAY();
        vm.startPrank(gov);
        registry.setUnbondingDelay(max);
        vm.expectRevert(abi.encodeWithSelector(ProviderRegistry.UnbondingTooLong.selector, max + 1, max));
        registry.setUnbondingDelay(max + 1);
        vm.expectRevert(
            abi.encodeWithSelector(ProviderRegistry.UnbondingTooLong.selector, uint64(1) << 40, max)
        );
        registry.setUnbondingDelay(uint64(1) << 40);
        vm.stopPrank();
        vm.expectRevert(abi.encodeWithSelector(ProviderRegistry.UnbondingTooLong.selector, max + 1, max));
        new ProviderRegistry(IERC20(address(0)), gov, stranger, MIN_STAKE, MAX_JOB, DISPUTE, max + 1);
        // a longest job past the bound cannot be deployed either: its minimum delay is too long
        vm.expectRevert();
        new ProviderRegistry(IERC20(address(0)), gov, stranger, MIN_STAKE, max, DISPUTE, max);
    }

    function test_setUnbondingDelay_onlyOwner() public {
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, stranger));
        registry.setUnbondingDelay(5 days);
    }

    /// The market is fixed at deployment (finding 2): a registry names it in its constructor and
    /// the market refuses a registry that names another, so no timeout can fail on the wiring.
    function test_wiring_fixedAtDeployment() public {
        vm.expectRevert(ProviderRegistry.ZeroAddress.selector);
        new ProviderRegistry(IERC20(address(0)), gov, address(0), MIN_STAKE, MAX_JOB, DISPUTE, UNBONDING);
        ProviderRegistry r = _newRegistry(IERC20(address(0)), MIN_STAKE, MAX_JOB, DISPUTE, UNBONDING);
        JobMarket m = _newMarket(r, IERC20(address(token)), SLASH_BPS);
        assertEq(r.MARKET(), address(m));
        assertEq(address(m.REGISTRY()), address(r));
        // r names m: a second market over r is refused, as is one over the fixture's registry
        vm.expectRevert(abi.encodeWithSelector(JobMarket.RegistryOfAnotherMarket.selector, address(m)));
        _newMarket(r, IERC20(address(token)), SLASH_BPS);
        vm.expectRevert(abi.encodeWithSelector(JobMarket.RegistryOfAnotherMarket.selector, address(market)));
        _newMarket(registry, IERC20(address(token)), SLASH_BPS);
        // only the market slashes
        vm.prank(gov);
        vm.expectRevert(abi.encodeWithSelector(ProviderRegistry.OnlyMarket.selector, gov));
        r.slash(provider1, 1, client, 0);
    }

    /// Before its market exists (a deployment that failed half way) stake can still leave.
    function test_unbondWorksWhileTheMarketIsNotDeployed() public {
        ProviderRegistry r =
            new ProviderRegistry(IERC20(address(0)), gov, stranger, MIN_STAKE, MAX_JOB, DISPUTE, UNBONDING);
        vm.deal(alice, STAKE);
        vm.startPrank(alice);
        r.register{value: STAKE}(bytes("p"), STAKE);
        r.requestUnbond(1 ether);
        r.exit();
        vm.stopPrank();
        (uint96 amount,) = r.unbonding(alice);
        assertEq(amount, STAKE);
    }

    function test_eligibleStake() public {
        assertEq(registry.eligibleStake(provider1), STAKE);
        vm.prank(gov);
        registry.jail(provider1);
        assertEq(registry.eligibleStake(provider1), 0);
        vm.prank(provider2);
        registry.requestUnbond(STAKE - MIN_STAKE + 1);
        assertEq(registry.eligibleStake(provider2), 0);
        assertEq(registry.eligibleStake(stranger), 0);
    }

    function test_isEligible_usesDeploymentMinStake() public {
        ProviderRegistry r =
            new ProviderRegistry(IERC20(address(0)), gov, stranger, STAKE + 1, MAX_JOB, DISPUTE, UNBONDING);
        assertEq(r.MIN_STAKE(), STAKE + 1);
        vm.deal(alice, STAKE);
        vm.prank(alice);
        r.register{value: STAKE}(bytes("p"), STAKE);
        assertFalse(r.isEligible(alice));
        vm.deal(alice, 1);
        vm.prank(alice);
        r.addStake{value: 1}(1);
        assertTrue(r.isEligible(alice));
    }

    function test_ownership_twoStep() public {
        vm.prank(gov);
        registry.transferOwnership(alice);
        assertEq(registry.owner(), gov);
        assertEq(registry.pendingOwner(), alice);
        vm.prank(alice);
        registry.acceptOwnership();
        assertEq(registry.owner(), alice);
        vm.prank(gov);
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, gov));
        registry.setUnbondingDelay(5 days);
    }

    // ------------------------------------------------------------------ register

    function test_register_native() public {
        vm.deal(alice, 5 ether);
        vm.expectEmit(address(registry));
        emit ProviderRegistry.ProviderRegistered(alice, bytes("alice-peer"), 5 ether);
        vm.prank(alice);
        registry.register{value: 5 ether}(bytes("alice-peer"), 5 ether);

        ProviderRegistry.Provider memory p = registry.providerOf(alice);
        assertEq(p.stake, 5 ether);
        assertEq(p.slashed, 0);
        assertTrue(p.status == ProviderRegistry.Status.Active);
        assertEq(p.registeredAt, block.timestamp);
        assertEq(registry.peerIdOf(alice), bytes("alice-peer"));
        assertEq(address(registry).balance, 2 * STAKE + 5 ether);
        assertEq(alice.balance, 0);
        assertTrue(registry.isEligible(alice));
    }

    function test_register_revertsWrongValue() public {
        vm.deal(alice, 5 ether);
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(PaymentToken.WrongValue.selector, 4 ether, 5 ether));
        registry.register{value: 4 ether}(bytes("p"), 5 ether);
    }

    function test_register_revertsDuplicate() public {
        _registerAlice(2 ether);
        vm.deal(alice, 1 ether);
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(ProviderRegistry.AlreadyRegistered.selector, alice));
        registry.register{value: 1 ether}(bytes("again"), 1 ether);
    }

    function test_register_revertsEmptyPeerId() public {
        vm.deal(alice, 1 ether);
        vm.prank(alice);
        vm.expectRevert(ProviderRegistry.EmptyPeerId.selector);
        registry.register{value: 1 ether}(bytes(""), 1 ether);
    }

    function test_register_belowMinStakeIsNotEligible() public {
        _registerAlice(MIN_STAKE - 1);
        assertTrue(_status(alice) == ProviderRegistry.Status.Active);
        assertFalse(registry.isEligible(alice));
    }

    function test_register_revertsStakeOverUint96() public {
        uint256 amount = uint256(type(uint96).max) + 1;
        vm.deal(alice, amount);
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(SafeCast.SafeCastOverflowedUintDowncast.selector, 96, amount));
        registry.register{value: amount}(bytes("p"), amount);
    }

    function test_isEligible_minStakeBoundary() public {
        _registerAlice(MIN_STAKE);
        assertTrue(registry.isEligible(alice));
        vm.prank(alice);
        registry.requestUnbond(1);
        assertFalse(registry.isEligible(alice));
        assertFalse(registry.isEligible(stranger));
    }

    function test_updatePeerId() public {
        vm.expectEmit(address(registry));
        emit ProviderRegistry.PeerIdUpdated(provider1, bytes("new-peer"));
        vm.prank(provider1);
        registry.updatePeerId(bytes("new-peer"));
        assertEq(registry.peerIdOf(provider1), bytes("new-peer"));
    }

    function test_updatePeerId_reverts() public {
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(ProviderRegistry.NotRegistered.selector, stranger));
        registry.updatePeerId(bytes("x"));
        vm.prank(provider1);
        vm.expectRevert(ProviderRegistry.EmptyPeerId.selector);
        registry.updatePeerId(bytes(""));
    }

    // ------------------------------------------------------------------ stake

    function test_addStake() public {
        vm.deal(provider1, 3 ether);
        vm.expectEmit(address(registry));
        emit ProviderRegistry.StakeAdded(provider1, 3 ether, STAKE + 3 ether);
        vm.prank(provider1);
        registry.addStake{value: 3 ether}(3 ether);
        assertEq(_stake(provider1), STAKE + 3 ether);
        assertEq(address(registry).balance, 2 * STAKE + 3 ether);
    }

    function test_addStake_reverts() public {
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(ProviderRegistry.NotRegistered.selector, stranger));
        registry.addStake(1);

        vm.prank(provider1);
        vm.expectRevert(ProviderRegistry.ZeroAmount.selector);
        registry.addStake(0);

        vm.deal(provider1, 1 ether);
        vm.prank(provider1);
        vm.expectRevert(abi.encodeWithSelector(PaymentToken.WrongValue.selector, 1 ether, 2 ether));
        registry.addStake{value: 1 ether}(2 ether);
    }

    function test_addStake_revertsAfterExit() public {
        vm.prank(provider1);
        registry.exit();
        vm.deal(provider1, 1 ether);
        vm.prank(provider1);
        vm.expectRevert(
            abi.encodeWithSelector(ProviderRegistry.InvalidStatus.selector, provider1, ProviderRegistry.Status.Exited)
        );
        registry.addStake{value: 1 ether}(1 ether);
    }

    function test_addStake_allowedWhileJailed() public {
        vm.prank(gov);
        registry.jail(provider1);
        vm.deal(provider1, 1 ether);
        vm.prank(provider1);
        registry.addStake{value: 1 ether}(1 ether);
        assertEq(_stake(provider1), STAKE + 1 ether);
        assertFalse(registry.isEligible(provider1));
    }

    // ------------------------------------------------------------------ unbonding

    function test_requestUnbond() public {
        vm.expectEmit(address(registry));
        emit ProviderRegistry.UnbondRequested(provider1, 4 ether, uint64(block.timestamp + UNBONDING));
        vm.prank(provider1);
        registry.requestUnbond(4 ether);
        assertEq(_stake(provider1), STAKE - 4 ether);
        (uint256 amount, uint256 unlockAt) = _unbonding(provider1);
        assertEq(amount, 4 ether);
        assertEq(unlockAt, block.timestamp + UNBONDING);
    }

    function test_requestUnbond_reverts() public {
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(ProviderRegistry.NotRegistered.selector, stranger));
        registry.requestUnbond(1);

        vm.prank(provider1);
        vm.expectRevert(ProviderRegistry.ZeroAmount.selector);
        registry.requestUnbond(0);

        vm.prank(provider1);
        vm.expectRevert(abi.encodeWithSelector(ProviderRegistry.InsufficientStake.selector, STAKE + 1, STAKE));
        registry.requestUnbond(STAKE + 1);
    }

    function test_requestUnbond_secondRequestAddsAndRestartsDelay() public {
        vm.prank(provider1);
        registry.requestUnbond(1 ether);
        vm.warp(block.timestamp + 2 days);
        vm.prank(provider1);
        registry.requestUnbond(2 ether);
        (uint256 amount, uint256 unlockAt) = _unbonding(provider1);
        assertEq(amount, 3 ether);
        assertEq(unlockAt, block.timestamp + UNBONDING);
    }

    function test_withdrawUnbonded_timing() public {
        vm.prank(provider1);
        registry.requestUnbond(4 ether);
        uint64 unlockAt = uint64(block.timestamp + UNBONDING);

        vm.warp(unlockAt - 1);
        vm.prank(provider1);
        vm.expectRevert(abi.encodeWithSelector(ProviderRegistry.StillUnbonding.selector, unlockAt));
        registry.withdrawUnbonded();

        vm.warp(unlockAt);
        uint256 before = provider1.balance;
        vm.expectEmit(address(registry));
        emit ProviderRegistry.UnbondedWithdrawn(provider1, 4 ether);
        vm.prank(provider1);
        registry.withdrawUnbonded();
        assertEq(provider1.balance, before + 4 ether);
        assertEq(address(registry).balance, 2 * STAKE - 4 ether);
        (uint256 amount,) = _unbonding(provider1);
        assertEq(amount, 0);

        vm.prank(provider1);
        vm.expectRevert(ProviderRegistry.NothingToWithdraw.selector);
        registry.withdrawUnbonded();
    }

    function test_withdrawUnbonded_revertsNothing() public {
        vm.prank(stranger);
        vm.expectRevert(ProviderRegistry.NothingToWithdraw.selector);
        registry.withdrawUnbonded();
    }

    function test_unbondingCoversEveryJobItCouldHold() public view {
        // the delay outlasts any job deadline plus the dispute window
        assertGe(registry.unbondingDelay(), uint256(registry.MAX_JOB_DURATION()) + registry.DISPUTE_WINDOW());
        assertEq(market.MAX_JOB_DURATION(), registry.MAX_JOB_DURATION());
    }

    // ------------------------------------------------------------------ exit

    function test_exit() public {
        vm.expectEmit(address(registry));
        emit ProviderRegistry.StatusChanged(provider1, ProviderRegistry.Status.Exited);
        vm.expectEmit(address(registry));
        emit ProviderRegistry.UnbondRequested(provider1, STAKE, uint64(block.timestamp + UNBONDING));
        vm.prank(provider1);
        registry.exit();
        assertTrue(_status(provider1) == ProviderRegistry.Status.Exited);
        assertEq(_stake(provider1), 0);
        (uint256 amount, uint256 unlockAt) = _unbonding(provider1);
        assertEq(amount, STAKE);
        assertEq(unlockAt, block.timestamp + UNBONDING);
        assertFalse(registry.isEligible(provider1));

        vm.prank(provider1);
        vm.expectRevert(
            abi.encodeWithSelector(ProviderRegistry.InvalidStatus.selector, provider1, ProviderRegistry.Status.Exited)
        );
        registry.exit();

        // an exited operator cannot register again with the same address
        vm.deal(provider1, 1 ether);
        vm.prank(provider1);
        vm.expectRevert(abi.encodeWithSelector(ProviderRegistry.AlreadyRegistered.selector, provider1));
        registry.register{value: 1 ether}(bytes("p"), 1 ether);

        vm.warp(unlockAt);
        vm.prank(provider1);
        registry.withdrawUnbonded();
        assertEq(provider1.balance, STAKE + 1 ether);
    }

    function test_exit_revertsNotRegistered() public {
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(ProviderRegistry.NotRegistered.selector, stranger));
        registry.exit();
    }

    function test_exit_withZeroStakeStartsNoUnbonding() public {
        _registerAlice(0);
        vm.prank(alice);
        registry.exit();
        (uint256 amount, uint256 unlockAt) = _unbonding(alice);
        assertEq(amount, 0);
        assertEq(unlockAt, 0);
    }

    // ------------------------------------------------------------------ jail

    function test_jailUnjail() public {
        vm.expectEmit(address(registry));
        emit ProviderRegistry.StatusChanged(provider1, ProviderRegistry.Status.Jailed);
        vm.prank(gov);
        registry.jail(provider1);
        assertTrue(_status(provider1) == ProviderRegistry.Status.Jailed);
        assertFalse(registry.isEligible(provider1));

        vm.expectEmit(address(registry));
        emit ProviderRegistry.StatusChanged(provider1, ProviderRegistry.Status.Active);
        vm.prank(gov);
        registry.unjail(provider1);
        assertTrue(_status(provider1) == ProviderRegistry.Status.Active);
        assertTrue(registry.isEligible(provider1));
    }

    function test_jail_onlyOwner() public {
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, stranger));
        registry.jail(provider1);
        vm.prank(gov);
        registry.jail(provider1);
        vm.prank(provider1);
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, provider1));
        registry.unjail(provider1);
    }

    function test_jail_invalidStatus() public {
        vm.startPrank(gov);
        vm.expectRevert(abi.encodeWithSelector(ProviderRegistry.NotRegistered.selector, stranger));
        registry.jail(stranger);
        vm.expectRevert(abi.encodeWithSelector(ProviderRegistry.NotRegistered.selector, stranger));
        registry.unjail(stranger);
        vm.expectRevert(
            abi.encodeWithSelector(ProviderRegistry.InvalidStatus.selector, provider1, ProviderRegistry.Status.Active)
        );
        registry.unjail(provider1);
        registry.jail(provider1);
        vm.expectRevert(
            abi.encodeWithSelector(ProviderRegistry.InvalidStatus.selector, provider1, ProviderRegistry.Status.Jailed)
        );
        registry.jail(provider1);
        vm.stopPrank();

        vm.prank(provider2);
        registry.exit();
        vm.startPrank(gov);
        vm.expectRevert(
            abi.encodeWithSelector(ProviderRegistry.InvalidStatus.selector, provider2, ProviderRegistry.Status.Exited)
        );
        registry.jail(provider2);
        vm.expectRevert(
            abi.encodeWithSelector(ProviderRegistry.InvalidStatus.selector, provider2, ProviderRegistry.Status.Exited)
        );
        registry.unjail(provider2);
        vm.stopPrank();
    }

    // ------------------------------------------------------------------ slash

    function test_slash_onlyMarket() public {
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(ProviderRegistry.OnlyMarket.selector, stranger));
        registry.slash(provider1, 1 ether, client, 0);
        vm.prank(gov);
        vm.expectRevert(abi.encodeWithSelector(ProviderRegistry.OnlyMarket.selector, gov));
        registry.slash(provider1, 1 ether, client, 0);
    }

    function test_slash_fromStake() public {
        vm.expectEmit(address(registry));
        emit ProviderRegistry.ProviderSlashed(provider1, 3 ether, 3 ether, client, 0);
        vm.prank(address(market));
        uint256 slashed = registry.slash(provider1, 3 ether, client, 0);
        assertEq(slashed, 3 ether);
        assertEq(_stake(provider1), STAKE - 3 ether);
        assertEq(_slashed(provider1), 3 ether);
    }

    function test_slash_takesStakeThenUnbonding() public {
        vm.prank(provider1);
        registry.requestUnbond(6 ether); // stake 4, unbonding 6
        vm.prank(address(market));
        uint256 slashed = registry.slash(provider1, 7 ether, client, 0);
        assertEq(slashed, 7 ether);
        assertEq(_stake(provider1), 0);
        (uint256 amount,) = _unbonding(provider1);
        assertEq(amount, 3 ether);
        assertEq(_slashed(provider1), 7 ether);
    }

    function test_slash_cappedByStakeAndUnbonding() public {
        vm.prank(provider1);
        registry.requestUnbond(6 ether);
        vm.expectEmit(address(registry));
        emit ProviderRegistry.ProviderSlashed(provider1, 100 ether, STAKE, client, 0);
        vm.prank(address(market));
        uint256 slashed = registry.slash(provider1, 100 ether, client, 0);
        assertEq(slashed, STAKE);
        assertEq(_stake(provider1), 0);
        (uint256 amount,) = _unbonding(provider1);
        assertEq(amount, 0);
        assertEq(_slashed(provider1), STAKE);
        // nothing left to withdraw after the unlock
        vm.warp(block.timestamp + UNBONDING);
        vm.prank(provider1);
        vm.expectRevert(ProviderRegistry.NothingToWithdraw.selector);
        registry.withdrawUnbonded();
    }

    function test_slash_exitedProviderStillSlashableWhileUnbonding() public {
        vm.prank(provider1);
        registry.exit();
        vm.warp(block.timestamp + UNBONDING - 1);
        vm.prank(address(market));
        assertEq(registry.slash(provider1, 2 ether, client, 0), 2 ether);
        vm.warp(block.timestamp + 1);
        vm.prank(provider1);
        registry.withdrawUnbonded();
        assertEq(provider1.balance, STAKE - 2 ether);
    }

    function test_slash_unknownProviderSlashesNothing() public {
        vm.prank(address(market));
        assertEq(registry.slash(stranger, 1 ether, client, 0), 0);
        assertEq(_slashed(stranger), 0);
    }

    function testFuzz_slash_conservesFunds(uint256 unbond, uint256 amount) public {
        unbond = bound(unbond, 0, STAKE);
        amount = bound(amount, 0, 3 * STAKE);
        if (unbond > 0) {
            vm.prank(provider1);
            registry.requestUnbond(unbond);
        }
        vm.prank(address(market));
        uint256 slashed = registry.slash(provider1, amount, client, amount / 3);
        (uint256 ub,) = _unbonding(provider1);
        assertEq(slashed, amount < STAKE ? amount : STAKE);
        uint256 comp = registry.compensationOf(client);
        assertEq(comp, amount / 3 < slashed ? amount / 3 : slashed);
        assertEq(_stake(provider1) + ub + _slashed(provider1) + comp, STAKE);
        assertEq(address(registry).balance, _stake(provider1) + ub + _slashed(provider1) + comp + STAKE);
    }

    function test_slash_splitsBetweenBeneficiaryAndGovernance() public {
        vm.expectEmit(address(registry));
        emit ProviderRegistry.ProviderSlashed(provider1, 3 ether, 3 ether, alice, 2 ether);
        vm.prank(address(market));
        registry.slash(provider1, 3 ether, alice, 2 ether);
        assertEq(_stake(provider1), STAKE - 3 ether);
        assertEq(_slashed(provider1), 1 ether);
        assertEq(registry.compensationOf(alice), 2 ether);
        // the beneficiary's share never exceeds what was taken
        vm.prank(address(market));
        registry.slash(stranger, 1 ether, alice, 1 ether);
        assertEq(registry.compensationOf(alice), 2 ether);

        vm.prank(stranger);
        vm.expectRevert(ProviderRegistry.NothingToWithdraw.selector);
        registry.withdrawCompensation(stranger);
        vm.prank(alice);
        vm.expectRevert(ProviderRegistry.ZeroAddress.selector);
        registry.withdrawCompensation(address(0));
        vm.expectEmit(address(registry));
        emit ProviderRegistry.CompensationWithdrawn(alice, stranger, 2 ether);
        vm.prank(alice);
        registry.withdrawCompensation(stranger);
        assertEq(stranger.balance, 2 ether);
        assertEq(registry.compensationOf(alice), 0);
        assertEq(address(registry).balance, 2 * STAKE - 2 ether);
    }

    /// Stake reserved by open jobs cannot unbond or leave with exit (finding 3).
    function test_reservedStakeCannotUnbond() public {
        bytes32 id = _match(client, provider1);
        uint256 reserved = market.lockedStakeOf(provider1);
        assertEq(reserved, _slash(PRICE));
        assertEq(registry.freeStakeOf(provider1), STAKE - reserved);
        vm.startPrank(provider1);
        vm.expectRevert(
            abi.encodeWithSelector(ProviderRegistry.InsufficientStake.selector, STAKE, STAKE - reserved)
        );
        registry.requestUnbond(STAKE);
        registry.requestUnbond(STAKE - reserved);
        registry.exit();
        vm.stopPrank();
        assertEq(_stake(provider1), reserved);
        // once the job ends, the reservation is free to leave
        _submit(id);
        vm.prank(provider1);
        registry.requestUnbond(reserved);
        assertEq(_stake(provider1), 0);
    }

    function _submit(bytes32 id) internal {
        market.submitResult(id, _out(1), _signResult(E1_PK, id, _out(1)));
    }

    // ------------------------------------------------------------------ sweep

    function test_sweepSlashed() public {
        vm.startPrank(address(market));
        registry.slash(provider1, 2 ether, client, 0);
        registry.slash(provider2, 3 ether, client, 0);
        vm.stopPrank();
        address[] memory ps = new address[](2);
        ps[0] = provider1;
        ps[1] = provider2;
        vm.expectEmit(address(registry));
        emit ProviderRegistry.SlashedSwept(treasury, 5 ether);
        vm.prank(gov);
        registry.sweepSlashed(ps, treasury);
        assertEq(treasury.balance, 5 ether);
        assertEq(_slashed(provider1), 0);
        assertEq(_slashed(provider2), 0);
        assertEq(address(registry).balance, 2 * STAKE - 5 ether);

        vm.prank(gov);
        vm.expectRevert(ProviderRegistry.NothingToWithdraw.selector);
        registry.sweepSlashed(ps, treasury);
    }

    function test_sweepSlashed_onlyOwner() public {
        vm.prank(address(market));
        registry.slash(provider1, 2 ether, client, 0);
        address[] memory ps = new address[](1);
        ps[0] = provider1;
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, stranger));
        registry.sweepSlashed(ps, stranger);
    }

    function test_sweepSlashed_listingTwiceDoesNotPayTwice() public {
        vm.prank(address(market));
        registry.slash(provider1, 2 ether, client, 0);
        address[] memory ps = new address[](2);
        ps[0] = provider1;
        ps[1] = provider1;
        vm.prank(gov);
        registry.sweepSlashed(ps, treasury);
        assertEq(treasury.balance, 2 ether);
    }
}

/// @notice The same registry paths on an ERC-20 deployment.
contract ProviderRegistryERC20Test is Fixture {
    address internal alice;

    function setUp() public {
        _deploy(true);
        alice = makeAddr("alice");
    }

    function test_register_pullsTokens() public {
        _give(alice, 5 ether);
        vm.prank(alice);
        registry.register(bytes("alice-peer"), 5 ether);
        assertEq(token.balanceOf(address(registry)), 2 * STAKE + 5 ether);
        assertEq(token.balanceOf(alice), 0);
        assertEq(registry.providerOf(alice).stake, 5 ether);
        assertTrue(registry.isEligible(alice));
    }

    function test_register_revertsWithValue() public {
        _give(alice, 5 ether);
        vm.deal(alice, 1);
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(PaymentToken.WrongValue.selector, 1, 0));
        registry.register{value: 1}(bytes("p"), 5 ether);
    }

    function test_register_revertsWithoutAllowance() public {
        token.mint(alice, 5 ether);
        vm.prank(alice);
        vm.expectRevert();
        registry.register(bytes("p"), 5 ether);
        assertEq(registry.providerOf(alice).stake, 0);
    }

    function test_addStake_andWithdrawUnbonded() public {
        _give(provider1, 2 ether);
        vm.prank(provider1);
        registry.addStake(2 ether);
        assertEq(registry.providerOf(provider1).stake, STAKE + 2 ether);
        vm.prank(provider1);
        registry.exit();
        vm.warp(block.timestamp + UNBONDING - 1);
        vm.prank(provider1);
        vm.expectRevert(
            abi.encodeWithSelector(ProviderRegistry.StillUnbonding.selector, uint64(block.timestamp + 1))
        );
        registry.withdrawUnbonded();
        vm.warp(block.timestamp + 1);
        vm.prank(provider1);
        registry.withdrawUnbonded();
        assertEq(token.balanceOf(provider1), STAKE + 2 ether);
        assertEq(token.balanceOf(address(registry)), STAKE);
    }

    function test_sweepSlashed_tokens() public {
        vm.prank(address(market));
        registry.slash(provider2, 4 ether, client, 0);
        address[] memory ps = new address[](1);
        ps[0] = provider2;
        vm.prank(gov);
        registry.sweepSlashed(ps, treasury);
        assertEq(token.balanceOf(treasury), 4 ether);
    }

    function test_register_refusesFeeOnTransferToken() public {
        FeeOnTransferERC20 fot = new FeeOnTransferERC20();
        ProviderRegistry r =
            new ProviderRegistry(IERC20(address(fot)), gov, stranger, MIN_STAKE, MAX_JOB, DISPUTE, UNBONDING);
        fot.mint(alice, 100 ether);
        vm.prank(alice);
        fot.approve(address(r), type(uint256).max);
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(PaymentToken.TokenAmountMismatch.selector, 99 ether, 100 ether));
        r.register(bytes("p"), 100 ether);
    }
}

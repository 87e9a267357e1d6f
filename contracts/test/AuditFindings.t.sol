// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {Fixture} from "./Fixture.sol";
import {AttestationVerifier} from "../src/AttestationVerifier.sol";
import {ProviderRegistry} from "../src/ProviderRegistry.sol";
import {JobMarket} from "../src/JobMarket.sol";
import {IAttestationVerifier} from "../src/interfaces/IAttestationVerifier.sol";
import {IProviderRegistry} from "../src/interfaces/IProviderRegistry.sol";
import {JobRequest, KeyAttestation, Offer, TeeKind, TcbStatus} from "../src/CapaTypes.sol";

/// @notice One test (or a few) per finding of the contracts review (issue 12). Each was first
/// written against the contracts as they were and failed there (the run is recorded in the
/// issue's closing note); the versions here speak the new interfaces and pass.
contract AuditFindingsTest is Fixture {
    function setUp() public {
        _deploy(false);
    }

    function _payMatch(JobRequest memory r, Offer memory o) internal returns (bool ok, bytes32 id) {
        bytes memory s = _signOffer(o);
        vm.deal(client, client.balance + o.price);
        vm.prank(client);
        try market.matchJob{value: o.price}(r, o, s) returns (bytes32 jobId) {
            return (true, jobId);
        } catch {
            return (false, bytes32(0));
        }
    }

    // ---------------------------------------------------------------- 1: slash without fault

    /// A client took a standing offer with `deadline = now + 1` and claimed a second later.
    function test_f1_deadlineShorterThanProviderNeedsIsRefused() public {
        JobRequest memory r = _req(PRICE);
        r.deadline = uint64(block.timestamp + 1);
        Offer memory o = _offer(provider1, PRICE);
        bytes memory s = _signOffer(o);
        vm.deal(client, PRICE);
        vm.prank(client);
        vm.expectRevert(
            abi.encodeWithSelector(JobMarket.DeadlineTooSoon.selector, r.deadline, block.timestamp + MIN_DURATION)
        );
        market.matchJob{value: PRICE}(r, o, s);
        // exactly the provider's minimum is enough
        r.deadline = uint64(block.timestamp + MIN_DURATION);
        (bool ok,) = _payMatch(r, _offer(provider1, PRICE));
        assertTrue(ok);
    }

    /// The same protection when a provider takes a posted job: the deadline may have come close
    /// while its acceptJob waited to be mined.
    function test_f1_acceptRefusesADeadlineTooSoon() public {
        JobRequest memory r = _req(PRICE);
        r.deadline = uint64(block.timestamp + 30 minutes);
        bytes32 id = _postPaid(client, r);
        vm.prank(provider1);
        vm.expectRevert(
            abi.encodeWithSelector(JobMarket.DeadlineTooSoon.selector, r.deadline, block.timestamp + MIN_DURATION)
        );
        market.acceptJob(id, enclave1, MIN_DURATION);
        vm.prank(provider1);
        market.acceptJob(id, enclave1, 20 minutes);
    }

    /// A client that withholds the sealed input gets its refund, never the provider's stake.
    function test_f1_inputWithheldMeansNoSlash() public {
        bytes32 id = _match(client, provider1); // the client never uploads the sealed input
        vm.warp(market.getJob(id).deadline + 1);
        vm.prank(client);
        market.claimTimeout(id, ""); // no input receipt to show
        assertEq(market.balanceOf(client), PRICE, "refund");
        assertEq(registry.providerOf(provider1).stake, STAKE, "slashed without proof it had the input");
    }

    /// A provider that never got the input gives the job back at once: refund, no slash.
    function test_f1_providerWithoutInputReleasesEarly() public {
        bytes32 id = _match(client, provider1);
        vm.prank(provider1);
        market.releaseJob(id);
        assertEq(market.balanceOf(client), PRICE);
        assertEq(registry.providerOf(provider1).stake, STAKE);
        assertEq(market.lockedStakeOf(provider1), 0);
    }

    /// The slash needs the provider's own receipt for this job's spec and input.
    function test_f1_slashOnlyWithTheProvidersInputReceipt() public {
        bytes32 id = _match(client, provider1);
        bytes memory forged = sig(0xBAD, market.inputReceiptDigest(id, market.getJob(id).taskHash));
        bytes memory receipt = _inputReceipt(id);
        vm.warp(market.getJob(id).deadline + 1);
        vm.expectRevert(abi.encodeWithSelector(JobMarket.BadInputReceipt.selector, vm.addr(0xBAD), provider1));
        market.claimTimeout(id, forged);
        market.claimTimeout(id, receipt);
        assertEq(registry.providerOf(provider1).stake, STAKE - _slash(PRICE));
    }

    // ---------------------------------------------------------------- 2: refund hostage to the slash

    /// The wiring is fixed at deployment: a registry names its market in its constructor and
    /// a market refuses a registry that names another, so no market can hold an accepted job
    /// whose slash the registry would refuse (the refund path is checked below as well).
    function test_f2_registryWiredToAnotherMarketCannotHoldEscrow() public {
        vm.expectRevert(abi.encodeWithSelector(JobMarket.RegistryOfAnotherMarket.selector, address(market)));
        _newMarket(registry, IERC20(address(token)), SLASH_BPS);
        ProviderRegistry r2 =
            new ProviderRegistry(IERC20(address(0)), gov, stranger, MIN_STAKE, MAX_JOB, DISPUTE, UNBONDING);
        vm.expectRevert(abi.encodeWithSelector(JobMarket.RegistryOfAnotherMarket.selector, stranger));
        _newMarket(r2, IERC20(address(token)), SLASH_BPS);
    }

    /// With the slash bounded, `price * SLASH_BPS` cannot overflow; and even when the slash
    /// itself reverts the refund goes through.
    function test_f2_slashOverflowCannotLockEscrow() public {
        ProviderRegistry r2 = _newRegistry(IERC20(address(0)), MIN_STAKE, MAX_JOB, DISPUTE, UNBONDING);
        vm.expectRevert(JobMarket.InvalidConfig.selector);
        _newMarket(r2, IERC20(address(token)), type(uint256).max);
        bytes32 id = _match(client, provider1);
        bytes memory receipt = _inputReceipt(id);
        vm.warp(market.getJob(id).deadline + 1);
        vm.mockCallRevert(address(registry), abi.encodeWithSelector(ProviderRegistry.slash.selector), "broken");
        vm.prank(client);
        market.claimTimeout(id, receipt);
        assertEq(market.balanceOf(client), PRICE);
        assertEq(uint256(market.jobState(id)), uint256(JobMarket.State.Refunded));
    }

    // ---------------------------------------------------------------- 3: stake covers jobs taken

    function test_f3_stakeMustCoverOpenJobs() public {
        address p3 = vm.addr(0xC3);
        _registerProvider(p3, MIN_STAKE); // 1 ether of stake, each job reserves half a price
        _registerKey(verifier, _att(p3, vm.addr(0xE4), TeeKind.TDX, M1, TcbStatus.UP_TO_DATE, T0 + 365 days));
        uint256 taken;
        for (uint256 i; i < 3; ++i) {
            JobRequest memory r = _req(PRICE);
            Offer memory o = _offer(p3, PRICE);
            o.enclaveKey = vm.addr(0xE4);
            bytes memory s = sig(0xC3, market.offerDigest(o));
            vm.deal(client, PRICE);
            vm.prank(client);
            if (i < 2) {
                market.matchJob{value: PRICE}(r, o, s);
                ++taken;
            } else {
                vm.expectRevert(abi.encodeWithSelector(JobMarket.StakeTooLow.selector, 1.5 ether, MIN_STAKE));
                market.matchJob{value: PRICE}(r, o, s);
            }
        }
        assertLe(taken * _slash(PRICE), MIN_STAKE);
        assertEq(market.lockedStakeOf(p3), MIN_STAKE);
    }

    function test_f3_clientReceivesPartOfTheSlash() public {
        bytes32 id = _match(client, provider1);
        bytes memory receipt = _inputReceipt(id);
        vm.warp(market.getJob(id).deadline + 1);
        vm.prank(client);
        market.claimTimeout(id, receipt);
        uint256 compensation = registry.compensationOf(client);
        assertEq(compensation, _clientShare(_slash(PRICE)));
        assertGt(market.balanceOf(client) + compensation, PRICE);
    }

    // ---------------------------------------------------------------- 4: kind policy at use

    function test_f4_disabledKindStopsSettlement() public {
        bytes32 id = _match(client, provider1);
        vm.prank(gov);
        verifier.setKindPolicy(TeeKind.TDX, false, 0);
        bytes memory s = _signResult(E1_PK, id, _out(1));
        vm.expectRevert(abi.encodeWithSelector(AttestationVerifier.KindDisabled.selector, TeeKind.TDX));
        market.submitResult(id, _out(1), s);
        // the provider stopped by governance gives the job back without a slash
        vm.prank(provider1);
        market.releaseJob(id);
        assertEq(registry.providerOf(provider1).stake, STAKE);
    }

    function test_f4_raisedTcbStopsSettlement() public {
        JobRequest memory r = _req(PRICE);
        r.teeKinds = TeeKind.bit(TeeKind.SGX);
        r.minTcbStatus = TcbStatus.SW_HARDENING_NEEDED;
        Offer memory o = _offer(provider1, PRICE);
        o.enclaveKey = enclave3;
        o.teeKind = TeeKind.SGX;
        o.measurement = M_SGX;
        bytes32 id = _matchWith(client, r, o);
        vm.prank(gov);
        verifier.setKindPolicy(TeeKind.SGX, true, TcbStatus.UP_TO_DATE); // enclave3 is below it now
        bytes memory s = _signResult(E3_PK, id, _out(1));
        vm.expectRevert(
            abi.encodeWithSelector(
                AttestationVerifier.TcbTooLow.selector, TcbStatus.SW_HARDENING_NEEDED, TcbStatus.UP_TO_DATE
            )
        );
        market.submitResult(id, _out(1), s);
    }

    function test_f4_disabledKindStopsMatching() public {
        vm.prank(gov);
        verifier.setKindPolicy(TeeKind.TDX, false, 0);
        JobRequest memory r = _req(PRICE);
        Offer memory o = _offer(provider1, PRICE);
        bytes memory s = _signOffer(o);
        vm.deal(client, PRICE);
        vm.prank(client);
        vm.expectRevert(abi.encodeWithSelector(AttestationVerifier.KindDisabled.selector, TeeKind.TDX));
        market.matchJob{value: PRICE}(r, o, s);
        // and accepting a posted job under an existing key
        bytes32 id = _postPaid(client, _req(PRICE));
        vm.prank(provider1);
        vm.expectRevert(abi.encodeWithSelector(AttestationVerifier.KindDisabled.selector, TeeKind.TDX));
        market.acceptJob(id, enclave1, MIN_DURATION);
    }

    // ---------------------------------------------------------------- 5: key outlives the job

    function test_f5_keyExpiringBeforeDeadlineIsRefusedAtAccept() public {
        address key = vm.addr(0xE5);
        uint256 expiresAt = block.timestamp + 1 hours;
        _registerKey(verifier, _att(provider1, key, TeeKind.TDX, M1, TcbStatus.UP_TO_DATE, expiresAt));
        JobRequest memory r = _req(PRICE); // deadline in 12 hours
        bytes32 id = _postPaid(client, r);
        vm.prank(provider1);
        vm.expectRevert(
            abi.encodeWithSelector(AttestationVerifier.KeyExpiresBefore.selector, key, uint40(expiresAt), r.deadline)
        );
        market.acceptJob(id, key, MIN_DURATION);
    }

    function test_f5_keyExpiringBeforeDeadlineIsRefusedAtMatch() public {
        address key = vm.addr(0xE5);
        uint256 expiresAt = block.timestamp + 2 hours;
        _registerKey(verifier, _att(provider1, key, TeeKind.TDX, M1, TcbStatus.UP_TO_DATE, expiresAt));
        Offer memory o = _offer(provider1, PRICE); // the job would run 6 hours
        o.enclaveKey = key;
        (bool ok,) = _payMatch(_req(PRICE), o);
        assertFalse(ok);
        o.maxDuration = 2 hours - 1; // a job that ends before the key does
        (ok,) = _payMatch(_req(PRICE), o);
        assertTrue(ok);
    }

    function test_f5_measurementExpiringBeforeDeadlineIsRefusedAtMatch() public {
        uint40 notAfter = uint40(block.timestamp + 1 hours);
        vm.prank(gov);
        verifier.approveMeasurement(TeeKind.TDX, M1, notAfter);
        JobRequest memory r = _req(PRICE); // deadline in 12 hours, offer allows 6
        Offer memory o = _offer(provider1, PRICE);
        bytes memory s = _signOffer(o);
        vm.deal(client, PRICE);
        vm.prank(client);
        vm.expectRevert(
            abi.encodeWithSelector(
                AttestationVerifier.MeasurementExpiresBefore.selector,
                verifier.measurementIdOf(TeeKind.TDX, M1),
                notAfter,
                block.timestamp + 6 hours
            )
        );
        market.matchJob{value: PRICE}(r, o, s);
    }

    // ---------------------------------------------------------------- 6: silent truncation

    function test_f6_unbondingDelayCannotWrap() public {
        uint64 max = registry.MAX_UNBONDING_DELAY();
        vm.prank(gov);
        vm.expectRevert(abi.encodeWithSelector(ProviderRegistry.UnbondingTooLong.selector, uint64(1) << 40, max));
        registry.setUnbondingDelay(uint64(1) << 40);
        vm.prank(provider1);
        registry.requestUnbond(1 ether);
        vm.prank(provider1);
        vm.expectRevert(abi.encodeWithSelector(ProviderRegistry.StillUnbonding.selector, T0 + UNBONDING));
        registry.withdrawUnbonded();
    }

    function test_f6_keyExpiryIsNotTruncated() public {
        address key = vm.addr(0xE6);
        uint256 expiresAt = (uint256(1) << 40) + block.timestamp + 100;
        KeyAttestation memory a = _att(provider1, key, TeeKind.TDX, M1, TcbStatus.UP_TO_DATE, expiresAt);
        bytes[] memory sigs = _committeeSigs(verifier, a, 2);
        vm.expectRevert(abi.encodeWithSelector(SafeCast.SafeCastOverflowedUintDowncast.selector, 40, expiresAt));
        verifier.registerKey(a, sigs);
    }

    /// A longest job beyond the bound cannot be deployed, so no deadline can wrap its field.
    function test_f6_jobDeadlineIsNotTruncated() public {
        uint64 huge = uint64(1) << 41;
        vm.expectRevert();
        new ProviderRegistry(IERC20(address(0)), gov, stranger, MIN_STAKE, huge, DISPUTE, huge + DISPUTE);
        // and the stored deadline is the one computed
        JobRequest memory r = _req(PRICE);
        r.deadline = uint64(block.timestamp + 5 hours);
        (, bytes32 id) = _payMatch(r, _offer(provider1, PRICE));
        assertEq(market.getJob(id).deadline, r.deadline);
    }

    function test_f6_slashedAmountIsNotTruncated() public {
        ProviderRegistry r2 = _newRegistry(IERC20(address(0)), MIN_STAKE, MAX_JOB, DISPUTE, UNBONDING);
        JobMarket m2 = _newMarket(r2, IERC20(address(token)), SLASH_BPS);
        uint256 max96 = type(uint96).max;
        vm.deal(provider1, 2 * max96);
        vm.startPrank(provider1);
        r2.register{value: max96}(bytes("peer"), max96);
        r2.requestUnbond(max96);
        r2.addStake{value: max96}(max96);
        vm.stopPrank();
        vm.prank(address(m2));
        vm.expectRevert(abi.encodeWithSelector(SafeCast.SafeCastOverflowedUintDowncast.selector, 96, 2 * max96));
        r2.slash(provider1, 2 * max96, client, 0);
        // within range the accounts keep every wei
        vm.prank(address(m2));
        r2.slash(provider1, max96 + 5, client, 5);
        (uint96 unbonding,) = r2.unbonding(provider1);
        ProviderRegistry.Provider memory p = r2.providerOf(provider1);
        assertEq(uint256(p.stake) + unbonding + p.slashed + r2.compensationOf(client), 2 * max96);
    }

    // ---------------------------------------------------------------- 7: result bound to the spec

    /// A receipt that names job, provider, input and output but not the spec is refused.
    function test_f7_resultMustCommitToTheSpec() public {
        bytes32 id = _match(client, provider1);
        JobRequest memory r; // the request _match built
        r.specHash = keccak256("spec");
        r.inputHash = keccak256(abi.encode("input", reqNonce - 1));
        assertEq(market.getJob(id).taskHash, market.hashTask(r.specHash, r.inputHash));
        bytes32 legacy = keccak256(
            abi.encode(
                keccak256("Result(bytes32 jobId,address provider,bytes32 inputHash,bytes32 outputHash)"),
                id,
                provider1,
                r.inputHash,
                _out(1)
            )
        );
        bytes32 digest = keccak256(abi.encodePacked("\x19\x01", market.domainSeparator(), legacy));
        bytes memory s = sig(E1_PK, digest);
        // it recovers to some unrelated address, which is no key of the provider
        vm.expectPartialRevert(AttestationVerifier.UnknownKey.selector);
        market.submitResult(id, _out(1), s);
    }

    /// With `measurement == 0` an enclave that ran another spec (another image, other
    /// arguments) cannot settle: its Result names the spec it ran.
    function test_f7_resultForAnotherSpecIsRefused() public {
        JobRequest memory r = _req(PRICE);
        assertEq(r.measurement, bytes32(0));
        bytes32 id = _matchWith(client, r, _offer(provider1, PRICE));
        bytes32 otherTask = market.hashTask(keccak256("another spec"), r.inputHash);
        bytes memory s = sig(E1_PK, market.resultDigest(id, provider1, otherTask, _out(1)));
        vm.expectRevert();
        market.submitResult(id, _out(1), s);
        bytes32 task = market.hashTask(r.specHash, r.inputHash);
        market.submitResult(id, _out(1), sig(E1_PK, market.resultDigest(id, provider1, task, _out(1))));
        assertEq(uint256(market.jobState(id)), uint256(JobMarket.State.Settled));
    }
}

// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {Fixture} from "../Fixture.sol";
import {JobPoster} from "../../examples/JobPoster.sol";
import {ICapaJobMarket} from "../../examples/ICapaMarket.sol";
import {JobMarket} from "../../src/JobMarket.sol";
import {TeeKind, TcbStatus} from "../../src/CapaTypes.sol";

/// @notice The example integration against the real contracts: it posts, a provider accepts,
/// the enclave's signed result settles the job and the example accepts exactly that result;
/// refunds, cancellations and compensation come back to its owner.
contract JobPosterTest is Fixture {
    JobPoster internal poster;
    address internal owner;

    function setUp() public {
        _deploy(false);
        owner = makeAddr("owner");
        vm.prank(owner);
        poster = new JobPoster(ICapaJobMarket(address(market)));
        vm.deal(address(poster), 10 ether);
    }

    function _post() internal returns (bytes32 jobId) {
        vm.prank(owner);
        jobId = poster.post(
            keccak256("spec"),
            keccak256("input"),
            TeeKind.bit(TeeKind.TDX),
            bytes32(0),
            TcbStatus.UP_TO_DATE,
            PRICE,
            uint64(block.timestamp + 2 hours)
        );
    }

    function _accepted() internal returns (bytes32 jobId) {
        jobId = _post();
        vm.prank(provider1);
        market.acceptJob(jobId, enclave1, MIN_DURATION);
    }

    function _settled(bytes32 out) internal returns (bytes32 jobId, bytes memory signature) {
        jobId = _accepted();
        signature = _signResult(E1_PK, jobId, out);
        market.submitResult(jobId, out, signature);
    }

    function test_post_escrowsFromItsBalance() public {
        bytes32 jobId = _post();
        assertEq(jobId, market.jobIdFor(address(poster), 1));
        assertEq(address(poster).balance, 10 ether - PRICE);
        assertEq(poster.escrowOf(jobId), PRICE);
        assertEq(uint256(market.jobState(jobId)), uint256(JobMarket.State.Posted));
    }

    function test_post_onlyOwner() public {
        vm.expectRevert(abi.encodeWithSelector(JobPoster.NotOwner.selector, stranger));
        vm.prank(stranger);
        poster.post(bytes32(0), bytes32(0), TeeKind.bit(TeeKind.TDX), bytes32(0), 0, PRICE, uint64(block.timestamp + 1 hours));
    }

    function test_acceptResult_recordsTheSettledOutput() public {
        bytes32 out = _out(1);
        (bytes32 jobId, bytes memory signature) = _settled(out);
        vm.expectEmit(address(poster));
        emit JobPoster.ResultAccepted(jobId, out, enclave1);
        vm.prank(stranger); // anyone may hand it in
        poster.acceptResult(jobId, out, signature);
        assertEq(poster.outputOf(jobId), out);
        assertEq(poster.escrowOf(jobId), 0);
    }

    function test_acceptResult_refusesAnotherOutput() public {
        (bytes32 jobId, bytes memory signature) = _settled(_out(1));
        // The signature over output 1 recovers to some other address for output 2.
        vm.expectPartialRevert(JobPoster.KeyNotOfProvider.selector);
        poster.acceptResult(jobId, _out(2), signature);
    }

    function test_acceptResult_refusesAnotherProvidersEnclave() public {
        bytes32 out = _out(1);
        (bytes32 jobId,) = _settled(out);
        bytes memory foreign = _signResult(E2_PK, jobId, out);
        vm.expectRevert(abi.encodeWithSelector(JobPoster.KeyNotOfProvider.selector, enclave2, provider1));
        poster.acceptResult(jobId, out, foreign);
    }

    function test_acceptResult_refusesARevokedKey() public {
        bytes32 out = _out(1);
        (bytes32 jobId, bytes memory signature) = _settled(out);
        vm.prank(gov);
        verifier.revokeKey(enclave1);
        vm.expectRevert(abi.encodeWithSelector(JobPoster.KeyRevoked.selector, enclave1));
        poster.acceptResult(jobId, out, signature);
    }

    function test_acceptResult_onlyOnceOnlySettledOnlyOurs() public {
        bytes32 jobId = _accepted();
        bytes32 out = _out(1);
        bytes memory signature = _signResult(E1_PK, jobId, out);
        vm.expectRevert(
            abi.encodeWithSelector(JobPoster.NotSettled.selector, jobId, uint8(JobMarket.State.Accepted))
        );
        poster.acceptResult(jobId, out, signature);
        market.submitResult(jobId, out, signature);
        poster.acceptResult(jobId, out, signature);
        vm.expectRevert(abi.encodeWithSelector(JobPoster.NotOurJob.selector, jobId));
        poster.acceptResult(jobId, out, signature);

        bytes32 theirs = _match(client, provider1);
        vm.expectRevert(abi.encodeWithSelector(JobPoster.NotOurJob.selector, theirs));
        poster.acceptResult(theirs, out, signature);
    }

    function test_acceptBatchedResult_everyJobOfAnOddBatch() public {
        bytes32[] memory jobIds = new bytes32[](3);
        bytes32[] memory outs = new bytes32[](3);
        for (uint256 i; i < 3; ++i) {
            jobIds[i] = _accepted();
            outs[i] = _out(i);
        }
        bytes memory signature = _signBatch(E1_PK, provider1, jobIds, outs);
        market.submitResults(jobIds, outs, signature);
        bytes32 l0 = _resultLeaf(jobIds[0], outs[0]);
        bytes32 l1 = _resultLeaf(jobIds[1], outs[1]);
        bytes32 l2 = _resultLeaf(jobIds[2], outs[2]);
        bytes32[] memory path = new bytes32[](2);
        (path[0], path[1]) = (l1, l2);
        poster.acceptBatchedResult(jobIds[0], outs[0], 0, 3, path, signature);
        (path[0], path[1]) = (l0, l2);
        poster.acceptBatchedResult(jobIds[1], outs[1], 1, 3, path, signature);
        bytes32[] memory carried = new bytes32[](1);
        carried[0] = keccak256(abi.encodePacked(l0, l1)); // the last leaf is carried up once
        poster.acceptBatchedResult(jobIds[2], outs[2], 2, 3, carried, signature);
        for (uint256 i; i < 3; ++i) assertEq(poster.outputOf(jobIds[i]), outs[i]);
    }

    function test_acceptBatchedResult_refusesAWrongPathOrOutput() public {
        bytes32[] memory jobIds = new bytes32[](2);
        bytes32[] memory outs = new bytes32[](2);
        for (uint256 i; i < 2; ++i) {
            jobIds[i] = _accepted();
            outs[i] = _out(i);
        }
        bytes memory signature = _signBatch(E1_PK, provider1, jobIds, outs);
        market.submitResults(jobIds, outs, signature);
        bytes32[] memory path = new bytes32[](1);
        path[0] = _resultLeaf(jobIds[1], outs[1]);
        vm.expectPartialRevert(JobPoster.KeyNotOfProvider.selector);
        poster.acceptBatchedResult(jobIds[0], _out(9), 0, 2, path, signature);
        bytes32[] memory tooLong = new bytes32[](2);
        tooLong[0] = path[0];
        vm.expectRevert(JobPoster.BadPath.selector);
        poster.acceptBatchedResult(jobIds[0], outs[0], 0, 2, tooLong, signature);
        poster.acceptBatchedResult(jobIds[0], outs[0], 0, 2, path, signature);
    }

    function test_post_refusesAZeroPrice() public {
        vm.expectRevert(JobPoster.ZeroPrice.selector);
        vm.prank(owner);
        poster.post(bytes32(0), bytes32(0), TeeKind.bit(TeeKind.TDX), bytes32(0), 0, 0, uint64(block.timestamp + 1 hours));
    }

    function test_timeout_refundIsReclaimedByTheOwner() public {
        bytes32 jobId = _accepted();
        vm.warp(block.timestamp + 2 hours + 1);
        vm.prank(stranger); // the client (this contract) may claim at once; anyone may trigger it
        poster.claimTimeout(jobId, "");
        assertEq(uint256(market.jobState(jobId)), uint256(JobMarket.State.Refunded));
        poster.reclaim(jobId);
        assertEq(owner.balance, PRICE);
        vm.expectRevert(abi.encodeWithSelector(JobPoster.NotOurJob.selector, jobId));
        poster.reclaim(jobId);
    }

    function test_provenTimeout_compensationGoesToTheOwner() public {
        bytes32 jobId = _accepted();
        bytes memory receipt = _inputReceipt(jobId);
        vm.warp(block.timestamp + 2 hours + 1);
        poster.claimTimeout(jobId, receipt);
        poster.reclaim(jobId);
        poster.claimCompensation();
        assertEq(owner.balance, PRICE + _clientShare(_slash(PRICE)));
    }

    function test_cancelled_andReleased_areReclaimed() public {
        bytes32 posted = _post();
        vm.prank(owner);
        poster.cancel(posted);
        poster.reclaim(posted);
        bytes32 released = _accepted();
        vm.prank(provider1);
        market.releaseJob(released);
        poster.reclaim(released);
        assertEq(owner.balance, 2 * PRICE);
    }

    function test_reclaim_refusesAJobStillOpenOrSettled() public {
        bytes32 jobId = _post();
        vm.expectRevert(
            abi.encodeWithSelector(JobPoster.NotRefunded.selector, jobId, uint8(JobMarket.State.Posted))
        );
        poster.reclaim(jobId);
    }

    function test_refusesATokenMarket() public {
        _deploy(true);
        vm.expectRevert(JobPoster.NotNative.selector);
        new JobPoster(ICapaJobMarket(address(market)));
    }
}

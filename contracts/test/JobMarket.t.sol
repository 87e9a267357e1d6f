// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {Fixture} from "./Fixture.sol";
import {FeeOnTransferERC20} from "./mocks/MockERC20.sol";
import {AttestationVerifier} from "../src/AttestationVerifier.sol";
import {ProviderRegistry} from "../src/ProviderRegistry.sol";
import {JobMarket} from "../src/JobMarket.sol";
import {PaymentToken} from "../src/PaymentToken.sol";
import {IAttestationVerifier} from "../src/interfaces/IAttestationVerifier.sol";
import {IProviderRegistry} from "../src/interfaces/IProviderRegistry.sol";
import {JobRequest, Offer, TeeKind, TcbStatus} from "../src/CapaTypes.sol";

/// @notice Every JobMarket path; runs on a native deployment and on an ERC-20 deployment.
abstract contract JobMarketCases is Fixture {
    uint256 internal constant RANDOM_PK = 0xDEADBEEF;

    function _state(bytes32 id) internal view returns (JobMarket.State) {
        return market.jobState(id);
    }

    function _assertState(bytes32 id, JobMarket.State s) internal view {
        assertEq(uint256(market.jobState(id)), uint256(s), "job state");
    }

    function _mid(uint8 kind, bytes32 m) internal view returns (uint32) {
        return verifier.measurementIdOf(kind, m);
    }

    /// @dev Sends matchJob from `who` with the given signature, funding from the free balance.
    function _matchSigned(address who, JobRequest memory r, Offer memory o, bytes memory s) internal {
        vm.prank(who);
        market.matchJob(r, o, s);
    }

    function _expectMatchRevert(JobRequest memory r, Offer memory o, bytes memory err) internal {
        bytes memory s = _signOffer(o);
        _deposit(client, o.price);
        vm.prank(client);
        vm.expectRevert(err);
        market.matchJob(r, o, s);
    }

    function _submit(bytes32 id, bytes32 out, uint256 pk) internal {
        bytes memory s = _signResult(pk, id, out);
        market.submitResult(id, out, s);
    }

    function _expectSubmitRevert(bytes32 id, bytes32 out, uint256 pk, bytes memory err) internal {
        bytes memory s = _signResult(pk, id, out);
        vm.expectRevert(err);
        market.submitResult(id, out, s);
    }

    // ================================================================== constructor & views

    function test_constructor_params() public view {
        assertEq(address(market.REGISTRY()), address(registry));
        assertEq(address(market.VERIFIER()), address(verifier));
        assertEq(market.FEE_BPS(), FEE_BPS);
        assertEq(market.SLASH_BPS(), SLASH_BPS);
        assertEq(market.SLASH_CLIENT_BPS(), SLASH_CLIENT_BPS);
        assertEq(market.TREASURY(), treasury);
        assertEq(market.MAX_JOB_DURATION(), MAX_JOB);
        assertEq(market.DISPUTE_WINDOW(), DISPUTE);
        assertEq(address(market.TOKEN()), address(token));
    }

    function test_constructor_invalidConfig() public {
        IProviderRegistry reg = IProviderRegistry(address(registry));
        IAttestationVerifier ver = IAttestationVerifier(address(verifier));
        IERC20 t = IERC20(address(token));
        vm.expectRevert(JobMarket.InvalidConfig.selector);
        new JobMarket(t, reg, ver, treasury, 1_001, SLASH_BPS, SLASH_CLIENT_BPS);
        vm.expectRevert(JobMarket.InvalidConfig.selector);
        new JobMarket(t, reg, ver, address(0), FEE_BPS, SLASH_BPS, SLASH_CLIENT_BPS);
        vm.expectRevert(JobMarket.InvalidConfig.selector);
        new JobMarket(t, reg, ver, treasury, FEE_BPS, 10_001, SLASH_CLIENT_BPS);
        vm.expectRevert(JobMarket.InvalidConfig.selector);
        new JobMarket(t, reg, ver, treasury, FEE_BPS, SLASH_BPS, 10_001);
        // the fixture's registry names the fixture's market
        vm.expectRevert(abi.encodeWithSelector(JobMarket.RegistryOfAnotherMarket.selector, address(market)));
        new JobMarket(t, reg, ver, treasury, FEE_BPS, SLASH_BPS, SLASH_CLIENT_BPS);
        ProviderRegistry fresh = _newRegistry(t, MIN_STAKE, MAX_JOB, DISPUTE, UNBONDING);
        JobMarket m = new JobMarket(t, IProviderRegistry(address(fresh)), ver, treasury, 1_000, 10_000, 10_000);
        assertEq(m.FEE_BPS(), 1_000);
    }

    function test_digestsFollowEip712() public {
        bytes32 domain = keccak256(
            abi.encode(
                keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"),
                keccak256("CapaCloud JobMarket"),
                keccak256("1"),
                block.chainid,
                address(market)
            )
        );
        assertEq(market.domainSeparator(), domain);
        Offer memory o = _offer(provider1, PRICE);
        bytes32 oh = keccak256(
            bytes.concat(
                abi.encode(
                    keccak256(
                        "Offer(address provider,address enclaveKey,uint8 teeKind,bytes32 measurement,uint256 price,uint64 minDuration,uint64 maxDuration,uint64 validUntil,bytes32 requestHash,uint256 nonce)"
                    ),
                    o.provider,
                    o.enclaveKey,
                    o.teeKind,
                    o.measurement,
                    o.price
                ),
                abi.encode(o.minDuration, o.maxDuration, o.validUntil, o.requestHash, o.nonce)
            )
        );
        assertEq(market.hashOffer(o), oh);
        assertEq(market.offerDigest(o), keccak256(abi.encodePacked("\x19\x01", domain, oh)));

        // Result and InputReceipt nest Task{specHash, inputHash}: its typehash follows the primary type.
        bytes32 task = keccak256(
            abi.encode(keccak256("Task(bytes32 specHash,bytes32 inputHash)"), bytes32(uint256(7)), bytes32(uint256(2)))
        );
        assertEq(market.hashTask(bytes32(uint256(7)), bytes32(uint256(2))), task);
        bytes32 rh = keccak256(
            abi.encode(
                keccak256(
                    "Result(bytes32 jobId,address provider,Task task,bytes32 outputHash)Task(bytes32 specHash,bytes32 inputHash)"
                ),
                bytes32(uint256(1)),
                provider1,
                task,
                bytes32(uint256(3))
            )
        );
        assertEq(
            market.resultDigest(bytes32(uint256(1)), provider1, task, bytes32(uint256(3))),
            keccak256(abi.encodePacked("\x19\x01", domain, rh))
        );
        bytes32 ih = keccak256(
            abi.encode(
                keccak256("InputReceipt(bytes32 jobId,Task task)Task(bytes32 specHash,bytes32 inputHash)"),
                bytes32(uint256(1)),
                task
            )
        );
        assertEq(market.inputReceiptDigest(bytes32(uint256(1)), task), keccak256(abi.encodePacked("\x19\x01", domain, ih)));
        bytes32 bh = keccak256(
            abi.encode(keccak256("ResultBatch(address provider,bytes32 root,uint256 count)"), provider1, bytes32("r"), 3)
        );
        assertEq(market.resultBatchDigest(provider1, bytes32("r"), 3), keccak256(abi.encodePacked("\x19\x01", domain, bh)));
    }

    function test_jobIdFor() public {
        JobRequest memory r = _req(PRICE);
        bytes32 rh = keccak256(
            abi.encode(
                keccak256(
                    "JobRequest(bytes32 specHash,bytes32 inputHash,uint8 teeKinds,bytes32 measurement,uint8 minTcbStatus,uint256 maxPrice,uint64 deadline,uint256 nonce)"
                ),
                r.specHash,
                r.inputHash,
                r.teeKinds,
                r.measurement,
                r.minTcbStatus,
                r.maxPrice,
                r.deadline,
                r.nonce
            )
        );
        assertEq(market.hashJobRequest(r), rh);
        assertEq(market.requestHashFor(client, r), keccak256(abi.encode(client, rh)));
        assertNotEq(market.requestHashFor(client, r), market.requestHashFor(client2, r));
        assertEq(market.jobIdFor(client, r.nonce), keccak256(abi.encode(client, r.nonce)));
        assertNotEq(market.jobIdFor(client, r.nonce), market.jobIdFor(client2, r.nonce));
    }

    function _rawCallFails(bytes memory data) internal returns (bool) {
        (bool ok, bytes memory ret) = address(market).call(data);
        return !ok && ret.length == 0;
    }

    /// @dev The struct hashes read calldata in place: a narrow field with dirty high bits must be
    /// refused (as the ABI decoder would) so that one message has exactly one hash.
    function test_structHashesRejectDirtyNarrowFields() public {
        Offer memory o = _offer(provider1, PRICE);
        bytes memory clean = abi.encodeCall(JobMarket.hashOffer, (o));
        (bool ok,) = address(market).call(clean);
        assertTrue(ok);
        // provider, enclaveKey, teeKind, minDuration, maxDuration, validUntil
        uint256[6] memory offerWords = [uint256(0), 1, 2, 5, 6, 7];
        for (uint256 i; i < 6; ++i) {
            bytes memory dirty = bytes.concat(clean);
            dirty[4 + 32 * offerWords[i]] = 0x01; // top byte of the word
            assertTrue(_rawCallFails(dirty), "dirty offer field accepted");
        }
        JobRequest memory r = _req(PRICE);
        clean = abi.encodeCall(JobMarket.requestHashFor, (client, r));
        (ok,) = address(market).call(clean);
        assertTrue(ok);
        uint256[3] memory reqWords = [uint256(2), 4, 6]; // teeKinds, minTcbStatus, deadline
        for (uint256 i; i < 3; ++i) {
            bytes memory dirty = bytes.concat(clean);
            dirty[4 + 32 + 32 * reqWords[i]] = 0x01;
            assertTrue(_rawCallFails(dirty), "dirty request field accepted");
        }
    }

    function test_finalJobKeepsStateAndProvider() public {
        bytes32 id = _match(client, provider1);
        _submit(id, _out(1), E1_PK);
        JobMarket.Job memory j = market.getJob(id);
        assertTrue(j.state == JobMarket.State.Settled);
        assertEq(j.provider, provider1);
        assertEq(j.measurementId, _mid(TeeKind.TDX, M1));
        // money fields are cleared once the money has moved
        assertEq(j.price, 0);
        assertEq(j.client, address(0));
    }

    function test_merkleRoot_matchesReference() public view {
        for (uint256 n = 1; n <= 9; ++n) {
            bytes32[] memory leaves = new bytes32[](n);
            for (uint256 i; i < n; ++i) leaves[i] = keccak256(abi.encode(n, i));
            bytes32 expected = _root(leaves);
            assertEq(market.merkleRoot(leaves), expected);
        }
        bytes32[] memory one = new bytes32[](1);
        one[0] = bytes32("leaf");
        assertEq(market.merkleRoot(one), bytes32("leaf"));
        bytes32[] memory three = new bytes32[](3);
        three[0] = bytes32("a");
        three[1] = bytes32("b");
        three[2] = bytes32("c");
        assertEq(
            market.merkleRoot(three),
            keccak256(abi.encodePacked(keccak256(abi.encodePacked(bytes32("a"), bytes32("b"))), bytes32("c")))
        );
    }

    // ================================================================== matchJob

    function test_matchJob_happyPath() public {
        JobRequest memory r = _req(2 * PRICE);
        Offer memory o = _offer(provider1, PRICE);
        bytes32 expectedId = market.jobIdFor(client, r.nonce);
        bytes memory s = _signOffer(o);
        _deposit(client, PRICE);
        uint256 marketBefore = _assetBalance(address(market));

        vm.expectEmit(address(market));
        emit JobMarket.JobMatched(
            expectedId, client, provider1, PRICE, uint64(block.timestamp + 6 hours), r.specHash, r.inputHash
        );
        vm.prank(client);
        bytes32 id = market.matchJob(r, o, s);
        assertEq(id, expectedId);

        JobMarket.Job memory j = market.getJob(id);
        assertEq(j.client, client);
        assertEq(j.price, PRICE);
        assertEq(j.provider, provider1);
        assertEq(j.deadline, block.timestamp + 6 hours); // capped by offer.maxDuration
        assertTrue(j.state == JobMarket.State.Accepted);
        assertEq(j.teeKinds, TeeKind.bit(TeeKind.TDX));
        assertEq(j.minTcbStatus, TcbStatus.UP_TO_DATE);
        assertEq(j.measurementId, _mid(TeeKind.TDX, M1));
        assertEq(j.taskHash, market.hashTask(r.specHash, r.inputHash));
        assertEq(market.balanceOf(client), 0);
        assertEq(market.lockedStakeOf(provider1), _slash(PRICE));
        assertEq(_assetBalance(address(market)), marketBefore);
        assertTrue(market.isNonceUsed(provider1, o.nonce));
    }

    function test_matchJob_fundedFromFreeBalance() public {
        _deposit(client, 3 * PRICE);
        JobRequest memory r = _req(PRICE);
        Offer memory o = _offer(provider1, PRICE);
        bytes memory s = _signOffer(o);
        _matchSigned(client, r, o, s);
        assertEq(market.balanceOf(client), 2 * PRICE);
        assertEq(_assetBalance(address(market)), 3 * PRICE);
    }

    function test_matchJob_insufficientBalance() public {
        _deposit(client, PRICE / 2);
        JobRequest memory r = _req(PRICE);
        Offer memory o = _offer(provider1, PRICE);
        bytes memory s = _signOffer(o);
        vm.prank(client);
        vm.expectRevert(abi.encodeWithSelector(JobMarket.InsufficientBalance.selector, PRICE, PRICE / 2));
        market.matchJob(r, o, s);
        assertFalse(market.isNonceUsed(provider1, o.nonce));
    }

    function test_matchJob_jobExists() public {
        JobRequest memory r = _req(PRICE);
        bytes32 id = _matchWith(client, r, _offer(provider1, PRICE));
        // the same request again, even with a fresh offer from another provider
        _expectMatchRevert(r, _offer(provider2, PRICE), abi.encodeWithSelector(JobMarket.JobExists.selector, id));
        // another request under the same nonce is the same job: the nonce names it
        JobRequest memory other = _req(PRICE);
        other.nonce = r.nonce;
        _expectMatchRevert(other, _offer(provider2, PRICE), abi.encodeWithSelector(JobMarket.JobExists.selector, id));
        // another client may send the same request: a different job
        bytes32 id2 = _matchWith(client2, r, _offer(provider2, PRICE));
        assertNotEq(id, id2);
    }

    function test_matchJob_offerBoundToRequest() public {
        JobRequest memory r = _req(PRICE);
        Offer memory o = _offer(provider1, PRICE);
        o.requestHash = market.requestHashFor(client, r);
        bytes32 id = _matchWith(client, r, o);
        assertEq(id, market.jobIdFor(client, r.nonce));
    }

    function test_matchJob_boundOfferDoesNotSpendNonce() public {
        JobRequest memory r = _req(PRICE);
        Offer memory o = _offer(provider1, PRICE);
        o.requestHash = market.requestHashFor(client, r);
        _matchWith(client, r, o);
        // the quote cannot be replayed: its job now exists
        _expectMatchRevert(r, o, abi.encodeWithSelector(JobMarket.JobExists.selector, market.jobIdFor(client, r.nonce)));
    }

    function test_matchJob_boundOfferHonoursCancelledNonce() public {
        JobRequest memory r = _req(PRICE);
        Offer memory o = _offer(provider1, PRICE);
        o.requestHash = market.requestHashFor(client, r);
        vm.prank(provider1);
        market.invalidateNonces(o.nonce >> 8, 1 << (o.nonce & 0xff));
        _expectMatchRevert(r, o, abi.encodeWithSelector(JobMarket.NonceUsed.selector, provider1, o.nonce));
    }

    function test_matchJob_offerForAnotherRequest() public {
        JobRequest memory r = _req(PRICE);
        Offer memory o = _offer(provider1, PRICE);
        o.requestHash = keccak256("other request");
        _expectMatchRevert(
            r,
            o,
            abi.encodeWithSelector(
                JobMarket.OfferForAnotherRequest.selector, o.requestHash, market.requestHashFor(client, r)
            )
        );
        // an offer quoted for client's job cannot be taken by client2 with the same request
        o.requestHash = market.requestHashFor(client, r);
        bytes memory s = _signOffer(o);
        bytes memory err = abi.encodeWithSelector(
            JobMarket.OfferForAnotherRequest.selector, o.requestHash, market.requestHashFor(client2, r)
        );
        _deposit(client2, PRICE);
        vm.prank(client2);
        vm.expectRevert(err);
        market.matchJob(r, o, s);
    }

    function test_matchJob_offerExpired() public {
        JobRequest memory r = _req(PRICE);
        Offer memory o = _offer(provider1, PRICE);
        r.deadline = uint64(o.validUntil + 1 days);
        vm.warp(o.validUntil + 1);
        _expectMatchRevert(r, o, abi.encodeWithSelector(JobMarket.OfferExpired.selector, o.validUntil));
        vm.warp(o.validUntil); // still valid at validUntil
        _matchWith(client, r, o);
    }

    function test_matchJob_priceAboveMax() public {
        JobRequest memory r = _req(PRICE - 1);
        Offer memory o = _offer(provider1, PRICE);
        _expectMatchRevert(r, o, abi.encodeWithSelector(JobMarket.PriceAboveMax.selector, PRICE, PRICE - 1));
    }

    function test_matchJob_kindNotAccepted() public {
        JobRequest memory r = _req(PRICE);
        Offer memory o = _offer(provider1, PRICE);
        o.teeKind = TeeKind.SGX;
        o.measurement = M_SGX;
        _expectMatchRevert(
            r, o, abi.encodeWithSelector(JobMarket.KindNotAccepted.selector, TeeKind.SGX, r.teeKinds)
        );
        // kind 0 is never a kind, even if the request sets bit 0
        r.teeKinds = 0x07;
        o.teeKind = 0;
        _expectMatchRevert(r, o, abi.encodeWithSelector(JobMarket.KindNotAccepted.selector, 0, 0x07));
    }

    function test_matchJob_deadlinePassed() public {
        JobRequest memory r = _req(PRICE);
        r.deadline = uint64(block.timestamp);
        Offer memory o = _offer(provider1, PRICE);
        _expectMatchRevert(r, o, abi.encodeWithSelector(JobMarket.DeadlinePassed.selector, r.deadline));
    }

    function test_matchJob_deadlineCappedByMaxJobDuration() public {
        JobRequest memory r = _req(PRICE);
        r.deadline = uint64(block.timestamp + 5 days);
        Offer memory o = _offer(provider1, PRICE);
        o.maxDuration = 10 days;
        bytes32 id = _matchWith(client, r, o);
        assertEq(market.getJob(id).deadline, block.timestamp + MAX_JOB);
    }

    function test_matchJob_deadlineFromRequestWhenEarlier() public {
        JobRequest memory r = _req(PRICE);
        r.deadline = uint64(block.timestamp + 1 hours);
        Offer memory o = _offer(provider1, PRICE);
        bytes32 id = _matchWith(client, r, o);
        assertEq(market.getJob(id).deadline, r.deadline);
    }

    function test_matchJob_badOfferSignature_wrongSigner() public {
        JobRequest memory r = _req(PRICE);
        Offer memory o = _offer(provider1, PRICE);
        bytes memory s = _signOffer(o, P2_PK);
        _deposit(client, PRICE);
        vm.prank(client);
        vm.expectRevert(abi.encodeWithSelector(JobMarket.BadOfferSignature.selector, provider2, provider1));
        market.matchJob(r, o, s);
    }

    function test_matchJob_badOfferSignature_tamperedOffer() public {
        JobRequest memory r = _req(PRICE);
        Offer memory o = _offer(provider1, PRICE);
        bytes memory s = _signOffer(o);
        o.price = PRICE / 2; // the client lowers the signed price
        _deposit(client, PRICE);
        vm.prank(client);
        vm.expectPartialRevert(JobMarket.BadOfferSignature.selector);
        market.matchJob(r, o, s);
    }

    function test_matchJob_malformedSignature() public {
        JobRequest memory r = _req(PRICE);
        Offer memory o = _offer(provider1, PRICE);
        _deposit(client, PRICE);
        vm.prank(client);
        vm.expectRevert(abi.encodeWithSelector(ECDSA.ECDSAInvalidSignatureLength.selector, 64));
        market.matchJob(r, o, new bytes(64));
    }

    function test_matchJob_replayedNonce() public {
        Offer memory o = _offer(provider1, PRICE);
        _matchWith(client, _req(PRICE), o);
        // the same signed offer for another request
        _expectMatchRevert(_req(PRICE), o, abi.encodeWithSelector(JobMarket.NonceUsed.selector, provider1, o.nonce));
        // a nonce is per provider: provider2 may use the same number
        Offer memory o2 = _offer(provider2, PRICE);
        o2.nonce = o.nonce;
        _matchWith(client, _req(PRICE), o2);
    }

    function test_matchJob_invalidatedNonce() public {
        Offer memory o = _offer(provider1, PRICE);
        o.nonce = (5 << 8) | 17; // word 5, bit 17
        assertFalse(market.isNonceUsed(provider1, o.nonce));
        vm.expectEmit(address(market));
        emit JobMarket.NoncesInvalidated(provider1, 5, 1 << 17);
        vm.prank(provider1);
        market.invalidateNonces(5, 1 << 17);
        assertTrue(market.isNonceUsed(provider1, o.nonce));
        assertFalse(market.isNonceUsed(provider1, o.nonce + 1));
        assertEq(market.nonceBitmap(provider1, 5), 1 << 17);
        _expectMatchRevert(_req(PRICE), o, abi.encodeWithSelector(JobMarket.NonceUsed.selector, provider1, o.nonce));
    }

    function test_invalidateNonces_onlyOwnBitmap() public {
        vm.prank(stranger);
        market.invalidateNonces(0, type(uint256).max);
        Offer memory o = _offer(provider1, PRICE);
        assertFalse(market.isNonceUsed(provider1, o.nonce));
        _matchWith(client, _req(PRICE), o);
    }

    function test_matchJob_providerNotEligible_jailed() public {
        vm.prank(gov);
        registry.jail(provider1);
        _expectMatchRevert(
            _req(PRICE), _offer(provider1, PRICE), abi.encodeWithSelector(JobMarket.ProviderNotEligible.selector, provider1)
        );
    }

    function test_matchJob_providerNotEligible_exitedOrUnderstaked() public {
        vm.prank(provider1);
        registry.requestUnbond(STAKE - MIN_STAKE + 1);
        _expectMatchRevert(
            _req(PRICE), _offer(provider1, PRICE), abi.encodeWithSelector(JobMarket.ProviderNotEligible.selector, provider1)
        );
        vm.prank(provider2);
        registry.exit();
        _expectMatchRevert(
            _req(PRICE), _offer(provider2, PRICE), abi.encodeWithSelector(JobMarket.ProviderNotEligible.selector, provider2)
        );
    }

    function test_matchJob_unregisteredSigner() public {
        uint256 pk = 0x5151;
        address p = vm.addr(pk);
        JobRequest memory r = _req(PRICE);
        Offer memory o = _offer(p, PRICE);
        bytes memory s = _signOffer(o, pk);
        _deposit(client, PRICE);
        vm.prank(client);
        vm.expectRevert(abi.encodeWithSelector(JobMarket.ProviderNotEligible.selector, p));
        market.matchJob(r, o, s);
    }

    function test_matchJob_measurementNotAllowed() public {
        Offer memory o = _offer(provider1, PRICE);
        o.measurement = keccak256("unapproved");
        _expectMatchRevert(
            _req(PRICE),
            o,
            abi.encodeWithSelector(AttestationVerifier.MeasurementNotAllowed.selector, TeeKind.TDX, o.measurement)
        );
    }

    function test_matchJob_measurementRevoked() public {
        vm.prank(gov);
        verifier.revokeMeasurement(TeeKind.TDX, M1);
        _expectMatchRevert(
            _req(PRICE),
            _offer(provider1, PRICE),
            abi.encodeWithSelector(AttestationVerifier.MeasurementRevoked.selector, _mid(TeeKind.TDX, M1))
        );
    }

    function test_matchJob_measurementMismatch() public {
        JobRequest memory r = _req(PRICE);
        r.measurement = M2;
        _expectMatchRevert(
            r, _offer(provider1, PRICE), abi.encodeWithSelector(JobMarket.MeasurementMismatch.selector, 0, _mid(2, M1))
        );
        r.measurement = M1;
        bytes32 id = _matchWith(client, r, _offer(provider1, PRICE));
        assertEq(market.getJob(id).measurementId, _mid(TeeKind.TDX, M1));
    }

    // ================================================================== postJob

    function test_postJob_happyPath() public {
        JobRequest memory r = _req(2 * PRICE);
        r.teeKinds = TeeKind.bit(TeeKind.TDX) | TeeKind.bit(TeeKind.SGX);
        bytes32 expectedId = market.jobIdFor(client, r.nonce);
        _give(client, 2 * PRICE);
        if (!_isNative()) {
            vm.prank(client);
            market.deposit(2 * PRICE);
        }
        vm.expectEmit(address(market));
        emit JobMarket.JobPosted(
            expectedId, client, r.specHash, r.inputHash, r.teeKinds, bytes32(0), r.minTcbStatus, r.maxPrice, r.deadline
        );
        vm.prank(client);
        bytes32 id = market.postJob{value: _isNative() ? 2 * PRICE : 0}(r);
        assertEq(id, expectedId);
        JobMarket.Job memory j = market.getJob(id);
        assertEq(j.client, client);
        assertEq(j.price, 2 * PRICE);
        assertEq(j.provider, address(0));
        assertEq(j.deadline, r.deadline);
        assertTrue(j.state == JobMarket.State.Posted);
        assertEq(j.teeKinds, r.teeKinds);
        assertEq(j.measurementId, 0);
        assertEq(market.balanceOf(client), 0);
        assertEq(_assetBalance(address(market)), 2 * PRICE);
    }

    function test_postJob_withMeasurement() public {
        JobRequest memory r = _req(PRICE);
        r.measurement = M2;
        bytes32 id = _postPaid(client, r);
        assertEq(market.getJob(id).measurementId, _mid(TeeKind.TDX, M2));
    }

    function _expectPostRevert(JobRequest memory r, bytes memory err) internal {
        _deposit(client, r.maxPrice);
        vm.prank(client);
        vm.expectRevert(err);
        market.postJob(r);
    }

    function test_postJob_reverts() public {
        JobRequest memory r = _req(PRICE);
        bytes32 id = _postPaid(client, r);
        _expectPostRevert(r, abi.encodeWithSelector(JobMarket.JobExists.selector, id));

        r = _req(PRICE);
        r.deadline = uint64(block.timestamp);
        _expectPostRevert(r, abi.encodeWithSelector(JobMarket.DeadlinePassed.selector, r.deadline));

        uint8[4] memory badMasks = [uint8(0), 0x01, 0x80, 0x83];
        for (uint256 i; i < 4; ++i) {
            r = _req(PRICE);
            r.teeKinds = badMasks[i];
            _expectPostRevert(r, abi.encodeWithSelector(JobMarket.KindNotAccepted.selector, 0, badMasks[i]));
        }
    }

    function test_postJob_ambiguousMeasurement() public {
        JobRequest memory r = _req(PRICE);
        r.teeKinds = TeeKind.bit(TeeKind.TDX) | TeeKind.bit(TeeKind.SGX);
        r.measurement = M1;
        _expectPostRevert(r, abi.encodeWithSelector(JobMarket.AmbiguousMeasurement.selector, r.teeKinds));
    }

    function test_postJob_measurementNotAllowed() public {
        JobRequest memory r = _req(PRICE);
        r.teeKinds = TeeKind.bit(TeeKind.SGX);
        r.measurement = M1; // approved for TDX, not SGX
        _expectPostRevert(
            r, abi.encodeWithSelector(AttestationVerifier.MeasurementNotAllowed.selector, TeeKind.SGX, M1)
        );
    }

    function test_postJob_insufficientBalance() public {
        JobRequest memory r = _req(PRICE);
        vm.prank(client);
        vm.expectRevert(abi.encodeWithSelector(JobMarket.InsufficientBalance.selector, PRICE, 0));
        market.postJob(r);
    }

    // ================================================================== acceptJob

    function test_acceptJob_happyPath() public {
        bytes32 id = _postPaid(client, _req(PRICE));
        vm.expectEmit(address(market));
        emit JobMarket.JobAccepted(id, provider1);
        vm.prank(provider1);
        market.acceptJob(id, enclave1, MIN_DURATION);
        JobMarket.Job memory j = market.getJob(id);
        assertEq(j.provider, provider1);
        assertTrue(j.state == JobMarket.State.Accepted);
        // and it settles with that key
        _submit(id, _out(1), E1_PK);
        assertEq(market.balanceOf(provider1), PRICE - _fee(PRICE));
    }

    function test_acceptJob_multiKindAcceptsEitherKind() public {
        JobRequest memory r = _req(PRICE);
        r.teeKinds = TeeKind.bit(TeeKind.TDX) | TeeKind.bit(TeeKind.SGX);
        r.minTcbStatus = TcbStatus.SW_HARDENING_NEEDED;
        bytes32 id = _postPaid(client, r);
        vm.prank(provider1);
        market.acceptJob(id, enclave3, MIN_DURATION); // SGX key
        _submit(id, _out(1), E3_PK);
        _assertState(id, JobMarket.State.Settled);
    }

    function _expectAcceptRevert(bytes32 id, address p, address key, bytes memory err) internal {
        vm.prank(p);
        vm.expectRevert(err);
        market.acceptJob(id, key, MIN_DURATION);
    }

    function test_acceptJob_wrongState() public {
        bytes32 unknown = keccak256("nope");
        _expectAcceptRevert(
            unknown, provider1, enclave1, abi.encodeWithSelector(JobMarket.WrongState.selector, unknown, 0)
        );
        bytes32 id = _postPaid(client, _req(PRICE));
        vm.prank(provider1);
        market.acceptJob(id, enclave1, MIN_DURATION);
        _expectAcceptRevert(
            id, provider2, enclave2, abi.encodeWithSelector(JobMarket.WrongState.selector, id, JobMarket.State.Accepted)
        );
        bytes32 matched = _match(client, provider1);
        _expectAcceptRevert(
            matched,
            provider2,
            enclave2,
            abi.encodeWithSelector(JobMarket.WrongState.selector, matched, JobMarket.State.Accepted)
        );
    }

    function test_acceptJob_deadlinePassed() public {
        JobRequest memory r = _req(PRICE);
        bytes32 id = _postPaid(client, r);
        vm.warp(r.deadline);
        _expectAcceptRevert(id, provider1, enclave1, abi.encodeWithSelector(JobMarket.DeadlinePassed.selector, r.deadline));
    }

    function test_acceptJob_deadlineTooFar() public {
        JobRequest memory r = _req(PRICE);
        r.deadline = uint64(block.timestamp + 2 days);
        bytes32 id = _postPaid(client, r);
        _expectAcceptRevert(
            id,
            provider1,
            enclave1,
            abi.encodeWithSelector(JobMarket.DeadlineTooFar.selector, r.deadline, uint64(block.timestamp + MAX_JOB))
        );
        vm.warp(block.timestamp + 1 days);
        vm.prank(provider1);
        market.acceptJob(id, enclave1, MIN_DURATION);
        _assertState(id, JobMarket.State.Accepted);
    }

    function test_acceptJob_providerNotEligible() public {
        bytes32 id = _postPaid(client, _req(PRICE));
        _expectAcceptRevert(
            id, stranger, enclave1, abi.encodeWithSelector(JobMarket.ProviderNotEligible.selector, stranger)
        );
        vm.prank(gov);
        registry.jail(provider1);
        _expectAcceptRevert(
            id, provider1, enclave1, abi.encodeWithSelector(JobMarket.ProviderNotEligible.selector, provider1)
        );
    }

    function test_acceptJob_keyOfWrongKind() public {
        bytes32 id = _postPaid(client, _req(PRICE)); // TDX only
        _expectAcceptRevert(
            id,
            provider1,
            enclave3,
            abi.encodeWithSelector(JobMarket.KindNotAccepted.selector, TeeKind.SGX, TeeKind.bit(TeeKind.TDX))
        );
    }

    function test_acceptJob_keyOfWrongMeasurement() public {
        JobRequest memory r = _req(PRICE);
        r.measurement = M2;
        bytes32 id = _postPaid(client, r);
        _expectAcceptRevert(
            id,
            provider1,
            enclave1,
            abi.encodeWithSelector(JobMarket.MeasurementMismatch.selector, _mid(2, M2), _mid(2, M1))
        );
    }

    function test_acceptJob_tcbTooLow() public {
        JobRequest memory r = _req(PRICE);
        r.teeKinds = TeeKind.bit(TeeKind.SGX);
        bytes32 id = _postPaid(client, r); // wants UP_TO_DATE
        _expectAcceptRevert(
            id,
            provider1,
            enclave3,
            abi.encodeWithSelector(
                JobMarket.TcbTooLow.selector, TcbStatus.SW_HARDENING_NEEDED, TcbStatus.UP_TO_DATE
            )
        );
    }

    function test_acceptJob_keyOfAnotherProvider() public {
        bytes32 id = _postPaid(client, _req(PRICE));
        _expectAcceptRevert(
            id,
            provider1,
            enclave2,
            abi.encodeWithSelector(AttestationVerifier.KeyOfAnotherProvider.selector, enclave2, provider1)
        );
    }

    function test_acceptJob_unknownOrRevokedKey() public {
        bytes32 id = _postPaid(client, _req(PRICE));
        address rnd = vm.addr(RANDOM_PK);
        _expectAcceptRevert(id, provider1, rnd, abi.encodeWithSelector(AttestationVerifier.UnknownKey.selector, rnd));
        vm.prank(provider1);
        verifier.revokeKey(enclave1);
        _expectAcceptRevert(
            id, provider1, enclave1, abi.encodeWithSelector(AttestationVerifier.KeyRevoked.selector, enclave1)
        );
    }

    // ================================================================== cancelJob

    function test_cancelJob() public {
        bytes32 id = _postPaid(client, _req(PRICE));
        vm.expectEmit(address(market));
        emit JobMarket.JobCancelled(id, client, PRICE);
        vm.prank(client);
        market.cancelJob(id);
        _assertState(id, JobMarket.State.Cancelled);
        assertEq(market.balanceOf(client), PRICE);
        // terminal: cannot cancel twice, accept or settle
        vm.prank(client);
        vm.expectRevert(abi.encodeWithSelector(JobMarket.WrongState.selector, id, JobMarket.State.Cancelled));
        market.cancelJob(id);
        _expectAcceptRevert(
            id, provider1, enclave1, abi.encodeWithSelector(JobMarket.WrongState.selector, id, JobMarket.State.Cancelled)
        );
        vm.prank(client);
        market.withdraw(PRICE, client);
        assertEq(_assetBalance(client), PRICE);
    }

    function test_cancelJob_reverts() public {
        bytes32 id = _postPaid(client, _req(PRICE));
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(JobMarket.NotClient.selector, stranger));
        market.cancelJob(id);

        bytes32 unknown = keccak256("x");
        vm.prank(client);
        vm.expectRevert(abi.encodeWithSelector(JobMarket.WrongState.selector, unknown, JobMarket.State.None));
        market.cancelJob(unknown);

        vm.prank(provider1);
        market.acceptJob(id, enclave1, MIN_DURATION);
        vm.prank(client);
        vm.expectRevert(abi.encodeWithSelector(JobMarket.WrongState.selector, id, JobMarket.State.Accepted));
        market.cancelJob(id);
    }

    // ================================================================== submitResult

    function test_submitResult_happyPath() public {
        bytes32 id = _match(client, provider1);
        bytes memory s = _signResult(E1_PK, id, _out(1));
        uint256 fee = _fee(PRICE);
        vm.expectEmit(address(market));
        emit JobMarket.JobSettled(id, provider1, enclave1, _out(1), PRICE - fee);
        vm.prank(stranger); // anyone may relay
        market.submitResult(id, _out(1), s);
        _assertState(id, JobMarket.State.Settled);
        assertEq(market.balanceOf(provider1), PRICE - fee);
        assertEq(market.feesAccrued(), fee);
        assertEq(market.balanceOf(stranger), 0);
        assertEq(_assetBalance(address(market)), PRICE);

        vm.prank(provider1);
        market.withdraw(PRICE - fee, provider1);
        assertEq(_assetBalance(provider1), PRICE - fee);
        vm.prank(treasury);
        market.withdrawFees();
        assertEq(_assetBalance(treasury), fee);
        assertEq(_assetBalance(address(market)), 0);
    }

    function test_submitResult_atDeadline() public {
        bytes32 id = _match(client, provider1);
        vm.warp(market.getJob(id).deadline);
        _submit(id, _out(1), E1_PK);
        _assertState(id, JobMarket.State.Settled);
    }

    function test_submitResult_randomKey() public {
        bytes32 id = _match(client, provider1);
        _expectSubmitRevert(
            id, _out(1), RANDOM_PK, abi.encodeWithSelector(AttestationVerifier.UnknownKey.selector, vm.addr(RANDOM_PK))
        );
    }

    function test_submitResult_signatureOverOtherOutput() public {
        bytes32 id = _match(client, provider1);
        bytes memory s = _signResult(E1_PK, id, _out(1));
        vm.expectPartialRevert(AttestationVerifier.UnknownKey.selector);
        market.submitResult(id, _out(2), s);
        _assertState(id, JobMarket.State.Accepted);
    }

    function test_submitResult_signatureForAnotherJob() public {
        bytes32 id1 = _match(client, provider1);
        bytes32 id2 = _match(client, provider1);
        bytes memory s = _signResult(E1_PK, id1, _out(1));
        vm.expectPartialRevert(AttestationVerifier.UnknownKey.selector);
        market.submitResult(id2, _out(1), s);
    }

    function test_submitResult_malformedSignature() public {
        bytes32 id = _match(client, provider1);
        vm.expectRevert(abi.encodeWithSelector(ECDSA.ECDSAInvalidSignatureLength.selector, 0));
        market.submitResult(id, _out(1), "");
    }

    function test_submitResult_anotherProvidersKey() public {
        bytes32 id = _match(client, provider1);
        _expectSubmitRevert(
            id,
            _out(1),
            E2_PK,
            abi.encodeWithSelector(AttestationVerifier.KeyOfAnotherProvider.selector, enclave2, provider1)
        );
    }

    function test_submitResult_revokedMeasurement() public {
        bytes32 id = _match(client, provider1);
        vm.prank(gov);
        verifier.revokeMeasurement(TeeKind.TDX, M1);
        _expectSubmitRevert(
            id,
            _out(1),
            E1_PK,
            abi.encodeWithSelector(AttestationVerifier.MeasurementRevoked.selector, _mid(TeeKind.TDX, M1))
        );
    }

    function test_submitResult_expiredMeasurement() public {
        bytes32 id = _match(client, provider1);
        uint40 notAfter = uint40(block.timestamp + 1 hours);
        vm.prank(gov);
        verifier.approveMeasurement(TeeKind.TDX, M1, notAfter);
        vm.warp(notAfter);
        _expectSubmitRevert(
            id,
            _out(1),
            E1_PK,
            abi.encodeWithSelector(AttestationVerifier.MeasurementExpired.selector, _mid(TeeKind.TDX, M1), notAfter)
        );
    }

    function test_submitResult_expiredKey() public {
        uint256 pk = 0xE9;
        address key = vm.addr(pk);
        uint64 exp = uint64(block.timestamp + 2 hours);
        _registerKey(verifier, _att(provider1, key, TeeKind.TDX, M1, TcbStatus.UP_TO_DATE, exp));
        bytes32 id = _match(client, provider1);
        vm.warp(exp);
        _expectSubmitRevert(
            id, _out(1), pk, abi.encodeWithSelector(AttestationVerifier.KeyExpired.selector, key, uint40(exp))
        );
        // another, valid key of the same provider still settles
        _submit(id, _out(1), E1_PK);
        _assertState(id, JobMarket.State.Settled);
    }

    function test_submitResult_revokedKey() public {
        bytes32 id = _match(client, provider1);
        vm.prank(provider1);
        verifier.revokeKey(enclave1);
        _expectSubmitRevert(
            id, _out(1), E1_PK, abi.encodeWithSelector(AttestationVerifier.KeyRevoked.selector, enclave1)
        );
    }

    function test_submitResult_wrongKindKey() public {
        bytes32 id = _match(client, provider1); // TDX job
        _expectSubmitRevert(
            id,
            _out(1),
            E3_PK,
            abi.encodeWithSelector(JobMarket.KindNotAccepted.selector, TeeKind.SGX, TeeKind.bit(TeeKind.TDX))
        );
    }

    function test_submitResult_measurementMismatch() public {
        uint256 m2Pk = 0xE52;
        _registerKey(verifier, _att(provider1, vm.addr(m2Pk), TeeKind.TDX, M2, TcbStatus.UP_TO_DATE, T0 + 365 days));
        Offer memory o = _offer(provider1, PRICE);
        o.enclaveKey = vm.addr(m2Pk);
        o.measurement = M2; // matched to the M2 image; the M1 enclave cannot settle it
        bytes32 id = _matchWith(client, _req(PRICE), o);
        _expectSubmitRevert(
            id, _out(1), E1_PK, abi.encodeWithSelector(JobMarket.MeasurementMismatch.selector, _mid(2, M2), _mid(2, M1))
        );
        _submit(id, _out(1), m2Pk);
    }

    function test_matchJob_offerKeyBelowRequestedTcb() public {
        JobRequest memory r = _req(PRICE);
        r.teeKinds = TeeKind.bit(TeeKind.SGX); // minTcb UP_TO_DATE
        Offer memory o = _offer(provider1, PRICE);
        o.enclaveKey = enclave3; // SW_HARDENING_NEEDED
        o.teeKind = TeeKind.SGX;
        o.measurement = M_SGX;
        _expectMatchRevert(
            r,
            o,
            abi.encodeWithSelector(JobMarket.TcbTooLow.selector, TcbStatus.SW_HARDENING_NEEDED, TcbStatus.UP_TO_DATE)
        );
    }

    function test_submitResult_tcbTooLow() public {
        // Matched with an up-to-date key; signed by another key of the provider below the floor.
        uint256 lowPk = 0xE56;
        _registerKey(
            verifier, _att(provider1, vm.addr(lowPk), TeeKind.TDX, M1, TcbStatus.SW_HARDENING_NEEDED, T0 + 365 days)
        );
        bytes32 id = _match(client, provider1);
        _expectSubmitRevert(
            id,
            _out(1),
            lowPk,
            abi.encodeWithSelector(
                JobMarket.TcbTooLow.selector, TcbStatus.SW_HARDENING_NEEDED, TcbStatus.UP_TO_DATE
            )
        );
    }

    function test_submitResult_doubleSettlement() public {
        bytes32 id = _match(client, provider1);
        bytes memory s = _signResult(E1_PK, id, _out(1));
        market.submitResult(id, _out(1), s);
        vm.expectRevert(abi.encodeWithSelector(JobMarket.WrongState.selector, id, JobMarket.State.Settled));
        market.submitResult(id, _out(1), s);
        // nor via a batch
        bytes32[] memory ids = new bytes32[](1);
        bytes32[] memory outs = new bytes32[](1);
        ids[0] = id;
        outs[0] = _out(1);
        bytes memory bs = _signBatch(E1_PK, provider1, ids, outs);
        vm.expectRevert(abi.encodeWithSelector(JobMarket.WrongState.selector, id, JobMarket.State.Settled));
        market.submitResults(ids, outs, bs);
        assertEq(market.balanceOf(provider1), PRICE - _fee(PRICE));
    }

    function test_submitResult_deadlinePassed() public {
        bytes32 id = _match(client, provider1);
        uint40 deadline = market.getJob(id).deadline;
        vm.warp(deadline + 1);
        _expectSubmitRevert(id, _out(1), E1_PK, abi.encodeWithSelector(JobMarket.DeadlinePassed.selector, deadline));
    }

    function test_submitResult_wrongState() public {
        bytes32 id = _postPaid(client, _req(PRICE));
        vm.expectRevert(abi.encodeWithSelector(JobMarket.WrongState.selector, id, JobMarket.State.Posted));
        market.submitResult(id, _out(1), "");
        bytes32 unknown = keccak256("unknown");
        vm.expectRevert(abi.encodeWithSelector(JobMarket.WrongState.selector, unknown, JobMarket.State.None));
        market.submitResult(unknown, _out(1), "");
    }

    // ================================================================== submitResults

    function _batch(uint256 n) internal returns (bytes32[] memory ids, bytes32[] memory outs) {
        ids = new bytes32[](n);
        outs = new bytes32[](n);
        for (uint256 i; i < n; ++i) {
            ids[i] = _match(client, provider1);
            outs[i] = _out(i);
        }
    }

    function _settleBatchOf(uint256 n) internal {
        (bytes32[] memory ids, bytes32[] memory outs) = _batch(n);
        bytes memory s = _signBatch(E1_PK, provider1, ids, outs);
        uint256 fee = _fee(PRICE);
        for (uint256 i; i < n; ++i) {
            vm.expectEmit(address(market));
            emit JobMarket.JobSettled(ids[i], provider1, enclave1, outs[i], PRICE - fee);
        }
        vm.prank(stranger);
        market.submitResults(ids, outs, s);
        for (uint256 i; i < n; ++i) _assertState(ids[i], JobMarket.State.Settled);
        assertEq(market.balanceOf(provider1), n * (PRICE - fee));
        assertEq(market.feesAccrued(), n * fee);
    }

    function test_submitResults_n1() public {
        _settleBatchOf(1);
    }

    function test_submitResults_n2() public {
        _settleBatchOf(2);
    }

    function test_submitResults_n3() public {
        _settleBatchOf(3);
    }

    function test_submitResults_n5() public {
        _settleBatchOf(5);
    }

    function test_submitResults_n8() public {
        _settleBatchOf(8);
    }

    function test_submitResults_orderMatters() public {
        (bytes32[] memory ids, bytes32[] memory outs) = _batch(3);
        bytes memory s = _signBatch(E1_PK, provider1, ids, outs);
        (ids[0], ids[1]) = (ids[1], ids[0]);
        (outs[0], outs[1]) = (outs[1], outs[0]);
        vm.expectPartialRevert(AttestationVerifier.UnknownKey.selector);
        market.submitResults(ids, outs, s);
    }

    function test_submitResults_countIsSigned() public {
        (bytes32[] memory ids, bytes32[] memory outs) = _batch(2);
        bytes32[] memory leaves = new bytes32[](2);
        leaves[0] = _resultLeaf(ids[0], outs[0]);
        leaves[1] = _resultLeaf(ids[1], outs[1]);
        bytes memory s = sig(E1_PK, market.resultBatchDigest(provider1, _root(leaves), 3));
        vm.expectPartialRevert(AttestationVerifier.UnknownKey.selector);
        market.submitResults(ids, outs, s);
    }

    function test_submitResults_subsetOfSignedBatchRefused() public {
        (bytes32[] memory ids, bytes32[] memory outs) = _batch(2);
        bytes memory s = _signBatch(E1_PK, provider1, ids, outs);
        bytes32[] memory one = new bytes32[](1);
        bytes32[] memory oneOut = new bytes32[](1);
        one[0] = ids[0];
        oneOut[0] = outs[0];
        vm.expectPartialRevert(AttestationVerifier.UnknownKey.selector);
        market.submitResults(one, oneOut, s);
    }

    function test_submitResults_mixedProviders() public {
        bytes32[] memory ids = new bytes32[](2);
        bytes32[] memory outs = new bytes32[](2);
        ids[0] = _match(client, provider1);
        ids[1] = _match(client, provider2);
        outs[0] = _out(0);
        outs[1] = _out(1);
        vm.expectRevert(abi.encodeWithSelector(JobMarket.MixedProviders.selector, ids[1], provider2));
        market.submitResults(ids, outs, "");
    }

    function test_submitResults_duplicatedJob() public {
        bytes32[] memory ids = new bytes32[](2);
        bytes32[] memory outs = new bytes32[](2);
        ids[0] = _match(client, provider1);
        ids[1] = ids[0];
        outs[0] = _out(0);
        outs[1] = _out(0);
        bytes memory s = _signBatch(E1_PK, provider1, ids, outs);
        vm.expectRevert(abi.encodeWithSelector(JobMarket.WrongState.selector, ids[0], JobMarket.State.Settled));
        market.submitResults(ids, outs, s);
        _assertState(ids[0], JobMarket.State.Accepted);
        assertEq(market.balanceOf(provider1), 0);
    }

    function test_submitResults_settledJobRevertsWholeBatch() public {
        (bytes32[] memory ids, bytes32[] memory outs) = _batch(3);
        _submit(ids[1], outs[1], E1_PK);
        bytes memory s = _signBatch(E1_PK, provider1, ids, outs);
        vm.expectRevert(abi.encodeWithSelector(JobMarket.WrongState.selector, ids[1], JobMarket.State.Settled));
        market.submitResults(ids, outs, s);
        _assertState(ids[0], JobMarket.State.Accepted);
        _assertState(ids[2], JobMarket.State.Accepted);
        assertEq(market.balanceOf(provider1), PRICE - _fee(PRICE));
        assertEq(market.feesAccrued(), _fee(PRICE));
    }

    function test_submitResults_lengthMismatchAndEmpty() public {
        bytes32[] memory ids = new bytes32[](2);
        bytes32[] memory outs = new bytes32[](1);
        vm.expectRevert(JobMarket.LengthMismatch.selector);
        market.submitResults(ids, outs, "");
        vm.expectRevert(JobMarket.EmptyBatch.selector);
        market.submitResults(new bytes32[](0), new bytes32[](0), "");
    }

    function test_submitResults_anotherProvidersKey() public {
        (bytes32[] memory ids, bytes32[] memory outs) = _batch(2);
        bytes memory s = _signBatch(E2_PK, provider1, ids, outs);
        vm.expectRevert(abi.encodeWithSelector(AttestationVerifier.KeyOfAnotherProvider.selector, enclave2, provider1));
        market.submitResults(ids, outs, s);
    }

    function test_submitResults_revokedKey() public {
        (bytes32[] memory ids, bytes32[] memory outs) = _batch(2);
        bytes memory s = _signBatch(E1_PK, provider1, ids, outs);
        vm.prank(gov);
        verifier.revokeKey(enclave1);
        vm.expectRevert(abi.encodeWithSelector(AttestationVerifier.KeyRevoked.selector, enclave1));
        market.submitResults(ids, outs, s);
    }

    function test_submitResults_wrongKindKey() public {
        (bytes32[] memory ids, bytes32[] memory outs) = _batch(2);
        bytes memory s = _signBatch(E3_PK, provider1, ids, outs);
        vm.expectRevert(
            abi.encodeWithSelector(JobMarket.KindNotAccepted.selector, TeeKind.SGX, TeeKind.bit(TeeKind.TDX))
        );
        market.submitResults(ids, outs, s);
    }

    function test_submitResults_deadlinePassed() public {
        bytes32[] memory ids = new bytes32[](2);
        bytes32[] memory outs = new bytes32[](2);
        ids[0] = _match(client, provider1);
        JobRequest memory r = _req(PRICE);
        r.deadline = uint64(block.timestamp + 10 minutes);
        Offer memory o = _offer(provider1, PRICE);
        o.minDuration = 5 minutes;
        ids[1] = _matchWith(client, r, o);
        bytes memory s = _signBatch(E1_PK, provider1, ids, outs);
        vm.warp(block.timestamp + 10 minutes + 1);
        vm.expectRevert(abi.encodeWithSelector(JobMarket.DeadlinePassed.selector, r.deadline));
        market.submitResults(ids, outs, s);
    }

    function test_submitResults_postedJob() public {
        bytes32[] memory ids = new bytes32[](1);
        bytes32[] memory outs = new bytes32[](1);
        ids[0] = _postPaid(client, _req(PRICE));
        vm.expectRevert(abi.encodeWithSelector(JobMarket.WrongState.selector, ids[0], JobMarket.State.Posted));
        market.submitResults(ids, outs, "");
    }

    // ================================================================== claimTimeout

    function test_claimTimeout_withReceiptRefundsAndSlashes() public {
        bytes32 id = _match(client, provider1);
        uint40 deadline = market.getJob(id).deadline;
        bytes memory receipt = _inputReceipt(id);

        vm.expectRevert(abi.encodeWithSelector(JobMarket.DeadlineNotPassed.selector, deadline));
        market.claimTimeout(id, receipt);
        vm.warp(deadline);
        vm.expectRevert(abi.encodeWithSelector(JobMarket.DeadlineNotPassed.selector, deadline));
        market.claimTimeout(id, receipt);

        vm.warp(deadline + 1);
        uint256 slash = _slash(PRICE);
        uint256 toClient = _clientShare(slash);
        vm.expectEmit(address(registry));
        emit ProviderRegistry.ProviderSlashed(provider1, slash, slash, client, toClient);
        vm.expectEmit(address(market));
        emit JobMarket.JobRefunded(id, client, PRICE, slash);
        vm.prank(stranger); // anyone holding the receipt may claim; refund and share go to the client
        market.claimTimeout(id, receipt);

        _assertState(id, JobMarket.State.Refunded);
        assertEq(market.balanceOf(client), PRICE);
        assertEq(market.balanceOf(stranger), 0);
        assertEq(market.lockedStakeOf(provider1), 0);
        assertEq(registry.providerOf(provider1).stake, STAKE - slash);
        assertEq(registry.providerOf(provider1).slashed, slash - toClient);
        assertEq(registry.compensationOf(client), toClient);
        assertEq(_assetBalance(address(market)), PRICE);

        vm.expectRevert(abi.encodeWithSelector(JobMarket.WrongState.selector, id, JobMarket.State.Refunded));
        market.claimTimeout(id, receipt);
        bytes memory s = _signResult(E1_PK, id, _out(1));
        vm.expectRevert(abi.encodeWithSelector(JobMarket.WrongState.selector, id, JobMarket.State.Refunded));
        market.submitResult(id, _out(1), s);
        assertEq(market.balanceOf(client), PRICE);
        assertEq(market.balanceOf(provider1), 0);

        // the client takes its share out of the registry
        uint256 before = _assetBalance(client);
        vm.prank(client);
        registry.withdrawCompensation(client);
        assertEq(_assetBalance(client), before + toClient);
        assertEq(registry.compensationOf(client), 0);
    }

    function test_claimTimeout_withoutReceiptOnlyRefunds() public {
        bytes32 id = _match(client, provider1);
        uint40 deadline = market.getJob(id).deadline;
        vm.warp(deadline + 1);
        vm.expectEmit(address(market));
        emit JobMarket.JobRefunded(id, client, PRICE, 0);
        vm.prank(client);
        market.claimTimeout(id, "");
        assertEq(market.balanceOf(client), PRICE);
        assertEq(registry.providerOf(provider1).stake, STAKE);
        assertEq(registry.providerOf(provider1).slashed, 0);
        assertEq(market.lockedStakeOf(provider1), 0);
    }

    /// The provider (or anyone) cannot close a job without its slash before the client had the
    /// dispute window to present the receipt; after it, anyone can, so no job stays open forever.
    function test_claimTimeout_withoutReceiptWaitsForTheDisputeWindow() public {
        bytes32 id = _match(client, provider1);
        uint40 deadline = market.getJob(id).deadline;
        vm.warp(deadline + DISPUTE);
        vm.prank(provider1);
        vm.expectRevert(abi.encodeWithSelector(JobMarket.DisputeWindowOpen.selector, uint64(deadline + DISPUTE)));
        market.claimTimeout(id, "");
        vm.warp(deadline + DISPUTE + 1);
        vm.prank(provider1);
        market.claimTimeout(id, "");
        _assertState(id, JobMarket.State.Refunded);
        assertEq(market.balanceOf(client), PRICE);
        assertEq(registry.providerOf(provider1).stake, STAKE);
    }

    function test_claimTimeout_receiptMustBeTheProvidersForThisTask() public {
        bytes32 id = _match(client, provider1);
        bytes32 other = _match(client, provider1);
        vm.warp(market.getJob(id).deadline + 1);
        JobMarket.Job memory j = market.getJob(id);
        // another job's receipt, a receipt over another input, the enclave's signature, garbage
        bytes[] memory bad = new bytes[](3);
        bad[0] = _inputReceipt(other);
        bad[1] = sig(P1_PK, market.inputReceiptDigest(id, market.hashTask(keccak256("spec"), keccak256("other"))));
        bad[2] = sig(E1_PK, market.inputReceiptDigest(id, j.taskHash));
        for (uint256 i; i < bad.length; ++i) {
            vm.expectPartialRevert(JobMarket.BadInputReceipt.selector);
            market.claimTimeout(id, bad[i]);
        }
        vm.expectRevert(abi.encodeWithSelector(ECDSA.ECDSAInvalidSignatureLength.selector, 3));
        market.claimTimeout(id, hex"010203");
        _assertState(id, JobMarket.State.Accepted);
    }

    function test_claimTimeout_refundSurvivesAFailingSlash() public {
        bytes32 id = _match(client, provider1);
        bytes memory receipt = _inputReceipt(id);
        vm.warp(market.getJob(id).deadline + 1);
        // The registry's slash breaks (here: its code replaced by one that always reverts).
        vm.etch(address(registry), hex"60006000fd");
        vm.expectEmit(address(market));
        emit JobMarket.SlashFailed(id, provider1, _slash(PRICE));
        vm.expectEmit(address(market));
        emit JobMarket.JobRefunded(id, client, PRICE, 0);
        market.claimTimeout(id, receipt);
        assertEq(market.balanceOf(client), PRICE);
        _assertState(id, JobMarket.State.Refunded);
    }

    /// Sending too little gas for the slash must not turn a proven timeout into a plain refund.
    function test_claimTimeout_tooLittleGasForTheSlashReverts() public {
        bytes32 id = _match(client, provider1);
        bytes memory receipt = _inputReceipt(id);
        vm.warp(market.getJob(id).deadline + 1);
        (bool ok,) = address(market).call{gas: 90_000}(abi.encodeCall(JobMarket.claimTimeout, (id, receipt)));
        assertFalse(ok);
        _assertState(id, JobMarket.State.Accepted);
        assertEq(registry.providerOf(provider1).stake, STAKE);
        market.claimTimeout(id, receipt);
        assertEq(registry.providerOf(provider1).stake, STAKE - _slash(PRICE));
    }

    function test_claimTimeout_exitedProviderStillCoversItsJobs() public {
        bytes32 id = _match(client, provider1);
        vm.prank(provider1);
        registry.exit(); // tries to run with its stake: the reserved part stays
        assertEq(registry.providerOf(provider1).stake, _slash(PRICE));
        (uint96 unbonding,) = registry.unbonding(provider1);
        assertEq(unbonding, STAKE - _slash(PRICE));
        bytes memory receipt = _inputReceipt(id);
        vm.warp(market.getJob(id).deadline + 1);
        market.claimTimeout(id, receipt);
        assertEq(registry.providerOf(provider1).stake, 0);
        (unbonding,) = registry.unbonding(provider1);
        assertEq(unbonding, STAKE - _slash(PRICE));
        assertEq(registry.providerOf(provider1).slashed + registry.compensationOf(client), _slash(PRICE));
    }

    function test_claimTimeout_wrongState() public {
        bytes32 id = _postPaid(client, _req(PRICE));
        vm.warp(block.timestamp + 1 days);
        vm.expectRevert(abi.encodeWithSelector(JobMarket.WrongState.selector, id, JobMarket.State.Posted));
        market.claimTimeout(id, "");
        bytes32 settled = _match(client, provider1);
        _submit(settled, _out(1), E1_PK);
        vm.warp(block.timestamp + 2 days);
        vm.expectRevert(abi.encodeWithSelector(JobMarket.WrongState.selector, settled, JobMarket.State.Settled));
        market.claimTimeout(settled, "");
    }

    // ================================================================== releaseJob

    function test_releaseJob_refundsWithoutSlash() public {
        bytes32 id = _match(client, provider1);
        assertEq(market.lockedStakeOf(provider1), _slash(PRICE));
        vm.expectEmit(address(market));
        emit JobMarket.JobReleased(id, client, provider1, PRICE);
        vm.prank(provider1);
        market.releaseJob(id);
        _assertState(id, JobMarket.State.Released);
        assertEq(market.balanceOf(client), PRICE);
        assertEq(market.lockedStakeOf(provider1), 0);
        assertEq(registry.providerOf(provider1).stake, STAKE);
        JobMarket.Job memory j = market.getJob(id);
        assertEq(j.price, 0);
        assertEq(j.client, address(0));
        // final: nothing moves it again
        bytes memory receipt = _inputReceipt(id);
        vm.warp(block.timestamp + 3 days);
        vm.expectRevert(abi.encodeWithSelector(JobMarket.WrongState.selector, id, JobMarket.State.Released));
        market.claimTimeout(id, receipt);
    }

    function test_releaseJob_reverts() public {
        bytes32 id = _match(client, provider1);
        vm.prank(client);
        vm.expectRevert(abi.encodeWithSelector(JobMarket.NotProvider.selector, client));
        market.releaseJob(id);
        vm.prank(provider2);
        vm.expectRevert(abi.encodeWithSelector(JobMarket.NotProvider.selector, provider2));
        market.releaseJob(id);
        uint40 deadline = market.getJob(id).deadline;
        vm.warp(deadline + 1);
        vm.prank(provider1);
        vm.expectRevert(abi.encodeWithSelector(JobMarket.DeadlinePassed.selector, deadline));
        market.releaseJob(id);
        bytes32 posted = _postPaid(client, _req(PRICE));
        vm.prank(provider1);
        vm.expectRevert(abi.encodeWithSelector(JobMarket.WrongState.selector, posted, JobMarket.State.Posted));
        market.releaseJob(posted);
    }

    // ================================================================== ledger

    function test_deposit() public {
        _give(client, 2 ether);
        vm.expectEmit(address(market));
        emit JobMarket.Deposited(client, 2 ether);
        vm.prank(client);
        market.deposit{value: _isNative() ? 2 ether : 0}(2 ether);
        assertEq(market.balanceOf(client), 2 ether);
        assertEq(_assetBalance(address(market)), 2 ether);
        assertEq(_assetBalance(client), 0);
    }

    function test_deposit_zero() public {
        vm.prank(client);
        vm.expectRevert(JobMarket.ZeroAmount.selector);
        market.deposit(0);
    }

    function test_withdraw_refusesZeroRecipient() public {
        _deposit(client, 3 ether);
        vm.prank(client);
        vm.expectRevert(JobMarket.ZeroAddress.selector);
        market.withdraw(1 ether, address(0));
        assertEq(market.balanceOf(client), 3 ether);
        assertEq(_assetBalance(address(market)), 3 ether);
    }

    function test_withdraw() public {
        _deposit(client, 3 ether);
        vm.expectEmit(address(market));
        emit JobMarket.Withdrawn(client, client2, 1 ether);
        vm.prank(client);
        market.withdraw(1 ether, client2);
        assertEq(market.balanceOf(client), 2 ether);
        assertEq(_assetBalance(client2), 1 ether);
        assertEq(_assetBalance(address(market)), 2 ether);
    }

    function test_withdraw_reverts() public {
        _deposit(client, 3 ether);
        vm.startPrank(client);
        vm.expectRevert(JobMarket.ZeroAmount.selector);
        market.withdraw(0, client);
        vm.expectRevert(abi.encodeWithSelector(JobMarket.InsufficientBalance.selector, 3 ether + 1, 3 ether));
        market.withdraw(3 ether + 1, client);
        vm.stopPrank();
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(JobMarket.InsufficientBalance.selector, 1, 0));
        market.withdraw(1, stranger);
    }

    function test_withdraw_escrowIsNotWithdrawable() public {
        _deposit(client, PRICE);
        JobRequest memory r = _req(PRICE);
        vm.prank(client);
        market.postJob(r);
        vm.prank(client);
        vm.expectRevert(abi.encodeWithSelector(JobMarket.InsufficientBalance.selector, 1, 0));
        market.withdraw(1, client);
    }

    function test_withdrawFees() public {
        vm.prank(treasury);
        vm.expectRevert(JobMarket.ZeroAmount.selector);
        market.withdrawFees();

        bytes32 id = _match(client, provider1);
        _submit(id, _out(1), E1_PK);
        uint256 fee = _fee(PRICE);

        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(JobMarket.NotTreasury.selector, stranger));
        market.withdrawFees();

        vm.expectEmit(address(market));
        emit JobMarket.FeesWithdrawn(treasury, fee);
        vm.prank(treasury);
        market.withdrawFees();
        assertEq(_assetBalance(treasury), fee);
        assertEq(market.feesAccrued(), 0);
        assertEq(_assetBalance(address(market)), PRICE - fee);
    }

    function testFuzz_settlementSplitsPriceExactly(uint256 price) public {
        price = bound(price, 1, (STAKE * 10_000) / SLASH_BPS); // what the stake can cover
        bytes32 id = _matchWith(client, _req(price), _offer(provider1, price));
        _submit(id, _out(1), E1_PK);
        assertEq(market.balanceOf(provider1) + market.feesAccrued(), price);
        assertEq(market.feesAccrued(), (price * FEE_BPS) / 10_000);
        assertEq(_assetBalance(address(market)), price);
    }
}

contract JobMarketNativeTest is JobMarketCases {
    function setUp() public {
        _deploy(false);
    }

    function test_matchJob_excessValueCredited() public {
        JobRequest memory r = _req(PRICE);
        Offer memory o = _offer(provider1, PRICE);
        bytes memory s = _signOffer(o);
        vm.deal(client, 3 ether);
        vm.prank(client);
        market.matchJob{value: 3 ether}(r, o, s);
        assertEq(market.balanceOf(client), 3 ether - PRICE);
        assertEq(address(market).balance, 3 ether);
    }

    function test_matchJob_valuePlusFreeBalance() public {
        _deposit(client, 1 ether);
        JobRequest memory r = _req(3 ether);
        Offer memory o = _offer(provider1, 3 ether);
        bytes memory s = _signOffer(o);
        vm.deal(client, 2 ether);
        vm.prank(client);
        market.matchJob{value: 2 ether}(r, o, s);
        assertEq(market.balanceOf(client), 0);
        assertEq(address(market).balance, 3 ether);
    }

    function test_matchJob_valueShortAndNoBalance() public {
        JobRequest memory r = _req(3 ether);
        Offer memory o = _offer(provider1, 3 ether);
        bytes memory s = _signOffer(o);
        vm.deal(client, 2 ether);
        vm.prank(client);
        vm.expectRevert(abi.encodeWithSelector(JobMarket.InsufficientBalance.selector, 1 ether, 0));
        market.matchJob{value: 2 ether}(r, o, s);
    }

    function test_postJob_excessValueCredited() public {
        JobRequest memory r = _req(PRICE);
        vm.deal(client, 5 ether);
        vm.prank(client);
        market.postJob{value: 5 ether}(r);
        assertEq(market.balanceOf(client), 5 ether - PRICE);
    }

    function test_deposit_wrongValue() public {
        vm.deal(client, 1 ether);
        vm.prank(client);
        vm.expectRevert(abi.encodeWithSelector(PaymentToken.WrongValue.selector, 1 ether, 2 ether));
        market.deposit{value: 1 ether}(2 ether);
    }
}

contract JobMarketERC20Test is JobMarketCases {
    function setUp() public {
        _deploy(true);
    }

    function test_matchJob_refusesNativeValue() public {
        _deposit(client, PRICE);
        JobRequest memory r = _req(PRICE);
        Offer memory o = _offer(provider1, PRICE);
        bytes memory s = _signOffer(o);
        vm.deal(client, 1);
        vm.prank(client);
        vm.expectRevert(abi.encodeWithSelector(PaymentToken.WrongValue.selector, 1, 0));
        market.matchJob{value: 1}(r, o, s);
    }

    function test_postJob_refusesNativeValue() public {
        _deposit(client, PRICE);
        JobRequest memory r = _req(PRICE);
        vm.deal(client, 1);
        vm.prank(client);
        vm.expectRevert(abi.encodeWithSelector(PaymentToken.WrongValue.selector, 1, 0));
        market.postJob{value: 1}(r);
    }

    function test_deposit_refusesNativeValue() public {
        _give(client, 1 ether);
        vm.deal(client, 1);
        vm.prank(client);
        vm.expectRevert(abi.encodeWithSelector(PaymentToken.WrongValue.selector, 1, 0));
        market.deposit{value: 1}(1 ether);
    }

    function test_deposit_needsAllowance() public {
        token.mint(client, 1 ether);
        vm.prank(client);
        vm.expectRevert();
        market.deposit(1 ether);
        assertEq(market.balanceOf(client), 0);
    }

    function test_deposit_refusesFeeOnTransferToken() public {
        FeeOnTransferERC20 fot = new FeeOnTransferERC20();
        ProviderRegistry r = _newRegistry(IERC20(address(fot)), MIN_STAKE, MAX_JOB, DISPUTE, UNBONDING);
        JobMarket m = _newMarket(r, IERC20(address(fot)), SLASH_BPS);
        fot.mint(client, 10 ether);
        vm.prank(client);
        fot.approve(address(m), type(uint256).max);
        vm.prank(client);
        vm.expectRevert(abi.encodeWithSelector(PaymentToken.TokenAmountMismatch.selector, 9.9 ether, 10 ether));
        m.deposit(10 ether);
    }
}

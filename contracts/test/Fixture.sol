// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {TestBase} from "./TestBase.sol";
import {MockERC20} from "./mocks/MockERC20.sol";
import {AttestationVerifier} from "../src/AttestationVerifier.sol";
import {ProviderRegistry} from "../src/ProviderRegistry.sol";
import {JobMarket} from "../src/JobMarket.sol";
import {IAttestationVerifier} from "../src/interfaces/IAttestationVerifier.sol";
import {IProviderRegistry} from "../src/interfaces/IProviderRegistry.sol";
import {JobRequest, KeyAttestation, Offer, TeeKind, TcbStatus} from "../src/CapaTypes.sol";

/// @notice Deploys the three contracts wired together (native or ERC-20) with a 3-member
/// verifier committee (k = 2), two staked providers and three attested enclave keys.
abstract contract Fixture is TestBase {
    uint64 internal constant MAX_JOB = 1 days;
    uint64 internal constant DISPUTE = 1 days;
    uint64 internal constant UNBONDING = 3 days;
    uint96 internal constant MIN_STAKE = 1 ether;
    uint256 internal constant STAKE = 10 ether;
    uint256 internal constant FEE_BPS = 250;
    uint256 internal constant SLASH_BPS = 5_000;
    uint256 internal constant SLASH_CLIENT_BPS = 6_000;
    uint64 internal constant MIN_DURATION = 1 hours;
    uint256 internal constant PRICE = 1 ether;
    uint64 internal constant T0 = 1_700_000_000;

    bytes32 internal constant M1 = keccak256("tdx image v1");
    bytes32 internal constant M2 = keccak256("tdx image v2");
    bytes32 internal constant M_SGX = keccak256("sgx image v1");

    // committee
    uint256 internal constant C1_PK = 0xC0111;
    uint256 internal constant C2_PK = 0xC0222;
    uint256 internal constant C3_PK = 0xC0333;
    // provider operator keys (sign offers)
    uint256 internal constant P1_PK = 0xA11CE;
    uint256 internal constant P2_PK = 0xB0B;
    // enclave keys (sign results)
    uint256 internal constant E1_PK = 0xE1; // provider1, TDX, M1, UP_TO_DATE
    uint256 internal constant E2_PK = 0xE2; // provider2, TDX, M1, UP_TO_DATE
    uint256 internal constant E3_PK = 0xE3; // provider1, SGX, M_SGX, SW_HARDENING_NEEDED

    address internal gov;
    address internal treasury;
    address internal client;
    address internal client2;
    address internal stranger;
    address internal provider1;
    address internal provider2;
    address internal enclave1;
    address internal enclave2;
    address internal enclave3;
    address[] internal committee; // sorted ascending
    uint256[] internal committeePks; // same order

    MockERC20 internal token; // zero for native deployments
    AttestationVerifier internal verifier;
    ProviderRegistry internal registry;
    JobMarket internal market;

    uint256 internal reqNonce;
    uint256 internal offerNonce;

    // ------------------------------------------------------------------ deployment

    function _deploy(bool erc20) internal {
        vm.warp(T0);
        gov = makeAddr("gov");
        treasury = makeAddr("treasury");
        client = makeAddr("client");
        client2 = makeAddr("client2");
        stranger = makeAddr("stranger");
        provider1 = vm.addr(P1_PK);
        provider2 = vm.addr(P2_PK);
        enclave1 = vm.addr(E1_PK);
        enclave2 = vm.addr(E2_PK);
        enclave3 = vm.addr(E3_PK);
        vm.label(provider1, "provider1");
        vm.label(provider2, "provider2");
        vm.label(enclave1, "enclave1");
        vm.label(enclave2, "enclave2");
        vm.label(enclave3, "enclave3");

        if (erc20) token = new MockERC20();
        IERC20 asset = IERC20(address(token));
        verifier = new AttestationVerifier(gov, false);
        registry = _newRegistry(asset, MIN_STAKE, MAX_JOB, DISPUTE, UNBONDING);
        market = _newMarket(registry, asset, SLASH_BPS);

        _setupCommittee(verifier, 2);
        _setupPolicy(verifier);

        _registerProvider(provider1, STAKE);
        _registerProvider(provider2, STAKE);
        _registerKey(verifier, _att(provider1, enclave1, TeeKind.TDX, M1, TcbStatus.UP_TO_DATE, T0 + 365 days));
        _registerKey(verifier, _att(provider2, enclave2, TeeKind.TDX, M1, TcbStatus.UP_TO_DATE, T0 + 365 days));
        _registerKey(
            verifier, _att(provider1, enclave3, TeeKind.SGX, M_SGX, TcbStatus.SW_HARDENING_NEEDED, T0 + 365 days)
        );
    }

    /// @dev A registry wired to the contract this test creates right after it (its market).
    function _newRegistry(IERC20 asset, uint256 minStake, uint64 maxJob, uint64 dispute, uint64 unbonding)
        internal
        returns (ProviderRegistry)
    {
        return new ProviderRegistry(asset, gov, _createdAfterNext(), minStake, maxJob, dispute, unbonding);
    }

    /// @dev Makes no call before the creation, so that a test can expect it to revert.
    function _newMarket(ProviderRegistry r, IERC20 asset, uint256 slashBps) internal returns (JobMarket) {
        return new JobMarket(
            asset,
            IProviderRegistry(address(r)),
            IAttestationVerifier(address(verifier)),
            treasury,
            FEE_BPS,
            slashBps,
            SLASH_CLIENT_BPS
        );
    }

    function _setupCommittee(AttestationVerifier v, uint128 k) internal {
        uint256[3] memory pks = [C1_PK, C2_PK, C3_PK];
        // sort by address, ascending
        for (uint256 i; i < 3; ++i) {
            for (uint256 j = i + 1; j < 3; ++j) {
                if (vm.addr(pks[j]) < vm.addr(pks[i])) (pks[i], pks[j]) = (pks[j], pks[i]);
            }
        }
        delete committee;
        delete committeePks;
        for (uint256 i; i < 3; ++i) {
            committeePks.push(pks[i]);
            committee.push(vm.addr(pks[i]));
        }
        vm.prank(gov);
        v.setCommittee(committee, new address[](0), k);
    }

    function _setupPolicy(AttestationVerifier v) internal {
        vm.startPrank(gov);
        v.setKindPolicy(TeeKind.TDX, true, TcbStatus.SW_HARDENING_NEEDED);
        v.setKindPolicy(TeeKind.SGX, true, TcbStatus.SW_HARDENING_NEEDED);
        v.approveMeasurement(TeeKind.TDX, M1, uint40(T0 + 400 days));
        v.approveMeasurement(TeeKind.TDX, M2, uint40(T0 + 400 days));
        v.approveMeasurement(TeeKind.SGX, M_SGX, uint40(T0 + 400 days));
        vm.stopPrank();
    }

    // ------------------------------------------------------------------ money

    function _isNative() internal view returns (bool) {
        return address(token) == address(0);
    }

    function _give(address who, uint256 amount) internal {
        if (_isNative()) {
            vm.deal(who, who.balance + amount);
        } else {
            token.mint(who, amount);
            vm.startPrank(who);
            token.approve(address(market), type(uint256).max);
            token.approve(address(registry), type(uint256).max);
            vm.stopPrank();
        }
    }

    function _assetBalance(address who) internal view returns (uint256) {
        return _isNative() ? who.balance : token.balanceOf(who);
    }

    function _registerProvider(address p, uint256 stake) internal {
        _give(p, stake);
        vm.prank(p);
        registry.register{value: _isNative() ? stake : 0}(bytes("peer"), stake);
    }

    function _deposit(address who, uint256 amount) internal {
        _give(who, amount);
        vm.prank(who);
        market.deposit{value: _isNative() ? amount : 0}(amount);
    }

    // ------------------------------------------------------------------ attestation

    function _att(address provider, address key, uint8 kind, bytes32 m, uint8 tcb, uint256 expiresAt)
        internal
        pure
        returns (KeyAttestation memory a)
    {
        a.provider = provider;
        a.enclaveKey = key;
        a.teeKind = kind;
        a.measurement = m;
        a.tcbStatus = tcb;
        a.evidenceHash = keccak256(abi.encode("evidence", key));
        a.expiresAt = uint64(expiresAt);
    }

    /// @dev The first `n` committee signatures, ascending by signer address.
    function _committeeSigs(AttestationVerifier v, KeyAttestation memory a, uint256 n)
        internal
        view
        returns (bytes[] memory sigs)
    {
        bytes32 digest = v.keyAttestationDigest(a);
        sigs = new bytes[](n);
        for (uint256 i; i < n; ++i) {
            sigs[i] = sig(committeePks[i], digest);
        }
    }

    function _registerKey(AttestationVerifier v, KeyAttestation memory a) internal {
        bytes[] memory sigs = _committeeSigs(v, a, v.threshold());
        v.registerKey(a, sigs);
    }

    // ------------------------------------------------------------------ jobs

    function _req(uint256 maxPrice) internal returns (JobRequest memory r) {
        r.specHash = keccak256("spec");
        r.inputHash = keccak256(abi.encode("input", reqNonce));
        r.teeKinds = TeeKind.bit(TeeKind.TDX);
        r.measurement = bytes32(0);
        r.minTcbStatus = TcbStatus.UP_TO_DATE;
        r.maxPrice = maxPrice;
        r.deadline = uint64(block.timestamp + 12 hours);
        r.nonce = ++reqNonce;
    }

    function _offer(address provider, uint256 price) internal returns (Offer memory o) {
        o.provider = provider;
        o.enclaveKey = provider == provider2 ? vm.addr(E2_PK) : vm.addr(E1_PK);
        o.teeKind = TeeKind.TDX;
        o.measurement = M1;
        o.price = price;
        o.minDuration = MIN_DURATION;
        o.maxDuration = 6 hours;
        o.validUntil = uint64(block.timestamp + 1 hours);
        o.requestHash = bytes32(0);
        o.nonce = ++offerNonce;
    }

    function _pkOf(address provider) internal view returns (uint256) {
        if (provider == provider1) return P1_PK;
        if (provider == provider2) return P2_PK;
        revert("unknown provider");
    }

    function _signOffer(Offer memory o, uint256 pk) internal view returns (bytes memory) {
        return sig(pk, market.offerDigest(o));
    }

    function _signOffer(Offer memory o) internal view returns (bytes memory) {
        return _signOffer(o, _pkOf(o.provider));
    }

    /// @dev client matches a fresh request with provider1's signed offer at PRICE, paying by value/deposit.
    function _match(address who, address provider) internal returns (bytes32 jobId) {
        JobRequest memory r = _req(PRICE);
        Offer memory o = _offer(provider, PRICE);
        jobId = _matchWith(who, r, o);
    }

    function _matchWith(address who, JobRequest memory r, Offer memory o) internal returns (bytes32 jobId) {
        bytes memory s = _signOffer(o);
        if (_isNative()) {
            vm.deal(who, who.balance + o.price);
            vm.prank(who);
            jobId = market.matchJob{value: o.price}(r, o, s);
        } else {
            _deposit(who, o.price);
            vm.prank(who);
            jobId = market.matchJob(r, o, s);
        }
    }

    function _postPaid(address who, JobRequest memory r) internal returns (bytes32 jobId) {
        if (_isNative()) {
            vm.deal(who, who.balance + r.maxPrice);
            vm.prank(who);
            jobId = market.postJob{value: r.maxPrice}(r);
        } else {
            _deposit(who, r.maxPrice);
            vm.prank(who);
            jobId = market.postJob(r);
        }
    }

    function _signResult(uint256 enclavePk, bytes32 jobId, bytes32 outputHash) internal view returns (bytes memory) {
        JobMarket.Job memory j = market.getJob(jobId);
        return sig(enclavePk, market.resultDigest(jobId, j.provider, j.taskHash, outputHash));
    }

    function _resultLeaf(bytes32 jobId, bytes32 outputHash) internal view returns (bytes32) {
        JobMarket.Job memory j = market.getJob(jobId);
        return keccak256(abi.encode(market.RESULT_TYPEHASH(), jobId, j.provider, j.taskHash, outputHash));
    }

    /// @dev The provider's signed acknowledgement that the job's input arrived.
    function _inputReceipt(bytes32 jobId) internal view returns (bytes memory) {
        JobMarket.Job memory j = market.getJob(jobId);
        return sig(_pkOf(j.provider), market.inputReceiptDigest(jobId, j.taskHash));
    }

    function _slash(uint256 price) internal pure returns (uint256) {
        return (price * SLASH_BPS) / 10_000;
    }

    function _clientShare(uint256 slash) internal pure returns (uint256) {
        return (slash * SLASH_CLIENT_BPS) / 10_000;
    }

    /// @dev Independent reimplementation of the batch root (pairs in order, odd node carried up).
    function _root(bytes32[] memory leaves) internal pure returns (bytes32) {
        uint256 n = leaves.length;
        bytes32[] memory level = new bytes32[](n);
        for (uint256 i; i < n; ++i) level[i] = leaves[i];
        while (n > 1) {
            uint256 m = (n + 1) / 2;
            bytes32[] memory next = new bytes32[](m);
            for (uint256 i; i < n / 2; ++i) next[i] = keccak256(abi.encodePacked(level[2 * i], level[2 * i + 1]));
            if (n % 2 == 1) next[m - 1] = level[n - 1];
            level = next;
            n = m;
        }
        return level[0];
    }

    function _signBatch(uint256 enclavePk, address provider, bytes32[] memory jobIds, bytes32[] memory outs)
        internal
        view
        returns (bytes memory)
    {
        bytes32[] memory leaves = new bytes32[](jobIds.length);
        for (uint256 i; i < jobIds.length; ++i) leaves[i] = _resultLeaf(jobIds[i], outs[i]);
        return sig(enclavePk, market.resultBatchDigest(provider, _root(leaves), jobIds.length));
    }

    function _out(uint256 i) internal pure returns (bytes32) {
        return keccak256(abi.encode("output", i));
    }

    function _fee(uint256 price) internal pure returns (uint256) {
        return (price * FEE_BPS) / 10_000;
    }
}

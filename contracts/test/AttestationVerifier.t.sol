// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {IAccessControl} from "@openzeppelin/contracts/access/IAccessControl.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {Fixture} from "./Fixture.sol";
import {AttestationVerifier} from "../src/AttestationVerifier.sol";
import {KeyAttestation, TeeKind, TcbStatus} from "../src/CapaTypes.sol";

contract AttestationVerifierTest is Fixture {
    uint256 internal constant NEW_KEY_PK = 0xE77;
    address internal newKey;
    uint64 internal expiry;

    function setUp() public {
        _deploy(false);
        newKey = vm.addr(NEW_KEY_PK);
        expiry = uint64(block.timestamp + 30 days);
    }

    function _newAtt() internal view returns (KeyAttestation memory) {
        return _att(provider1, newKey, TeeKind.TDX, M1, TcbStatus.UP_TO_DATE, expiry);
    }

    function _expectAccess(address who, bytes32 role) internal {
        vm.expectRevert(abi.encodeWithSelector(IAccessControl.AccessControlUnauthorizedAccount.selector, who, role));
    }

    // ------------------------------------------------------------------ constructor

    function test_constructor() public {
        assertFalse(verifier.SIM_ALLOWED());
        assertTrue(verifier.hasRole(verifier.DEFAULT_ADMIN_ROLE(), gov));
        assertTrue(verifier.hasRole(verifier.APPROVER_ROLE(), gov));
        assertTrue(verifier.hasRole(verifier.REVOKER_ROLE(), gov));
        vm.expectRevert(AttestationVerifier.ZeroAddress.selector);
        new AttestationVerifier(address(0), false);
    }

    function test_domainSeparatorAndDigestMatchEip712() public view {
        bytes32 domain = keccak256(
            abi.encode(
                keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"),
                keccak256("CapaCloud AttestationVerifier"),
                keccak256("1"),
                block.chainid,
                address(verifier)
            )
        );
        assertEq(verifier.domainSeparator(), domain);
        KeyAttestation memory a = _newAtt();
        bytes32 structHash = keccak256(
            abi.encode(
                keccak256(
                    "KeyAttestation(address provider,address enclaveKey,uint8 teeKind,bytes32 measurement,uint8 tcbStatus,bytes32 evidenceHash,uint64 expiresAt)"
                ),
                a.provider,
                a.enclaveKey,
                a.teeKind,
                a.measurement,
                a.tcbStatus,
                a.evidenceHash,
                a.expiresAt
            )
        );
        assertEq(verifier.hashKeyAttestation(a), structHash);
        assertEq(verifier.keyAttestationDigest(a), keccak256(abi.encodePacked("\x19\x01", domain, structHash)));
    }

    // ------------------------------------------------------------------ committee

    function test_setCommittee_state() public view {
        assertEq(verifier.committeeSize(), 3);
        assertEq(verifier.threshold(), 2);
        for (uint256 i; i < 3; ++i) assertTrue(verifier.isCommitteeMember(committee[i]));
        assertFalse(verifier.isCommitteeMember(stranger));
    }

    function test_setCommittee_addRemoveAndThreshold() public {
        address[] memory add = new address[](2);
        add[0] = stranger;
        add[1] = committee[0]; // already a member: not counted twice
        address[] memory remove = new address[](2);
        remove[0] = committee[1];
        remove[1] = client; // not a member: ignored
        vm.expectEmit(address(verifier));
        emit AttestationVerifier.CommitteeChanged(add, remove, 3);
        vm.prank(gov);
        verifier.setCommittee(add, remove, 3);
        assertEq(verifier.committeeSize(), 3);
        assertEq(verifier.threshold(), 3);
        assertTrue(verifier.isCommitteeMember(stranger));
        assertFalse(verifier.isCommitteeMember(committee[1]));
    }

    function test_setCommittee_invalidThreshold() public {
        address[] memory none = new address[](0);
        vm.startPrank(gov);
        vm.expectRevert(abi.encodeWithSelector(AttestationVerifier.InvalidThreshold.selector, 0, 3));
        verifier.setCommittee(none, none, 0);
        vm.expectRevert(abi.encodeWithSelector(AttestationVerifier.InvalidThreshold.selector, 4, 3));
        verifier.setCommittee(none, none, 4);
        address[] memory remove = new address[](2);
        remove[0] = committee[0];
        remove[1] = committee[1];
        vm.expectRevert(abi.encodeWithSelector(AttestationVerifier.InvalidThreshold.selector, 2, 1));
        verifier.setCommittee(none, remove, 2);
        vm.stopPrank();
        assertEq(verifier.committeeSize(), 3);
    }

    function test_setCommittee_zeroAddress() public {
        address[] memory add = new address[](1);
        vm.prank(gov);
        vm.expectRevert(AttestationVerifier.ZeroAddress.selector);
        verifier.setCommittee(add, new address[](0), 1);
    }

    function test_setCommittee_onlyAdmin() public {
        bytes32 role = verifier.DEFAULT_ADMIN_ROLE();
        address[] memory none = new address[](0);
        vm.prank(stranger);
        _expectAccess(stranger, role);
        verifier.setCommittee(none, none, 1);
    }

    function test_setCommittee_removedMemberCannotSign() public {
        address[] memory remove = new address[](1);
        remove[0] = committee[0];
        vm.prank(gov);
        verifier.setCommittee(new address[](0), remove, 2);
        KeyAttestation memory a = _newAtt();
        bytes[] memory sigs = _committeeSigs(verifier, a, 2); // committee[0], committee[1]
        vm.expectRevert(abi.encodeWithSelector(AttestationVerifier.SignerNotInCommittee.selector, committee[0]));
        verifier.registerKey(a, sigs);
    }

    // ------------------------------------------------------------------ kind policy

    function test_setKindPolicy() public {
        vm.expectEmit(address(verifier));
        emit AttestationVerifier.KindPolicySet(TeeKind.SEV_SNP, true, TcbStatus.UP_TO_DATE);
        vm.prank(gov);
        verifier.setKindPolicy(TeeKind.SEV_SNP, true, TcbStatus.UP_TO_DATE);
        (bool enabled, uint8 minTcb) = verifier.kindPolicy(TeeKind.SEV_SNP);
        assertTrue(enabled);
        assertEq(minTcb, TcbStatus.UP_TO_DATE);
    }

    function test_setKindPolicy_reverts() public {
        vm.startPrank(gov);
        vm.expectRevert(abi.encodeWithSelector(AttestationVerifier.UnknownTeeKind.selector, 0));
        verifier.setKindPolicy(0, true, 0);
        vm.expectRevert(abi.encodeWithSelector(AttestationVerifier.UnknownTeeKind.selector, 7));
        verifier.setKindPolicy(7, true, 0);
        vm.expectRevert(AttestationVerifier.SimNotAllowed.selector);
        verifier.setKindPolicy(TeeKind.SIM, true, 0);
        // disabling SIM is always fine
        verifier.setKindPolicy(TeeKind.SIM, false, 0);
        vm.stopPrank();

        bytes32 role = verifier.APPROVER_ROLE();
        vm.prank(stranger);
        _expectAccess(stranger, role);
        verifier.setKindPolicy(TeeKind.TDX, false, 0);
    }

    function test_sim_refusedEverywhereWhenNotAllowed() public {
        vm.prank(gov);
        vm.expectRevert(AttestationVerifier.SimNotAllowed.selector);
        verifier.approveMeasurement(TeeKind.SIM, M1, uint40(block.timestamp + 1 days));
        KeyAttestation memory a = _att(provider1, newKey, TeeKind.SIM, M1, TcbStatus.UP_TO_DATE, expiry);
        bytes[] memory sigs = _committeeSigs(verifier, a, 2);
        vm.expectRevert(AttestationVerifier.SimNotAllowed.selector);
        verifier.registerKey(a, sigs);
    }

    function test_sim_allowedOnDevnetDeployment() public {
        AttestationVerifier dev = new AttestationVerifier(gov, true);
        assertTrue(dev.SIM_ALLOWED());
        _setupCommittee(dev, 1);
        KeyAttestation memory a = _att(provider1, newKey, TeeKind.SIM, M1, TcbStatus.UP_TO_DATE, expiry);
        bytes[] memory sigs = _committeeSigs(dev, a, 1);
        // not yet enabled: KindDisabled rather than SimNotAllowed
        vm.expectRevert(abi.encodeWithSelector(AttestationVerifier.KindDisabled.selector, TeeKind.SIM));
        dev.registerKey(a, sigs);

        vm.startPrank(gov);
        dev.setKindPolicy(TeeKind.SIM, true, 0);
        uint32 id = dev.approveMeasurement(TeeKind.SIM, M1, uint40(block.timestamp + 10 days));
        vm.stopPrank();
        dev.registerKey(a, sigs);
        (uint8 kind, uint32 mid,) = dev.checkKey(provider1, newKey, block.timestamp);
        assertEq(kind, TeeKind.SIM);
        assertEq(mid, id);
    }

    // ------------------------------------------------------------------ measurements

    function test_approveMeasurement() public {
        uint40 notAfter = uint40(block.timestamp + 10 days);
        bytes32 m = keccak256("new");
        vm.expectEmit(address(verifier));
        emit AttestationVerifier.MeasurementApproved(TeeKind.TDX, m, 4, notAfter);
        vm.prank(gov);
        uint32 id = verifier.approveMeasurement(TeeKind.TDX, m, notAfter);
        assertEq(id, 4);
        assertEq(verifier.measurementCount(), 4);
        assertEq(verifier.measurementIdOf(TeeKind.TDX, m), 4);
        assertEq(verifier.measurementValue(4), m);
        (uint32 sid, uint8 kind, uint40 na, bool revoked) = verifier.measurementStatus(4);
        assertEq(sid, 4);
        assertEq(kind, TeeKind.TDX);
        assertEq(na, notAfter);
        assertFalse(revoked);
        assertEq(verifier.activeMeasurementId(TeeKind.TDX, m), 4);
        // the same value under another kind is a distinct measurement
        vm.expectRevert(abi.encodeWithSelector(AttestationVerifier.MeasurementNotAllowed.selector, TeeKind.SGX, m));
        verifier.activeMeasurementId(TeeKind.SGX, m);
    }

    function test_approveMeasurement_movesNotAfterKeepsId() public {
        uint32 id = verifier.measurementIdOf(TeeKind.TDX, M1);
        vm.prank(gov);
        uint32 again = verifier.approveMeasurement(TeeKind.TDX, M1, uint40(block.timestamp + 1));
        assertEq(again, id);
        assertEq(verifier.measurementCount(), 3);
        vm.warp(block.timestamp + 1);
        vm.expectRevert(
            abi.encodeWithSelector(AttestationVerifier.MeasurementExpired.selector, id, uint40(block.timestamp))
        );
        verifier.activeMeasurementId(TeeKind.TDX, M1);
    }

    function test_approveMeasurement_reverts() public {
        vm.startPrank(gov);
        vm.expectRevert(abi.encodeWithSelector(AttestationVerifier.UnknownTeeKind.selector, 0));
        verifier.approveMeasurement(0, M1, 1);
        vm.expectRevert(abi.encodeWithSelector(AttestationVerifier.UnknownTeeKind.selector, 9));
        verifier.approveMeasurement(9, M1, 1);
        vm.stopPrank();
        bytes32 role = verifier.APPROVER_ROLE();
        vm.prank(stranger);
        _expectAccess(stranger, role);
        verifier.approveMeasurement(TeeKind.TDX, M1, 1);
    }

    function test_revokeMeasurement_isFinal() public {
        uint32 id = verifier.measurementIdOf(TeeKind.TDX, M2);
        vm.expectEmit(address(verifier));
        emit AttestationVerifier.MeasurementRevokedEvent(TeeKind.TDX, M2, id);
        vm.prank(gov);
        verifier.revokeMeasurement(TeeKind.TDX, M2);
        vm.expectRevert(abi.encodeWithSelector(AttestationVerifier.MeasurementRevoked.selector, id));
        verifier.activeMeasurementId(TeeKind.TDX, M2);
        vm.prank(gov);
        vm.expectRevert(abi.encodeWithSelector(AttestationVerifier.MeasurementRevoked.selector, id));
        verifier.approveMeasurement(TeeKind.TDX, M2, uint40(block.timestamp + 100 days));
    }

    function test_revokeMeasurement_reverts() public {
        bytes32 unknown = keccak256("unknown");
        vm.prank(gov);
        vm.expectRevert(
            abi.encodeWithSelector(AttestationVerifier.MeasurementNotAllowed.selector, TeeKind.TDX, unknown)
        );
        verifier.revokeMeasurement(TeeKind.TDX, unknown);
        bytes32 role = verifier.REVOKER_ROLE();
        vm.prank(stranger);
        _expectAccess(stranger, role);
        verifier.revokeMeasurement(TeeKind.TDX, M1);
    }

    // ------------------------------------------------------------------ registerKey

    function _assertKey(address key, address provider, uint8 kind, bytes32 m, uint8 tcb, uint64 exp) internal view {
        AttestationVerifier.Key memory k = verifier.keyOf(key);
        assertEq(k.provider, provider);
        assertEq(k.teeKind, kind);
        assertEq(k.measurementId, verifier.measurementIdOf(kind, m));
        assertEq(k.expiresAt, exp);
        assertEq(k.tcbStatus, tcb);
        assertFalse(k.revoked);
    }

    function test_registerKey_k2() public {
        KeyAttestation memory a = _newAtt();
        bytes[] memory sigs = _committeeSigs(verifier, a, 2);
        vm.expectEmit(address(verifier));
        emit AttestationVerifier.KeyRegistered(
            provider1, newKey, TeeKind.TDX, M1, TcbStatus.UP_TO_DATE, a.evidenceHash, expiry
        );
        vm.prank(stranger); // anyone may relay the committee's approval
        verifier.registerKey(a, sigs);
        _assertKey(newKey, provider1, TeeKind.TDX, M1, TcbStatus.UP_TO_DATE, expiry);
    }

    function test_registerKey_k1() public {
        _setupCommittee(verifier, 1);
        KeyAttestation memory a = _newAtt();
        // any single member suffices, not only the lowest address
        bytes[] memory sigs = new bytes[](1);
        sigs[0] = sig(committeePks[2], verifier.keyAttestationDigest(a));
        verifier.registerKey(a, sigs);
        _assertKey(newKey, provider1, TeeKind.TDX, M1, TcbStatus.UP_TO_DATE, expiry);
    }

    function test_registerKey_k3() public {
        _setupCommittee(verifier, 3);
        KeyAttestation memory a = _newAtt();
        bytes[] memory two = _committeeSigs(verifier, a, 2);
        vm.expectRevert(abi.encodeWithSelector(AttestationVerifier.NotEnoughSignatures.selector, 2, 3));
        verifier.registerKey(a, two);
        bytes[] memory sigs = _committeeSigs(verifier, a, 3);
        verifier.registerKey(a, sigs);
        _assertKey(newKey, provider1, TeeKind.TDX, M1, TcbStatus.UP_TO_DATE, expiry);
    }

    function test_registerKey_extraSignaturesBeyondThresholdIgnored() public {
        KeyAttestation memory a = _newAtt();
        bytes[] memory sigs = new bytes[](3);
        bytes32 d = verifier.keyAttestationDigest(a);
        sigs[0] = sig(committeePks[0], d);
        sigs[1] = sig(committeePks[1], d);
        sigs[2] = hex"00"; // never read
        verifier.registerKey(a, sigs);
        assertEq(verifier.keyOf(newKey).provider, provider1);
    }

    function test_registerKey_notEnoughSignatures() public {
        KeyAttestation memory a = _newAtt();
        bytes[] memory one = _committeeSigs(verifier, a, 1);
        vm.expectRevert(abi.encodeWithSelector(AttestationVerifier.NotEnoughSignatures.selector, 1, 2));
        verifier.registerKey(a, one);
        vm.expectRevert(abi.encodeWithSelector(AttestationVerifier.NotEnoughSignatures.selector, 0, 2));
        verifier.registerKey(a, new bytes[](0));
    }

    function test_registerKey_noCommitteeYet() public {
        AttestationVerifier fresh = new AttestationVerifier(gov, false);
        vm.startPrank(gov);
        fresh.setKindPolicy(TeeKind.TDX, true, 0);
        fresh.approveMeasurement(TeeKind.TDX, M1, uint40(block.timestamp + 10 days));
        vm.stopPrank();
        KeyAttestation memory a = _newAtt();
        vm.expectRevert(abi.encodeWithSelector(AttestationVerifier.NotEnoughSignatures.selector, 0, 0));
        fresh.registerKey(a, new bytes[](0));
    }

    function test_registerKey_signerNotInCommittee() public {
        KeyAttestation memory a = _newAtt();
        bytes32 d = verifier.keyAttestationDigest(a);
        uint256 outsiderPk = 0xBAD;
        address outsider = vm.addr(outsiderPk);
        bytes[] memory sigs = new bytes[](2);
        // order the pair ascending so that only membership can fail
        if (outsider < committee[0]) {
            sigs[0] = sig(outsiderPk, d);
            sigs[1] = sig(committeePks[0], d);
        } else {
            sigs[0] = sig(committeePks[0], d);
            sigs[1] = sig(outsiderPk, d);
        }
        vm.expectRevert(abi.encodeWithSelector(AttestationVerifier.SignerNotInCommittee.selector, outsider));
        verifier.registerKey(a, sigs);
    }

    function test_registerKey_signaturesOverOtherDataFail() public {
        KeyAttestation memory a = _newAtt();
        bytes[] memory sigs = _committeeSigs(verifier, a, 2);
        a.tcbStatus = TcbStatus.SW_HARDENING_NEEDED; // tampered after signing
        vm.expectPartialRevert(AttestationVerifier.SignerNotInCommittee.selector);
        verifier.registerKey(a, sigs);
        a.tcbStatus = TcbStatus.UP_TO_DATE;
        a.provider = provider2; // a key attested for provider1 cannot be claimed by provider2
        vm.expectPartialRevert(AttestationVerifier.SignerNotInCommittee.selector);
        verifier.registerKey(a, sigs);
    }

    function test_registerKey_signersNotAscending() public {
        KeyAttestation memory a = _newAtt();
        bytes32 d = verifier.keyAttestationDigest(a);
        bytes[] memory sigs = new bytes[](2);
        sigs[0] = sig(committeePks[1], d);
        sigs[1] = sig(committeePks[0], d);
        vm.expectRevert(abi.encodeWithSelector(AttestationVerifier.SignersNotAscending.selector, committee[0]));
        verifier.registerKey(a, sigs);
    }

    function test_registerKey_duplicateSignerRejected() public {
        KeyAttestation memory a = _newAtt();
        bytes32 d = verifier.keyAttestationDigest(a);
        bytes[] memory sigs = new bytes[](2);
        sigs[0] = sig(committeePks[1], d);
        sigs[1] = sig(committeePks[1], d);
        vm.expectRevert(abi.encodeWithSelector(AttestationVerifier.SignersNotAscending.selector, committee[1]));
        verifier.registerKey(a, sigs);
    }

    function test_registerKey_malformedSignature() public {
        KeyAttestation memory a = _newAtt();
        bytes[] memory sigs = _committeeSigs(verifier, a, 2);
        sigs[1] = hex"1234";
        vm.expectRevert(abi.encodeWithSelector(ECDSA.ECDSAInvalidSignatureLength.selector, 2));
        verifier.registerKey(a, sigs);
    }

    function test_registerKey_attestationExpired() public {
        KeyAttestation memory a = _newAtt();
        a.expiresAt = uint64(block.timestamp);
        bytes[] memory sigs = _committeeSigs(verifier, a, 2);
        vm.expectRevert(abi.encodeWithSelector(AttestationVerifier.AttestationExpired.selector, a.expiresAt));
        verifier.registerKey(a, sigs);
    }

    function test_registerKey_zeroAddresses() public {
        KeyAttestation memory a = _newAtt();
        a.provider = address(0);
        vm.expectRevert(AttestationVerifier.ZeroAddress.selector);
        verifier.registerKey(a, new bytes[](0));
        a = _newAtt();
        a.enclaveKey = address(0);
        vm.expectRevert(AttestationVerifier.ZeroAddress.selector);
        verifier.registerKey(a, new bytes[](0));
    }

    function test_registerKey_kindDisabled() public {
        KeyAttestation memory a = _att(provider1, newKey, TeeKind.NVIDIA_CC, M1, TcbStatus.UP_TO_DATE, expiry);
        bytes[] memory sigs = _committeeSigs(verifier, a, 2);
        vm.expectRevert(abi.encodeWithSelector(AttestationVerifier.KindDisabled.selector, TeeKind.NVIDIA_CC));
        verifier.registerKey(a, sigs);

        // a kind switched off later refuses new keys
        vm.prank(gov);
        verifier.setKindPolicy(TeeKind.TDX, false, 0);
        a = _newAtt();
        sigs = _committeeSigs(verifier, a, 2);
        vm.expectRevert(abi.encodeWithSelector(AttestationVerifier.KindDisabled.selector, TeeKind.TDX));
        verifier.registerKey(a, sigs);

        a.teeKind = 0;
        vm.expectRevert(abi.encodeWithSelector(AttestationVerifier.KindDisabled.selector, 0));
        verifier.registerKey(a, sigs);
    }

    function test_registerKey_tcbTooLow() public {
        KeyAttestation memory a = _att(provider1, newKey, TeeKind.TDX, M1, TcbStatus.OUT_OF_DATE, expiry);
        bytes[] memory sigs = _committeeSigs(verifier, a, 2);
        vm.expectRevert(
            abi.encodeWithSelector(
                AttestationVerifier.TcbTooLow.selector, TcbStatus.OUT_OF_DATE, TcbStatus.SW_HARDENING_NEEDED
            )
        );
        verifier.registerKey(a, sigs);
    }

    function test_registerKey_measurementNotAllowed() public {
        bytes32 m = keccak256("not approved");
        KeyAttestation memory a = _att(provider1, newKey, TeeKind.TDX, m, TcbStatus.UP_TO_DATE, expiry);
        bytes[] memory sigs = _committeeSigs(verifier, a, 2);
        vm.expectRevert(abi.encodeWithSelector(AttestationVerifier.MeasurementNotAllowed.selector, TeeKind.TDX, m));
        verifier.registerKey(a, sigs);
        // M_SGX is approved for SGX only
        a = _att(provider1, newKey, TeeKind.TDX, M_SGX, TcbStatus.UP_TO_DATE, expiry);
        sigs = _committeeSigs(verifier, a, 2);
        vm.expectRevert(
            abi.encodeWithSelector(AttestationVerifier.MeasurementNotAllowed.selector, TeeKind.TDX, M_SGX)
        );
        verifier.registerKey(a, sigs);
    }

    function test_registerKey_measurementRevoked() public {
        vm.prank(gov);
        verifier.revokeMeasurement(TeeKind.TDX, M1);
        KeyAttestation memory a = _newAtt();
        bytes[] memory sigs = _committeeSigs(verifier, a, 2);
        vm.expectRevert(
            abi.encodeWithSelector(AttestationVerifier.MeasurementRevoked.selector, verifier.measurementIdOf(2, M1))
        );
        verifier.registerKey(a, sigs);
    }

    function test_registerKey_measurementExpired() public {
        uint40 notAfter = uint40(T0 + 400 days);
        vm.warp(notAfter);
        KeyAttestation memory a = _att(provider1, newKey, TeeKind.TDX, M1, TcbStatus.UP_TO_DATE, notAfter + 10);
        bytes[] memory sigs = _committeeSigs(verifier, a, 2);
        vm.expectRevert(
            abi.encodeWithSelector(
                AttestationVerifier.MeasurementExpired.selector, verifier.measurementIdOf(2, M1), notAfter
            )
        );
        verifier.registerKey(a, sigs);
    }

    function test_registerKey_alreadyRegistered() public {
        KeyAttestation memory a = _att(provider1, enclave1, TeeKind.TDX, M1, TcbStatus.UP_TO_DATE, expiry);
        bytes[] memory sigs = _committeeSigs(verifier, a, 2);
        vm.expectRevert(abi.encodeWithSelector(AttestationVerifier.KeyAlreadyRegistered.selector, enclave1));
        verifier.registerKey(a, sigs);
        // nor can another provider take over a registered key
        a.provider = provider2;
        sigs = _committeeSigs(verifier, a, 2);
        vm.expectRevert(abi.encodeWithSelector(AttestationVerifier.KeyAlreadyRegistered.selector, enclave1));
        verifier.registerKey(a, sigs);
    }

    function test_registerKey_revokedKeyCannotComeBack() public {
        vm.prank(provider1);
        verifier.revokeKey(enclave1);
        KeyAttestation memory a = _att(provider1, enclave1, TeeKind.TDX, M1, TcbStatus.UP_TO_DATE, expiry);
        bytes[] memory sigs = _committeeSigs(verifier, a, 2);
        vm.expectRevert(abi.encodeWithSelector(AttestationVerifier.KeyAlreadyRegistered.selector, enclave1));
        verifier.registerKey(a, sigs);
        assertTrue(verifier.keyOf(enclave1).revoked);
    }

    // ------------------------------------------------------------------ revokeKey

    function test_revokeKey_byProvider() public {
        vm.expectEmit(address(verifier));
        emit AttestationVerifier.KeyRevokedEvent(provider1, enclave1, provider1);
        vm.prank(provider1);
        verifier.revokeKey(enclave1);
        assertTrue(verifier.keyOf(enclave1).revoked);
        vm.expectRevert(abi.encodeWithSelector(AttestationVerifier.KeyRevoked.selector, enclave1));
        verifier.checkKey(provider1, enclave1, block.timestamp);
    }

    function test_revokeKey_byRevoker() public {
        vm.expectEmit(address(verifier));
        emit AttestationVerifier.KeyRevokedEvent(provider2, enclave2, gov);
        vm.prank(gov);
        verifier.revokeKey(enclave2);
        (bool valid,,,) = verifier.isValidKey(provider2, enclave2);
        assertFalse(valid);
    }

    function test_revokeKey_strangerAndOtherProviderRefused() public {
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(AttestationVerifier.NotKeyOwnerOrRevoker.selector, stranger));
        verifier.revokeKey(enclave1);
        vm.prank(provider2);
        vm.expectRevert(abi.encodeWithSelector(AttestationVerifier.NotKeyOwnerOrRevoker.selector, provider2));
        verifier.revokeKey(enclave1);
        // the enclave key itself is not its owner either
        vm.prank(enclave1);
        vm.expectRevert(abi.encodeWithSelector(AttestationVerifier.NotKeyOwnerOrRevoker.selector, enclave1));
        verifier.revokeKey(enclave1);
        assertFalse(verifier.keyOf(enclave1).revoked);
    }

    function test_revokeKey_unknown() public {
        vm.prank(gov);
        vm.expectRevert(abi.encodeWithSelector(AttestationVerifier.UnknownKey.selector, newKey));
        verifier.revokeKey(newKey);
    }

    // ------------------------------------------------------------------ isValidKey / checkKey

    function _assertInvalid(address provider, address key) internal view {
        (bool valid,,,) = verifier.isValidKey(provider, key);
        assertFalse(valid, "key should be invalid");
    }

    function test_keyChecks_valid() public view {
        (bool valid, uint8 kind, bytes32 m, uint8 tcb) = verifier.isValidKey(provider1, enclave3);
        assertTrue(valid);
        assertEq(kind, TeeKind.SGX);
        assertEq(m, M_SGX);
        assertEq(tcb, TcbStatus.SW_HARDENING_NEEDED);
        (uint8 k2, uint32 mid, uint8 t2) = verifier.checkKey(provider1, enclave3, block.timestamp);
        assertEq(k2, TeeKind.SGX);
        assertEq(mid, verifier.measurementIdOf(TeeKind.SGX, M_SGX));
        assertEq(t2, TcbStatus.SW_HARDENING_NEEDED);
    }

    function test_keyChecks_unknown() public {
        _assertInvalid(provider1, newKey);
        vm.expectRevert(abi.encodeWithSelector(AttestationVerifier.UnknownKey.selector, newKey));
        verifier.checkKey(provider1, newKey, block.timestamp);
    }

    function test_keyChecks_otherProvidersKey() public {
        _assertInvalid(provider2, enclave1);
        vm.expectRevert(abi.encodeWithSelector(AttestationVerifier.KeyOfAnotherProvider.selector, enclave1, provider2));
        verifier.checkKey(provider2, enclave1, block.timestamp);
    }

    function test_keyChecks_revokedKey() public {
        vm.prank(gov);
        verifier.revokeKey(enclave1);
        _assertInvalid(provider1, enclave1);
        vm.expectRevert(abi.encodeWithSelector(AttestationVerifier.KeyRevoked.selector, enclave1));
        verifier.checkKey(provider1, enclave1, block.timestamp);
    }

    function test_keyChecks_expiredKey() public {
        KeyAttestation memory a = _newAtt();
        _registerKey(verifier, a);
        vm.warp(expiry - 1);
        (bool valid,,,) = verifier.isValidKey(provider1, newKey);
        assertTrue(valid);
        verifier.checkKey(provider1, newKey, block.timestamp);
        vm.warp(expiry);
        _assertInvalid(provider1, newKey);
        vm.expectRevert(abi.encodeWithSelector(AttestationVerifier.KeyExpired.selector, newKey, uint40(expiry)));
        verifier.checkKey(provider1, newKey, block.timestamp);
    }

    function test_keyChecks_revokedMeasurementDisablesKeysAtUse() public {
        uint32 id = verifier.measurementIdOf(TeeKind.TDX, M1);
        vm.prank(gov);
        verifier.revokeMeasurement(TeeKind.TDX, M1);
        // both keys under M1 stop at once; the SGX key is untouched
        _assertInvalid(provider1, enclave1);
        _assertInvalid(provider2, enclave2);
        vm.expectRevert(abi.encodeWithSelector(AttestationVerifier.MeasurementRevoked.selector, id));
        verifier.checkKey(provider1, enclave1, block.timestamp);
        vm.expectRevert(abi.encodeWithSelector(AttestationVerifier.MeasurementRevoked.selector, id));
        verifier.checkKey(provider2, enclave2, block.timestamp);
        verifier.checkKey(provider1, enclave3, block.timestamp);
    }

    function test_keyChecks_expiredMeasurement() public {
        uint32 id = verifier.measurementIdOf(TeeKind.TDX, M1);
        uint40 notAfter = uint40(block.timestamp + 5 days);
        vm.prank(gov);
        verifier.approveMeasurement(TeeKind.TDX, M1, notAfter);
        vm.warp(notAfter);
        _assertInvalid(provider1, enclave1);
        vm.expectRevert(abi.encodeWithSelector(AttestationVerifier.MeasurementExpired.selector, id, notAfter));
        verifier.checkKey(provider1, enclave1, block.timestamp);
        // extending the measurement brings its keys back (unlike a revocation)
        vm.prank(gov);
        verifier.approveMeasurement(TeeKind.TDX, M1, notAfter + 1 days);
        verifier.checkKey(provider1, enclave1, block.timestamp);
    }

    function testFuzz_isValidKeyAgreesWithCheckKey(uint256 warpBy, bool revokeM, bool revokeK, bool other) public {
        warpBy = bound(warpBy, 0, 800 days);
        if (revokeM) {
            vm.prank(gov);
            verifier.revokeMeasurement(TeeKind.TDX, M1);
        }
        if (revokeK) {
            vm.prank(gov);
            verifier.revokeKey(enclave1);
        }
        vm.warp(block.timestamp + warpBy);
        address p = other ? provider2 : provider1;
        (bool valid,,,) = verifier.isValidKey(p, enclave1);
        bool ok;
        try verifier.checkKey(p, enclave1, block.timestamp) {
            ok = true;
        } catch {}
        assertEq(valid, ok);
        assertEq(valid, !revokeM && !revokeK && !other && block.timestamp < T0 + 365 days);
    }
}

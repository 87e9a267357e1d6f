// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {IAttestationVerifier} from "./interfaces/IAttestationVerifier.sol";
import {KeyAttestation, TeeKind, TcbStatus} from "./CapaTypes.sol";

/// @title AttestationVerifier
/// @notice Holds the measurement policy per TEE kind and the enclave keys whose hardware
/// evidence a k-of-n verifier committee checked off-chain. JobMarket pays only against
/// results signed by a key this contract holds valid at the point of use.
/// @dev The per-kind policy is the emergency stop for a broken TEE: it is checked at every use
/// of a key (matching, accepting, settling), not only when the key is registered, so disabling
/// a kind or raising its TCB floor stops every key under it at once. A key and its measurement
/// must also stay valid through the deadline of a job it is matched to (`until`), so that a
/// provider is never assigned a job its key cannot settle.
contract AttestationVerifier is IAttestationVerifier, AccessControl, EIP712 {
    using SafeCast for uint256;

    /// Allowlists measurements and sets per-kind policy.
    bytes32 public constant APPROVER_ROLE = keccak256("APPROVER_ROLE");
    /// Revokes measurements and keys.
    bytes32 public constant REVOKER_ROLE = keccak256("REVOKER_ROLE");

    bytes32 public constant KEY_ATTESTATION_TYPEHASH = keccak256(
        "KeyAttestation(address provider,address enclaveKey,uint8 teeKind,bytes32 measurement,uint8 tcbStatus,bytes32 evidenceHash,uint64 expiresAt)"
    );

    struct KindPolicy {
        bool enabled;
        uint8 minTcbStatus;
    }

    /// @dev One slot, kept both by id (for key checks) and by value (for offers), so that
    /// either check costs one read.
    struct MeasurementStatus {
        uint32 id;
        uint8 teeKind;
        uint40 notAfter;
        bool revoked;
    }

    /// @dev One slot: everything submitResult needs about a key.
    struct Key {
        address provider;
        uint8 teeKind;
        uint32 measurementId;
        uint40 expiresAt;
        uint8 tcbStatus;
        bool revoked;
    }

    error UnknownTeeKind(uint8 teeKind);
    error SimNotAllowed();
    error KindDisabled(uint8 teeKind);
    error TcbTooLow(uint8 tcbStatus, uint8 minimum);
    error MeasurementNotAllowed(uint8 teeKind, bytes32 measurement);
    error MeasurementRevoked(uint32 measurementId);
    error MeasurementExpired(uint32 measurementId, uint40 notAfter);
    error AttestationExpired(uint64 expiresAt);
    error KeyAlreadyRegistered(address key);
    error UnknownKey(address key);
    error KeyOfAnotherProvider(address key, address provider);
    error KeyRevoked(address key);
    error KeyExpired(address key, uint40 expiresAt);
    error KeyExpiresBefore(address key, uint40 expiresAt, uint256 until);
    error MeasurementExpiresBefore(uint32 measurementId, uint40 notAfter, uint256 until);
    error KeyNotOfOffer(address key, uint8 teeKind, uint32 measurementId);
    error NotKeyOwnerOrRevoker(address caller);
    error NotEnoughSignatures(uint256 valid, uint256 threshold);
    error SignerNotInCommittee(address signer);
    error SignersNotAscending(address signer);
    error InvalidThreshold(uint256 threshold, uint256 members);
    error ZeroAddress();

    event KindPolicySet(uint8 indexed teeKind, bool enabled, uint8 minTcbStatus);
    event MeasurementApproved(uint8 indexed teeKind, bytes32 indexed measurement, uint32 id, uint40 notAfter);
    event MeasurementRevokedEvent(uint8 indexed teeKind, bytes32 indexed measurement, uint32 id);
    event CommitteeChanged(address[] added, address[] removed, uint256 threshold);
    event KeyRegistered(
        address indexed provider,
        address indexed enclaveKey,
        uint8 teeKind,
        bytes32 measurement,
        uint8 tcbStatus,
        bytes32 evidenceHash,
        uint64 expiresAt
    );
    event KeyRevokedEvent(address indexed provider, address indexed enclaveKey, address by);

    /// Devnets only: whether the SIM kind (no hardware, INSECURE) may ever be enabled.
    bool public immutable SIM_ALLOWED;

    mapping(uint8 => KindPolicy) public kindPolicy;
    mapping(uint8 => mapping(bytes32 => MeasurementStatus)) internal _measurementByValue;
    mapping(uint32 => MeasurementStatus) public measurementStatus;
    mapping(uint32 => bytes32) public measurementValue;
    uint32 public measurementCount;

    mapping(address => bool) public isCommitteeMember;
    uint128 public committeeSize;
    uint128 public threshold;

    mapping(address => Key) internal _keys;

    constructor(address governance, bool simAllowed)
        EIP712("CapaCloud AttestationVerifier", "1")
    {
        if (governance == address(0)) revert ZeroAddress();
        SIM_ALLOWED = simAllowed;
        _grantRole(DEFAULT_ADMIN_ROLE, governance);
        _grantRole(APPROVER_ROLE, governance);
        _grantRole(REVOKER_ROLE, governance);
    }

    // ---------------------------------------------------------------- governance

    /// @notice Add and remove committee members and set k in one step.
    function setCommittee(address[] calldata add, address[] calldata remove, uint128 threshold_)
        external
        onlyRole(DEFAULT_ADMIN_ROLE)
    {
        uint128 size = committeeSize;
        for (uint256 i; i < remove.length; ++i) {
            if (isCommitteeMember[remove[i]]) {
                isCommitteeMember[remove[i]] = false;
                --size;
            }
        }
        for (uint256 i; i < add.length; ++i) {
            if (add[i] == address(0)) revert ZeroAddress();
            if (!isCommitteeMember[add[i]]) {
                isCommitteeMember[add[i]] = true;
                ++size;
            }
        }
        if (threshold_ == 0 || threshold_ > size) revert InvalidThreshold(threshold_, size);
        committeeSize = size;
        threshold = threshold_;
        emit CommitteeChanged(add, remove, threshold_);
    }

    function setKindPolicy(uint8 teeKind, bool enabled, uint8 minTcbStatus) external onlyRole(APPROVER_ROLE) {
        if (!TeeKind.isKnown(teeKind)) revert UnknownTeeKind(teeKind);
        if (enabled && teeKind == TeeKind.SIM && !SIM_ALLOWED) revert SimNotAllowed();
        kindPolicy[teeKind] = KindPolicy(enabled, minTcbStatus);
        emit KindPolicySet(teeKind, enabled, minTcbStatus);
    }

    /// @notice Allowlist `measurement` for `teeKind` until `notAfter`, or move its `notAfter`.
    /// @dev Revocation is final: a revoked measurement cannot be approved again.
    function approveMeasurement(uint8 teeKind, bytes32 measurement, uint40 notAfter)
        external
        onlyRole(APPROVER_ROLE)
        returns (uint32 id)
    {
        if (!TeeKind.isKnown(teeKind)) revert UnknownTeeKind(teeKind);
        if (teeKind == TeeKind.SIM && !SIM_ALLOWED) revert SimNotAllowed();
        MeasurementStatus memory m = _measurementByValue[teeKind][measurement];
        id = m.id;
        if (id == 0) {
            id = ++measurementCount;
            measurementValue[id] = measurement;
        } else if (m.revoked) {
            revert MeasurementRevoked(id);
        }
        m = MeasurementStatus(id, teeKind, notAfter, false);
        _measurementByValue[teeKind][measurement] = m;
        measurementStatus[id] = m;
        emit MeasurementApproved(teeKind, measurement, id, notAfter);
    }

    /// @notice Revoke a measurement: every key registered under it stops being valid at once.
    function revokeMeasurement(uint8 teeKind, bytes32 measurement) external onlyRole(REVOKER_ROLE) {
        uint32 id = _measurementByValue[teeKind][measurement].id;
        if (id == 0) revert MeasurementNotAllowed(teeKind, measurement);
        _measurementByValue[teeKind][measurement].revoked = true;
        measurementStatus[id].revoked = true;
        emit MeasurementRevokedEvent(teeKind, measurement, id);
    }

    // ---------------------------------------------------------------- keys

    /// @notice Register an enclave key approved by at least `threshold` committee members.
    /// @param signatures committee signatures over the EIP-712 KeyAttestation, ordered by
    /// strictly ascending signer address (which also rules out counting one signer twice).
    function registerKey(KeyAttestation calldata att, bytes[] calldata signatures) external {
        if (att.expiresAt <= block.timestamp) revert AttestationExpired(att.expiresAt);
        if (att.provider == address(0) || att.enclaveKey == address(0)) revert ZeroAddress();
        KindPolicy memory policy = kindPolicy[att.teeKind];
        if (!policy.enabled) {
            if (att.teeKind == TeeKind.SIM && !SIM_ALLOWED) revert SimNotAllowed();
            revert KindDisabled(att.teeKind);
        }
        if (att.tcbStatus < policy.minTcbStatus) revert TcbTooLow(att.tcbStatus, policy.minTcbStatus);
        uint32 measurementId = _activeMeasurementId(att.teeKind, att.measurement);
        if (_keys[att.enclaveKey].provider != address(0)) revert KeyAlreadyRegistered(att.enclaveKey);

        _checkCommitteeSignatures(_hashTypedDataV4(hashKeyAttestation(att)), signatures);

        _keys[att.enclaveKey] = Key({
            provider: att.provider,
            teeKind: att.teeKind,
            measurementId: measurementId,
            expiresAt: uint256(att.expiresAt).toUint40(),
            tcbStatus: att.tcbStatus,
            revoked: false
        });
        emit KeyRegistered(
            att.provider, att.enclaveKey, att.teeKind, att.measurement, att.tcbStatus, att.evidenceHash, att.expiresAt
        );
    }

    /// @notice Revoke a key: its provider or a revoker may.
    function revokeKey(address key) external {
        Key storage k = _keys[key];
        if (k.provider == address(0)) revert UnknownKey(key);
        if (msg.sender != k.provider && !hasRole(REVOKER_ROLE, msg.sender)) {
            revert NotKeyOwnerOrRevoker(msg.sender);
        }
        k.revoked = true;
        emit KeyRevokedEvent(k.provider, key, msg.sender);
    }

    // ---------------------------------------------------------------- views

    /// @notice Whether `key` is valid now for `provider` (the kind's policy included), with its
    /// kind, measurement and TCB status.
    function isValidKey(address provider, address key)
        external
        view
        returns (bool valid, uint8 teeKind, bytes32 measurement, uint8 tcbStatus)
    {
        Key memory k = _keys[key];
        teeKind = k.teeKind;
        measurement = measurementValue[k.measurementId];
        tcbStatus = k.tcbStatus;
        if (k.provider == address(0) || k.provider != provider || k.revoked) return (false, teeKind, measurement, tcbStatus);
        if (k.expiresAt <= block.timestamp) return (false, teeKind, measurement, tcbStatus);
        KindPolicy memory policy = kindPolicy[k.teeKind];
        if (!policy.enabled || k.tcbStatus < policy.minTcbStatus) return (false, teeKind, measurement, tcbStatus);
        MeasurementStatus memory m = measurementStatus[k.measurementId];
        valid = !m.revoked && m.notAfter > block.timestamp;
    }

    function keyOf(address key) external view returns (Key memory) {
        return _keys[key];
    }

    function checkKey(address provider, address key, uint256 until)
        external
        view
        returns (uint8 teeKind, uint32 measurementId, uint8 tcbStatus)
    {
        Key memory k = _checkedKey(provider, key, until);
        _checkMeasurementLasts(measurementStatus[k.measurementId], until);
        return (k.teeKind, k.measurementId, k.tcbStatus);
    }

    function checkOfferKey(address provider, address key, uint8 teeKind, bytes32 measurement, uint256 until)
        external
        view
        returns (uint32 measurementId, uint8 tcbStatus)
    {
        Key memory k = _checkedKey(provider, key, until);
        // The by-value entry holds the same status as the by-id one: one read gives both the
        // offer's measurement id and whether it lasts.
        MeasurementStatus memory m = _measurementByValue[teeKind][measurement];
        if (m.id == 0) revert MeasurementNotAllowed(teeKind, measurement);
        if (k.teeKind != teeKind || k.measurementId != m.id) revert KeyNotOfOffer(key, teeKind, m.id);
        _checkMeasurementLasts(m, until);
        return (m.id, k.tcbStatus);
    }

    /// @notice The id given to `measurement` of `teeKind` when first approved; zero if never.
    function measurementIdOf(uint8 teeKind, bytes32 measurement) external view returns (uint32) {
        return _measurementByValue[teeKind][measurement].id;
    }

    function activeMeasurementId(uint8 teeKind, bytes32 measurement) external view returns (uint32) {
        return _activeMeasurementId(teeKind, measurement);
    }

    function domainSeparator() external view returns (bytes32) {
        return _domainSeparatorV4();
    }

    function hashKeyAttestation(KeyAttestation calldata att) public pure returns (bytes32) {
        return keccak256(
            abi.encode(
                KEY_ATTESTATION_TYPEHASH,
                att.provider,
                att.enclaveKey,
                att.teeKind,
                att.measurement,
                att.tcbStatus,
                att.evidenceHash,
                att.expiresAt
            )
        );
    }

    /// @notice The EIP-712 digest committee members sign for `att`.
    function keyAttestationDigest(KeyAttestation calldata att) external view returns (bytes32) {
        return _hashTypedDataV4(hashKeyAttestation(att));
    }

    // ---------------------------------------------------------------- internal

    /// @dev The key, if it belongs to `provider`, is not revoked, passes its kind's policy now
    /// and does not expire before `until` (which is at least now).
    function _checkedKey(address provider, address key, uint256 until) internal view returns (Key memory k) {
        k = _keys[key];
        if (k.provider == address(0)) revert UnknownKey(key);
        if (k.provider != provider) revert KeyOfAnotherProvider(key, provider);
        if (k.revoked) revert KeyRevoked(key);
        KindPolicy memory policy = kindPolicy[k.teeKind];
        if (!policy.enabled) revert KindDisabled(k.teeKind);
        if (k.tcbStatus < policy.minTcbStatus) revert TcbTooLow(k.tcbStatus, policy.minTcbStatus);
        if (k.expiresAt <= until) {
            if (k.expiresAt <= block.timestamp) revert KeyExpired(key, k.expiresAt);
            revert KeyExpiresBefore(key, k.expiresAt, until);
        }
    }

    function _checkMeasurementLasts(MeasurementStatus memory m, uint256 until) internal view {
        if (m.revoked) revert MeasurementRevoked(m.id);
        if (m.notAfter <= until) {
            if (m.notAfter <= block.timestamp) revert MeasurementExpired(m.id, m.notAfter);
            revert MeasurementExpiresBefore(m.id, m.notAfter, until);
        }
    }

    function _activeMeasurementId(uint8 teeKind, bytes32 measurement) internal view returns (uint32 id) {
        MeasurementStatus memory m = _measurementByValue[teeKind][measurement];
        id = m.id;
        if (id == 0) revert MeasurementNotAllowed(teeKind, measurement);
        if (m.revoked) revert MeasurementRevoked(id);
        if (m.notAfter <= block.timestamp) revert MeasurementExpired(id, m.notAfter);
    }

    function _checkCommitteeSignatures(bytes32 digest, bytes[] calldata signatures) internal view {
        uint256 k = threshold;
        if (signatures.length < k || k == 0) revert NotEnoughSignatures(signatures.length, k);
        address previous;
        for (uint256 i; i < k; ++i) {
            address signer = ECDSA.recover(digest, signatures[i]);
            if (signer <= previous) revert SignersNotAscending(signer);
            if (!isCommitteeMember[signer]) revert SignerNotInCommittee(signer);
            previous = signer;
        }
    }
}

// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {TestBase} from "./TestBase.sol";
import {Fixture} from "./Fixture.sol";
import {MockERC20} from "./mocks/MockERC20.sol";
import {AttestationVerifier} from "../src/AttestationVerifier.sol";
import {ProviderRegistry} from "../src/ProviderRegistry.sol";
import {JobMarket} from "../src/JobMarket.sol";
import {JobRequest, KeyAttestation, Offer, TeeKind, TcbStatus} from "../src/CapaTypes.sol";

/// @notice The deployment the handler drives, handed over in one piece.
struct Cast {
    JobMarket market;
    ProviderRegistry registry;
    AttestationVerifier verifier;
    MockERC20 token; // zero: native deployment
    address gov;
    address treasury;
    address stranger;
    address[] clients;
    uint256[] providerPks; // the last one starts unregistered
    uint256[] enclavePks; // one long-lived TDX key per registered provider
    uint256[] committeePks; // ascending by address
}

/// @notice Drives the three contracts with bounded random actions over a fixed cast: three
/// clients, three providers (two staked from the start, one that registers during the run),
/// governance, the verifier committee and a stranger. Every external function of the three
/// contracts is called. Providers are honest where the protocol asks them to be: one signs
/// an input receipt only while its minimum duration is left, and one that tries to deliver and
/// cannot (a key stopped by governance) gives the job back at once. Every call that must
/// succeed and does not, or must fail and does not, counts as a violation the invariants then
/// report.
contract Handler is TestBase {
    uint256 internal constant BPS = 10_000;

    JobMarket public immutable market;
    ProviderRegistry public immutable registry;
    AttestationVerifier public immutable verifier;
    MockERC20 public immutable token;
    address public immutable gov;
    address public immutable treasury;
    address public immutable stranger;

    address[] public clients;
    address[] public providers;
    uint256[] internal providerPks;
    uint256[] internal committeePks;
    /// Enclave keys per provider index (the first is the long-lived one).
    mapping(uint256 => uint256[]) internal keyPks;

    bytes32[] public jobs;
    mapping(bytes32 => address) public clientOf;
    /// The minimum duration the provider stated for the job (offer or accept).
    mapping(bytes32 => uint64) public minDurationOf;
    /// The provider's input receipt, once the client's input arrived in time.
    mapping(bytes32 => bytes) internal receiptOf;
    /// The provider tried to deliver a valid result by the deadline.
    mapping(bytes32 => bool) public deliveryAttempted;
    /// Stake taken from the provider when the job timed out.
    mapping(bytes32 => uint256) public slashedFor;
    /// Successful settlements (submitResult or inside submitResults) per job.
    mapping(bytes32 => uint256) public payouts;
    /// Successful claimTimeout or releaseJob calls per job.
    mapping(bytes32 => uint256) public refunds;
    /// The first terminal state the handler saw for a job (0 while none).
    mapping(bytes32 => uint8) public firstTerminal;

    /// Stake put in (register, addStake) and moved to unbonding (requestUnbond, exit).
    mapping(address => uint256) public stakeIn;
    mapping(address => uint256) public stakeOut;
    mapping(address => mapping(uint256 => bool)) internal invalidated;

    uint256 public violations;
    string public lastViolation;
    uint256 internal nonce;
    uint256 internal keySeed = 0x5EED;
    mapping(string => uint256) public calls;
    /// Why matches and accepts were refused, by error selector (to see what a run exercised).
    mapping(bytes4 => uint256) public refusals;

    constructor(Cast memory c) {
        market = c.market;
        registry = c.registry;
        verifier = c.verifier;
        token = c.token;
        gov = c.gov;
        treasury = c.treasury;
        stranger = c.stranger;
        clients = c.clients;
        providerPks = c.providerPks;
        committeePks = c.committeePks;
        for (uint256 i; i < c.providerPks.length; ++i) {
            address p = vm.addr(c.providerPks[i]);
            providers.push(p);
            stakeIn[p] = registry.providerOf(p).stake;
        }
        for (uint256 i; i < c.enclavePks.length; ++i) keyPks[i].push(c.enclavePks[i]);
    }

    // ------------------------------------------------------------------ views for the invariants

    function hasReceipt(bytes32 id) external view returns (bool) {
        return receiptOf[id].length != 0;
    }

    function jobCount() external view returns (uint256) {
        return jobs.length;
    }

    function clientCount() external view returns (uint256) {
        return clients.length;
    }

    function providerCount() external view returns (uint256) {
        return providers.length;
    }

    // ================================================================== JobMarket: money

    function deposit(uint256 who, uint256 amount) external {
        address c = clients[who % clients.length];
        amount = bound(amount, 1, 10 ether);
        _fund(c, amount);
        vm.prank(c);
        try market.deposit{value: _native() ? amount : 0}(amount) {
            ++calls["deposit"];
        } catch {
            _violation("deposit failed");
        }
        _afterAction();
    }

    function withdraw(uint256 who, uint256 amount, bool toOther) external {
        address a = _actor(who);
        uint256 bal = market.balanceOf(a);
        if (bal == 0) {
            vm.prank(a);
            try market.withdraw(1, a) {
                _violation("withdraw without balance");
            } catch {}
            return;
        }
        amount = bound(amount, 1, bal);
        vm.prank(a);
        try market.withdraw(amount, toOther ? clients[0] : a) {
            ++calls["withdraw"];
        } catch {
            _violation("withdraw failed");
        }
        _afterAction();
    }

    function withdrawFees() external {
        uint256 fees = market.feesAccrued();
        vm.prank(treasury);
        try market.withdrawFees() {
            ++calls["withdrawFees"];
            if (fees == 0) _violation("withdrawFees with no fees");
        } catch {
            if (fees != 0) _violation("withdrawFees failed");
        }
        _afterAction();
    }

    // ================================================================== JobMarket: jobs

    /// Deadlines from one second up (most of them long enough for the offer's minimum);
    /// minimum durations from one second to two hours.
    function matchJob(uint256 who, uint256 prov, uint256 price, uint256 duration, uint256 minDur, uint256 seed)
        external
    {
        address c = clients[who % clients.length];
        uint256 pi = prov % providers.length;
        price = bound(price, 1, 2 ether);
        uint256 need = bound(minDur, 1, 2 hours);
        duration = seed % 6 == 0 ? bound(duration, 1, 20 hours) : bound(duration, need, 12 hours);
        JobRequest memory r = _request(price, duration, seed);
        Offer memory o = _offerFor(pi, price, need, seed);
        if (seed % 3 == 0) o.requestHash = market.requestHashFor(c, r);
        if (seed % 11 == 0) _invalidate(pi, o.nonce); // the provider cancels it before it is used
        bytes memory s = sig(providerPks[pi], market.offerDigest(o));
        uint256 value = _prepareFunds(c, price, seed % 2 == 0);
        vm.prank(c);
        try market.matchJob{value: value}(r, o, s) returns (bytes32 id) {
            ++calls["matchJob"];
            _track(id, c, o.minDuration);
            _checkMatched(id, o);
        } catch (bytes memory err) {
            ++refusals[bytes4(err)];
        }
        _afterAction();
    }

    function postJob(uint256 who, uint256 price, uint256 duration, uint256 seed) external {
        address c = clients[who % clients.length];
        price = bound(price, 1, 5 ether);
        duration = seed % 6 == 0 ? bound(duration, 1, 20 hours) : bound(duration, 1 hours, 20 hours);
        JobRequest memory r = _request(price, duration, seed);
        uint256 value = _prepareFunds(c, price, seed % 2 == 0);
        vm.prank(c);
        try market.postJob{value: value}(r) returns (bytes32 id) {
            ++calls["postJob"];
            _track(id, c, 0);
        } catch {
            _violation("postJob failed");
        }
        _afterAction();
    }

    function acceptJob(uint256 jobSeed, uint256 prov, uint256 keySeed_, uint256 minDur) external {
        if (jobs.length == 0) return;
        bytes32 id = _pick(jobSeed, JobMarket.State.Posted);
        uint256 pi = prov % providers.length;
        uint64 need = uint64(bound(minDur, 1, 1 hours));
        address key = keySeed_ % 5 == 0 ? _keyOf(pi, keySeed_) : _validKey(pi, keySeed_);
        JobMarket.State before = market.jobState(id);
        vm.prank(providers[pi]);
        ++calls["acceptJob?"];
        try market.acceptJob(id, key, need) {
            ++calls["acceptJob"];
            minDurationOf[id] = need;
            if (before != JobMarket.State.Posted) _violation("accepted a job not posted");
            JobMarket.Job memory j = market.getJob(id);
            if (j.deadline < block.timestamp + need) _violation("accepted a deadline shorter than needed");
            _checkKeyOutlives(key, j.deadline);
        } catch (bytes memory err) {
            ++refusals[bytes4(err)];
        }
        _afterAction();
    }

    function cancelJob(uint256 jobSeed, bool asStranger) external {
        if (jobs.length == 0) return;
        bytes32 id = _pick(jobSeed, JobMarket.State.Posted);
        JobMarket.State before = market.jobState(id);
        vm.prank(asStranger ? stranger : clientOf[id]);
        try market.cancelJob(id) {
            ++calls["cancelJob"];
            if (before != JobMarket.State.Posted || asStranger) _violation("bad cancel");
        } catch {
            if (before == JobMarket.State.Posted && !asStranger) _violation("cancel failed");
        }
        _afterAction();
    }

    /// The client's sealed input arrives: the provider acknowledges it, but only while at least
    /// its minimum duration is left (later it could not promise to finish).
    function uploadInput(uint256 jobSeed) external {
        if (jobs.length == 0) return;
        bytes32 id = _pick(jobSeed, JobMarket.State.Accepted);
        JobMarket.Job memory j = market.getJob(id);
        if (j.state != JobMarket.State.Accepted || receiptOf[id].length != 0) return;
        if (block.timestamp + minDurationOf[id] > j.deadline) return;
        receiptOf[id] = sig(_pkOf(j.provider), market.inputReceiptDigest(id, j.taskHash));
        ++calls["uploadInput"];
    }

    /// The provider delivers: it signs with the key it holds; if the settlement fails while the
    /// deadline is still ahead (governance stopped the key or its kind), it gives the job back.
    function submitResult(uint256 jobSeed, uint256 out, uint256 keySeed_, uint8 mode) external {
        if (jobs.length == 0) return;
        bytes32 id = _pick(jobSeed, JobMarket.State.Accepted);
        JobMarket.Job memory j = market.getJob(id);
        if (j.provider == address(0)) return;
        uint256 pi = _providerIndex(j.provider);
        bool wrongKey = mode % 8 == 0;
        uint256 pk = wrongKey ? _keyPkOf((pi + 1) % providers.length, 0) : _fittingKeyPk(pi, j, keySeed_);
        if (pk == 0) pk = 0xBAD;
        bytes32 outputHash = keccak256(abi.encode(out));
        bytes memory s = sig(pk, market.resultDigest(id, j.provider, j.taskHash, outputHash));
        bool open = j.state == JobMarket.State.Accepted && block.timestamp <= j.deadline;
        bool honest = open && !wrongKey;
        bool expected = honest && _keyFits(j, vm.addr(pk));
        if (honest) deliveryAttempted[id] = true;
        try market.submitResult(id, outputHash, s) {
            ++calls["submitResult"];
            ++payouts[id];
            if (!expected) _violation("bad settlement");
        } catch {
            if (expected) _violation("valid settlement refused");
            if (honest) _release(id, j.provider, true);
        }
        _afterAction();
    }

    function submitResults(uint256 start, uint256 n, uint8 anyStateSeed) external {
        bool anyState = anyStateSeed % 4 == 0;
        if (jobs.length == 0) return;
        n = bound(n, 1, 4);
        bytes32[] memory picked = new bytes32[](n);
        uint256 count;
        address provider;
        for (uint256 k; k < jobs.length && count < n; ++k) {
            bytes32 id = jobs[(start % jobs.length + k) % jobs.length];
            JobMarket.Job memory j = market.getJob(id);
            if (j.provider == address(0)) continue;
            if (!anyState && j.state != JobMarket.State.Accepted) continue;
            if (provider == address(0)) provider = j.provider;
            if (j.provider != provider) continue;
            picked[count++] = id;
        }
        if (count == 0) return;
        bytes32[] memory ids = new bytes32[](count);
        bytes32[] memory outs = new bytes32[](count);
        uint256 pi = _providerIndex(provider);
        address key = vm.addr(keyPks[pi][0]);
        bool settleable = true;
        for (uint256 i; i < count; ++i) {
            ids[i] = picked[i];
            outs[i] = keccak256(abi.encode(start, i));
            JobMarket.Job memory j = market.getJob(ids[i]);
            if (j.state != JobMarket.State.Accepted || block.timestamp > j.deadline || !_keyFits(j, key)) {
                settleable = false;
            }
            for (uint256 q; q < i; ++q) if (ids[q] == ids[i]) settleable = false;
        }
        bytes memory s = _signBatch(pi, provider, ids, outs);
        try market.submitResults(ids, outs, s) {
            ++calls["submitResults"];
            for (uint256 i; i < count; ++i) {
                ++payouts[ids[i]];
                deliveryAttempted[ids[i]] = true;
            }
            if (!settleable) _violation("bad batch settlement");
        } catch {
            if (settleable) _violation("valid batch refused");
        }
        _afterAction();
    }

    function releaseJob(uint256 jobSeed, bool asOther) external {
        if (jobs.length == 0) return;
        bytes32 id = _pick(jobSeed, JobMarket.State.Accepted);
        JobMarket.Job memory j = market.getJob(id);
        if (j.provider == address(0)) return;
        address caller = asOther ? clientOf[id] : j.provider;
        bool ok = j.state == JobMarket.State.Accepted && !asOther && block.timestamp <= j.deadline;
        vm.prank(caller);
        try market.releaseJob(id) {
            ++calls["releaseJob"];
            ++refunds[id];
            if (!ok) _violation("bad release");
        } catch {
            if (ok) _violation("release failed");
        }
        _afterAction();
    }

    function claimTimeout(uint256 jobSeed, uint8 mode) external {
        if (jobs.length == 0) return;
        bytes32 id = _pick(jobSeed, JobMarket.State.Accepted);
        JobMarket.Job memory j = market.getJob(id);
        bool withReceipt = mode % 2 == 0 && receiptOf[id].length != 0;
        address caller = mode % 3 == 0 ? stranger : clientOf[id];
        bool claimable = j.state == JobMarket.State.Accepted && block.timestamp > j.deadline
            && (withReceipt || caller == clientOf[id] || block.timestamp > uint256(j.deadline) + registry.DISPUTE_WINDOW());
        uint256 before = _slashable(j.provider);
        vm.prank(caller);
        try market.claimTimeout(id, withReceipt ? receiptOf[id] : bytes("")) {
            ++calls["claimTimeout"];
            ++refunds[id];
            slashedFor[id] = before - _slashable(j.provider);
            if (!claimable) _violation("bad timeout claim");
            if (slashedFor[id] != (withReceipt ? market.slashAmountOf(j.price) : 0)) _violation("wrong slash");
        } catch {
            if (claimable) _violation("timeout claim failed");
        }
        _afterAction();
    }

    function invalidateNonces(uint256 prov, uint256 n) external {
        uint256 pi = prov % providers.length;
        _invalidate(pi, bound(n, 0, nonce + 8));
        ++calls["invalidateNonces"];
        _afterAction();
    }

    // ================================================================== ProviderRegistry

    function register(uint256 amount, bool twice) external {
        address p = providers[providers.length - 1]; // the late provider
        bool fresh = registry.providerOf(p).status == ProviderRegistry.Status.None;
        amount = bound(amount, 1 ether, 5 ether);
        _fund(p, amount);
        vm.prank(p);
        try registry.register{value: _native() ? amount : 0}(bytes("late-peer"), amount) {
            ++calls["register"];
            stakeIn[p] += amount;
            if (!fresh) _violation("registered twice");
            _registerFirstKey(providers.length - 1);
        } catch {
            if (fresh) _violation("register failed");
        }
        if (twice) {
            vm.prank(p);
            try registry.updatePeerId(bytes("late-peer-2")) {
                ++calls["updatePeerId"];
            } catch {
                _violation("updatePeerId failed");
            }
        }
        _afterAction();
    }

    function addStake(uint256 prov, uint256 amount) external {
        address p = providers[prov % providers.length];
        ProviderRegistry.Status status = registry.providerOf(p).status;
        bool ok = status == ProviderRegistry.Status.Active || status == ProviderRegistry.Status.Jailed;
        amount = bound(amount, 1, 5 ether);
        _fund(p, amount);
        vm.prank(p);
        try registry.addStake{value: _native() ? amount : 0}(amount) {
            ++calls["addStake"];
            stakeIn[p] += amount;
            if (!ok) _violation("addStake after exit");
        } catch {
            if (ok) _violation("addStake failed");
        }
        _afterAction();
    }

    function requestUnbond(uint256 prov, uint256 amount) external {
        address p = providers[prov % providers.length];
        ProviderRegistry.Provider memory pr = registry.providerOf(p);
        uint256 free = pr.stake - market.lockedStakeOf(p);
        // the whole stake (refused while jobs reserve some), all that is free, or a little
        uint256 mode = amount % 8;
        amount = mode == 0 ? pr.stake : mode == 1 ? free : bound(amount, 1, 1 ether);
        bool ok = pr.status != ProviderRegistry.Status.None && amount != 0 && amount <= free;
        vm.prank(p);
        try registry.requestUnbond(amount) {
            ++calls["requestUnbond"];
            stakeOut[p] += amount;
            if (!ok) _violation("unbonded reserved stake");
        } catch {
            if (ok) _violation("requestUnbond failed");
        }
        _afterAction();
    }

    /// Leaving is for good: it happens in one call of sixteen, so that runs keep their providers.
    function exit(uint256 prov, uint256 seed) external {
        if (seed % 16 != 0) return;
        address p = providers[prov % providers.length];
        ProviderRegistry.Provider memory pr = registry.providerOf(p);
        bool ok = pr.status != ProviderRegistry.Status.None && pr.status != ProviderRegistry.Status.Exited;
        vm.prank(p);
        try registry.exit() {
            ++calls["exit"];
            uint256 left = registry.providerOf(p).stake;
            stakeOut[p] += pr.stake - left;
            if (!ok) _violation("bad exit");
            if (left != market.lockedStakeOf(p)) _violation("exit left other than the reserved stake");
        } catch {
            if (ok) _violation("exit failed");
        }
        _afterAction();
    }

    function withdrawUnbonded(uint256 prov) external {
        address p = providers[prov % providers.length];
        (uint96 amount, uint40 unlockAt) = registry.unbonding(p);
        bool ok = amount != 0 && block.timestamp >= unlockAt;
        vm.prank(p);
        try registry.withdrawUnbonded() {
            ++calls["withdrawUnbonded"];
            if (!ok) _violation("withdrew before the unlock");
        } catch {
            if (ok) _violation("withdrawUnbonded failed");
        }
        _afterAction();
    }

    function withdrawCompensation(uint256 who) external {
        address c = clients[who % clients.length];
        uint256 amount = registry.compensationOf(c);
        vm.prank(c);
        try registry.withdrawCompensation(c) {
            ++calls["withdrawCompensation"];
            if (amount == 0) _violation("compensation from nothing");
        } catch {
            if (amount != 0) _violation("withdrawCompensation failed");
        }
        _afterAction();
    }

    /// Only the market slashes: the registry's own owner cannot.
    function slashDirectly(uint256 prov, bool asGov) external {
        vm.prank(asGov ? gov : stranger);
        try registry.slash(providers[prov % providers.length], 1 ether, stranger, 1 ether) {
            _violation("slashed outside the market");
        } catch {}
        ++calls["slashDirectly"];
    }

    function jail(uint256 prov, bool unjail_) external {
        address p = providers[prov % providers.length];
        ProviderRegistry.Status status = registry.providerOf(p).status;
        vm.prank(gov);
        if (unjail_) {
            try registry.unjail(p) {
                ++calls["unjail"];
                if (status != ProviderRegistry.Status.Jailed) _violation("bad unjail");
            } catch {
                if (status == ProviderRegistry.Status.Jailed) _violation("unjail failed");
            }
        } else {
            try registry.jail(p) {
                ++calls["jail"];
                if (status != ProviderRegistry.Status.Active) _violation("bad jail");
            } catch {
                if (status == ProviderRegistry.Status.Active) _violation("jail failed");
            }
        }
        _afterAction();
    }

    function sweepSlashed() external {
        address[] memory ps = providers;
        uint256 total;
        for (uint256 i; i < ps.length; ++i) total += registry.providerOf(ps[i]).slashed;
        vm.prank(gov);
        try registry.sweepSlashed(ps, treasury) {
            ++calls["sweepSlashed"];
            if (total == 0) _violation("swept nothing");
        } catch {
            if (total != 0) _violation("sweep failed");
        }
        _afterAction();
    }

    function setUnbondingDelay(uint256 delay) external {
        uint64 minimum = registry.MAX_JOB_DURATION() + registry.DISPUTE_WINDOW();
        uint64 d = uint64(bound(delay, minimum - 1, uint256(registry.MAX_UNBONDING_DELAY()) + 1));
        bool ok = d >= minimum && d <= registry.MAX_UNBONDING_DELAY();
        vm.prank(gov);
        try registry.setUnbondingDelay(d) {
            ++calls["setUnbondingDelay"];
            if (!ok) _violation("delay out of bounds accepted");
        } catch {
            if (ok) _violation("setUnbondingDelay failed");
        }
        _afterAction();
    }

    // ================================================================== AttestationVerifier

    /// The emergency stop, mostly lifted again soon after.
    function setKindPolicy(uint256 seed, bool raise) external {
        bool enabled = seed % 4 != 0;
        vm.prank(gov);
        verifier.setKindPolicy(
            TeeKind.TDX, enabled, raise ? TcbStatus.UP_TO_DATE : TcbStatus.SW_HARDENING_NEEDED
        );
        ++calls["setKindPolicy"];
        _afterAction();
    }

    function approveMeasurement(bool second, uint256 lifetime) external {
        bytes32 m = second ? keccak256("tdx image v2") : keccak256("tdx image v1");
        uint40 notAfter = uint40(block.timestamp + bound(lifetime, 1 hours, 400 days));
        vm.prank(gov);
        try verifier.approveMeasurement(TeeKind.TDX, m, notAfter) {
            ++calls["approveMeasurement"];
        } catch {}
        _afterAction();
    }

    /// Revocation is final: only the second image is ever revoked, so the run goes on.
    function revokeMeasurement() external {
        vm.prank(gov);
        try verifier.revokeMeasurement(TeeKind.TDX, keccak256("tdx image v2")) {
            ++calls["revokeMeasurement"];
        } catch {}
        _afterAction();
    }

    function registerKey(uint256 prov, uint256 lifetime, bool second, bool lowTcb) external {
        uint256 pi = prov % providers.length;
        uint256 pk = ++keySeed;
        KeyAttestation memory a;
        a.provider = providers[pi];
        a.enclaveKey = vm.addr(pk);
        a.teeKind = TeeKind.TDX;
        a.measurement = second ? keccak256("tdx image v2") : keccak256("tdx image v1");
        a.tcbStatus = lowTcb ? TcbStatus.SW_HARDENING_NEEDED : TcbStatus.UP_TO_DATE;
        a.evidenceHash = keccak256(abi.encode("evidence", pk));
        a.expiresAt = uint64(block.timestamp + bound(lifetime, 1, 30 days));
        bytes[] memory sigs = _committeeSigs(a);
        try verifier.registerKey(a, sigs) {
            ++calls["registerKey"];
            keyPks[pi].push(pk);
        } catch {}
        _afterAction();
    }

    function revokeKey(uint256 prov, uint256 which, bool byRevoker) external {
        uint256 pi = prov % providers.length;
        uint256[] storage ks = keyPks[pi];
        if (ks.length < 2) return;
        address key = vm.addr(ks[1 + which % (ks.length - 1)]); // the long-lived key stays
        vm.prank(byRevoker ? gov : providers[pi]);
        try verifier.revokeKey(key) {
            ++calls["revokeKey"];
        } catch {
            _violation("revokeKey failed");
        }
        _afterAction();
    }

    function setCommittee(uint256 k) external {
        address[] memory members = new address[](committeePks.length);
        for (uint256 i; i < members.length; ++i) members[i] = vm.addr(committeePks[i]);
        vm.prank(gov);
        verifier.setCommittee(members, new address[](0), uint128(bound(k, 1, members.length)));
        ++calls["setCommittee"];
        _afterAction();
    }

    // ================================================================== time

    function warp(uint256 secs, bool long) external {
        secs = long ? bound(secs, 1 days, 3 days) : bound(secs, 0, 8 hours);
        vm.warp(block.timestamp + secs);
        ++calls["warp"];
        _afterAction();
    }

    // ------------------------------------------------------------------ internal

    function _native() internal view returns (bool) {
        return address(token) == address(0);
    }

    /// @dev Most of the time a job in state `want` (so that the action can succeed), else any job.
    function _pick(uint256 seed, JobMarket.State want) internal view returns (bytes32) {
        uint256 n = jobs.length;
        if (seed % 4 != 0) {
            for (uint256 k; k < n; ++k) {
                bytes32 id = jobs[(seed % n + k) % n];
                if (market.jobState(id) == want) return id;
            }
        }
        return jobs[seed % n];
    }

    function _actor(uint256 seed) internal view returns (address) {
        uint256 i = seed % (clients.length + providers.length);
        return i < clients.length ? clients[i] : providers[i - clients.length];
    }

    function _providerIndex(address p) internal view returns (uint256) {
        for (uint256 i; i < providers.length; ++i) if (providers[i] == p) return i;
        revert("unknown provider");
    }

    function _pkOf(address p) internal view returns (uint256) {
        return providerPks[_providerIndex(p)];
    }

    function _keyPkOf(uint256 pi, uint256 seed) internal view returns (uint256) {
        uint256[] storage ks = keyPks[pi];
        return ks.length == 0 ? 0 : ks[seed % ks.length];
    }

    /// @dev A key of the provider that is valid now (what an honest provider offers), else any.
    function _validKey(uint256 pi, uint256 seed) internal view returns (address) {
        uint256[] storage ks = keyPks[pi];
        for (uint256 k; k < ks.length; ++k) {
            address key = vm.addr(ks[(seed % ks.length + k) % ks.length]);
            (bool valid,,,) = verifier.isValidKey(providers[pi], key);
            if (valid) return key;
        }
        return _keyOf(pi, seed);
    }

    /// @dev The key an honest provider settles `j` with: one that fits it, else any of its keys.
    function _fittingKeyPk(uint256 pi, JobMarket.Job memory j, uint256 seed) internal view returns (uint256) {
        uint256[] storage ks = keyPks[pi];
        for (uint256 k; k < ks.length; ++k) {
            uint256 pk = ks[(seed % ks.length + k) % ks.length];
            if (_keyFits(j, vm.addr(pk))) return pk;
        }
        return _keyPkOf(pi, seed);
    }

    function _keyOf(uint256 pi, uint256 seed) internal view returns (address) {
        uint256 pk = _keyPkOf(pi, seed);
        return pk == 0 ? vm.addr(0xBAD) : vm.addr(pk);
    }

    function _fund(address who, uint256 amount) internal {
        if (_native()) {
            vm.deal(who, who.balance + amount);
        } else {
            token.mint(who, amount);
            vm.startPrank(who);
            token.approve(address(market), type(uint256).max);
            token.approve(address(registry), type(uint256).max);
            vm.stopPrank();
        }
    }

    /// @dev Returns msg.value to send: native pays by value (sometimes with excess), or leans on
    /// the free balance; ERC-20 always pays from the free balance, topped up by a deposit.
    function _prepareFunds(address c, uint256 price, bool fromBalance) internal returns (uint256 value) {
        uint256 bal = market.balanceOf(c);
        if (fromBalance && bal >= price) return 0;
        if (_native()) {
            value = fromBalance ? price - bal : price + price / 3;
            vm.deal(c, c.balance + value);
            return value;
        }
        uint256 need = price > bal ? price - bal : 0;
        if (need != 0) {
            _fund(c, need);
            vm.prank(c);
            market.deposit(need);
        }
        return 0;
    }

    function _request(uint256 price, uint256 duration, uint256 seed) internal returns (JobRequest memory r) {
        ++nonce;
        r.specHash = keccak256(abi.encode("spec", seed % 3));
        r.inputHash = keccak256(abi.encode("input", nonce));
        r.teeKinds = TeeKind.bit(TeeKind.TDX);
        r.minTcbStatus = seed % 5 == 0 ? TcbStatus.SW_HARDENING_NEEDED : TcbStatus.UP_TO_DATE;
        r.maxPrice = price;
        r.deadline = uint64(block.timestamp + duration);
        r.nonce = nonce;
    }

    function _offerFor(uint256 pi, uint256 price, uint256 minDur, uint256 seed) internal returns (Offer memory o) {
        ++nonce;
        address key = seed % 5 == 0 ? _keyOf(pi, seed) : _validKey(pi, seed);
        AttestationVerifier.Key memory k = verifier.keyOf(key);
        o.provider = providers[pi];
        o.enclaveKey = key;
        o.teeKind = TeeKind.TDX;
        o.measurement = verifier.measurementValue(k.measurementId);
        o.price = price;
        o.minDuration = uint64(minDur);
        o.maxDuration = seed % 8 == 0 ? uint64(bound(seed >> 8, 1, 12 hours)) : 12 hours;
        o.validUntil = uint64(block.timestamp + 1 hours);
        o.nonce = nonce;
    }

    function _invalidate(uint256 pi, uint256 n) internal {
        vm.prank(providers[pi]);
        market.invalidateNonces(n >> 8, uint256(1) << (n & 0xff));
        invalidated[providers[pi]][n] = true;
    }

    function _registerFirstKey(uint256 pi) internal {
        if (keyPks[pi].length != 0) return;
        uint256 pk = ++keySeed;
        KeyAttestation memory a;
        a.provider = providers[pi];
        a.enclaveKey = vm.addr(pk);
        a.teeKind = TeeKind.TDX;
        a.measurement = keccak256("tdx image v1");
        a.tcbStatus = TcbStatus.UP_TO_DATE;
        a.evidenceHash = keccak256(abi.encode("evidence", pk));
        a.expiresAt = uint64(block.timestamp + 365 days);
        try verifier.registerKey(a, _committeeSigs(a)) {
            keyPks[pi].push(pk);
        } catch {}
    }

    function _committeeSigs(KeyAttestation memory a) internal view returns (bytes[] memory sigs) {
        bytes32 digest = verifier.keyAttestationDigest(a);
        uint256 k = verifier.threshold();
        sigs = new bytes[](k);
        for (uint256 i; i < k; ++i) sigs[i] = sig(committeePks[i], digest);
    }

    /// @dev Whether `key` can settle `j` now, as the verifier and the job's requirements see it.
    function _keyFits(JobMarket.Job memory j, address key) internal view returns (bool) {
        (bool valid, uint8 kind,, uint8 tcb) = verifier.isValidKey(j.provider, key);
        if (!valid || j.teeKinds & TeeKind.bit(kind) == 0 || tcb < j.minTcbStatus) return false;
        return j.measurementId == 0 || verifier.keyOf(key).measurementId == j.measurementId;
    }

    /// @dev What a match must have checked: time enough, a key and image that outlast the job,
    /// a nonce not cancelled.
    function _checkMatched(bytes32 id, Offer memory o) internal {
        JobMarket.Job memory j = market.getJob(id);
        if (j.deadline < block.timestamp + o.minDuration) _violation("matched a deadline shorter than needed");
        if (invalidated[o.provider][o.nonce]) _violation("matched a cancelled nonce");
        _checkKeyOutlives(o.enclaveKey, j.deadline);
    }

    function _checkKeyOutlives(address key, uint256 deadline) internal {
        AttestationVerifier.Key memory k = verifier.keyOf(key);
        (, , uint40 notAfter,) = verifier.measurementStatus(k.measurementId);
        if (k.expiresAt <= deadline || notAfter <= deadline) _violation("key or image ends before the deadline");
    }

    /// @dev What a timeout can still take from the provider.
    function _slashable(address p) internal view returns (uint256) {
        (uint96 unbonding,) = registry.unbonding(p);
        return uint256(registry.providerOf(p).stake) + unbonding;
    }

    /// @dev The honest provider's answer to a delivery it could not make: give the job back.
    function _release(bytes32 id, address provider, bool must) internal {
        vm.prank(provider);
        try market.releaseJob(id) {
            ++calls["releaseJob"];
            ++refunds[id];
        } catch {
            if (must) _violation("could not give back an undeliverable job");
        }
    }

    function _signBatch(uint256 pi, address provider, bytes32[] memory ids, bytes32[] memory outs)
        internal
        view
        returns (bytes memory)
    {
        bytes32[] memory leaves = new bytes32[](ids.length);
        bytes32 typehash = market.RESULT_TYPEHASH();
        for (uint256 i; i < ids.length; ++i) {
            JobMarket.Job memory j = market.getJob(ids[i]);
            leaves[i] = keccak256(abi.encode(typehash, ids[i], provider, j.taskHash, outs[i]));
        }
        bytes32 root = market.merkleRoot(leaves);
        return sig(keyPks[pi][0], market.resultBatchDigest(provider, root, ids.length));
    }

    function _track(bytes32 id, address c, uint64 minDuration) internal {
        jobs.push(id);
        clientOf[id] = c;
        minDurationOf[id] = minDuration;
    }

    function _violation(string memory why) internal {
        ++violations;
        lastViolation = why;
    }

    function _isTerminal(JobMarket.State s) internal pure returns (bool) {
        return s == JobMarket.State.Settled || s == JobMarket.State.Refunded || s == JobMarket.State.Cancelled
            || s == JobMarket.State.Released;
    }

    function _afterAction() internal {
        for (uint256 i; i < jobs.length; ++i) {
            bytes32 id = jobs[i];
            JobMarket.State s = market.jobState(id);
            uint8 first = firstTerminal[id];
            if (first == 0) {
                if (_isTerminal(s)) firstTerminal[id] = uint8(s);
            } else if (uint8(s) != first) {
                _violation("terminal state changed");
            }
        }
    }
}

/// @notice The invariants, checked after every handler call.
abstract contract JobMarketInvariantBase is Fixture {
    struct FuzzSelector {
        address addr;
        bytes4[] selectors;
    }

    Handler internal handler;

    function _setUpHandler(bool erc20) internal {
        _deploy(erc20);
        Cast memory c;
        c.market = market;
        c.registry = registry;
        c.verifier = verifier;
        c.token = token;
        c.gov = gov;
        c.treasury = treasury;
        c.stranger = stranger;
        c.clients = new address[](3);
        c.clients[0] = client;
        c.clients[1] = client2;
        c.clients[2] = makeAddr("client3");
        c.providerPks = new uint256[](3);
        c.providerPks[0] = P1_PK;
        c.providerPks[1] = P2_PK;
        c.providerPks[2] = 0xC4; // registers during the run
        c.enclavePks = new uint256[](2);
        c.enclavePks[0] = E1_PK;
        c.enclavePks[1] = E2_PK;
        c.committeePks = committeePks;
        handler = new Handler(c);
    }

    function targetContracts() public view returns (address[] memory t) {
        t = new address[](1);
        t[0] = address(handler);
    }

    function targetSelectors() public view returns (FuzzSelector[] memory t) {
        bytes4[] memory s = new bytes4[](38);
        uint256 n;
        // the main path, weighed up
        s[n++] = Handler.matchJob.selector;
        s[n++] = Handler.matchJob.selector;
        s[n++] = Handler.matchJob.selector;
        s[n++] = Handler.uploadInput.selector;
        s[n++] = Handler.uploadInput.selector;
        s[n++] = Handler.uploadInput.selector;
        s[n++] = Handler.acceptJob.selector;
        s[n++] = Handler.submitResult.selector;
        s[n++] = Handler.submitResult.selector;
        s[n++] = Handler.claimTimeout.selector;
        s[n++] = Handler.claimTimeout.selector;
        s[n++] = Handler.warp.selector;
        s[n++] = Handler.warp.selector;
        // the rest of JobMarket
        s[n++] = Handler.deposit.selector;
        s[n++] = Handler.withdraw.selector;
        s[n++] = Handler.withdrawFees.selector;
        s[n++] = Handler.postJob.selector;
        s[n++] = Handler.acceptJob.selector;
        s[n++] = Handler.cancelJob.selector;
        s[n++] = Handler.submitResults.selector;
        s[n++] = Handler.releaseJob.selector;
        s[n++] = Handler.invalidateNonces.selector;
        // ProviderRegistry
        s[n++] = Handler.register.selector;
        s[n++] = Handler.addStake.selector;
        s[n++] = Handler.requestUnbond.selector;
        s[n++] = Handler.exit.selector;
        s[n++] = Handler.withdrawUnbonded.selector;
        s[n++] = Handler.withdrawCompensation.selector;
        s[n++] = Handler.slashDirectly.selector;
        s[n++] = Handler.jail.selector;
        s[n++] = Handler.sweepSlashed.selector;
        s[n++] = Handler.setUnbondingDelay.selector;
        // AttestationVerifier
        s[n++] = Handler.setKindPolicy.selector;
        s[n++] = Handler.approveMeasurement.selector;
        s[n++] = Handler.revokeMeasurement.selector;
        s[n++] = Handler.registerKey.selector;
        s[n++] = Handler.revokeKey.selector;
        s[n++] = Handler.setCommittee.selector;
        t = new FuzzSelector[](1);
        t[0] = FuzzSelector(address(handler), s);
    }

    function _allActors() internal view returns (address[] memory a) {
        uint256 nc = handler.clientCount();
        uint256 np = handler.providerCount();
        a = new address[](nc + np + 2);
        for (uint256 i; i < nc; ++i) a[i] = handler.clients(i);
        for (uint256 i; i < np; ++i) a[nc + i] = handler.providers(i);
        a[nc + np] = treasury;
        a[nc + np + 1] = stranger;
    }

    /// (a) the market holds exactly what it owes: free balances + escrow of open jobs + fees.
    function invariant_ledgerBalanced() public view {
        uint256 owed = market.feesAccrued();
        address[] memory actors = _allActors();
        for (uint256 i; i < actors.length; ++i) owed += market.balanceOf(actors[i]);
        uint256 n = handler.jobCount();
        for (uint256 i; i < n; ++i) {
            JobMarket.Job memory j = market.getJob(handler.jobs(i));
            if (j.state == JobMarket.State.Posted || j.state == JobMarket.State.Accepted) owed += j.price;
        }
        assertEq(_assetBalance(address(market)), owed, "market balance != free + locked + fees");
    }

    /// (b) a job pays out at most once, and the contract agrees with the handler's count.
    function invariant_paysOutAtMostOnce() public view {
        uint256 n = handler.jobCount();
        for (uint256 i; i < n; ++i) {
            bytes32 id = handler.jobs(i);
            uint256 paid = handler.payouts(id);
            uint256 refunded = handler.refunds(id);
            assertLe(paid + refunded, 1);
            JobMarket.State s = market.jobState(id);
            assertEq(paid == 1, s == JobMarket.State.Settled, "settled <=> paid once");
            assertEq(
                refunded == 1,
                s == JobMarket.State.Refunded || s == JobMarket.State.Released,
                "refunded or released <=> refunded once"
            );
        }
        assertEq(handler.violations(), 0, handler.lastViolation());
    }

    /// (c) Settled, Refunded, Cancelled and Released are final.
    function invariant_terminalStatesFinal() public view {
        uint256 n = handler.jobCount();
        for (uint256 i; i < n; ++i) {
            bytes32 id = handler.jobs(i);
            uint8 first = handler.firstTerminal(id);
            if (first != 0) assertEq(uint256(market.jobState(id)), first, "terminal state changed");
        }
    }

    /// (d) The registry holds exactly stake + unbonding + slashed of its providers plus the
    /// clients' compensation.
    function invariant_registrySolvent() public view {
        uint256 total;
        for (uint256 i; i < handler.providerCount(); ++i) {
            address p = handler.providers(i);
            ProviderRegistry.Provider memory pr = registry.providerOf(p);
            (uint96 unbonding,) = registry.unbonding(p);
            total += uint256(pr.stake) + pr.slashed + unbonding;
        }
        for (uint256 i; i < handler.clientCount(); ++i) total += registry.compensationOf(handler.clients(i));
        assertEq(_assetBalance(address(registry)), total, "registry balance != stake + unbonding + slashed + owed");
    }

    /// (e) A provider that delivers by the deadline is never slashed: stake leaves a provider
    /// only through its own unbonding or the timeout of a job it acknowledged and did not try
    /// to deliver.
    function invariant_onlyProvenFaultsAreSlashed() public view {
        uint256 n = handler.jobCount();
        uint256 np = handler.providerCount();
        uint256[] memory expected = new uint256[](np);
        for (uint256 i; i < n; ++i) {
            bytes32 id = handler.jobs(i);
            uint256 slashed = handler.slashedFor(id);
            if (slashed == 0) continue;
            assertFalse(handler.deliveryAttempted(id), "a provider that delivered by the deadline was slashed");
            assertTrue(handler.hasReceipt(id), "slashed without the provider's input receipt");
            address p = market.getJob(id).provider;
            for (uint256 k; k < np; ++k) if (handler.providers(k) == p) expected[k] += slashed;
        }
        for (uint256 k; k < np; ++k) {
            address p = handler.providers(k);
            uint256 held = uint256(registry.providerOf(p).stake);
            // stake put in - moved to unbonding - still staked = what timeouts took (reserved
            // stake covers every slash, so none reaches the unbonding funds)
            assertEq(
                handler.stakeIn(p) - handler.stakeOut(p) - held, expected[k], "stake taken outside a proven timeout"
            );
        }
    }

    /// (f) The stake a provider's open jobs reserve is what their timeouts could slash, and its
    /// stake covers it.
    function invariant_lockedStakeCoversOpenJobs() public view {
        uint256 n = handler.jobCount();
        uint256 np = handler.providerCount();
        uint256[] memory open = new uint256[](np);
        for (uint256 i; i < n; ++i) {
            JobMarket.Job memory j = market.getJob(handler.jobs(i));
            if (j.state != JobMarket.State.Accepted) continue;
            for (uint256 k; k < np; ++k) if (handler.providers(k) == j.provider) open[k] += market.slashAmountOf(j.price);
        }
        for (uint256 k; k < np; ++k) {
            address p = handler.providers(k);
            assertEq(market.lockedStakeOf(p), open[k], "reserved stake != open jobs' slashes");
            assertLe(market.lockedStakeOf(p), registry.providerOf(p).stake);
        }
    }

    /// (g) Every job that is not final can always reach a final state: a posted one by its
    /// client's cancel, an accepted one by anyone's claim once the dispute window is over.
    function invariant_everyJobCanBeClosed() public {
        uint256 snapshot = vm.snapshotState();
        uint256 n = handler.jobCount();
        uint256 latest = block.timestamp;
        for (uint256 i; i < n; ++i) {
            JobMarket.Job memory j = market.getJob(handler.jobs(i));
            if (j.state == JobMarket.State.Accepted && j.deadline > latest) latest = j.deadline;
        }
        vm.warp(latest + DISPUTE + 1);
        for (uint256 i; i < n; ++i) {
            bytes32 id = handler.jobs(i);
            JobMarket.State s = market.jobState(id);
            if (s == JobMarket.State.Posted) {
                vm.prank(handler.clientOf(id));
                market.cancelJob(id);
            } else if (s == JobMarket.State.Accepted) {
                vm.prank(stranger);
                market.claimTimeout(id, "");
            }
            assertTrue(_final(market.jobState(id)), "a job could not be closed");
        }
        for (uint256 k; k < handler.providerCount(); ++k) assertEq(market.lockedStakeOf(handler.providers(k)), 0);
        vm.revertToState(snapshot);
    }

    function _final(JobMarket.State s) internal pure returns (bool) {
        return s != JobMarket.State.None && s != JobMarket.State.Posted && s != JobMarket.State.Accepted;
    }
}

contract JobMarketInvariantNativeTest is JobMarketInvariantBase {
    function setUp() public {
        _setUpHandler(false);
    }
}

contract JobMarketInvariantERC20Test is JobMarketInvariantBase {
    function setUp() public {
        _setUpHandler(true);
    }
}

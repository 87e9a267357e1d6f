// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {TestBase} from "./TestBase.sol";
import {Fixture} from "./Fixture.sol";
import {MockERC20} from "./mocks/MockERC20.sol";
import {ProviderRegistry} from "../src/ProviderRegistry.sol";
import {JobMarket} from "../src/JobMarket.sol";
import {JobRequest, Offer, TeeKind, TcbStatus} from "../src/CapaTypes.sol";

/// @notice Drives the market with bounded random actions over a fixed cast: three clients, two
/// providers (one TDX enclave key each) and the treasury. Every call that must succeed and
/// does not, or must fail and does not, counts as a violation the invariants then report.
contract Handler is TestBase {
    JobMarket public immutable market;
    ProviderRegistry public immutable registry;
    MockERC20 public immutable token; // zero: native deployment
    address public immutable treasury;
    bytes32 public immutable measurement;

    address[] public clients;
    address[] public providers;
    uint256[] internal providerPks;
    uint256[] internal enclavePks;

    bytes32[] public jobs;
    mapping(bytes32 => address) public clientOf;
    /// Successful settlements (submitResult or inside submitResults) per job.
    mapping(bytes32 => uint256) public payouts;
    /// Successful claimTimeout calls per job.
    mapping(bytes32 => uint256) public refunds;
    /// The first terminal state the handler saw for a job (0 while none).
    mapping(bytes32 => uint8) public firstTerminal;

    uint256 public violations;
    string public lastViolation;
    uint256 internal nonce;
    mapping(string => uint256) public calls;

    constructor(
        JobMarket market_,
        ProviderRegistry registry_,
        MockERC20 token_,
        address treasury_,
        bytes32 measurement_,
        address[] memory clients_,
        uint256[] memory providerPks_,
        uint256[] memory enclavePks_
    ) {
        market = market_;
        registry = registry_;
        token = token_;
        treasury = treasury_;
        measurement = measurement_;
        clients = clients_;
        providerPks = providerPks_;
        enclavePks = enclavePks_;
        for (uint256 i; i < providerPks_.length; ++i) providers.push(vm.addr(providerPks_[i]));
    }

    // ------------------------------------------------------------------ views for the invariants

    function jobCount() external view returns (uint256) {
        return jobs.length;
    }

    function clientCount() external view returns (uint256) {
        return clients.length;
    }

    function providerCount() external view returns (uint256) {
        return providers.length;
    }

    // ------------------------------------------------------------------ actions

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
            // withdrawing more than the free balance always fails
            vm.prank(a);
            try market.withdraw(1, a) {
                _violation("withdraw without balance");
            } catch {}
            return;
        }
        amount = bound(amount, 1, bal);
        address to = toOther ? clients[0] : a;
        vm.prank(a);
        try market.withdraw(amount, to) {
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

    function matchJob(uint256 who, uint256 prov, uint256 price, uint256 duration, bool fromBalance, bool bound_)
        external
    {
        address c = clients[who % clients.length];
        uint256 pi = prov % providers.length;
        price = bound(price, 1, 5 ether);
        JobRequest memory r = _request(price, duration);
        Offer memory o = _offerFor(pi, price);
        if (bound_) o.requestHash = market.requestHashFor(c, r);
        bytes memory s = sig(providerPks[pi], market.offerDigest(o));
        uint256 value = _prepareFunds(c, price, fromBalance);
        vm.prank(c);
        try market.matchJob{value: value}(r, o, s) returns (bytes32 id) {
            ++calls["matchJob"];
            _track(id, c);
        } catch {}
        _afterAction();
    }

    function postJob(uint256 who, uint256 price, uint256 duration, bool fromBalance) external {
        address c = clients[who % clients.length];
        price = bound(price, 1, 5 ether);
        JobRequest memory r = _request(price, duration);
        uint256 value = _prepareFunds(c, price, fromBalance);
        vm.prank(c);
        try market.postJob{value: value}(r) returns (bytes32 id) {
            ++calls["postJob"];
            _track(id, c);
        } catch {
            _violation("postJob failed");
        }
        _afterAction();
    }

    function acceptJob(uint256 jobSeed, uint256 prov) external {
        if (jobs.length == 0) return;
        bytes32 id = _pick(jobSeed, JobMarket.State.Posted);
        uint256 pi = prov % providers.length;
        JobMarket.State before = market.jobState(id);
        vm.prank(providers[pi]);
        try market.acceptJob(id, vm.addr(enclavePks[pi])) {
            ++calls["acceptJob"];
            if (before != JobMarket.State.Posted) _violation("accepted a job not posted");
        } catch {}
        _afterAction();
    }

    function cancelJob(uint256 jobSeed, bool asStranger) external {
        if (jobs.length == 0) return;
        bytes32 id = _pick(jobSeed, JobMarket.State.Posted);
        JobMarket.State before = market.jobState(id);
        address caller = asStranger ? providers[0] : clientOf[id];
        vm.prank(caller);
        try market.cancelJob(id) {
            ++calls["cancelJob"];
            if (before != JobMarket.State.Posted || asStranger) _violation("bad cancel");
        } catch {}
        _afterAction();
    }

    function submitResult(uint256 jobSeed, uint256 out, uint8 wrongKeySeed) external {
        bool wrongKey = wrongKeySeed % 8 == 0;
        if (jobs.length == 0) return;
        bytes32 id = _pick(jobSeed, JobMarket.State.Accepted);
        JobMarket.Job memory j = market.getJob(id);
        if (j.provider == address(0)) return;
        uint256 pi = _providerIndex(j.provider);
        uint256 pk = enclavePks[wrongKey ? (pi + 1) % enclavePks.length : pi];
        bytes32 outputHash = keccak256(abi.encode(out));
        bytes memory s = sig(pk, market.resultDigest(id, j.provider, j.inputHash, outputHash));
        bool settleable = j.state == JobMarket.State.Accepted && block.timestamp <= j.deadline;
        try market.submitResult(id, outputHash, s) {
            ++calls["submitResult"];
            ++payouts[id];
            if (!settleable || wrongKey) _violation("bad settlement");
        } catch {}
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
        bool settleable = true;
        for (uint256 i; i < count; ++i) {
            ids[i] = picked[i];
            outs[i] = keccak256(abi.encode(start, i));
            JobMarket.Job memory j = market.getJob(ids[i]);
            if (j.state != JobMarket.State.Accepted || block.timestamp > j.deadline) settleable = false;
            for (uint256 q; q < i; ++q) if (ids[q] == ids[i]) settleable = false;
        }
        bytes memory s = _signBatch(provider, ids, outs);
        try market.submitResults(ids, outs, s) {
            ++calls["submitResults"];
            for (uint256 i; i < count; ++i) ++payouts[ids[i]];
            if (!settleable) _violation("bad batch settlement");
        } catch {}
        _afterAction();
    }

    function claimTimeout(uint256 jobSeed) external {
        if (jobs.length == 0) return;
        bytes32 id = _pick(jobSeed, JobMarket.State.Accepted);
        JobMarket.Job memory j = market.getJob(id);
        bool claimable = j.state == JobMarket.State.Accepted && block.timestamp > j.deadline;
        try market.claimTimeout(id) {
            ++calls["claimTimeout"];
            ++refunds[id];
            if (!claimable) _violation("bad timeout claim");
        } catch {
            if (claimable) _violation("timeout claim failed");
        }
        _afterAction();
    }

    function addStake(uint256 prov, uint256 amount) external {
        address p = providers[prov % providers.length];
        amount = bound(amount, 1, 5 ether);
        _fund(p, amount);
        vm.prank(p);
        try registry.addStake{value: _native() ? amount : 0}(amount) {
            ++calls["addStake"];
        } catch {
            _violation("addStake failed");
        }
        _afterAction();
    }

    function warp(uint256 secs) external {
        secs = bound(secs, 0, 8 hours);
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

    function _request(uint256 price, uint256 duration) internal returns (JobRequest memory r) {
        ++nonce;
        r.specHash = keccak256("spec");
        r.inputHash = keccak256(abi.encode("input", nonce));
        r.teeKinds = TeeKind.bit(TeeKind.TDX);
        r.minTcbStatus = TcbStatus.UP_TO_DATE;
        r.maxPrice = price;
        r.deadline = uint64(block.timestamp + bound(duration, 1 hours, 20 hours));
        r.nonce = nonce;
    }

    function _offerFor(uint256 pi, uint256 price) internal returns (Offer memory o) {
        ++nonce;
        o.provider = providers[pi];
        o.teeKind = TeeKind.TDX;
        o.measurement = measurement;
        o.price = price;
        o.maxDuration = 12 hours;
        o.validUntil = uint64(block.timestamp + 1 hours);
        o.nonce = nonce;
    }

    function _signBatch(address provider, bytes32[] memory ids, bytes32[] memory outs)
        internal
        view
        returns (bytes memory)
    {
        bytes32[] memory leaves = new bytes32[](ids.length);
        bytes32 typehash = market.RESULT_TYPEHASH();
        for (uint256 i; i < ids.length; ++i) {
            JobMarket.Job memory j = market.getJob(ids[i]);
            leaves[i] = keccak256(abi.encode(typehash, ids[i], provider, j.inputHash, outs[i]));
        }
        bytes32 root = market.merkleRoot(leaves);
        return sig(enclavePks[_providerIndex(provider)], market.resultBatchDigest(provider, root, ids.length));
    }

    function _track(bytes32 id, address c) internal {
        jobs.push(id);
        clientOf[id] = c;
    }

    function _violation(string memory why) internal {
        ++violations;
        lastViolation = why;
    }

    function _isTerminal(JobMarket.State s) internal pure returns (bool) {
        return s == JobMarket.State.Settled || s == JobMarket.State.Refunded || s == JobMarket.State.Cancelled;
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
        address[] memory cs = new address[](3);
        cs[0] = client;
        cs[1] = client2;
        cs[2] = makeAddr("client3");
        uint256[] memory pks = new uint256[](2);
        pks[0] = P1_PK;
        pks[1] = P2_PK;
        uint256[] memory eks = new uint256[](2);
        eks[0] = E1_PK;
        eks[1] = E2_PK;
        handler = new Handler(market, registry, token, treasury, M1, cs, pks, eks);
    }

    function targetContracts() public view returns (address[] memory t) {
        t = new address[](1);
        t[0] = address(handler);
    }

    function targetSelectors() public view returns (FuzzSelector[] memory t) {
        bytes4[] memory s = new bytes4[](13);
        s[0] = Handler.deposit.selector;
        s[1] = Handler.withdraw.selector;
        s[2] = Handler.withdrawFees.selector;
        s[3] = Handler.matchJob.selector;
        s[4] = Handler.matchJob.selector; // matching is the main path: weigh it double
        s[5] = Handler.postJob.selector;
        s[6] = Handler.acceptJob.selector;
        s[7] = Handler.cancelJob.selector;
        s[8] = Handler.submitResult.selector;
        s[9] = Handler.submitResults.selector;
        s[10] = Handler.claimTimeout.selector;
        s[11] = Handler.addStake.selector;
        s[12] = Handler.warp.selector;
        t = new FuzzSelector[](1);
        t[0] = FuzzSelector(address(handler), s);
    }

    /// (a) the market holds exactly what it owes: free balances + escrow of open jobs + fees.
    function invariant_ledgerBalanced() public view {
        uint256 owed = market.feesAccrued();
        for (uint256 i; i < handler.clientCount(); ++i) owed += market.balanceOf(handler.clients(i));
        for (uint256 i; i < handler.providerCount(); ++i) owed += market.balanceOf(handler.providers(i));
        owed += market.balanceOf(treasury);
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
            assertEq(refunded == 1, s == JobMarket.State.Refunded, "refunded <=> refunded once");
        }
        assertEq(handler.violations(), 0, handler.lastViolation());
    }

    /// (c) Settled, Refunded and Cancelled are final.
    function invariant_terminalStatesFinal() public view {
        uint256 n = handler.jobCount();
        for (uint256 i; i < n; ++i) {
            bytes32 id = handler.jobs(i);
            uint8 first = handler.firstTerminal(id);
            if (first != 0) assertEq(uint256(market.jobState(id)), first, "terminal state changed");
        }
    }

    /// The registry holds exactly stake + unbonding + slashed of its providers.
    function invariant_registrySolvent() public view {
        uint256 total;
        for (uint256 i; i < handler.providerCount(); ++i) {
            address p = handler.providers(i);
            ProviderRegistry.Provider memory pr = registry.providerOf(p);
            (uint96 unbonding,) = registry.unbonding(p);
            total += uint256(pr.stake) + pr.slashed + unbonding;
        }
        assertEq(_assetBalance(address(registry)), total, "registry balance != stake + unbonding + slashed");
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

// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {Ownable, Ownable2Step} from "@openzeppelin/contracts/access/Ownable2Step.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {IJobMarket} from "./interfaces/IJobMarket.sol";
import {IProviderRegistry} from "./interfaces/IProviderRegistry.sol";
import {PaymentToken} from "./PaymentToken.sol";

/// @title ProviderRegistry
/// @notice Operators register with a pointer to their libp2p identity and stake in the
/// payment token. Each open job reserves the stake its timeout could slash: the market keeps
/// that reservation (`IJobMarket.lockedStakeOf`) and the registry lets none of it unbond, so
/// the stake always covers the slashes of the jobs a provider holds. Free stake leaves only
/// through an unbonding delay, bounded below by the longest job plus the dispute window and
/// above by `MAX_UNBONDING_DELAY`.
/// @dev The market is fixed at deployment: the deployer predicts the market's address (the
/// next contract it creates) and the market's constructor refuses a registry that names
/// another, so a registry and its market can only be wired to each other, and every check
/// of the caller costs an immutable read.
/// A slash is split: `toBeneficiary` is credited to the client the provider let down
/// (`compensationOf`, withdrawn with `withdrawCompensation`), the rest waits in `slashed`
/// until governance sweeps it. The registry holds exactly
/// sum(stake + unbonding + slashed) + sum(compensationOf).
contract ProviderRegistry is IProviderRegistry, PaymentToken, Ownable2Step, ReentrancyGuardTransient {
    using SafeCast for uint256;

    enum Status {
        None,
        Active,
        Jailed,
        Exited
    }

    /// @dev One slot: stake and slashed funds move together in `slash`.
    struct Provider {
        uint96 stake;
        uint96 slashed;
        Status status;
        uint40 registeredAt;
    }

    struct Unbonding {
        uint96 amount;
        uint40 unlockAt;
    }

    error AlreadyRegistered(address provider);
    error NotRegistered(address provider);
    error InvalidStatus(address provider, Status status);
    error EmptyPeerId();
    error ZeroAmount();
    error InsufficientStake(uint256 requested, uint256 available);
    error StillUnbonding(uint64 unlockAt);
    error NothingToWithdraw();
    error OnlyMarket(address caller);
    error UnbondingTooShort(uint64 delay, uint64 minimum);
    error UnbondingTooLong(uint64 delay, uint64 maximum);
    error ZeroAddress();

    event ProviderRegistered(address indexed provider, bytes peerId, uint256 stake);
    event PeerIdUpdated(address indexed provider, bytes peerId);
    event StakeAdded(address indexed provider, uint256 amount, uint256 stake);
    event UnbondRequested(address indexed provider, uint256 amount, uint64 unlockAt);
    event UnbondedWithdrawn(address indexed provider, uint256 amount);
    event ProviderSlashed(
        address indexed provider, uint256 requested, uint256 slashed, address indexed beneficiary, uint256 toBeneficiary
    );
    event CompensationWithdrawn(address indexed beneficiary, address to, uint256 amount);
    event StatusChanged(address indexed provider, Status status);
    event SlashedSwept(address indexed to, uint256 amount);
    event UnbondingDelaySet(uint64 delay);

    /// Upper bound of the unbonding delay (so of the longest job plus the dispute window): a
    /// stake must come back in finite time, and unlock times must fit their uint40 field.
    uint64 public constant MAX_UNBONDING_DELAY = 365 days;

    /// Longest job a provider can be assigned (JobMarket caps deadlines with it).
    uint64 public immutable MAX_JOB_DURATION;
    /// Time after a deadline during which a timeout can still be claimed and slashed.
    uint64 public immutable DISPUTE_WINDOW;

    /// Stake below which a provider takes no new jobs. Fixed per deployment: it is read on
    /// every match, and an immutable costs no storage read.
    uint256 public immutable MIN_STAKE;

    /// The one market that reserves stake and slashes.
    address public immutable MARKET;

    uint64 public unbondingDelay;

    mapping(address => Provider) internal _providers;
    mapping(address => Unbonding) public unbonding;
    mapping(address => bytes) public peerIdOf;
    /// Clients' shares of slashes, waiting to be withdrawn.
    mapping(address => uint256) public compensationOf;

    constructor(
        IERC20 token,
        address governance,
        address market_,
        uint256 minStake_,
        uint64 maxJobDuration,
        uint64 disputeWindow,
        uint64 unbondingDelay_
    ) PaymentToken(token) Ownable(governance) {
        if (market_ == address(0)) revert ZeroAddress();
        MARKET = market_;
        MAX_JOB_DURATION = maxJobDuration;
        DISPUTE_WINDOW = disputeWindow;
        MIN_STAKE = minStake_;
        _setUnbondingDelay(unbondingDelay_);
    }

    // ---------------------------------------------------------------- governance

    function setUnbondingDelay(uint64 delay) external onlyOwner {
        _setUnbondingDelay(delay);
    }

    function jail(address provider) external onlyOwner {
        Provider storage p = _requireRegistered(provider);
        if (p.status != Status.Active) revert InvalidStatus(provider, p.status);
        p.status = Status.Jailed;
        emit StatusChanged(provider, Status.Jailed);
    }

    function unjail(address provider) external onlyOwner {
        Provider storage p = _requireRegistered(provider);
        if (p.status != Status.Jailed) revert InvalidStatus(provider, p.status);
        p.status = Status.Active;
        emit StatusChanged(provider, Status.Active);
    }

    /// @notice Send slashed stake of `providers` to `to` (a treasury or a compensation pool).
    function sweepSlashed(address[] calldata providers, address to) external onlyOwner nonReentrant {
        uint256 total;
        for (uint256 i; i < providers.length; ++i) {
            Provider storage p = _providers[providers[i]];
            total += p.slashed;
            p.slashed = 0;
        }
        if (total == 0) revert NothingToWithdraw();
        _push(to, total);
        emit SlashedSwept(to, total);
    }

    // ---------------------------------------------------------------- providers

    /// @notice Register msg.sender with its libp2p peer id (multihash bytes) and an initial stake.
    function register(bytes calldata peerId, uint256 amount) external payable nonReentrant {
        Provider storage p = _providers[msg.sender];
        if (p.status != Status.None) revert AlreadyRegistered(msg.sender);
        if (peerId.length == 0) revert EmptyPeerId();
        _pullExact(amount);
        p.stake = amount.toUint96();
        p.status = Status.Active;
        p.registeredAt = block.timestamp.toUint40();
        peerIdOf[msg.sender] = peerId;
        emit ProviderRegistered(msg.sender, peerId, amount);
    }

    function updatePeerId(bytes calldata peerId) external {
        _requireRegistered(msg.sender);
        if (peerId.length == 0) revert EmptyPeerId();
        peerIdOf[msg.sender] = peerId;
        emit PeerIdUpdated(msg.sender, peerId);
    }

    function addStake(uint256 amount) external payable nonReentrant {
        Provider storage p = _requireRegistered(msg.sender);
        if (p.status == Status.Exited) revert InvalidStatus(msg.sender, p.status);
        if (amount == 0) revert ZeroAmount();
        _pullExact(amount);
        p.stake = (uint256(p.stake) + amount).toUint96();
        emit StakeAdded(msg.sender, amount, p.stake);
    }

    /// @notice Start unbonding `amount` of the stake that no open job reserves; it stays
    /// slashable until it unlocks.
    /// @dev A second request adds to the pending amount and restarts the delay for all of it.
    function requestUnbond(uint256 amount) external {
        Provider storage p = _requireRegistered(msg.sender);
        if (amount == 0) revert ZeroAmount();
        uint256 free = p.stake - _lockedStake(msg.sender);
        if (amount > free) revert InsufficientStake(amount, free);
        p.stake -= amount.toUint96();
        _startUnbonding(msg.sender, amount);
    }

    /// @notice Leave the market: no new jobs; the stake no open job reserves starts unbonding.
    /// What the open jobs reserve stays until they end; `requestUnbond` takes it out then.
    function exit() external {
        Provider storage p = _requireRegistered(msg.sender);
        if (p.status == Status.Exited) revert InvalidStatus(msg.sender, p.status);
        uint256 locked = _lockedStake(msg.sender);
        uint256 amount = p.stake - locked;
        p.stake = locked.toUint96();
        p.status = Status.Exited;
        emit StatusChanged(msg.sender, Status.Exited);
        _startUnbonding(msg.sender, amount);
    }

    function withdrawUnbonded() external nonReentrant {
        Unbonding memory u = unbonding[msg.sender];
        if (u.amount == 0) revert NothingToWithdraw();
        if (block.timestamp < u.unlockAt) revert StillUnbonding(u.unlockAt);
        delete unbonding[msg.sender];
        _push(msg.sender, u.amount);
        emit UnbondedWithdrawn(msg.sender, u.amount);
    }

    /// @notice Withdraw the slashes credited to the caller as a client let down.
    function withdrawCompensation(address to) external nonReentrant {
        if (to == address(0)) revert ZeroAddress();
        uint256 amount = compensationOf[msg.sender];
        if (amount == 0) revert NothingToWithdraw();
        compensationOf[msg.sender] = 0;
        _push(to, amount);
        emit CompensationWithdrawn(msg.sender, to, amount);
    }

    // ---------------------------------------------------------------- market

    /// @notice Take up to `amount` from the provider's stake, then from its unbonding funds
    /// (the market reserves stake per job, so the stake alone covers it); credit
    /// `toBeneficiary` of it to `beneficiary` and keep the rest for governance's sweep.
    function slash(address provider, uint256 amount, address beneficiary, uint256 toBeneficiary)
        external
        returns (uint256 slashed)
    {
        if (msg.sender != MARKET) revert OnlyMarket(msg.sender);
        Provider storage p = _providers[provider];
        uint256 stake = p.stake;
        uint256 fromStake = amount < stake ? amount : stake;
        slashed = fromStake;
        uint256 rest = amount - fromStake;
        if (rest != 0) {
            Unbonding storage u = unbonding[provider];
            uint256 pending = u.amount;
            uint256 fromUnbonding = rest < pending ? rest : pending;
            if (fromUnbonding != 0) {
                u.amount = (pending - fromUnbonding).toUint96();
                slashed += fromUnbonding;
            }
        }
        if (toBeneficiary > slashed) toBeneficiary = slashed;
        p.stake = (stake - fromStake).toUint96();
        p.slashed = (uint256(p.slashed) + slashed - toBeneficiary).toUint96();
        if (toBeneficiary != 0) compensationOf[beneficiary] += toBeneficiary;
        emit ProviderSlashed(provider, amount, slashed, beneficiary, toBeneficiary);
    }

    // ---------------------------------------------------------------- views

    // Accepted (incorrect-equality): comparing an enum's value, not a balance anyone can move.
    // slither-disable-next-line incorrect-equality
    function isEligible(address provider) public view returns (bool) {
        Provider memory p = _providers[provider];
        return p.status == Status.Active && p.stake >= MIN_STAKE;
    }

    // Accepted (incorrect-equality): as in isEligible.
    // slither-disable-next-line incorrect-equality
    function eligibleStake(address provider) external view returns (uint256) {
        Provider memory p = _providers[provider];
        return p.status == Status.Active && p.stake >= MIN_STAKE ? p.stake : 0;
    }

    /// @notice Stake that no open job reserves: what `requestUnbond` may take.
    function freeStakeOf(address provider) external view returns (uint256) {
        return _providers[provider].stake - _lockedStake(provider);
    }

    function providerOf(address provider) external view returns (Provider memory) {
        return _providers[provider];
    }

    // ---------------------------------------------------------------- internal

    function _requireRegistered(address provider) internal view returns (Provider storage p) {
        p = _providers[provider];
        if (p.status == Status.None) revert NotRegistered(provider);
    }

    /// @dev Zero while the market is not deployed (a failed deployment): stake staked in the
    /// meantime can still leave.
    function _lockedStake(address provider) internal view returns (uint256) {
        return MARKET.code.length == 0 ? 0 : IJobMarket(MARKET).lockedStakeOf(provider);
    }

    function _startUnbonding(address provider, uint256 amount) internal {
        if (amount == 0) return;
        Unbonding storage u = unbonding[provider];
        uint40 unlockAt = (block.timestamp + unbondingDelay).toUint40();
        u.amount = (uint256(u.amount) + amount).toUint96();
        u.unlockAt = unlockAt;
        emit UnbondRequested(provider, amount, unlockAt);
    }

    function _setUnbondingDelay(uint64 delay) internal {
        uint64 minimum = MAX_JOB_DURATION + DISPUTE_WINDOW;
        if (delay < minimum) revert UnbondingTooShort(delay, minimum);
        if (delay > MAX_UNBONDING_DELAY) revert UnbondingTooLong(delay, MAX_UNBONDING_DELAY);
        unbondingDelay = delay;
        emit UnbondingDelaySet(delay);
    }
}

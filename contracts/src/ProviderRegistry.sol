// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {Ownable, Ownable2Step} from "@openzeppelin/contracts/access/Ownable2Step.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {IProviderRegistry} from "./interfaces/IProviderRegistry.sol";
import {PaymentToken} from "./PaymentToken.sol";

/// @title ProviderRegistry
/// @notice Operators register with a pointer to their libp2p identity and stake in the
/// payment token. Stake leaves only through an unbonding delay long enough that any job the
/// provider could still hold has passed its deadline and its dispute window, so it stays
/// slashable for every job it took.
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
    error MarketAlreadySet(address market);
    error UnbondingTooShort(uint64 delay, uint64 minimum);
    error ZeroAddress();

    event ProviderRegistered(address indexed provider, bytes peerId, uint256 stake);
    event PeerIdUpdated(address indexed provider, bytes peerId);
    event StakeAdded(address indexed provider, uint256 amount, uint256 stake);
    event UnbondRequested(address indexed provider, uint256 amount, uint64 unlockAt);
    event UnbondedWithdrawn(address indexed provider, uint256 amount);
    event ProviderSlashed(address indexed provider, uint256 requested, uint256 slashed);
    event StatusChanged(address indexed provider, Status status);
    event SlashedSwept(address indexed to, uint256 amount);
    event MarketSet(address market);
    event UnbondingDelaySet(uint64 delay);

    /// Longest job a provider can be assigned (JobMarket caps deadlines with it).
    uint64 public immutable MAX_JOB_DURATION;
    /// Time after a deadline during which a timeout can still be claimed and slashed.
    uint64 public immutable DISPUTE_WINDOW;

    /// Stake below which a provider takes no new jobs. Fixed per deployment: it is read on
    /// every match, and an immutable costs no storage read.
    uint256 public immutable MIN_STAKE;

    address public market;
    uint64 public unbondingDelay;

    mapping(address => Provider) internal _providers;
    mapping(address => Unbonding) public unbonding;
    mapping(address => bytes) public peerIdOf;

    constructor(
        IERC20 token,
        address governance,
        uint256 minStake_,
        uint64 maxJobDuration,
        uint64 disputeWindow,
        uint64 unbondingDelay_
    ) PaymentToken(token) Ownable(governance) {
        MAX_JOB_DURATION = maxJobDuration;
        DISPUTE_WINDOW = disputeWindow;
        MIN_STAKE = minStake_;
        _setUnbondingDelay(unbondingDelay_);
    }

    // ---------------------------------------------------------------- governance

    /// @notice Wire the market once; only it may slash.
    function setMarket(address market_) external onlyOwner {
        if (market_ == address(0)) revert ZeroAddress();
        if (market != address(0)) revert MarketAlreadySet(market);
        market = market_;
        emit MarketSet(market_);
    }

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
        _pullExact(msg.sender, amount);
        p.stake = amount.toUint96();
        p.status = Status.Active;
        p.registeredAt = uint40(block.timestamp);
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
        _pullExact(msg.sender, amount);
        p.stake = (uint256(p.stake) + amount).toUint96();
        emit StakeAdded(msg.sender, amount, p.stake);
    }

    /// @notice Start unbonding `amount`; it stays slashable until it unlocks.
    /// @dev A second request adds to the pending amount and restarts the delay for all of it.
    function requestUnbond(uint256 amount) external {
        Provider storage p = _requireRegistered(msg.sender);
        if (amount == 0) revert ZeroAmount();
        if (amount > p.stake) revert InsufficientStake(amount, p.stake);
        p.stake -= uint96(amount);
        _startUnbonding(msg.sender, amount);
    }

    /// @notice Leave the market: every remaining stake starts unbonding, no new jobs.
    function exit() external {
        Provider storage p = _requireRegistered(msg.sender);
        if (p.status == Status.Exited) revert InvalidStatus(msg.sender, p.status);
        uint256 amount = p.stake;
        p.stake = 0;
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

    // ---------------------------------------------------------------- market

    /// @notice Take up to `amount` from the provider's stake, then from its unbonding funds.
    function slash(address provider, uint256 amount) external returns (uint256 slashed) {
        if (msg.sender != market) revert OnlyMarket(msg.sender);
        Provider storage p = _providers[provider];
        uint256 fromStake = amount < p.stake ? amount : p.stake;
        slashed = fromStake;
        uint256 rest = amount - fromStake;
        if (rest != 0) {
            Unbonding storage u = unbonding[provider];
            uint256 fromUnbonding = rest < u.amount ? rest : u.amount;
            if (fromUnbonding != 0) {
                u.amount -= uint96(fromUnbonding);
                slashed += fromUnbonding;
            }
        }
        p.stake -= uint96(fromStake);
        p.slashed += uint96(slashed);
        emit ProviderSlashed(provider, amount, slashed);
    }

    // ---------------------------------------------------------------- views

    function isEligible(address provider) external view returns (bool) {
        Provider memory p = _providers[provider];
        return p.status == Status.Active && p.stake >= MIN_STAKE;
    }

    function providerOf(address provider) external view returns (Provider memory) {
        return _providers[provider];
    }

    // ---------------------------------------------------------------- internal

    function _requireRegistered(address provider) internal view returns (Provider storage p) {
        p = _providers[provider];
        if (p.status == Status.None) revert NotRegistered(provider);
    }

    function _startUnbonding(address provider, uint256 amount) internal {
        if (amount == 0) return;
        Unbonding storage u = unbonding[provider];
        uint64 unlockAt = uint64(block.timestamp) + unbondingDelay;
        u.amount = (uint256(u.amount) + amount).toUint96();
        u.unlockAt = uint40(unlockAt);
        emit UnbondRequested(provider, amount, unlockAt);
    }

    function _setUnbondingDelay(uint64 delay) internal {
        uint64 minimum = MAX_JOB_DURATION + DISPUTE_WINDOW;
        if (delay < minimum) revert UnbondingTooShort(delay, minimum);
        unbondingDelay = delay;
        emit UnbondingDelaySet(delay);
    }
}

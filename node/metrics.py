"""The daemon's Prometheus metrics, on a registry of its own (tests build one each)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.state_changes = Counter(
            "capa_state_changes", "State changes recorded", ["kind"], registry=r
        )
        self.duplicate_changes = Counter(
            "capa_state_changes_duplicate", "State changes refused as already recorded", registry=r
        )
        self.commit_seconds = Histogram(
            "capa_store_commit_seconds",
            "Time to commit one batch of state changes",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1.0),
            registry=r,
        )
        self.effects_pending = Gauge("capa_effects_pending", "Effects not yet settled", registry=r)
        self.effect_failures = Counter(
            "capa_effect_failures",
            "Effect executions that raised and will be retried",
            ["kind"],
            registry=r,
        )
        self.chain_head = Gauge("capa_chain_head_block", "Latest block seen", registry=r)
        self.chain_confirmed = Gauge(
            "capa_chain_confirmed_block", "Last confirmed block turned into state", registry=r
        )
        self.reorgs = Counter("capa_chain_reorgs", "Reorganisations detected", registry=r)
        self.deep_reorgs = Counter(
            "capa_chain_deep_reorgs", "Reorganisations below the confirmation depth", registry=r
        )
        self.rpc_failures = Counter(
            "capa_rpc_failures",
            "JSON-RPC requests that failed in transport",
            ["endpoint"],
            registry=r,
        )
        self.rpc_failovers = Counter(
            "capa_rpc_failovers", "Switches to another RPC endpoint", registry=r
        )
        self.tx_sent = Counter("capa_tx_sent", "Transactions signed and broadcast", registry=r)
        self.tx_bumped = Counter("capa_tx_bumped", "Fee bumps of stuck transactions", registry=r)
        self.tx_reverted = Counter("capa_tx_reverted", "Transactions that reverted", registry=r)
        self.tx_confirmed = Counter("capa_tx_confirmed", "Transactions confirmed", registry=r)

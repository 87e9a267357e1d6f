"""What an operator must not miss, as WARNING lines with the job id: money lost or a job lost.

Read from the state changes as they are committed (the transitions decide; this only tells):
a slash or a refund against this provider, a settlement that failed, a job its enclave could
not run, a client's output that failed its checks.
"""

from __future__ import annotations

import logging

from node.config.model import Role
from node.state import changes as sc
from node.state.model import Identity, StateView
from node.state.shared import tx_action, tx_job

log = logging.getLogger("node.alerts")

_SETTLING = frozenset({"submitResult", "submitResults"})


def warn_about(me: Identity, view: StateView, change: sc.StateChange) -> None:
    """Called before the change is applied: `view` still shows the job as it was."""
    if isinstance(change, sc.JobRefunded):
        job = view.get(change.job_id)
        ours = job is not None and job.provider == me.address
        if me.role is Role.PROVIDER and ours:
            log.warning(
                "job %s refunded to its client after the deadline: %d wei of our stake slashed",
                change.job_id,
                change.slashed,
            )
    elif isinstance(change, sc.TxReverted):
        action = tx_action(change.effect_id)
        if action in _SETTLING:
            log.warning(
                "settlement failed (%s for job %s): %s",
                action,
                tx_job(change.effect_id),
                change.reason,
            )
    elif isinstance(change, sc.JobExecutionFailed):
        log.warning("job %s failed in the enclave: %s", change.job_id, change.reason)
    elif isinstance(change, sc.OutputRejected):
        log.warning(
            "job %s: the provider's output failed its checks: %s", change.job_id, change.reason
        )

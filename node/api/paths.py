"""The API's paths, shared by the daemon's app and the CLI's client."""

from __future__ import annotations

HEALTH = "/healthz"
OPENAPI = "/openapi.json"
METRICS = "/metrics"
STATUS = "/v1/status"
JOBS = "/v1/jobs"
JOB = "/v1/jobs/{job_id}"
JOB_OUTPUT = "/v1/jobs/{job_id}/output"
INPUTS = "/v1/inputs"
ACCEPT_JOB = "/v1/jobs/{job_id}/accept"
CLAIM_TIMEOUT = "/v1/jobs/{job_id}/claim-timeout"
CANCEL_JOB = "/v1/jobs/{job_id}/cancel"
WITHDRAWALS = "/v1/withdrawals"
EFFECTS = "/v1/effects"
TRANSACTIONS = "/v1/transactions"
OFFERS = "/v1/offers"
PEERS = "/v1/peers"
APPROVALS = "/v1/approvals"

# Answer without the bearer token; every other path, known or not, requires it.
PUBLIC = frozenset({HEALTH, OPENAPI})

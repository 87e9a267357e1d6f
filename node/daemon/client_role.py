"""The client's components: effect handlers, producers of state changes, p2p services.

node/state/client.py decides; these act. Offers heard on gossip become OfferReceived; a
job submitted through the API (JobSubmitRequested, node/daemon/api_backend.py) is ranked over the live offer book, each
candidate's evidence is judged under the client's own policy and the chain before anything
is sent, the input is sealed to the accepted enclave, quoted, matched on chain (the daemon's
transaction sender), uploaded, and the settled output fetched, checked and opened.
"""

from __future__ import annotations

import logging

from node.daemon.client_checks import ProviderChecker, client_policy
from node.daemon.client_offers import EvidenceVerdicts, OfferFeed, ProviderFinder
from node.daemon.client_transfer import InputSealer, InputSender, Quoter, ResultFetcher
from node.daemon.effect_runner import EffectHandler
from node.daemon.wiring import NodeContext, RoleParts
from node.state import changes as sc
from node.state import effects as fx

log = logging.getLogger(__name__)

# What this role's components handle and produce (held to the daemon by tests/unit/daemon).
HANDLED_EFFECTS: frozenset[type[fx.Effect]] = frozenset(
    {
        fx.FindProviders,
        fx.CheckProvider,
        fx.SealInput,
        fx.RequestQuote,
        fx.SendInput,
        fx.FetchOutput,
    }
)
PRODUCED_CHANGES: frozenset[type[sc.StateChange]] = frozenset(
    {
        sc.OfferReceived,
        sc.ProvidersFound,
        sc.ProviderChecked,
        sc.InputSealed,
        sc.QuoteReceived,
        sc.CandidateFailed,
        sc.InputDelivered,
        sc.InputUndeliverable,
        sc.OutputVerified,
        sc.OutputRejected,
    }
)


def build_client(ctx: NodeContext) -> RoleParts:
    section = ctx.config.client
    policy = client_policy(section.policy_file, section.allow_sim)
    if section.allow_sim:
        log.warning(
            "[client] allow_sim = true: INSECURE sim enclaves are accepted, and jobs they run "
            "are recorded as insecure"
        )
    verdicts = EvidenceVerdicts()
    handlers: dict[type[fx.Effect], EffectHandler] = {
        fx.FindProviders: ProviderFinder(ctx, verdicts, section.allow_sim),
        fx.CheckProvider: ProviderChecker(ctx, policy, verdicts),
        fx.SealInput: InputSealer(ctx),
        fx.RequestQuote: Quoter(ctx),
        fx.SendInput: InputSender(ctx),
        fx.FetchOutput: ResultFetcher(ctx),
    }
    assert set(handlers) == HANDLED_EFFECTS
    return RoleParts(handlers=handlers, services=[OfferFeed(ctx)], evidence_of=verdicts.checked)

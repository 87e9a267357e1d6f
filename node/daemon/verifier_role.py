"""The verifier's components: effect handlers, producers of state changes, p2p services.

A verifier serves /capa/approve/1 (verifier_responder.py: rate limit, ApprovalRequested,
the recorded decision as the answer) and handles CheckEvidence (verifier_checker.py: proofs
under its policy, the binding, the chain; the EIP-712 KeyAttestation signature). At start it
says which policy and collateral it judges with, and whether its account is in the
committee whose signatures AttestationVerifier.registerKey counts.
"""

from __future__ import annotations

import logging

from node.chain.errors import ChainError
from node.collateral import LiveCollateralConfig, live_collateral_source, live_gpu_sources
from node.config.model import VerifierSection
from node.daemon.errors import DaemonError
from node.daemon.verifier_checker import Collateral, EvidenceChecker
from node.daemon.verifier_checks import describe_policy, load_rules
from node.daemon.verifier_requests import HeldRequests
from node.daemon.verifier_responder import ApprovalService
from node.daemon.wiring import NodeContext, RoleParts
from node.state import changes as sc
from node.state import effects as fx
from proofs.collateral_directory import CollateralDirectory
from proofs.collateral_source import CollateralUrls
from proofs.nvidia_rim import SignedRimSource

log = logging.getLogger(__name__)

# What this role's components handle and produce (held to the daemon by tests/unit/daemon).
HANDLED_EFFECTS: frozenset[type[fx.Effect]] = frozenset({fx.CheckEvidence})
PRODUCED_CHANGES: frozenset[type[sc.StateChange]] = frozenset(
    {sc.ApprovalRequested, sc.EvidenceChecked}
)

HELD_REQUESTS_DIR = "approval-requests"
COMMITTEE_CHECK_TIMEOUT_S = 10.0


def collateral_for(section: VerifierSection) -> Collateral:
    """An offline directory when one is configured (no network at all); otherwise Intel
    PCS (or a PCCS) and AMD KDS, cached on disk, with NVIDIA's RIM service and OCSP."""
    if section.collateral_dir is not None:
        directory = CollateralDirectory(section.collateral_dir)
        return Collateral(
            directory,
            rim=SignedRimSource(directory.rim),
            description=f"offline collateral from {section.collateral_dir}",
        )
    defaults = CollateralUrls()
    live = LiveCollateralConfig(
        intel_pcs_url=section.pcs_url,
        intel_root_ca_crl_url=(
            defaults.intel_root_ca_crl
            if section.pcs_url == defaults.intel_pcs
            else f"{section.pcs_url}/IntelSGXRootCA.der"
        ),
        amd_kds_url=section.kds_url,
        cache_dir=section.collateral_cache_dir,
    )
    rims, ocsp = live_gpu_sources(live)
    return Collateral(
        live_collateral_source(live),
        ocsp=ocsp,
        rim=rims,
        description=(
            f"live collateral from {section.pcs_url} and {section.kds_url}, "
            f"cached in {section.collateral_cache_dir}"
        ),
    )


def build_verifier(ctx: NodeContext) -> RoleParts:
    section = ctx.config.verifier
    rules = load_rules(section)
    collateral = collateral_for(section)
    held = HeldRequests(ctx.data_dir / HELD_REQUESTS_DIR)
    responder = ApprovalService(ctx.service, held, section.requests_per_minute)
    checker = EvidenceChecker(ctx, rules, held, collateral)

    async def prepare() -> None:
        log.info("verifier judges with %s", describe_policy(rules, section.policy_file))
        if rules.insecure:
            log.warning(
                "INSECURE: verifier.allow_sim = true: this verifier approves sim enclaves, "
                "which are not hardware; for devnets only"
            )
        log.info("verifier collateral: %s", collateral.description)
        removed = held.prune(responder.decided)
        if removed:
            log.info("removed %d approval requests already decided", removed)
        await _report_committee(ctx)

    return RoleParts(
        handlers={fx.CheckEvidence: checker},
        approvals=responder,
        prepare=[prepare],
    )


async def _report_committee(ctx: NodeContext) -> None:
    """Say whether this account's signatures count: only committee members' do."""
    address = ctx.account.address
    if ctx.config.chain.market is None:
        log.warning(
            "no chain.market configured: this verifier serves no approvals (p2p needs the "
            "market) and cannot tell whether %s is in the committee",
            address,
        )
        return
    try:
        contracts = await ctx.contracts.get(COMMITTEE_CHECK_TIMEOUT_S)
        reader = contracts.reader(ctx.rpc, "verifier")
        (member,) = await reader.call("isCommitteeMember", address)
        (size,) = await reader.call("committeeSize")
        (threshold,) = await reader.call("threshold")
    except (ChainError, DaemonError) as exc:
        log.warning(
            "committee membership of %s unknown (the chain did not answer): %s", address, exc
        )
        return
    if member:
        log.info(
            "verifier %s is in the committee of AttestationVerifier %s (%d of %d signatures "
            "register a key)",
            address,
            contracts.verifier,
            threshold,
            size,
        )
    else:
        log.warning(
            "verifier %s is NOT in the committee of AttestationVerifier %s: registerKey "
            "counts none of its signatures, so the approvals it signs are useless until "
            "governance adds it (`capa chain committee set`)",
            address,
            contracts.verifier,
        )

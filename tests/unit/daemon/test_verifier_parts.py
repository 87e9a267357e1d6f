"""The verifier's parts without a chain: its settings, the per-peer rate limit, the requests
it keeps on disk, the rules that turn facts into reasons."""

from __future__ import annotations

import json
from pathlib import Path
from typing import cast

import pytest
import trio

from node.config.errors import ConfigError
from node.config.loader import load_config
from node.config.model import Role, VerifierSection
from node.config.template import render_config
from node.daemon.errors import DaemonError
from node.daemon.judging import PresentedEvidence
from node.daemon.verifier_checker import Collateral, EvidenceChecker
from node.daemon.verifier_checks import (
    NonceBlock,
    VerifierRules,
    freshness_reasons,
    load_rules,
    request_id_for,
)
from node.daemon.verifier_requests import HeldRequest, HeldRequests, RequestsFull
from node.daemon.verifier_responder import PeerRateLimit
from node.daemon.verifier_role import collateral_for
from node.daemon.wiring import NodeContext
from node.p2p.approve_protocol import ApprovalRequest
from node.state.values import Hash32
from proofs.collateral_directory import CollateralDirectory
from proofs.collateral_source import CollateralSource
from proofs.policy import Policy
from proofs.receipts import KeyAttestation

ADDRESS = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"


def section(tmp_path: Path, **changes: object) -> VerifierSection:
    values: dict[str, object] = {
        "policy_file": None,
        "allow_sim": False,
        "collateral_dir": None,
        "pcs_url": "https://api.trustedservices.intel.com",
        "kds_url": "https://kdsintf.amd.com",
        "collateral_cache_dir": tmp_path / "cache",
        "max_key_ttl": 86400,
        "max_nonce_age": 60,
        "requests_per_minute": 2,
    }
    values.update(changes)
    return VerifierSection(**values)  # type: ignore[arg-type]


def request(
    nonce_block: int = 7, expires_at: int = 10_000, evidence: bytes = b"{}"
) -> ApprovalRequest:
    return ApprovalRequest(
        tee_kind=5,
        evidence=evidence,
        collateral_location="",
        hpke_public_key=bytes(32),
        nonce_block=nonce_block,
        attestation=KeyAttestation(ADDRESS, ADDRESS, 5, bytes(32), 0, bytes(32), expires_at),
    )


# ---------------------------------------------------------------- settings


def test_the_default_policy_refuses_sim_and_allow_sim_is_the_only_switch(tmp_path: Path) -> None:
    assert load_rules(section(tmp_path)).policy.allow_sim is False
    assert load_rules(section(tmp_path)).policy == Policy()
    assert load_rules(section(tmp_path, allow_sim=True)).insecure is True


def test_a_policy_file_that_allows_sim_needs_allow_sim_too(tmp_path: Path) -> None:
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"allow_sim": True, "allow_debug": True}))
    with pytest.raises(DaemonError, match=r"allows sim evidence but verifier\.allow_sim is false"):
        load_rules(section(tmp_path, policy_file=policy))
    rules = load_rules(section(tmp_path, policy_file=policy, allow_sim=True))
    assert rules.policy.allow_sim and rules.policy.allow_debug


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "cannot be read"),
        ("{not json", "cannot be read"),
        ('{"allow_dbug": true}', "unknown policy keys: allow_dbug"),
        ('{"allow_debug": "false"}', "allow_debug must be true or false"),
    ],
)
def test_a_bad_policy_file_stops_the_verifier_naming_the_file(
    tmp_path: Path, content: str | None, expected: str
) -> None:
    policy = tmp_path / "policy.json"
    if content is not None:
        policy.write_text(content)
    with pytest.raises(DaemonError, match=expected) as raised:
        load_rules(section(tmp_path, policy_file=policy))
    assert str(policy) in str(raised.value)


def test_collateral_is_the_offline_directory_when_one_is_configured(tmp_path: Path) -> None:
    offline = collateral_for(section(tmp_path, collateral_dir=tmp_path / "pcs"))
    assert isinstance(offline.source, CollateralDirectory) and offline.ocsp is None
    live = collateral_for(section(tmp_path))
    assert live.ocsp is not None and "cached in" in live.description


def test_the_collateral_settings_load_and_bad_urls_are_refused(tmp_path: Path) -> None:
    base = (
        '[node]\nrole = "verifier"\n[chain]\nrpc_urls = ["http://127.0.0.1:8545"]\nchain_id = 1\n'
    )
    path = tmp_path / "capa.toml"
    path.write_text(base + '[verifier]\npcs_url = "https://pccs.example:8081/"\n')
    config = load_config(path, env={})
    assert config.verifier.pcs_url == "https://pccs.example:8081"
    assert config.verifier.collateral_cache_dir == tmp_path / "collateral-cache"
    path.write_text(base + '[verifier]\nkds_url = "kds.amd"\n')
    with pytest.raises(ConfigError, match=r"verifier\.kds_url"):
        load_config(path, env={})


# ---------------------------------------------------------------- rate limit


def test_each_peer_has_its_own_bucket_refilled_over_the_minute() -> None:
    limit = PeerRateLimit(per_minute=2)
    assert limit.allow("a", 0.0) and limit.allow("a", 0.1)
    assert not limit.allow("a", 0.2)
    assert limit.allow("b", 0.2)  # another peer is not held back
    assert not limit.allow("a", 29.0)  # one token takes 30 s to come back
    assert limit.allow("a", 31.0)
    assert not limit.allow("a", 31.1)


def test_the_limit_forgets_the_least_recent_peers_beyond_its_bound() -> None:
    limit = PeerRateLimit(per_minute=1, max_peers=2)
    assert limit.allow("a", 0.0) and limit.allow("b", 0.0) and limit.allow("c", 0.0)
    assert not limit.allow("c", 0.0)
    assert limit.allow("a", 0.0)  # forgotten: a fresh bucket


# ---------------------------------------------------------------- held requests


def test_requests_are_held_by_id_and_bounded(tmp_path: Path) -> None:
    held = HeldRequests(tmp_path / "held", max_held=2)
    first, second, third = (request(nonce_block=n) for n in (1, 2, 3))
    ids = [request_id_for(r) for r in (first, second, third)]
    decided: set[str] = set()
    held.put(ids[0], HeldRequest("peer-1", first), decided.__contains__)
    held.put(ids[1], HeldRequest("peer-2", second), decided.__contains__)
    assert held.get(ids[0]) == HeldRequest("peer-1", first)
    with pytest.raises(RequestsFull):  # both still being checked: no room
        held.put(ids[2], HeldRequest("peer-3", third), decided.__contains__)
    decided.add(ids[0])
    held.put(ids[2], HeldRequest("peer-3", third), decided.__contains__)
    assert held.get(ids[0]) is None  # the decided one made room
    assert sorted(held.held()) == sorted(ids[1:])


def test_a_damaged_held_request_reads_as_none_and_prune_clears_partial_writes(
    tmp_path: Path,
) -> None:
    held = HeldRequests(tmp_path)
    request_id = Hash32("0x" + "ab" * 32)
    (tmp_path / f"{request_id}.json").write_text('{"peer": "x", "request": {"kind": 300}}')
    (tmp_path / "cut-short.tmp").write_text("{")
    assert held.get(request_id) is None
    assert held.prune(lambda _: True) == 1
    assert not list(tmp_path.iterdir())


# ---------------------------------------------------------------- rules


def test_freshness_names_every_problem() -> None:
    rules = VerifierRules(Policy(), max_key_ttl=1000, max_nonce_age=60)
    block = NonceBlock(7, bytes(32), timestamp=900)
    assert freshness_reasons(request(expires_at=1500), block, 950, rules) == []
    stale_and_long = freshness_reasons(request(expires_at=5000), block, 1000, rules)
    assert stale_and_long == [
        "stale nonce: block 7 is 100 s old, at most 60 s accepted",
        "the key would live 4000 s, more than the 1000 s this verifier signs for",
    ]
    missing_and_expired = freshness_reasons(request(expires_at=900), None, 950, rules)
    assert missing_and_expired == [
        "nonce block 7 is not on this verifier's chain",
        "the key's expiry 900 is not in the future (now 950)",
    ]


def test_one_id_per_distinct_request() -> None:
    assert request_id_for(request()) == request_id_for(request())
    assert request_id_for(request()) != request_id_for(request(evidence=b"{ }"))


def test_the_verifier_section_capa_init_writes_says_the_defaults(tmp_path: Path) -> None:
    written = render_config(
        Role.VERIFIER, rpc_urls=["http://127.0.0.1:8545"], chain_id=1, market="", api_port=0
    )
    assert "[verifier]" in written
    path = tmp_path / "capa.toml"
    path.write_text(written)
    with_section = load_config(path, env={}).verifier
    path.write_text(written.split("[verifier]")[0])
    assert load_config(path, env={}).verifier == with_section
    assert with_section.allow_sim is False and with_section.policy_file is None
    assert load_config(path, env={"CAPA_VERIFIER_ALLOW_SIM": "true"}).verifier.allow_sim


class _BrokenSource:
    """A collateral source with a fault no ProofError describes."""

    def intel_collateral(self, request: object, at: object) -> object:
        raise RuntimeError("a bug, not a proof failure")

    def amd_collateral(self, request: object, at: object) -> object:
        raise RuntimeError("a bug, not a proof failure")

    def cca_trust_anchors(self, at: object) -> object:
        raise RuntimeError("a bug, not a proof failure")


def test_an_unexpected_fault_while_judging_is_a_refusal_not_an_endless_retry(
    tmp_path: Path,
) -> None:
    quote = (Path(__file__).resolve().parents[2] / "data/attestation/tdx-1/quote.bin").read_bytes()
    checker = EvidenceChecker(
        cast(NodeContext, None),
        load_rules(section(tmp_path)),
        HeldRequests(tmp_path),
        Collateral(cast(CollateralSource, _BrokenSource())),
    )
    presented = PresentedEvidence(2, quote, ADDRESS, bytes(32), bytes(32), 2**40, bytes(48))
    judgement = trio.run(checker._judge, presented, 1, ADDRESS, ADDRESS)
    assert not judgement.accepted
    assert judgement.reasons == ("evidence could not be judged: RuntimeError",)

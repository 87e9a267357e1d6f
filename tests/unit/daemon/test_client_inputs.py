"""A client's policy file: refused with a clear reason naming the file, or kept with sim
switched by the client's config alone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from node.daemon.client_checks import client_policy
from node.daemon.errors import DaemonError


def test_the_default_policy_refuses_sim_unless_the_client_allows_it() -> None:
    assert not client_policy(None, allow_sim=False).allow_sim
    assert client_policy(None, allow_sim=True).allow_sim


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "cannot be read"),
        ("{not json", "cannot be read"),
        (json.dumps({"allow_debug": "false"}), "allow_debug"),
        (json.dumps({"colour": "blue"}), "unknown policy keys: colour"),
        (json.dumps({"allow_sim": True}), "set allow_sim = true"),
    ],
)
def test_a_bad_policy_file_stops_the_client_with_its_reason(
    tmp_path: Path, content: str | None, expected: str
) -> None:
    path = tmp_path / "policy.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(DaemonError, match=expected) as raised:
        client_policy(path, allow_sim=False)
    assert str(path) in str(raised.value)


def test_a_policy_file_is_kept_with_sim_switched_by_the_client_config(tmp_path: Path) -> None:
    path = tmp_path / "policy.json"
    path.write_text(json.dumps({"max_evidence_age_s": 60}))
    policy = client_policy(path, allow_sim=True)
    assert policy.allow_sim and policy.max_evidence_age is not None
    assert policy.max_evidence_age.total_seconds() == 60

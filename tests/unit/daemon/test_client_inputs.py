"""What a client is handed (its policy file, a job submission) is refused with a clear reason,
and nothing is written for a refused submission."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from node.chain.typed_data import job_id_for
from node.daemon.client_checks import client_policy
from node.daemon.client_submit import Submission, prepare_submission
from node.daemon.errors import DaemonError
from node.daemon.job_files import JobFiles

CLIENT = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
GOOD = Submission("wasm", bytes(range(32)), 1 << 2, 10**15, 600)


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


def test_a_submission_stores_the_plaintext_under_the_job_id(tmp_path: Path) -> None:
    change = prepare_submission(
        tmp_path, CLIENT, "r1", GOOD, b"input", max_input_bytes=100, nonce=7
    )
    assert change.job_id == "0x" + job_id_for(CLIENT, 7).hex()
    files = JobFiles(tmp_path, change.job_id)
    assert files.plaintext.read_bytes() == b"input"
    assert files.plaintext.stat().st_mode & 0o077 == 0
    assert change.input_size == 5 and change.measurement == "0x" + bytes(range(32)).hex()


@pytest.mark.parametrize(
    ("submission", "plaintext", "expected"),
    [
        (Submission("docker", bytes(32), 4, 1, 1), b"x", "workload kind 'docker'"),
        (Submission("wasm", bytes(31), 4, 1, 1), b"x", "32 bytes, not 31"),
        (Submission("wasm", bytes(32), 0, 1, 1), b"x", "names no known kind"),
        (Submission("wasm", bytes(32), 1 << 9, 1, 1), b"x", "names no known kind"),
        (Submission("wasm", bytes(32), 4, 0, 1), b"x", "more than 0 wei"),
        (Submission("wasm", bytes(32), 4, 1, 0), b"x", "at least 1 s"),
        (GOOD, b"", "input is empty"),
        (GOOD, b"x" * 101, "more than \\[client\\] max_input_bytes"),
    ],
)
def test_a_bad_submission_is_refused_and_writes_nothing(
    tmp_path: Path, submission: Submission, plaintext: bytes, expected: str
) -> None:
    with pytest.raises(DaemonError, match=expected):
        prepare_submission(tmp_path, CLIENT, "r", submission, plaintext, max_input_bytes=100)
    assert not (tmp_path / "jobs").exists()


def test_a_second_submission_with_the_same_nonce_is_refused(tmp_path: Path) -> None:
    prepare_submission(tmp_path, CLIENT, "r1", GOOD, b"one", max_input_bytes=100, nonce=3)
    with pytest.raises(DaemonError, match="already has files"):
        prepare_submission(tmp_path, CLIENT, "r2", GOOD, b"two", max_input_bytes=100, nonce=3)
    assert JobFiles(tmp_path, "0x" + job_id_for(CLIENT, 3).hex()).plaintext.read_bytes() == b"one"

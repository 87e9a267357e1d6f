"""The repository stands alone: a clone of the committed tree, in a folder with no siblings,
collects every test and imports its own code.

This is what a new user (and CI) has: `git clone` into an empty folder, nothing beside it.
A test or bench that reads a folder beside the repository, a file left untracked, or one hidden by .gitignore
(say test data under a `cache/` folder) fails here before it fails for them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[2]


def _git(*args: str, cwd: Path) -> str:
    done = subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, f"git {' '.join(args)}: {done.stderr.strip()}"
    return done.stdout.strip()


def _lone_clone(tmp_path: Path) -> Path:
    if shutil.which("git") is None or not (REPOSITORY / ".git").exists():
        pytest.skip("not a git checkout: there is no committed tree to clone")
    head = _git("rev-parse", "HEAD", cwd=REPOSITORY)
    clone = tmp_path / "lone" / "repo"
    _git("clone", "--quiet", "--no-checkout", str(REPOSITORY), str(clone), cwd=tmp_path)
    _git("checkout", "--quiet", "--detach", head, cwd=clone)
    assert sorted(p.name for p in clone.parent.iterdir()) == ["repo"]
    return clone


def _in_clone(clone: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # This interpreter's packages, but the clone's code: PYTHONPATH comes before the
    # editable install of the checkout the suite runs from.
    env = {**os.environ, "PYTHONPATH": str(clone), "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("HYPOTHESIS_PROFILE", None)
    return subprocess.run(
        [sys.executable, *args], cwd=clone, env=env, capture_output=True, text=True, timeout=300
    )


def test_a_lone_clone_collects_every_test_from_its_own_code(tmp_path: Path) -> None:
    clone = _lone_clone(tmp_path)
    where = _in_clone(
        clone,
        "-c",
        "import node, proofs, scheduler; print(node.__file__, proofs.__file__, scheduler.__file__)",
    )
    assert where.returncode == 0, where.stderr
    for module_file in where.stdout.split():
        assert Path(module_file).is_relative_to(clone), f"imported {module_file}, not the clone's"

    collected = _in_clone(
        clone, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "tests"
    )
    report = collected.stdout + collected.stderr
    # A module that cannot find its data fails collection (exit status 2, "ERROR collecting").
    assert collected.returncode == 0, report[-4000:]
    assert "tests/unit/proofs/test_proofs_cases.py::test_case_yields_expected_verdict[sgx-1]" in (
        collected.stdout
    ), "the attestation cases were not collected from the clone's tests/data"

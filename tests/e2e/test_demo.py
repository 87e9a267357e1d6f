"""`make demo` runs the main job end to end; this keeps it from rotting."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_demo_settles_a_sealed_job_and_says_insecure() -> None:
    ran = subprocess.run(
        [sys.executable, "-m", "node.demo"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={"COLUMNS": "200", "NO_COLOR": "1", "PATH": "/usr/bin:/bin"},
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    out = ran.stdout
    # The workload upper-cases its input: the client could only read this after opening the
    # output sealed to its own key.
    assert "CONFIDENTIAL INPUT: THE LAUNCH CODES ARE 0000" in out
    assert "submitResult" in out and "settled on chain 31337" in out
    # A sim enclave is never presented as real.
    assert out.count("INSECURE") >= 4
    assert "no hardware, no confidentiality" in out

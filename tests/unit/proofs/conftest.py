"""The proofs fuzz tests share their inputs, fuzz_inputs.py next to this file (pytest runs
with --import-mode=importlib, so this directory is put on sys.path for it)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

"""The package metadata installs without warnings a new user would see at `make deps`."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def test_license_is_an_spdx_expression_that_the_build_backend_supports() -> None:
    # The `{ text = ... }` table form makes setuptools >= 77 print a deprecation warning
    # at every install; the string form needs setuptools >= 77 to build.
    data = tomllib.loads(PYPROJECT.read_text())
    assert data["project"]["license"] == "Apache-2.0"
    backend = next(r for r in data["build-system"]["requires"] if r.startswith("setuptools"))
    minimum = re.fullmatch(r"setuptools>=(\d+)(?:\.\d+)*", backend)
    assert minimum is not None and int(minimum.group(1)) >= 77

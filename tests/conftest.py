"""Hypothesis profiles for the whole suite, chosen by HYPOTHESIS_PROFILE (default "ci").

ci    `make test` and CI: derandomized, so every run and every fresh clone tries the same
      examples; a red build reproduces and a green one is not luck. No example database:
      nothing in .hypothesis/ changes what a run does.
fuzz  `make fuzz`: random and long (FUZZ_EXAMPLES examples per property, default 20000) over
      the tests marked `fuzz`, the evidence and collateral parsers and verifiers. Failures are
      kept in .hypothesis/ and replay first on the next run; a failure found there becomes an
      `@example` in its test, so the ci profile checks it from then on.

Loaded here, before any test module is imported: a `settings(...)` object copies the loaded
profile when it is built, at import.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "fuzz",
    derandomize=False,
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "20000")),
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
settings.load_profile(PROFILE)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under the fuzz profile, refuse a fuzz test whose own settings fix a smaller budget:
    it would run its short ci search and look like a long one."""
    if PROFILE != "fuzz":
        return
    wanted = settings.default.max_examples
    for item in items:
        if item.get_closest_marker("fuzz") is None:
            continue
        own = getattr(getattr(item, "function", None), "_hypothesis_internal_use_settings", None)
        if own is None:
            raise pytest.UsageError(f"{item.nodeid} is marked fuzz but is not a hypothesis test")
        if own.max_examples != wanted:
            raise pytest.UsageError(
                f"{item.nodeid} is marked fuzz but fixes max_examples={own.max_examples}; "
                "leave it to the profile"
            )

"""docs/configuration.md is what the generator writes from the config schema, key for key."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from node.config.loader import SCHEMA, SECTIONS
from node.config.model import WorkloadConfig
from node.config.reference import REGENERATE, render_reference

REPOSITORY = Path(__file__).resolve().parents[3]
PAGE = REPOSITORY / "docs" / "configuration.md"


def test_the_committed_reference_is_what_the_generator_writes() -> None:
    assert PAGE.read_text() == render_reference(), (
        f"docs/configuration.md differs from the config schema: run `{REGENERATE}`"
    )


def test_every_key_is_described_with_its_environment_variable() -> None:
    text = render_reference()
    assert set(SECTIONS) == set(SCHEMA)
    for section, settings in SCHEMA.items():
        assert f"## [{section}]" in text
        for key, setting in settings.items():
            assert setting.about, f"{section}.{key} has no description"
            assert f"| `{key}` |" in text
            assert f"`CAPA_{section.upper()}_{key.upper()}`" in text
    for field in dataclasses.fields(WorkloadConfig):
        assert field.metadata.get("about"), f"WorkloadConfig.{field.name} has no description"
        assert f"| `{field.name}` |" in text


def test_defaults_and_required_keys_are_shown() -> None:
    text = render_reference()
    assert "| `port` | integer | `7420` |" in text
    assert "| `rpc_urls` | array of strings | *required* |" in text
    assert "| `allow_sim` | boolean | `false` |" in text
    assert "Used by: provider." in text

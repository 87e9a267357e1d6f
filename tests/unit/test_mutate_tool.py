"""tools/mutate.py: its target table, and how it places a mutant of mutmut's at file:line."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load_tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("mutate_tool", ROOT / "tools" / "mutate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


mutate = _load_tool()

SOURCE = '''"""doc"""


def top(a: int) -> int:
    return a + 1


class Ledger:
    @classmethod
    def build(cls) -> "Ledger":
        return cls()

    def free(self, x: int) -> bool:
        y = x * 2
        return y > 0
'''


def test_every_target_and_every_test_it_names_exists() -> None:
    targets = mutate.load_targets()
    paths = [target.path for target in targets]
    assert {"proofs/policy.py", "proofs/binding.py"} <= set(paths)
    assert {"scheduler/constraints.py", "scheduler/capacity.py"} <= set(paths)
    for target in targets:
        assert (ROOT / target.path).exists(), target.path
        for test in target.tests:
            assert (ROOT / test.split("::")[0]).is_file(), test


def test_the_four_deciding_files_must_score_at_least_90() -> None:
    floors = {target.path: target.min_score for target in mutate.load_targets()}
    for path in ("proofs/policy.py", "proofs/binding.py"):
        assert floors[path] >= 90
    for path in ("scheduler/constraints.py", "scheduler/capacity.py"):
        assert floors[path] >= 90


def test_an_unlisted_file_is_refused_naming_the_table() -> None:
    with pytest.raises(SystemExit) as refused:
        mutate.select(mutate.load_targets(), ["scheduler/units.py"])
    assert "scheduler/units.py has no entry in tools/mutate-targets.toml" in str(refused.value)
    (chosen,) = mutate.select(mutate.load_targets(), ["./scheduler/capacity.py"])
    assert chosen.path == "scheduler/capacity.py"


def test_a_package_directory_target_mutates_each_of_its_files() -> None:
    package = mutate.Target("node/state/", ("tests/unit/node/test_node_state.py",), 85.0)
    assert package.only_mutate == "node/state/*.py"
    assert package.module_prefix == "node.state."
    single = mutate.Target("scheduler/capacity.py", (), 90.0)
    assert single.only_mutate == "scheduler/capacity.py"
    assert single.module_prefix == "scheduler.capacity."


def test_function_start_finds_functions_methods_and_decorated_methods() -> None:
    assert mutate.function_start(SOURCE, "x_top") == 4
    assert mutate.function_start(SOURCE, "xǁLedgerǁbuild") == 9
    assert mutate.function_start(SOURCE, "xǁLedgerǁfree") == 13
    assert mutate.function_start(SOURCE, "xǁMissingǁfree") is None


def test_a_mutant_is_placed_on_the_line_it_changes(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "mod.py").write_text(SOURCE)
    diff = "\n".join(
        [
            "--- pkg/mod.py",
            "+++ pkg/mod.py",
            "@@ -1,3 +1,3 @@",
            " def free(self, x: int) -> bool:",
            "     y = x * 2",
            "-    return y > 0",
            "+    return y >= 0",
        ]
    )
    survivor = mutate.describe(tmp_path, "pkg.mod.xǁLedgerǁfree__mutmut_3", "survived", diff)
    assert survivor.where == "pkg/mod.py:15"
    assert (survivor.before, survivor.after) == ("return y > 0", "return y >= 0")


def test_a_long_line_is_shortened_to_the_part_that_changed() -> None:
    before = "reasons.append(" + "x" * 80 + ' "debug mode is enabled")'
    after = "reasons.append(" + "x" * 80 + ' "XXdebug mode is enabledXX")'
    short_before, short_after = mutate.shorten_pair(before, after)
    assert short_before.startswith("…") and short_after.startswith("…")
    assert "debug mode" in short_before and "XXdebug" in short_after
    assert len(short_before) < len(before)


def test_the_report_scores_each_target_and_ends_with_one_json_object(
    capsys: pytest.CaptureFixture[str],
) -> None:
    package = mutate.Target("node/state/", (), 85.0)
    statuses = {
        "node.state.machine.x_transition__mutmut_1": "killed",
        "node.state.machine.x_transition__mutmut_2": "timeout",
        "node.state.codec.x_decode__mutmut_1": "survived",
        "node.state.codec.x_decode__mutmut_2": "killed",
        "node.state.codec.x_decode__mutmut_3": "skipped",
    }
    outcome = mutate.Outcome(package, statuses)
    assert (outcome.counted, outcome.detected, outcome.score) == (4, 3, 75.0)
    assert not outcome.passed
    by_file = {path: part.score for path, part in outcome.per_file()}
    assert by_file == {"node/state/codec.py": 50.0, "node/state/machine.py": 100.0}
    mutate.report([outcome])
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("node/state/") and line.endswith("BELOW") for line in lines)
    assert any(line.startswith("  node/state/codec.py") for line in lines)
    assert json.loads(lines[-1]) == {
        "node/state/": {"score": 75.0, "mutants": 4, "killed": 2, "timeout": 1, "min": 85.0}
    }

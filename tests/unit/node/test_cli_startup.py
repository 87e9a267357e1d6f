"""`capa --help`, `capa --version` and shell completion start without loading the commands'
heavy dependencies, and still show every command with its own help."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import typer.core
import typer.main
from typer import _click as click
from typer.testing import CliRunner

from node.cli.main import COMMANDS, app

HEAVY = ("web3", "eth_account", "libp2p", "fastapi", "hypercorn", "onnxruntime", "wasmtime")
PROBE = """
import json, sys
from typer.testing import CliRunner
from node.cli.main import app
result = CliRunner().invoke(app, sys.argv[1:], env={"COLUMNS": "200"})
print(json.dumps({"exit": result.exit_code, "output": result.output,
                  "heavy": sorted(m for m in sys.modules if m.split(".")[0] in HEAVY)}))
""".replace("HEAVY", repr(HEAVY))


def _fresh(*args: str) -> dict[str, object]:
    """Run the CLI in a fresh interpreter and say which heavy modules it loaded."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args], capture_output=True, text=True, check=True
    )
    answer: dict[str, object] = json.loads(done.stdout.splitlines()[-1])
    return answer


@pytest.mark.parametrize("args", [["--help"], ["--version"], []], ids=repr)
def test_listing_loads_no_command_module(args: list[str]) -> None:
    answer = _fresh(*args)
    assert answer["heavy"] == []
    if args != ["--version"]:
        for name in COMMANDS:
            assert f" {name} " in str(answer["output"])


@pytest.mark.parametrize(
    "args",
    [
        ["job", "status", "0x1", "-c", "/nonexistent/capa.toml"],
        ["node", "status", "-c", "/nonexistent/capa.toml"],
        ["node", "--help"],
    ],
    ids=" ".join,
)
def test_simple_commands_load_no_heavy_library(args: list[str]) -> None:
    answer = _fresh(*args)
    assert answer["heavy"] == []
    assert "Traceback" not in str(answer["output"])


def test_a_command_loads_what_it_needs() -> None:
    answer = _fresh("node", "--help")
    assert answer["exit"] == 0
    for command in ("run", "probe", "status", "withdraw"):
        assert f" {command} " in str(answer["output"])


@pytest.mark.parametrize("name", list(COMMANDS))
def test_each_listed_line_is_the_commands_own_help(name: str) -> None:
    command = COMMANDS[name].load(name)
    assert COMMANDS[name].summary == (command.short_help or command.help)


def test_the_root_lists_exactly_the_table() -> None:
    group = typer.main.get_command(app)
    assert isinstance(group, typer.core.TyperGroup)
    names = group.list_commands(click.Context(group))
    assert names == list(COMMANDS)


def test_completion_lists_commands_and_descends_into_them() -> None:
    env = {**os.environ, "_CAPA_COMPLETE": "complete_bash", "COMP_CWORD": "1"}
    top = subprocess.run(
        [sys.executable, "-c", "from node.cli.main import app; app(prog_name='capa')"],
        env={**env, "COMP_WORDS": "capa "},
        capture_output=True,
        text=True,
    )
    assert top.stdout.split() == list(COMMANDS)
    sub = subprocess.run(
        [sys.executable, "-c", "from node.cli.main import app; app(prog_name='capa')"],
        env={**env, "COMP_WORDS": "capa node pro", "COMP_CWORD": "2"},
        capture_output=True,
        text=True,
    )
    assert sub.stdout.split() == ["probe"]


def test_show_completion_prints_a_script() -> None:
    result = CliRunner().invoke(app, ["--show-completion", "bash"])
    assert result.exit_code == 0
    assert "_CAPA_COMPLETE=complete_bash" in result.output


def test_node_run_takes_v_and_vv() -> None:
    result = CliRunner().invoke(app, ["node", "run", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "--verbose" in result.output
    assert "-vv everything" in result.output

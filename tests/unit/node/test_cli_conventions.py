"""The conventions every `capa` command shares: help that names values as people do, one
error style with documented exit codes, --json errors, shell completion."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

from node.amounts import AmountError
from node.api.errors import ApiError, DaemonUnreachable
from node.chain.errors import (
    ChainError,
    ContractRevert,
    InsufficientFunds,
    ManifestError,
    RpcUnavailable,
    WrongChain,
)
from node.cli.main import app
from node.cli.output import CommandFailed, ExitCode, Problem, error_line, problem_of
from node.config.errors import ConfigFileError
from node.keys.errors import KeyFileExists, WrongPassword
from node.times import TimeFormatError

runner = CliRunner()
# The command groups this module's conventions were written with: every parameter described.
DESCRIBED = ("init", "chain", "provider", "wallet", "job", "offers")


def _commands(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    if hasattr(command, "commands"):  # a group (typer ships its own copy of click)
        for name, sub in command.commands.items():
            yield from _commands(sub, (*path, name))
    else:
        yield path


COMMANDS = list(_commands(typer.main.get_command(app)))


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_help_names_values_as_people_do(path: tuple[str, ...]) -> None:
    shown = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    for python_type in ("<bool>", "<str>", "<int>", "<float>", "<path>", "<list["):
        assert python_type not in shown.output, f"capa {' '.join(path)}: {python_type}"
    usage = next(line for line in shown.output.splitlines() if "Usage:" in line)
    assert "{" not in usage, usage


@pytest.mark.parametrize("path", [p for p in COMMANDS if p[0] in DESCRIBED], ids=" ".join)
def test_every_parameter_is_described(path: tuple[str, ...]) -> None:
    command = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]
    assert command.help, f"capa {' '.join(path)} has no description"
    for parameter in command.params:
        assert getattr(parameter, "help", None), f"capa {' '.join(path)}: {parameter.name}"


def test_chain_help_lists_what_it_has() -> None:
    shown = runner.invoke(app, ["chain", "--help"], env={"COLUMNS": "200"}).output
    for command in ("deploy", "show", "kind", "measurement", "committee"):
        assert f" {command} " in shown


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (RpcUnavailable("down"), ExitCode.UNREACHABLE),
        (DaemonUnreachable("no daemon"), ExitCode.UNREACHABLE),
        (WrongChain(1, 2), ExitCode.USAGE),
        (ConfigFileError("bad"), ExitCode.USAGE),
        (WrongPassword("nope"), ExitCode.USAGE),
        (ManifestError("bad manifest"), ExitCode.USAGE),
        (AmountError("5 bananas"), ExitCode.USAGE),
        (TimeFormatError("soon"), ExitCode.USAGE),
        (KeyFileExists("there"), ExitCode.FAILED),
        (ContractRevert("JobMarket", "ZeroAmount", (), b""), ExitCode.FAILED),
        (InsufficientFunds("0xabc", "broke"), ExitCode.FAILED),
        (ChainError("other"), ExitCode.FAILED),
        (ApiError("refused"), ExitCode.FAILED),
        (CommandFailed("no provider", code=ExitCode.NO_PROVIDER), ExitCode.NO_PROVIDER),
    ],
)
def test_our_errors_map_to_the_documented_exit_codes(error: Exception, code: ExitCode) -> None:
    problem = problem_of(error)
    assert problem is not None and problem.code == code


def test_foreign_errors_are_not_ours_to_word() -> None:
    assert problem_of(ValueError("a bug")) is None
    assert problem_of(KeyError("a bug")) is None


def test_one_error_style() -> None:
    revert = problem_of(ContractRevert("JobMarket", "DeadlinePassed", (1_767_225_600,), b""))
    assert revert is not None
    assert error_line("wallet withdraw", revert) == (
        "capa: wallet withdraw: the JobMarket refuses it: the deadline passed at "
        "2026-01-01 00:00:00 UTC"
    )
    hinted = Problem("no config", "run `capa init`", ExitCode.USAGE)
    assert error_line("node run", hinted) == "capa: node run: no config (hint: run `capa init`)"


def test_usage_errors_take_the_one_style_and_exit_2() -> None:
    missing = runner.invoke(app, ["wallet", "deposit"], env={"COLUMNS": "200"})
    assert missing.exit_code == 2
    assert missing.stderr.strip() == (
        "capa: wallet deposit: Missing argument 'AMOUNT'. (hint: `capa wallet deposit --help`)"
    )
    unknown = runner.invoke(app, ["nonsense"])
    assert unknown.exit_code == 2
    assert unknown.stderr.strip() == "capa: No such command 'nonsense'. (hint: `capa --help`)"


def test_shell_completion_script_and_answers() -> None:
    script = runner.invoke(app, ["--show-completion", "bash"], prog_name="capa")
    assert script.exit_code == 0 and "_CAPA_COMPLETE=complete_bash" in script.output
    answer = runner.invoke(
        app,
        [],
        prog_name="capa",
        env={"_CAPA_COMPLETE": "complete_bash", "COMP_WORDS": "capa provider ", "COMP_CWORD": "2"},
    )
    assert answer.output.split() == [
        "register",
        "stake",
        "unbond",
        "withdraw-stake",
        "exit",
        "status",
        "earnings",
    ]

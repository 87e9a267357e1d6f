"""How every `capa` command reports: exit codes, one error line, `--json` output.

A command body runs inside `reporting("provider stake", as_json=...)`. Our errors (chain,
config, keys, API, bad amounts) leave it as one line on stderr,

    capa: <what>: <why> (hint: <what to do>)

and, with `--json`, also as `{"error": {...}}` on stdout, with the exit code scripts rely
on. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import typer

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
from node.config.errors import ConfigError
from node.keys.errors import KeyFileExists, KeysError
from node.times import TimeFormatError


class ExitCode(IntEnum):
    """What a `capa` command's exit status means (the README lists them)."""

    OK = 0
    FAILED = 1  # the operation failed, or the chain would refuse it (nothing was sent)
    USAGE = 2  # a flag, argument or file the command reads is wrong; nothing was tried
    UNREACHABLE = 3  # the node's daemon or the chain's RPC endpoint does not answer
    NO_PROVIDER = 4  # no provider matches the job


class CommandFailed(Exception):
    """A command's own refusal, in the CLI's words."""

    def __init__(self, why: str, *, hint: str | None = None, code: ExitCode = ExitCode.FAILED):
        super().__init__(why)
        self.why = why
        self.hint = hint
        self.code = code


@dataclass(frozen=True)
class Problem:
    why: str
    hint: str | None
    code: ExitCode


def problem_of(exc: BaseException) -> Problem | None:
    """Our errors as the CLI shows them; None for anything else (a bug: let it surface)."""
    if isinstance(exc, CommandFailed):
        return Problem(exc.why, exc.hint, exc.code)
    if isinstance(exc, ContractRevert):
        # Here, not at the top: it loads web3, and `capa --help` imports this module.
        from node.chain.reverts import explain_revert

        return Problem(
            f"the {exc.contract} refuses it: {explain_revert(exc)}", None, ExitCode.FAILED
        )
    if isinstance(exc, InsufficientFunds):
        return Problem(
            f"no funds: {exc}",
            "send the account some of the chain's currency for gas (and the amount itself)",
            ExitCode.FAILED,
        )
    if isinstance(exc, RpcUnavailable):
        return Problem(
            f"chain unreachable: {exc}", "check --rpc-url or chain.rpc_urls", ExitCode.UNREACHABLE
        )
    if isinstance(exc, WrongChain):
        return Problem(f"wrong chain: {exc}", "check --chain-id or chain.chain_id", ExitCode.USAGE)
    if isinstance(exc, ManifestError):
        return Problem(str(exc), None, ExitCode.USAGE)
    if isinstance(exc, ChainError):
        return Problem(str(exc), None, ExitCode.FAILED)
    if isinstance(exc, KeyFileExists):  # the command would overwrite a file: refused
        return Problem(str(exc), None, ExitCode.FAILED)
    if isinstance(exc, ConfigError | KeysError | AmountError | TimeFormatError):
        return Problem(str(exc), None, ExitCode.USAGE)
    if isinstance(exc, DaemonUnreachable):
        return Problem(str(exc), None, ExitCode.UNREACHABLE)
    if isinstance(exc, ApiError):
        return Problem(str(exc), None, ExitCode.FAILED)
    return None


def error_line(what: str, problem: Problem) -> str:
    hint = f" (hint: {problem.hint})" if problem.hint else ""
    where = f"{what}: " if what else ""
    return f"capa: {where}{problem.why}{hint}"


def report(what: str, problem: Problem, *, as_json: bool) -> None:
    """The error on stderr and, for scripts reading `--json` output, on stdout too."""
    if as_json:
        print_json({"error": _error_object(what, problem)})
    typer.echo(error_line(what, problem), err=True)


def _error_object(what: str, problem: Problem) -> dict[str, Any]:
    error = {"command": what, "message": problem.why, "hint": problem.hint}
    return {**error, "exit_code": int(problem.code)}


class FailedWith(CommandFailed):
    """A refusal that comes with what the command found (a job's summary, the offers):
    with `--json` both are one object, the answer with an `error` member."""

    def __init__(
        self,
        answer: Mapping[str, Any],
        why: str,
        *,
        hint: str | None = None,
        code: ExitCode = ExitCode.FAILED,
    ) -> None:
        super().__init__(why, hint=hint, code=code)
        self.answer = answer


@contextmanager
def reporting(what: str, *, as_json: bool = False) -> Iterator[None]:
    """Run a command body; our errors become one line and an exit code."""
    try:
        yield
    except KeyboardInterrupt:
        typer.echo(f"capa: {what}: interrupted", err=True)
        raise typer.Exit(130) from None
    except Exception as exc:
        problem = problem_of(exc)
        if problem is None:
            raise
        if as_json and isinstance(exc, FailedWith):
            print_json({**exc.answer, "error": _error_object(what, problem)})
            typer.echo(error_line(what, problem), err=True)
        else:
            report(what, problem, as_json=as_json)
        raise typer.Exit(int(problem.code)) from None


def print_json(data: Mapping[str, Any] | Sequence[Any]) -> None:
    """One JSON document on stdout. Amounts and other chain integers are decimal strings
    (JSON numbers past 2^53 lose digits in most parsers), as in the local API."""
    typer.echo(json.dumps(data, indent=2))


def print_fields(rows: Sequence[tuple[str, str]]) -> None:
    """`name  value` lines, the values aligned."""
    width = max((len(name) for name, _ in rows), default=0)
    for name, value in rows:
        typer.echo(f"{name.ljust(width)}  {value}")


def _usage_error(error: Any) -> None:
    """A usage error (unknown option, missing argument, bad choice) in the one error style.

    Replaces Typer's boxed rendering; click still exits with 2 after it."""
    if type(error).__name__ == "NoArgsIsHelpError":  # the help was shown instead
        return
    context = getattr(error, "ctx", None)
    path = context.command_path if context is not None else "capa"
    what = path.removeprefix("capa").strip()
    problem = Problem(error.format_message(), f"`{path} --help`", ExitCode.USAGE)
    typer.echo(error_line(what, problem), err=True)


def install_usage_errors() -> None:
    import typer.rich_utils

    typer.rich_utils.rich_format_error = _usage_error  # type: ignore[assignment]


def warn(what: str, message: str) -> None:
    """A warning that does not stop the command, on stderr."""
    typer.echo(f"capa: {what}: warning: {message}", err=True)


def confirm(question: str, *, yes: bool) -> None:
    """Go on only if `--yes` was given or the user answers yes at a terminal."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise CommandFailed(f"{question} needs confirmation", hint="add --yes", code=ExitCode.USAGE)
    if not typer.confirm(question, default=False):
        raise CommandFailed("not confirmed", code=ExitCode.FAILED)

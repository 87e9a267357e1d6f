"""Commands that load when used: `capa --help` need not import web3, libp2p and onnx.

Each command module pulls in what its commands need, seconds of imports in all; a command
line runs one of them. `LazyGroup` knows every command by name, where it lives and its
one-line help, and imports a command's module only to run it (or to show its own help).
Listing the commands (`capa --help`, shell completion) uses the one-line help alone;
tests/unit/node/test_cli_startup.py holds each equal to the command's own.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

import typer
import typer.core
import typer.main
from typer import _click as click


@dataclass(frozen=True)
class LazyCommand:
    """`target` is `module:attribute`, a Typer app or a command function; `also` names
    modules that add commands to that app when imported."""

    target: str
    summary: str
    also: tuple[str, ...] = ()

    def load(self, name: str) -> click.Command:
        for module in self.also:
            importlib.import_module(module)
        module_name, attribute = self.target.split(":")
        found = getattr(importlib.import_module(module_name), attribute)
        if isinstance(found, typer.Typer):
            command: click.Command = typer.main.get_group(found)
        else:
            single = typer.Typer(add_completion=False)
            single.command(name)(found)
            command = typer.main.get_command(single)
        command.name = name
        return command


class LazyGroup(typer.core.TyperGroup):
    """A Typer group whose `lazy_commands` load on first use; commands registered the usual
    way (`app.command`, `app.add_typer`) work beside them."""

    lazy_commands: ClassVar[dict[str, LazyCommand]] = {}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._listing = False

    def list_commands(self, ctx: click.Context) -> list[str]:
        eager = [name for name in super().list_commands(ctx) if name not in self.lazy_commands]
        return [*self.lazy_commands, *eager]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        loaded = super().get_command(ctx, cmd_name)
        if loaded is not None:
            return loaded
        lazy = self.lazy_commands.get(cmd_name)
        if lazy is None:
            return None
        if self._listing:
            return typer.core.TyperCommand(cmd_name, help=lazy.summary)
        command = lazy.load(cmd_name)
        self.add_command(command, cmd_name)
        return command

    @contextmanager
    def _summaries(self) -> Iterator[None]:
        self._listing = True
        try:
            yield
        finally:
            self._listing = False

    def format_help(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with self._summaries():
            super().format_help(ctx, formatter)

    def shell_complete(self, ctx: click.Context, incomplete: str) -> list[Any]:
        with self._summaries():
            return super().shell_complete(ctx, incomplete)


def lazy_group(commands: dict[str, LazyCommand]) -> type[LazyGroup]:
    """The group class for one app's table of lazy commands."""
    return type("CapaGroup", (LazyGroup,), {"lazy_commands": commands})

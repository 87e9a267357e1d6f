"""How `capa --help` names parameters: the conventions of click and most CLIs, not Python's.

Typer (0.29) shows Python types: `--json <bool>`, `--rpc-url <list[str]>`, and a required
argument as `{path}` in the usage line. Here a flag shows no type, a value shows an upper-case
placeholder (TEXT, INTEGER, PATH, or the metavar a command gives), choices show as
`[a|b|c]`, and arguments are `NAME` (required) or `[NAME]` in the usage line. Installed once
for every command when `node.cli` is imported.
"""

from __future__ import annotations

import re
from typing import Any

import typer.core

_NAMES = {
    "str": "TEXT",
    "int": "INTEGER",
    "float": "FLOAT",
    "path": "PATH",
    "file": "FILE",
    "directory": "DIRECTORY",
    "datetime": "DATETIME",
}


def _placeholder(typer_label: str) -> str:
    """`<list[str]>` -> TEXT, `<int>` -> INTEGER, `<a|b>` -> [a|b]."""
    label = typer_label.strip("<>")
    listed = re.fullmatch(r"list\[(.*)\]", label)
    if listed:
        label = listed.group(1)
    if "|" in label:
        return f"[{label}]"
    if label.endswith(" range"):
        label = label.removesuffix(" range")
    return _NAMES.get(label, label.upper())


def _option_type(self: typer.core.TyperOption, ctx: Any) -> str | None:
    if self.metavar is not None:
        return self.metavar
    if self.is_flag or self.count:
        return None
    return _placeholder(self.display_type(ctx))


def _argument_type(self: typer.core.TyperArgument, ctx: Any) -> str | None:
    # The argument's name (an upper-case placeholder already) says what it is.
    return None


def _argument_name(self: typer.core.TyperArgument) -> str:
    return self.metavar if self.metavar is not None else (self.name or "").upper()


def _argument_usage(self: typer.core.TyperArgument) -> str:
    name = _argument_name(self) + ("..." if self.nargs != 1 else "")
    return name if self.required else f"[{name}]"


def install() -> None:
    typer.core.TyperOption.display_type_rich = _option_type  # type: ignore[method-assign]
    typer.core.TyperArgument.display_type_rich = _argument_type  # type: ignore[method-assign, assignment]
    typer.core.TyperArgument.display_name_raw = property(_argument_name)  # type: ignore[assignment]
    typer.core.TyperArgument._usage_display_name = _argument_usage  # type: ignore[method-assign]

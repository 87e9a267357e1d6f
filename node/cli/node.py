"""`capa node ...`: run the daemon and inspect this machine."""

from __future__ import annotations

import typer

node_app = typer.Typer(help="The node daemon: run it, probe this machine.", no_args_is_help=True)

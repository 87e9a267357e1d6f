"""The `capa` command line."""

from node.cli.main import app, main

__all__ = ["app", "main"]

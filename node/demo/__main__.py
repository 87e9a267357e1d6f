"""`python -m node.demo [--dir DIR] [--image N]` (what `make demo` runs)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console

from node.demo.errors import DemoFailed
from node.demo.walkthrough import Walkthrough

INTERRUPTED = 130  # as a shell reports a command ended by SIGINT


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="make demo",
        description="Confidential AI inference through a local marketplace of daemons "
        "(sim enclaves: INSECURE, no hardware).",
    )
    parser.add_argument(
        "--dir",
        type=Path,
        default=Path(".demo"),
        help="where the model, the input, the output and the devnet go; a previous demo "
        "there is cleared (default: .demo)",
    )
    parser.add_argument(
        "--image", type=int, default=None, help="which held-out digit to send (default: random)"
    )
    options = parser.parse_args(argv)
    console = Console(soft_wrap=True)  # long lines wrap in the terminal, not mid-word here
    try:
        Walkthrough(console, options.dir, options.image).run()
    except DemoFailed as exc:
        console.print(f"demo: {exc}", markup=False, highlight=False)
        return 1
    except KeyboardInterrupt:
        console.print("demo: interrupted; the devnet is down")
        return INTERRUPTED
    return 0


if __name__ == "__main__":
    sys.exit(main())

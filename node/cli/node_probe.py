"""`capa node probe`: what this machine offers the enclave runtime, and why anything is missing."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.table import Table

from node.cli.node import node_app

if TYPE_CHECKING:
    # The probe loads the enclave runtime (wasmtime, the sim attester's eth_account): only
    # `capa node probe` itself pays for that, not every `capa node ...` command.
    from node.enclave.probe import Capability, MachineReport


def _capability_table(title: str, capabilities: tuple[Capability, ...]) -> Table:
    table = Table(title=title, show_lines=False)
    table.add_column("name")
    table.add_column("status")
    table.add_column("detail", overflow="fold")
    for capability in capabilities:
        status = "[green]yes[/green]" if capability.available else "[red]no[/red]"
        table.add_row(capability.name, status, capability.detail)
    return table


def _print_report(report: MachineReport, console: Console) -> None:
    cpu = report.cpu
    flags = ", ".join(cpu.tee_flags) or "none"
    console.print(
        f"[bold]CPU[/bold]: {cpu.model} ({report.architecture}), "
        f"{cpu.logical_cores} logical cores, {cpu.flag_count} flags; TEE flags: {flags}"
    )
    console.print(f"[bold]Memory[/bold]: {report.memory_bytes / 2**30:.1f} GiB")
    if report.gpu.gpus:
        for gpu in report.gpu.gpus:
            console.print(
                f"[bold]GPU {gpu.index}[/bold]: {gpu.name}, {gpu.memory_bytes / 2**30:.1f} GiB"
            )
    console.print(f"[bold]GPUs[/bold]: {report.gpu.detail}")
    console.print(_capability_table("Attesters", report.attesters))
    console.print(_capability_table("Sandboxes", report.sandboxes))
    for note in report.notes:
        console.print(note)


@node_app.command("probe")
def probe(
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Detect CPU, memory, GPUs, attesters and sandboxes; say why anything is unavailable."""
    from node.enclave.probe import probe_machine

    report = probe_machine()
    if as_json:
        typer.echo(json.dumps(report.to_json(), indent=2))
    else:
        _print_report(report, Console())

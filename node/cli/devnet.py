"""`capa devnet up|prepare|status|logs|down`: a whole local marketplace in one directory.

`up` starts anvil, deploys the contracts with the sim kind allowed (INSECURE, local chains
only), governs them for sim providers, and runs verifier, provider and client daemons as
`capa node run` processes whose files and logs live under DIR/<node>. The processes
outlive the command; `down` stops exactly those. `prepare` does the same set-up on a chain
that runs already and starts no process: docker-compose.yml runs each node in a container.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from node.cli.output import (
    CommandFailed,
    ExitCode,
    print_fields,
    print_json,
    reporting,
    warn,
)
from node.devnet.errors import DevnetError, DevnetMissing, StateFileInvalid
from node.devnet.launcher import INSECURE_NOTE, Devnet, DevnetOptions, devnet_lock
from node.devnet.processes import log_tail

devnet_app = typer.Typer(
    help="A local marketplace for development: anvil, the contracts (sim allowed: INSECURE), "
    "and verifier, provider and client daemons, each a `capa node run` process.",
    no_args_is_help=True,
)

DEFAULT_DIR = Path(".capa-devnet")
DirOption = Annotated[
    Path,
    typer.Option(
        "--dir",
        metavar="DIR",
        envvar="CAPA_DEVNET_DIR",
        help="Where the devnet's nodes, logs and state file live.",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]
ProvidersOption = Annotated[int, typer.Option("--providers", min=0, help="Provider nodes.")]
VerifiersOption = Annotated[
    int, typer.Option("--verifiers", min=1, help="Verifier nodes: the committee.")
]
ThresholdOption = Annotated[
    int | None,
    typer.Option("--threshold", min=1, help="Signatures a key needs (default: every verifier's)."),
]


def _failed(exc: DevnetError) -> CommandFailed:
    usage = isinstance(exc, DevnetMissing | StateFileInvalid)
    return CommandFailed(str(exc), code=ExitCode.USAGE if usage else ExitCode.FAILED)


@devnet_app.command("up")
def up(
    directory: DirOption = DEFAULT_DIR,
    providers: ProvidersOption = 2,
    verifiers: VerifiersOption = 1,
    threshold: ThresholdOption = None,
    onnx: Annotated[
        list[Path] | None,
        typer.Option(
            "--onnx",
            metavar="MODEL",
            help="An ONNX model the providers serve besides the committed wasm workloads "
            "(repeat for several).",
        ),
    ] = None,
    timeout: Annotated[
        float, typer.Option("--timeout", min=1, help="Seconds each stage may take to be ready.")
    ] = 180.0,
    wait_offers: Annotated[
        bool,
        typer.Option(
            "--wait-offers/--no-wait-offers",
            help="Return only once the client sees an offer of every provider.",
        ),
    ] = True,
    as_json: JsonOption = False,
) -> None:
    """Start anvil, deploy and govern the contracts, start every node; return when all are
    ready."""
    what = "devnet up"
    with reporting(what, as_json=as_json):
        models = tuple(onnx or ())
        for model in models:
            if not model.is_file():
                raise CommandFailed(f"--onnx {model}: no such file", code=ExitCode.USAGE)
        options = DevnetOptions(
            providers=providers,
            verifiers=verifiers,
            threshold=threshold,
            onnx_models=models,
            ready_timeout=timeout,
            wait_offers=wait_offers,
        )
        try:
            devnet = Devnet.up(
                directory,
                options,
                progress=None if as_json else lambda line: typer.echo(f"  {line}", err=True),
            )
        except DevnetError as exc:
            raise _failed(exc) from None
        summary = devnet.summary()
        if as_json:
            print_json(summary)
            return
        _print_summary(what, summary)
        typer.echo(
            f"next: `capa job submit -c {summary['client_config']} --wasm FILE --input FILE "
            f"--output FILE`; `capa devnet down --dir {directory}` stops it all"
        )


@devnet_app.command("prepare")
def prepare(
    rpc_url: Annotated[
        str,
        typer.Option(
            "--rpc-url", metavar="URL", help="The chain to deploy to (a local one: anvil)."
        ),
    ],
    directory: DirOption = DEFAULT_DIR,
    providers: ProvidersOption = 2,
    verifiers: VerifiersOption = 1,
    threshold: ThresholdOption = None,
    as_json: JsonOption = False,
) -> None:
    """Deploy and govern the contracts on a running chain and write every node's keys and
    config, but start no node: each is then run as `capa node run -c DIR/NODE/capa.toml`
    (docker-compose.yml runs them in containers), the first verifier first."""
    what = "devnet prepare"
    with reporting(what, as_json=as_json):
        options = DevnetOptions(providers=providers, verifiers=verifiers, threshold=threshold)
        try:
            devnet = Devnet.prepare(
                directory,
                rpc_url,
                options,
                progress=None if as_json else lambda line: typer.echo(f"  {line}", err=True),
            )
        except DevnetError as exc:
            raise _failed(exc) from None
        summary = devnet.summary()
        if as_json:
            print_json(summary)
            return
        _print_summary(what, summary)
        typer.echo(
            "next: `capa node run -c DIR/NODE/capa.toml` for each node, verifier-1 first "
            "(it is the bootstrap peer)"
        )


def _print_summary(what: str, summary: dict[str, Any]) -> None:
    warn(what, INSECURE_NOTE)
    print_fields(
        [
            ("directory", summary["directory"]),
            ("chain", f"{summary['rpc_url']} (chain id {summary['chain_id']})"),
            ("deployment", summary["deployment"]),
            *((name, address) for name, address in summary["contracts"].items()),
            ("client config", summary["client_config"]),
        ]
    )
    typer.echo("")
    _print_nodes(summary["nodes"])
    typer.echo("")


def _print_nodes(nodes: list[dict[str, object]]) -> None:
    rows = [("node", "role", "pid", "API", "peer id")]
    rows += [
        (
            str(n["name"]),
            str(n["role"]),
            str(n.get("pid") or ""),
            str(n.get("api_url") or ""),
            str(n["peer_id"]),
        )
        for n in nodes
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        typer.echo(
            "  ".join([*(c.ljust(w) for c, w in zip(row[:-1], widths, strict=True)), row[-1]])
        )


@devnet_app.command("status")
def status(directory: DirOption = DEFAULT_DIR, as_json: JsonOption = False) -> None:
    """Whether each process runs and what each node's API answers; exit 1 unless all do."""
    with reporting("devnet status", as_json=as_json):
        try:
            report = Devnet.attach(directory).status()
        except DevnetError as exc:
            raise _failed(exc) from None
        healthy = report["anvil"]["running"] and all(
            n["running"] and "status" in n for n in report["nodes"]
        )
        if as_json:
            print_json({**report, "healthy": healthy})
        else:
            anvil = report["anvil"]
            typer.echo(
                f"anvil  {'running' if anvil['running'] else 'stopped'}"
                + (f", pid {anvil['pid']}, head block {anvil['head']}" if anvil["running"] else "")
                + f"  {anvil['rpc_url']}"
            )
            for node in report["nodes"]:
                typer.echo(f"{node['name']}  {_node_line(node)}")
        if not healthy:
            raise typer.Exit(int(ExitCode.FAILED))


def _node_line(node: dict[str, object]) -> str:
    if not node["running"]:
        return f"stopped ({node['role']})"
    answer = node.get("status")
    if not isinstance(answer, dict):
        return f"running, pid {node['pid']}, API not answering: {node.get('error', '')}"
    chain = answer.get("chain") or {}
    confirmed = chain.get("confirmed_block") if isinstance(chain, dict) else None
    return (
        f"running, pid {node['pid']}, {answer['role']} {answer['peer_id']}, "
        f"{answer['jobs']} jobs, {answer['effects_pending']} effects pending, "
        f"confirmed block {confirmed}, API {node['api_url']}"
    )


@devnet_app.command("logs")
def logs(
    node: Annotated[
        str | None,
        typer.Argument(metavar="[NODE]", help="A node's name (see status), or anvil."),
    ] = None,
    directory: DirOption = DEFAULT_DIR,
    lines: Annotated[
        int | None,
        typer.Option(
            "--lines",
            "-n",
            min=1,
            help="Only the last N lines (default: all of one node's log; 20 of each without NODE).",
        ),
    ] = None,
) -> None:
    """Print a node's log, or the end of every log."""
    with reporting("devnet logs"):
        try:
            devnet = Devnet.attach(directory)
            logs = {"anvil": devnet.state.anvil_log} | {n.name: n.log for n in devnet.nodes}
            if node is not None and node not in logs:
                raise CommandFailed(
                    f"no node {node!r} in {devnet.directory} (nodes: {', '.join(logs)})",
                    code=ExitCode.USAGE,
                )
        except DevnetError as exc:
            raise _failed(exc) from None
        if node is not None:
            if lines is None:
                path = logs[node]
                typer.echo(path.read_text(errors="replace") if path.exists() else "", nl=False)
            else:
                typer.echo("\n".join(log_tail(logs[node], lines)))
            return
        for name, path in logs.items():
            typer.echo(f"==> {name} ({path}) <==")
            typer.echo("\n".join(log_tail(path, lines or 20)))


@devnet_app.command("down")
def down(directory: DirOption = DEFAULT_DIR, as_json: JsonOption = False) -> None:
    """Stop every process `up` started (SIGTERM, SIGKILL after a grace period) and nothing
    else; the files and logs stay."""
    with reporting("devnet down", as_json=as_json):
        try:
            with devnet_lock(directory.resolve()):
                outcomes = Devnet.attach(directory).down()
        except DevnetError as exc:
            raise _failed(exc) from None
        if as_json:
            print_json({"stopped": dict(outcomes)})
            return
        for name, outcome in outcomes:
            typer.echo(f"{name}  {outcome}")

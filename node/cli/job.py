"""`capa job`: a client hands a job to its daemon and follows it to a verified output.

The daemon does the work (offers, evidence, quote, escrow, upload, settlement, download,
checks); these commands stage the input, submit, and read the job's state through the
local API. The plaintext input goes to the client's own daemon only: the daemon seals it
to the enclave it chooses.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from node.amounts import parse_amount
from node.api.client import ApiClient
from node.api.models import MAX_LIMIT, JobView, SubmitJob, WorkloadKindText
from node.cli.output import CommandFailed, ExitCode, print_json, reporting
from node.config.loader import load_config
from node.state.model import JobStatus
from proofs.claims import TeeKind

job_app = typer.Typer(
    help="Client: submit jobs to your daemon and follow them.", no_args_is_help=True
)

ConfigOption = Annotated[
    Path,
    typer.Option(
        "--config", "-c", envvar="CAPA_CONFIG", help="The client node's TOML config", metavar="FILE"
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object at the end")]

# Where a job may still move; any other status is an end.
_GOING = frozenset(
    {
        JobStatus.SUBMITTED,
        JobStatus.CHECKING,
        JobStatus.SEALING,
        JobStatus.QUOTING,
        JobStatus.REQUESTED,
        JobStatus.OPEN,
        JobStatus.ASSIGNED,
        JobStatus.DELIVERED,
        JobStatus.RUNNING,
        JobStatus.READY,
        JobStatus.SUBMITTING,
        JobStatus.SETTLED,
    }
)
_POLL_S = 0.25
_TEE_NAMES = {
    "sgx": TeeKind.SGX,
    "tdx": TeeKind.TDX,
    "sev-snp": TeeKind.SEV_SNP,
    "snp": TeeKind.SEV_SNP,
    "nvidia-cc": TeeKind.NVIDIA_CC,
    "gpu": TeeKind.NVIDIA_CC,
    "cca": TeeKind.CCA,
    "sim": TeeKind.SIM,
}


def tee_mask(kinds: str | None) -> int:
    """`tdx,sev-snp` as JobRequest.teeKinds; None or empty: 0 (the daemon reads any kind)."""
    if not kinds:
        return 0
    mask = 0
    for name in (k.strip().lower() for k in kinds.split(",") if k.strip()):
        if name not in _TEE_NAMES:
            known = ", ".join(sorted(_TEE_NAMES))
            raise CommandFailed(
                f"unknown TEE kind {name!r}", hint=f"one of {known}", code=ExitCode.USAGE
            )
        mask |= 1 << _TEE_NAMES[name]
    return mask


def workload_of(
    wasm: Path | None, onnx: Path | None, exec_root: Path | None, argv: str | None
) -> tuple[WorkloadKindText, str]:
    """The workload's kind and measurement, computed as the provider's enclave computes it."""
    from node.enclave.workloads import ExecWorkload, OnnxWorkload, WasmWorkload

    given = [p for p in (wasm, onnx, exec_root) if p is not None]
    if len(given) != 1:
        raise CommandFailed(
            "name exactly one workload",
            hint="--wasm FILE, --onnx MODEL or --exec DIR",
            code=ExitCode.USAGE,
        )
    try:
        if wasm is not None:
            return WorkloadKindText.WASM, "0x" + WasmWorkload(wasm.read_bytes()).measure().hex()
        if onnx is not None:
            return WorkloadKindText.ONNX, "0x" + OnnxWorkload(onnx.read_bytes()).measure().hex()
        assert exec_root is not None
        if not exec_root.is_dir():
            raise CommandFailed(
                f"--exec {exec_root}: not a directory (the image's root)", code=ExitCode.USAGE
            )
        command = tuple(shlex.split(argv or ""))
        measured = ExecWorkload(exec_root, command).measure()
        return WorkloadKindText.EXEC, "0x" + measured.hex()
    except OSError as exc:
        raise CommandFailed(f"cannot read the workload: {exc}", code=ExitCode.USAGE) from exc


def _client(config: Path) -> ApiClient:
    settings = load_config(config, os.environ)
    return ApiClient.from_token_file(settings.api.token_file)


def _summary(job: JobView, output: Path | None = None) -> dict[str, Any]:
    detail = json.loads(job.detail or "{}")
    return {
        "job_id": job.job_id,
        "state": job.status.value,
        "provider": job.provider,
        "tee_kind": _kind_name(detail.get("tee_kind")),
        "insecure": bool(detail.get("insecure", False)),
        "price": job.price,
        "deadline": job.deadline,
        "output": str(output) if output is not None else None,
        "output_sha256": detail.get("output_sha256") or None,
        "output_hash": job.output_hash,
        "match_tx": detail.get("match_tx") or None,
        "settle_tx": detail.get("settle_tx") or None,
        "reason": job.error or None,
        "tried": detail.get("tried") or None,
    }


def _kind_name(value: object) -> str | None:
    if not isinstance(value, int) or value == 0:
        return None
    try:
        kind = TeeKind(value)
    except ValueError:
        return str(value)
    name = kind.name.lower().replace("_", "-")
    return f"{name} (INSECURE: not hardware)" if kind is TeeKind.SIM else name


def _stage_line(job: JobView) -> str:
    detail = json.loads(job.detail or "{}")
    extra = ""
    if job.provider:
        extra = f" provider {job.provider}"
    if detail.get("insecure"):
        extra += " [INSECURE sim enclave]"
    if job.error:
        extra += f" ({job.error})"
    return f"{job.status.value}{extra}"


@job_app.command("submit")
def submit(
    input_file: Annotated[
        Path,
        typer.Option("--input", help="The plaintext input (sealed by your daemon)", metavar="FILE"),
    ],
    output_file: Annotated[
        Path, typer.Option("--output", help="Where the decrypted output goes", metavar="FILE")
    ],
    config: ConfigOption = Path("capa.toml"),
    wasm: Annotated[
        Path | None, typer.Option("--wasm", help="A wasm module to run", metavar="FILE")
    ] = None,
    onnx: Annotated[
        Path | None, typer.Option("--onnx", help="An ONNX model to run", metavar="MODEL")
    ] = None,
    exec_root: Annotated[
        Path | None, typer.Option("--exec", help="An exec image's root folder", metavar="DIR")
    ] = None,
    argv: Annotated[
        str | None, typer.Option("--argv", help="The exec image's command line", metavar="COMMAND")
    ] = None,
    tee: Annotated[
        str | None,
        typer.Option(
            "--tee",
            help="Acceptable TEE kinds, comma-separated (tdx, sev-snp, sgx, "
            "nvidia-cc, cca, sim); default any your policy accepts",
            metavar="KINDS",
        ),
    ] = None,
    max_price: Annotated[
        str,
        typer.Option(
            "--max-price", help="The most the job may cost (0.01eth, 5gwei, wei)", metavar="AMOUNT"
        ),
    ] = "0.01eth",
    timeout: Annotated[
        int,
        typer.Option(
            "--timeout", min=30, help="Seconds from matching to the deadline", metavar="SECONDS"
        ),
    ] = 600,
    cpu_cores: Annotated[int, typer.Option("--cpu-cores", min=1, help="Cores the job needs")] = 1,
    memory_mib: Annotated[
        int, typer.Option("--memory-mib", min=1, help="Memory the job needs, MiB")
    ] = 256,
    as_json: JsonOption = False,
) -> None:
    """Run a workload on an input through your client daemon, to a verified output.

    Exit 0 only once the output is checked against the chain and the enclave's signature
    and decrypted into --output."""
    with reporting("job submit", as_json=as_json):
        kind, measurement = workload_of(wasm, onnx, exec_root, argv)
        mask = tee_mask(tee)
        price = parse_amount(max_price)
        try:
            data = input_file.read_bytes()
        except OSError as exc:
            raise CommandFailed(f"cannot read --input: {exc}", code=ExitCode.USAGE) from exc
        api = _client(config)
        try:
            staged = api.stage_input(data)
            submitted = api.submit(
                SubmitJob(
                    workload=kind,
                    measurement=measurement,
                    input_id=staged.input_id,
                    tee_kinds=mask,
                    max_price=str(price),
                    timeout_s=str(timeout),
                    cpu_cores=str(cpu_cores),
                    memory_mib=str(memory_mib),
                )
            )
            if submitted.rejected:
                raise CommandFailed(f"the daemon refused the job: {submitted.rejected}")
            if not as_json:
                typer.echo(f"job {submitted.job_id} submitted")
            job = _follow(
                api, submitted.job_id, deadline=time.monotonic() + timeout + 120, quiet=as_json
            )
            if job.status is not JobStatus.VERIFIED:
                summary = _summary(job)
                if as_json:
                    print_json(summary)
                code = (
                    ExitCode.NO_PROVIDER
                    if "no provider" in job.error or ("no acceptable provider" in job.error)
                    else ExitCode.FAILED
                )
                raise CommandFailed(
                    f"job {job.job_id} ended {job.status.value}: {job.error or 'no reason given'}",
                    code=code,
                )
            output = api.output(job.job_id)
        finally:
            api.close()
        output_file.write_bytes(output)
        summary = _summary(job, output_file)
        summary["output_sha256"] = hashlib.sha256(output).hexdigest()
        if as_json:
            print_json(summary)
        else:
            typer.echo(
                f"verified: {len(output)} B written to {output_file} "
                f"(sha256 {summary['output_sha256']})"
            )


def _follow(api: ApiClient, job_id: str, *, deadline: float, quiet: bool) -> JobView:
    last = ""
    while True:
        job = api.job(job_id)
        line = _stage_line(job)
        if line != last and not quiet:
            typer.echo(f"  {line}")
        last = line
        if job.status not in _GOING:
            return job
        if time.monotonic() > deadline:
            raise CommandFailed(
                f"job {job_id} still {job.status.value} after the timeout",
                hint=f"`capa job status {job_id}` follows it; the daemon keeps working on it",
            )
        time.sleep(_POLL_S)


@job_app.command("status")
def status(
    job_id: Annotated[str, typer.Argument(help="The job's id (0x and 64 hex digits)")],
    config: ConfigOption = Path("capa.toml"),
    as_json: JsonOption = False,
) -> None:
    """Where one job stands and, when it failed, why."""
    with reporting("job status", as_json=as_json):
        api = _client(config)
        try:
            job = api.job(job_id)
        finally:
            api.close()
        summary = _summary(job)
        if as_json:
            print_json(summary)
            return
        for name, value in summary.items():
            if value not in (None, False, ""):
                typer.echo(f"{name.ljust(13)}  {value}")


@job_app.command("list")
def list_jobs(
    config: ConfigOption = Path("capa.toml"),
    status_filter: Annotated[
        JobStatus | None, typer.Option("--status", help="Only jobs in this status")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=MAX_LIMIT, help="At most this many")] = 100,
    as_json: JsonOption = False,
) -> None:
    """The jobs your daemon knows, newest first."""
    with reporting("job list", as_json=as_json):
        api = _client(config)
        try:
            jobs = api.jobs(status_filter, limit=limit)
        finally:
            api.close()
        rows = [_summary(job) for job in jobs]
        if as_json:
            print_json(rows)
            return
        for row in rows:
            reason = f"  {row['reason']}" if row["reason"] else ""
            typer.echo(f"{row['job_id']}  {row['state']:<10}  {row['provider'] or '-'}{reason}")

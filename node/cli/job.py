"""`capa job`: a client hands a job to its daemon and follows it to a verified output.

The daemon does the work (offers, evidence, quote, escrow, upload, settlement, download,
checks); these commands stage the input, submit, and read the job's state through the
local API. The plaintext input goes to the client's own daemon only: the daemon seals it
to the enclave it chooses.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from node.amounts import format_amount, parse_amount
from node.api.client import ApiClient
from node.api.errors import DaemonRefused
from node.api.models import MAX_LIMIT, JobView, SubmitJob, WorkloadKindText
from node.cli.job_progress import GOING, Follower, describe, detail_of, display_for, kind_name
from node.cli.job_spec import JobSpec, load_spec
from node.cli.output import CommandFailed, ExitCode, FailedWith, print_json, reporting
from node.config.loader import load_config
from node.state.model import JobStatus
from node.times import format_duration, format_timestamp
from proofs.claims import TeeKind

job_app = typer.Typer(
    help="Client: submit jobs to your daemon, follow them, fetch results, cancel or refund.",
    no_args_is_help=True,
)

ConfigOption = Annotated[
    Path,
    typer.Option(
        "--config", "-c", envvar="CAPA_CONFIG", help="The client node's TOML config", metavar="FILE"
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object at the end")]
JobIdArgument = Annotated[str, typer.Argument(help="The job's id (0x and 64 hex digits)")]

# Exit status of a command interrupted by Ctrl-C (128 + SIGINT), as shells report it.
DETACHED = 130
DEFAULT_MAX_PRICE = "0.01eth"
DEFAULT_TIMEOUT_S = 600
DEFAULT_CPU_CORES = 1
DEFAULT_MEMORY_MIB = 256
# How long cancel and refund wait for the chain's answer to their transaction.
ACTION_WAIT_S = 120.0
_JOB_ID = re.compile(r"^0x[0-9a-fA-F]{64}$")
_REFUNDABLE = frozenset({JobStatus.ASSIGNED, JobStatus.DELIVERED})
_BEFORE_CHAIN = frozenset(
    {JobStatus.SUBMITTED, JobStatus.CHECKING, JobStatus.SEALING, JobStatus.QUOTING}
)
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


def submission_of(spec: JobSpec, input_id: str) -> SubmitJob:
    """The API's submission for a spec whose input is staged as `input_id`."""
    kind, measurement = workload_of(spec.wasm, spec.onnx, spec.exec, spec.argv)
    return SubmitJob(
        workload=kind,
        measurement=measurement,
        input_id=input_id,
        tee_kinds=tee_mask(spec.tee),
        max_price=str(parse_amount(spec.max_price or DEFAULT_MAX_PRICE)),
        timeout_s=str(spec.timeout or DEFAULT_TIMEOUT_S),
        cpu_cores=str(spec.cpu_cores or DEFAULT_CPU_CORES),
        memory_mib=str(spec.memory_mib or DEFAULT_MEMORY_MIB),
    )


def checked_job_id(job_id: str) -> str:
    if not _JOB_ID.match(job_id):
        raise CommandFailed(
            f"not a job id: {job_id!r}",
            hint="0x and 64 hex digits, as `capa job list` shows them",
            code=ExitCode.USAGE,
        )
    return job_id.lower()


@contextmanager
def daemon(config: Path) -> Iterator[ApiClient]:
    """The client daemon's API; its refusals of a job in the CLI's words, without HTTP."""
    settings = load_config(config, os.environ)
    api = ApiClient.from_token_file(settings.api.token_file)
    try:
        yield api
    except DaemonRefused as exc:
        if exc.status == 404:
            raise CommandFailed(
                f"this daemon knows no such job ({exc.detail})",
                hint="`capa job list` shows the jobs it knows",
            ) from exc
        raise CommandFailed(f"the daemon refuses: {exc.detail}") from exc
    finally:
        api.close()


def _summary(job: JobView, output: Path | None = None) -> dict[str, Any]:
    detail = detail_of(job)
    stage = describe(job)
    return {
        "job_id": job.job_id,
        "state": job.status.value,
        "stage": stage.text,
        "provider": job.provider,
        "tee_kind": kind_name(detail.get("tee_kind")),
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


def _ended_code(job: JobView) -> ExitCode:
    if "no provider can take" in job.error or "no acceptable provider" in job.error:
        return ExitCode.NO_PROVIDER
    return ExitCode.FAILED


def _refuse_existing(output: Path, force: bool) -> None:
    if output.exists() and not force:
        raise CommandFailed(
            f"{output} exists; refusing to overwrite it", hint="add --force", code=ExitCode.USAGE
        )


def _write_output(output: Path, data: bytes) -> None:
    """The output in place at once or not at all (a partial file would look like a result)."""
    staging = output.with_name(f".{output.name}.{os.getpid()}.partial")
    try:
        staging.write_bytes(data)
        staging.replace(output)
    except OSError as exc:
        staging.unlink(missing_ok=True)
        raise CommandFailed(f"cannot write {output}: {exc.strerror or exc}") from exc


def _follow(api: ApiClient, job_id: str, what: str, *, as_json: bool, limit_s: float) -> JobView:
    """Follow a job to its end; Ctrl-C detaches (the daemon keeps working on the job)."""
    display = display_for(as_json=as_json, terminal=sys.stdout.isatty())
    follower = Follower(api, display, clock=time.monotonic)
    until = time.monotonic() + limit_s
    try:
        return follower.follow(job_id, give_up=lambda job: time.monotonic() > until)
    except KeyboardInterrupt:
        if as_json:
            print_json({"job_id": job_id, "detached": True})
        typer.echo(
            f"capa: {what}: detached; the daemon keeps working on job {job_id} "
            f"(reattach: `capa job watch {job_id}`)",
            err=True,
        )
        raise typer.Exit(DETACHED) from None


def _finish(job: JobView) -> None:
    """A followed job that did not reach its verified output: the summary, then the error."""
    if job.status in GOING:
        raise CommandFailed(
            f"job {job.job_id} still {job.status.value} after the time allowed",
            hint=f"`capa job watch {job.job_id}` follows it; the daemon keeps working on it",
        )
    raise FailedWith(
        _summary(job),
        f"job {job.job_id} ended {job.status.value}: {job.error or 'no reason given'}",
        code=_ended_code(job),
    )


@job_app.command("submit")
def submit(
    input_file: Annotated[
        Path | None,
        typer.Option("--input", help="The plaintext input (sealed by your daemon)", metavar="FILE"),
    ] = None,
    output_file: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Where the decrypted output goes", metavar="FILE"),
    ] = None,
    spec_file: Annotated[
        Path | None,
        typer.Option(
            "--spec",
            help="A job spec (TOML) with any of these options; the flags given override it",
            metavar="FILE",
        ),
    ] = None,
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
        str | None,
        typer.Option(
            "--max-price",
            help=f"The most the job may cost (0.01eth, 5gwei, wei); default {DEFAULT_MAX_PRICE}",
            metavar="AMOUNT",
        ),
    ] = None,
    timeout: Annotated[
        int | None,
        typer.Option(
            "--timeout",
            min=30,
            help=f"Seconds from matching to the deadline; default {DEFAULT_TIMEOUT_S}",
            metavar="SECONDS",
        ),
    ] = None,
    cpu_cores: Annotated[
        int | None,
        typer.Option(
            "--cpu-cores", min=1, help=f"Cores the job needs; default {DEFAULT_CPU_CORES}"
        ),
    ] = None,
    memory_mib: Annotated[
        int | None,
        typer.Option(
            "--memory-mib", min=1, help=f"Memory the job needs, MiB; default {DEFAULT_MEMORY_MIB}"
        ),
    ] = None,
    detach: Annotated[
        bool,
        typer.Option(
            "--detach",
            help="Return once the job is submitted (`capa job watch ID` follows it later)",
        ),
    ] = False,
    force: Annotated[bool, typer.Option("--force", help="Overwrite --output if it exists")] = False,
    as_json: JsonOption = False,
) -> None:
    """Run a workload on an input through your client daemon, to a verified output.

    Shows each stage on the way; Ctrl-C detaches (the job goes on). Exit 0 only once the
    output is checked against the chain and the enclave's signature and decrypted into
    --output."""
    with reporting("job submit", as_json=as_json):
        flags = JobSpec(
            wasm=wasm,
            onnx=onnx,
            exec=exec_root,
            argv=argv,
            input=input_file,
            output=output_file,
            tee=tee,
            max_price=max_price,
            timeout=timeout,
            cpu_cores=cpu_cores,
            memory_mib=memory_mib,
        )
        spec = (load_spec(spec_file) if spec_file else JobSpec()).overridden_by(flags)
        if spec.timeout is not None and spec.timeout < 30:
            raise CommandFailed(
                f"a timeout of {spec.timeout} s is too short: 30 s at least", code=ExitCode.USAGE
            )
        if spec.input is None:
            raise CommandFailed(
                "no input", hint="--input FILE or `input` in the spec", code=ExitCode.USAGE
            )
        if spec.output is None and not detach:
            raise CommandFailed(
                "no output file",
                hint="--output FILE, `output` in the spec, or --detach",
                code=ExitCode.USAGE,
            )
        if spec.output is not None:
            _refuse_existing(spec.output, force)  # before anything is paid
        submission = submission_of(spec, "0x" + "00" * 32)
        try:
            data = spec.input.read_bytes()
        except OSError as exc:
            raise CommandFailed(
                f"cannot read the input {spec.input}: {exc.strerror or exc}", code=ExitCode.USAGE
            ) from exc
        with daemon(config) as api:
            staged = api.stage_input(data)
            submitted = api.submit(submission.model_copy(update={"input_id": staged.input_id}))
            if submitted.rejected:
                raise CommandFailed(f"the daemon refused the job: {submitted.rejected}")
            job_id = submitted.job_id
            if detach:
                if as_json:
                    print_json({"job_id": job_id, "state": "submitted", "detached": True})
                else:
                    typer.echo(f"job {job_id} submitted; follow it: capa job watch {job_id}")
                return
            if not as_json:
                typer.echo(f"job {job_id} submitted")
            limit = int(submission.timeout_s) + 120
            job = _follow(api, job_id, "job submit", as_json=as_json, limit_s=limit)
            if job.status is not JobStatus.VERIFIED:
                _finish(job)
            output = api.output(job.job_id)
        assert spec.output is not None
        _write_output(spec.output, output)
        summary = _summary(job, spec.output)
        summary["output_sha256"] = hashlib.sha256(output).hexdigest()
        if as_json:
            print_json(summary)
        else:
            typer.echo(
                f"verified: {len(output)} B written to {spec.output} "
                f"(sha256 {summary['output_sha256']})"
            )


@job_app.command("watch")
def watch(
    job_id: JobIdArgument,
    config: ConfigOption = Path("capa.toml"),
    as_json: JsonOption = False,
) -> None:
    """Follow a job to its end, showing each stage (reattach after Ctrl-C or --detach).

    Exit 0 when the output is verified (`capa job result ID -o FILE` writes it), 4 when no
    provider could take the job, 1 for any other end."""
    with reporting("job watch", as_json=as_json):
        job_id = checked_job_id(job_id)
        with daemon(config) as api:
            api.job(job_id)  # an unknown job is said at once
            job = _follow(api, job_id, "job watch", as_json=as_json, limit_s=float("inf"))
        if job.status is not JobStatus.VERIFIED:
            _finish(job)
        if as_json:
            print_json(_summary(job))
        else:
            typer.echo(f"the output is ready: capa job result {job_id} -o FILE")


@job_app.command("result")
def result(
    job_id: JobIdArgument,
    output_file: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", help="Write the output here (default: stdout)", metavar="FILE"
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite FILE if it exists")] = False,
    config: ConfigOption = Path("capa.toml"),
    as_json: JsonOption = False,
) -> None:
    """Write a job's verified output (checked against the chain and the enclave's signature).

    Refused while the job has no verified output (still going, failed, refunded)."""
    with reporting("job result", as_json=as_json):
        job_id = checked_job_id(job_id)
        if output_file is None and as_json:
            raise CommandFailed(
                "--json prints a summary, so the output needs a file",
                hint="add -o FILE",
                code=ExitCode.USAGE,
            )
        if output_file is not None:
            _refuse_existing(output_file, force)
        with daemon(config) as api:
            job = api.job(job_id)
            if job.status in GOING:
                raise CommandFailed(
                    f"job {job_id} has no verified output yet: {describe(job).text}",
                    hint=f"`capa job watch {job_id}` follows it to the end",
                )
            if job.status is not JobStatus.VERIFIED:
                reason = f": {job.error}" if job.error else ""
                raise CommandFailed(
                    f"job {job_id} ended {job.status.value}{reason}; it has no output"
                )
            data = api.output(job_id)
        digest = hashlib.sha256(data).hexdigest()
        verified = detail_of(job).get("output_sha256")
        if verified and verified != digest:
            raise CommandFailed(
                f"the daemon handed over an output (sha256 {digest}) other than the one it "
                f"verified (sha256 {verified})"
            )
        if output_file is None:
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
            return
        _write_output(output_file, data)
        summary = _summary(job, output_file)
        summary["output_sha256"] = digest
        summary["output_size"] = len(data)
        if as_json:
            print_json(summary)
        else:
            typer.echo(f"{len(data)} B written to {output_file} (sha256 {digest})")


_REVERT = re.compile(r"^(\w+)\((.*)\)$")


def revert_in_words(reason: str) -> str:
    """`DeadlineNotPassed(1767225600)` as the market's refusal in words."""
    from node.chain.errors import ContractRevert
    from node.chain.reverts import WORDS, explain_revert

    match = _REVERT.match(reason.strip())
    if match is None or match.group(1) not in WORDS:
        return reason
    parts = [p.strip() for p in match.group(2).split(",") if p.strip()]
    args = tuple(int(p) if p.isdigit() else p for p in parts)
    return explain_revert(ContractRevert("JobMarket", match.group(1), args, b""))


def _why_not(job: JobView, action: str) -> str:
    """Why `action` (cancel, refund) does not apply to a job in its state."""
    status = job.status
    if status in _BEFORE_CHAIN:
        return f"it is not on chain yet ({describe(job).text}): nothing is escrowed"
    if status is JobStatus.REQUESTED:
        return "its escrow transaction (matchJob) is on its way; wait for it to be mined"
    if status in _REFUNDABLE and action == "cancel":
        deadline = format_timestamp(job.deadline)
        return (
            f"a provider holds it; only its deadline ends it: `capa job refund {job.job_id}` "
            f"after {deadline}"
        )
    if status is JobStatus.OPEN and action == "refund":
        return f"no provider took it: `capa job cancel {job.job_id}` gives the escrow back"
    reason = f" ({job.error})" if job.error else ""
    return f"it already ended {status.value}{reason}"


def _await_chain(api: ApiClient, job: JobView, done: JobStatus, sent_note: str) -> JobView:
    """Wait for the chain's answer to the action: `done`, or the reason the market refused."""
    until = time.monotonic() + ACTION_WAIT_S
    while time.monotonic() < until:
        now = api.job(job.job_id)
        if now.status is done:
            return now
        if now.error and now.error != sent_note and now.error != job.error:
            raise CommandFailed(f"the JobMarket refuses it: {revert_in_words(now.error)}")
        time.sleep(0.25)
    raise CommandFailed(
        f"no answer from the chain within {int(ACTION_WAIT_S)} s",
        hint=f"the transaction may still be mined: `capa job status {job.job_id}`",
    )


@job_app.command("cancel")
def cancel(
    job_id: JobIdArgument,
    config: ConfigOption = Path("capa.toml"),
    as_json: JsonOption = False,
) -> None:
    """Cancel a job before its match, or an open job nobody accepted.

    Before the match nothing is paid; an open job's escrow returns to your market balance.
    A job a provider holds ends at its deadline (`capa job refund`)."""
    with reporting("job cancel", as_json=as_json):
        job_id = checked_job_id(job_id)
        with daemon(config) as api:
            job = api.job(job_id)
            on_chain = job.status is JobStatus.OPEN
            if not on_chain and job.status not in _BEFORE_CHAIN:
                raise CommandFailed(f"job {job_id} cannot be cancelled: {_why_not(job, 'cancel')}")
            outcome = api.cancel_job(job_id)
            if outcome.rejected:
                raise CommandFailed(f"the daemon refuses: {outcome.rejected}")
            job = _await_chain(api, job, JobStatus.CANCELLED, job.error)
        if as_json:
            print_json(_summary(job))
        elif on_chain:
            typer.echo(f"job {job_id} cancelled; its escrow is back in your market balance")
        else:
            typer.echo(f"job {job_id} cancelled before its match: nothing was paid")


@job_app.command("refund")
def refund(
    job_id: JobIdArgument,
    config: ConfigOption = Path("capa.toml"),
    as_json: JsonOption = False,
) -> None:
    """Claim the refund of a job whose provider did not deliver by its deadline.

    With the provider's input receipt the claim also slashes the provider. The daemon claims
    on its own once the deadline passes; this asks for it now."""
    with reporting("job refund", as_json=as_json):
        job_id = checked_job_id(job_id)
        with daemon(config) as api:
            job = api.job(job_id)
            if job.status not in _REFUNDABLE:
                raise CommandFailed(
                    f"job {job_id} has no refund to claim: {_why_not(job, 'refund')}"
                )
            # The chain judges the deadline by its own clock (a devnet's may run ahead).
            now = api.status().chain.head_time or int(time.time())
            left = job.deadline - now
            if left >= 0:
                raise CommandFailed(
                    f"the deadline of job {job_id} has not passed: a refund becomes possible "
                    f"after {format_timestamp(job.deadline)} (in {format_duration(left + 1)})",
                    hint=f"`capa job watch {job_id}`: the provider may still deliver",
                )
            outcome = api.claim_timeout(job_id)
            if outcome.rejected:
                raise CommandFailed(f"the daemon refuses: {outcome.rejected}")
            job = _await_chain(
                api, job, JobStatus.REFUNDED, "claiming the refund: asked by the user"
            )
        if as_json:
            print_json(_summary(job))
        else:
            typer.echo(
                f"job {job_id} refunded ({format_amount(int(job.price))}): "
                "`capa wallet withdraw all` takes it out of the market"
            )


@job_app.command("status")
def status(
    job_id: JobIdArgument,
    config: ConfigOption = Path("capa.toml"),
    as_json: JsonOption = False,
) -> None:
    """Where one job stands and, when it failed, why."""
    with reporting("job status", as_json=as_json):
        job_id = checked_job_id(job_id)
        with daemon(config) as api:
            job = api.job(job_id)
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
        with daemon(config) as api:
            jobs = api.jobs(status_filter, limit=limit)
        rows = [_summary(job) for job in jobs]
        if as_json:
            print_json({"jobs": rows})
            return
        for row in rows:
            reason = f"  {row['reason']}" if row["reason"] else ""
            typer.echo(f"{row['job_id']}  {row['state']:<10}  {row['provider'] or '-'}{reason}")

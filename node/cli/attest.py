"""`capa attest verify`: check TEE evidence offline and show what a policy makes of it.

Exit 0 when the evidence is genuine at the given time (chain, signatures, collateral),
whatever the policy decides; exit 1 with a one-line reason when it is not; 2 on bad usage.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from proofs.collateral_directory import CollateralDirectory
from proofs.errors import PolicyInvalid, ProofError
from proofs.evidence import verify_evidence
from proofs.policy import Policy, Verdict, evaluate

attest_app = typer.Typer(help="TEE evidence: verify quotes and reports.", no_args_is_help=True)

_EVIDENCE_NAMES = ("quote.bin", "report.bin", "gpu_evidence.json", "evidence.json", "evidence.bin")


def _parse_time(text: str) -> datetime:
    parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _case_time(folder: Path) -> datetime | None:
    case_file = folder / "case.json"
    if not case_file.is_file():
        return None
    verify_at = json.loads(case_file.read_text()).get("verify_at")
    return _parse_time(verify_at) if isinstance(verify_at, str) else None


def _fail(message: str, code: int = 1) -> typer.Exit:
    Console(stderr=True).print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def _json_output(verdict: Verdict) -> str:
    claims = verdict.claims
    return json.dumps(
        {
            "kind": claims.kind.label,
            "version": claims.version,
            "tcb_status": claims.tcb_status_name,
            "debug": claims.debug,
            "measurement": claims.measurement.hex(),
            "report_data": claims.report_data.hex(),
            "advisory_ids": list(claims.advisory_ids) if claims.advisory_ids is not None else None,
            "accepted": verdict.accepted,
            "reasons": list(verdict.reasons),
            "insecure": claims.insecure,
        },
        indent=1,
    )


@attest_app.command("verify")
def verify(
    path: Annotated[
        Path, typer.Argument(help="A case folder (testdata layout) or an evidence file.")
    ],
    collateral: Annotated[
        Path | None,
        typer.Option("--collateral", help="Collateral folder (default: the case folder)."),
    ] = None,
    at: Annotated[
        str | None,
        typer.Option(
            "--at", help="Verification time, ISO-8601 (default: case.json verify_at, or now)."
        ),
    ] = None,
    policy_file: Annotated[Path | None, typer.Option("--policy", help="Policy JSON file.")] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the claims and verdict as JSON.")
    ] = False,
) -> None:
    """Verify evidence cryptographically, then evaluate it against a policy."""
    if path.is_dir():
        evidence_file = next((path / n for n in _EVIDENCE_NAMES if (path / n).is_file()), None)
        if evidence_file is None:
            raise _fail(f"no evidence file ({', '.join(_EVIDENCE_NAMES)}) in {path}", 2)
        collateral_dir = collateral or path
    elif path.is_file():
        evidence_file, collateral_dir = path, collateral or path.parent
    else:
        raise _fail(f"{path} does not exist", 2)
    try:
        when = _parse_time(at) if at else (_case_time(collateral_dir) or datetime.now(UTC))
        policy = (
            Policy.from_mapping(json.loads(policy_file.read_text())) if policy_file else Policy()
        )
    except (ValueError, OSError, PolicyInvalid) as exc:
        raise _fail(f"bad option: {exc}", 2) from exc

    try:
        verified = verify_evidence(
            evidence_file.read_bytes(), CollateralDirectory(collateral_dir), when
        )
    except ProofError as exc:
        raise _fail(f"evidence NOT verified: {exc}") from exc
    except OSError as exc:
        raise _fail(f"cannot read {evidence_file}: {exc}", 2) from exc

    verdict = evaluate(policy, verified.claims, when)
    if as_json:
        typer.echo(_json_output(verdict))
        return
    claims = verdict.claims
    console = Console(highlight=False, soft_wrap=True)
    if claims.insecure:
        console.print("[bold red]INSECURE[/bold red]: sim evidence, no hardware isolation")
    console.print(f"evidence verified at {when.isoformat()}: {claims.kind.label} v{claims.version}")
    console.print(f"  tcb status   {claims.tcb_status_name or 'n/a'}")
    console.print(f"  debug        {'yes' if claims.debug else 'no'}")
    console.print(f"  measurement  {claims.measurement.hex()}")
    console.print(f"  report data  {claims.report_data.hex()}")
    if claims.advisory_ids:
        console.print(f"  advisories   {', '.join(claims.advisory_ids)}")
    if verdict.accepted:
        console.print(
            "policy: [green]accepted[/green]" + (" (INSECURE)" if claims.insecure else "")
        )
    else:
        console.print("policy: [red]rejected[/red]: " + "; ".join(verdict.reasons))

"""`capa attest verify`: check TEE evidence offline and show what a policy makes of it.

Exit 0 when the evidence is genuine at the given time (chain, signatures, collateral),
whatever the policy decides; exit 1 with a one-line reason when it is not; 2 on bad usage.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from node.collateral import HttpxGet, LiveCollateralConfig, live_collateral_source
from proofs.cca import load_reference_values_json
from proofs.collateral_directory import CollateralDirectory
from proofs.collateral_source import CollateralSource
from proofs.errors import ProofError
from proofs.evidence import verify_evidence
from proofs.nvidia_collateral import RimSource
from proofs.nvidia_rim import SignedRimSource, rim_service_fetch
from proofs.policy import Policy, Verdict, evaluate

attest_app = typer.Typer(help="TEE evidence: verify quotes and reports.", no_args_is_help=True)

_EVIDENCE_NAMES = (
    "quote.bin",
    "report.bin",
    "gpu_evidence.json",
    "evidence.json",
    "evidence.bin",
    "token.cbor",
    "cca-example-token.cbor",
)
_CCA_REFERENCE_VALUES = "rvstore.json"


def _parse_time(text: str) -> datetime:
    parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _case_times(folder: Path) -> tuple[datetime | None, dict[str, datetime] | None]:
    """case.json's verify_at and, for collateral with no common validity instant
    (`valid_window` null), each listed file's own instant (`collateral_times`)."""
    case_file = folder / "case.json"
    if not case_file.is_file():
        return None, None
    case = json.loads(case_file.read_text())
    verify_at = case.get("verify_at")
    when = _parse_time(verify_at) if isinstance(verify_at, str) else None
    listed = case.get("collateral_times")
    if case.get("valid_window", {}) is not None or not isinstance(listed, dict):
        return when, None
    return when, {str(name): _parse_time(str(instant)) for name, instant in listed.items()}


def _fail(message: str, code: int = 1) -> typer.Exit:
    Console(stderr=True).print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def _json_output(verdict: Verdict) -> str:
    claims = verdict.claims
    document: dict[str, object] = {
        "kind": claims.kind.label,
        "version": claims.version,
        "tcb_status": claims.tcb_status_name,
        "debug": claims.debug,
        "measurement": claims.measurement.hex(),
        "report_data": claims.report_data.hex(),
        "advisory_ids": list(claims.advisory_ids) if claims.advisory_ids is not None else None,
        "attributes": list(claims.attributes),
        "revocation_checked": claims.revocation_checked,
        "accepted": verdict.accepted,
        "reasons": list(verdict.reasons),
        "insecure": claims.insecure,
        "not_hardware": claims.not_hardware,
    }
    if claims.platform is not None:
        document["platform"] = claims.platform
    if claims.tcb_svns is not None:
        document["tcb_svns"] = dict(claims.tcb_svns)
    if claims.cca is not None:
        facts = claims.cca
        document["cca"] = {
            "profile": facts.profile,
            "implementation_id": facts.implementation_id.hex(),
            "instance_id": facts.instance_id.hex(),
            "lifecycle": facts.lifecycle_name,
            "personalization_value": facts.personalization_value.hex(),
            "extensible_measurements": [m.hex() for m in facts.extensible_measurements],
            "software_components": [
                {"type": c.component_type, "measurement": c.measurement.hex()}
                for c in facts.software_components
            ],
        }
    return json.dumps(document, indent=1)


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
    reference_values: Annotated[
        Path | None,
        typer.Option(
            "--reference-values",
            help="CCA reference values (rvstore JSON; default: rvstore.json in the case folder).",
        ),
    ] = None,
    pcs_url: Annotated[
        str | None,
        typer.Option("--pcs", help="Fetch Intel collateral from this PCS/PCCS (v4 API) instead."),
    ] = None,
    kds_url: Annotated[
        str | None, typer.Option("--kds", help="Fetch AMD VCEKs and CRLs from this KDS instead.")
    ] = None,
    cache_dir: Annotated[
        Path | None, typer.Option("--cache", help="Keep fetched collateral in this directory.")
    ] = None,
    rim_service: Annotated[
        str | None,
        typer.Option(
            "--rim-service",
            help="Fetch NVIDIA RIMs from this RIM service (default: <RIM id>.swidtag files "
            "in the collateral folder).",
        ),
    ] = None,
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
    times: dict[str, datetime] | None = None
    try:
        if at:
            when = _parse_time(at)
        else:
            case_at, times = _case_times(collateral_dir)
            when = case_at or datetime.now(UTC)
        policy = (
            Policy.from_mapping(json.loads(policy_file.read_text())) if policy_file else Policy()
        )
        rv_file = reference_values or collateral_dir / _CCA_REFERENCE_VALUES
        if policy.cca_reference_values is None and rv_file.is_file():
            policy = replace(
                policy, cca_reference_values=load_reference_values_json(rv_file.read_bytes())
            )
    except (ValueError, OSError, ProofError) as exc:
        raise _fail(f"bad option: {exc}", 2) from exc

    source: CollateralSource = CollateralDirectory(collateral_dir)
    if pcs_url or kds_url:
        defaults = LiveCollateralConfig()
        source = live_collateral_source(
            LiveCollateralConfig(
                intel_pcs_url=pcs_url or defaults.intel_pcs_url,
                intel_root_ca_crl_url=(
                    f"{pcs_url.rstrip('/')}/IntelSGXRootCA.der"
                    if pcs_url
                    else defaults.intel_root_ca_crl_url
                ),
                amd_kds_url=kds_url or defaults.amd_kds_url,
                cache_dir=cache_dir,
            )
        )
    rims: RimSource | None = None
    if rim_service:
        rims = SignedRimSource(rim_service_fetch(HttpxGet(), rim_service))
    elif any(collateral_dir.glob("*.swidtag")):
        rims = SignedRimSource(CollateralDirectory(collateral_dir).rim)
    try:
        verified = verify_evidence(
            evidence_file.read_bytes(), source, when, collateral_times=times, rim=rims
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
        what = claims.not_hardware or "sim evidence, no hardware isolation"
        console.print(f"[bold red]INSECURE[/bold red]: {what} (not hardware)")
    console.print(f"evidence verified at {when.isoformat()}: {claims.kind.label} v{claims.version}")
    if times:
        listed = ", ".join(f"{name} at {t.isoformat()}" for name, t in sorted(times.items()))
        console.print(f"  collateral   each at its own instant: {listed}")
    crypto_only = claims.kind.label in ("sgx", "tdx") and claims.tcb_status_name is None
    tcb = "unknown (no collateral: crypto-only)" if crypto_only else claims.tcb_status_name
    console.print(f"  tcb status   {tcb or 'n/a'}")
    console.print(f"  debug        {'yes' if claims.debug else 'no'}")
    console.print(f"  measurement  {claims.measurement.hex()}")
    console.print(f"  report data  {claims.report_data.hex()}")
    if claims.attributes:
        console.print(f"  attributes   {', '.join(claims.attributes)}")
    if claims.tcb_svns is not None:
        svns = ", ".join(f"{name} {svn}" for name, svn in claims.tcb_svns)
        console.print(f"  {claims.platform} TCB  {svns}")
    if claims.cca is not None:
        facts = claims.cca
        console.print(f"  platform     {facts.implementation_id.hex()} ({facts.lifecycle_name})")
        console.print(f"  components   {len(facts.software_components)} measured")
    if claims.advisory_ids:
        console.print(f"  advisories   {', '.join(claims.advisory_ids)}")
    if verdict.accepted:
        console.print(
            "policy: [green]accepted[/green]" + (" (INSECURE)" if claims.insecure else "")
        )
    else:
        console.print("policy: [red]rejected[/red]: " + "; ".join(verdict.reasons))

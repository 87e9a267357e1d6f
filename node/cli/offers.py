"""`capa offers`: the offers your client daemon holds, and why none of them takes a job.

The table reads GET /v1/offers (what the daemon heard on gossip, each listing signed by its
provider). `--why JOBSPEC` ranks those offers for a job spec with the same code the daemon
ranks a submitted job with (`node.daemon.client_offers.match_listings`, over the pure
scheduler), and says for each offer the first constraint it fails.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from node.amounts import format_amount
from node.api.models import MAX_LIMIT, EvidenceCheck, OfferView
from node.cli.job import ConfigOption, JsonOption, daemon, tee_mask
from node.cli.output import CommandFailed, ExitCode, FailedWith, print_json, reporting, warn
from node.times import format_duration
from scheduler.models import ResourceOffer, TeeKind
from scheduler.units import format_mib

if TYPE_CHECKING:
    from node.p2p.offers import OfferListing

# A listing the daemon stored is one it accepted off the wire, so far below this.
_MAX_LISTING = 1 << 20


@dataclass(frozen=True)
class HeardOffer:
    """One offer of the daemon's book, decoded from the listing its provider signed."""

    view: OfferView
    listing: OfferListing
    offer: ResourceOffer


def _live(views: list[OfferView], now: int) -> tuple[list[HeardOffer], list[str]]:
    """The offers still valid, the freshest per provider and enclave key (a provider's newer
    listing replaces its older one, as in the daemon's book); and those that do not decode."""
    from node.p2p.errors import OfferRejected
    from node.p2p.offers import OfferListing

    freshest: dict[tuple[str, str], HeardOffer] = {}
    unreadable = []
    for view in views:
        if view.valid_until <= now:
            continue
        try:
            listing = OfferListing.decode(view.body.encode(), _MAX_LISTING)
            heard = HeardOffer(view, listing, listing.to_resource_offer())
        except (OfferRejected, ValueError) as exc:
            unreadable.append(f"{view.offer_key}: {exc}")
            continue
        kept = freshest.get(listing.book_key)
        if kept is None or listing.freshness > kept.listing.freshness:
            freshest[listing.book_key] = heard
    return list(freshest.values()), unreadable


def _evidence(heard: HeardOffer, now: int) -> str:
    """The evidence column: sim is INSECURE whatever any check said; otherwise what this
    client's own check of the enclave key found (it checks when it picks the provider)."""
    if heard.offer.tee_kind is TeeKind.SIM:
        return "INSECURE (sim: not hardware)"
    view = heard.view
    if view.evidence is EvidenceCheck.UNCHECKED:
        return "unchecked (checked when chosen)"
    ago = (
        format_duration(max(0, now - view.evidence_checked_at)) if view.evidence_checked_at else "?"
    )
    if view.evidence is EvidenceCheck.VERIFIED:
        return f"verified ({ago} ago)"
    return f"REFUSED by your policy ({ago} ago)"


def _gpu(offer: ResourceOffer) -> str:
    gpu = offer.gpu
    if gpu is None:
        return "-"
    cc = " CC" if gpu.cc_mode else ""
    return f"{gpu.count}x {gpu.model} {format_mib(gpu.vram_mib)}{cc}"


def _row(heard: HeardOffer, now: int) -> dict[str, Any]:
    offer = heard.offer
    return {
        "provider": heard.view.provider,
        "nonce": heard.view.nonce,
        "tee_kind": offer.tee_kind.name.lower().replace("_", "-"),
        "insecure": offer.tee_kind is TeeKind.SIM,
        "tcb": offer.tcb_status.label,
        "measurement": "0x" + offer.measurement.hex,
        "evidence": _evidence(heard, now),
        "evidence_check": heard.view.evidence.value,
        "price_per_hour": str(offer.price_per_hour),
        "price_per_hour_text": f"{format_amount(offer.price_per_hour)}/h",
        "gpu": _gpu(offer),
        "gpu_count": offer.gpu.count if offer.gpu else 0,
        "cpu_cores": offer.cpu_cores,
        "memory_mib": offer.memory_mib,
        "age_s": max(0, now - heard.listing.published_at),
        "valid_until": heard.view.valid_until,
    }


_COLUMNS = (
    ("PROVIDER", "provider"),
    ("TEE", "tee_kind"),
    ("TCB", "tcb"),
    ("MEASUREMENT", "measurement_short"),
    ("EVIDENCE", "evidence"),
    ("PRICE", "price_per_hour_text"),
    ("GPU", "gpu"),
    ("CORES", "cpu_cores"),
    ("MEMORY", "memory"),
    ("AGE", "age"),
)


def _print_table(rows: list[dict[str, Any]], why: bool) -> None:
    shown = []
    for row in rows:
        cells = {
            **row,
            "measurement_short": row["measurement"][:10] + "…",
            "memory": format_mib(row["memory_mib"]),
            "age": format_duration(row["age_s"]) if row["age_s"] else "0s",
        }
        shown.append([str(cells[key]) for _, key in _COLUMNS])
    heads = [head for head, _ in _COLUMNS]
    widths = [max([len(h)] + [len(r[i]) for r in shown]) for i, h in enumerate(heads)]
    typer.echo("  ".join(h.ljust(w) for h, w in zip(heads, widths, strict=True)).rstrip())
    for row, line in zip(rows, shown, strict=True):
        typer.echo("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())
        if why:
            typer.echo(f"    -> {row['why']}")


def explain_for_spec(
    heard: list[HeardOffer], spec_file: Path, config: Path, now: int
) -> tuple[dict[tuple[str, str], str], str]:
    """For each offer (by provider and nonce), the first constraint it fails for the job the
    spec describes, or its rank; and the scheduler's one-line summary."""
    from node.cli.job import submission_of
    from node.cli.job_spec import load_spec
    from node.config.loader import load_config
    from node.daemon.api_backend import ANY_TEE_KIND
    from node.daemon.client_offers import EvidenceVerdicts, match_listings
    from node.state.model import Job, JobStatus
    from node.state.values import JobId, to_hash32
    from scheduler.errors import SchedulerError
    from scheduler.scoring import MarketContext

    spec = load_spec(spec_file)
    submission = submission_of(spec, "0x" + "00" * 32)
    settings = load_config(config, os.environ)
    allow_sim = settings.client.allow_sim if settings.client is not None else False
    job = Job(
        JobId("0x" + "00" * 32),
        JobStatus.SUBMITTED,
        workload=submission.workload.value,
        measurement=to_hash32(submission.measurement),
        tee_kinds=submission.tee_kinds or ANY_TEE_KIND,
        min_tcb_status=submission.min_tcb_status,
        max_price=int(submission.max_price),
        timeout_s=int(submission.timeout_s),
        cpu_cores=int(submission.cpu_cores),
        memory_mib=int(submission.memory_mib),
        submitted_at=now,
    )
    # The daemon's own checks, as it ranks with them: a key its policy refused ranks as
    # unverified (the scheduler then says so).
    verdicts = EvidenceVerdicts()
    for h in heard:
        if h.view.evidence is not EvidenceCheck.UNCHECKED:
            accepted = h.view.evidence is EvidenceCheck.VERIFIED
            verdicts.record(h.listing.offer.enclave_key, accepted, h.view.evidence_checked_at)
    try:
        result, _ = match_listings(
            job,
            [h.listing for h in heard],
            now,
            allow_sim=allow_sim,
            verdicts=verdicts,
            context=MarketContext(),
        )
    except (SchedulerError, ValueError) as exc:
        raise CommandFailed(f"{spec_file}: no provider could take this job: {exc}") from exc
    why: dict[tuple[str, str], str] = {}
    for place, scored in enumerate(result.ranked, start=1):
        offer = scored.offer
        why[(offer.provider.lower(), str(offer.nonce))] = f"matches (rank {place})"
    for rejection in result.rejections:
        offer = rejection.offer
        why[(offer.provider.lower(), str(offer.nonce))] = rejection.primary.message
    return why, result.summary.text


def offers_command(
    tee: Annotated[
        str | None,
        typer.Option(
            "--tee",
            help="Only these TEE kinds, comma-separated (tdx, sev-snp, sgx, nvidia-cc, cca, sim)",
            metavar="KINDS",
        ),
    ] = None,
    gpu: Annotated[
        int | None,
        typer.Option("--gpu", min=1, help="Only offers with at least this many GPUs", metavar="N"),
    ] = None,
    why: Annotated[
        Path | None,
        typer.Option(
            "--why",
            help="A job spec (TOML, as `capa job submit --spec` reads): for each offer, the "
            "first thing that keeps it from taking that job",
            metavar="JOBSPEC",
        ),
    ] = None,
    limit: Annotated[
        int, typer.Option(min=1, max=MAX_LIMIT, help="At most this many offers", metavar="N")
    ] = MAX_LIMIT,
    config: ConfigOption = Path("capa.toml"),
    as_json: JsonOption = False,
) -> None:
    """The live offers your client daemon holds, and why each would not take a job (--why)."""
    with reporting("offers", as_json=as_json):
        mask = tee_mask(tee)
        with daemon(config) as api:
            views = api.offers(limit=limit)
        now = int(time.time())
        heard, unreadable = _live(views, now)
        total = len(heard)
        if mask:
            heard = [h for h in heard if mask & (1 << int(h.offer.tee_kind))]
        if gpu is not None:
            heard = [h for h in heard if h.offer.gpu is not None and h.offer.gpu.count >= gpu]
        rows = [_row(h, now) for h in heard]
        summary = None
        if why is not None:
            reasons, summary = explain_for_spec(heard, why, config, now)
            for row in rows:
                key = (row["provider"].lower(), row["nonce"])
                row["why"] = reasons.get(key, "left out: the scheduler cannot use this offer")
        matching = sum(1 for row in rows if str(row.get("why", "matches")).startswith("matches"))
        answer: dict[str, Any] = {"offers": rows, "heard": total, "unreadable": unreadable}
        if why is not None:
            answer["summary"] = summary
        for problem in unreadable:
            warn("offers", f"an offer the daemon holds does not decode: {problem}")
        failure = None
        if not rows:
            filters = " after --tee/--gpu" if mask or gpu is not None else ""
            failure = FailedWith(
                answer,
                f"no offers{filters} ({total} heard)",
                hint="providers republish every minute; `capa node status` shows the p2p side",
                code=ExitCode.NO_PROVIDER,
            )
        elif why is not None and matching == 0:
            failure = FailedWith(
                answer, f"no offer takes the job in {why}", code=ExitCode.NO_PROVIDER
            )
        if not as_json and rows:
            _print_table(rows, why is not None)
            if summary:
                typer.echo(summary)
        if failure is not None:
            raise failure
        if as_json:
            print_json(answer)

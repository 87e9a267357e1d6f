"""The client's exchanges with its chosen provider: seal, quote, hand the input over, fetch
the output.

Each handler answers its effect with one state change and is safe to run again for the
same effect after a restart: sealing starts over from the plaintext (kept until the input
is delivered), the upload resumes where the provider left off, the output is fetched anew.
A provider's answers are checked before they count: the quote must bind our exact request
and the enclave key we checked, the input receipt must be the provider's signature over
our job and input, the output must hash to what the chain settled and carry the
enclave's signature over exactly this job, spec and input.
"""

from __future__ import annotations

import hashlib
import json
import logging

import trio
from eth_utils.address import to_canonical_address

from node.chain.typed_data import JobRequest
from node.daemon.errors import DaemonError
from node.daemon.job_files import JobFiles
from node.daemon.wiring import NodeContext
from node.enclave.errors import EnclaveError
from node.p2p.errors import P2PError, RemoteRefused
from node.p2p.identity import PeerId
from node.p2p.quote_protocol import request_quote
from node.p2p.transfer import SealedResult, download_result, upload_input
from node.p2p.wire import typed_message_from_json, typed_message_to_json
from node.state import changes as sc
from node.state.effects import Effect, FetchOutput, RequestQuote, SealInput, SendInput
from node.state.model import Job
from node.state.values import JobId, to_hash32
from proofs.errors import SignatureInvalid
from proofs.receipts import (
    InputReceipt,
    Result,
    input_receipt_digest,
    job_market_domain,
    result_digest,
    verify_signed_by,
)

log = logging.getLogger(__name__)

QUOTE_TIMEOUT_S = 15.0
TRANSFER_TIMEOUT_S = 30.0
# Refusals an upload cannot outwait; anything else (busy, not yet matched there, a dropped
# stream) is tried again until the job's deadline.
_FINAL_REFUSALS = frozenset({"too_large", "hash_mismatch", "quota", "store_full", "not_owner"})
# A settled job's output is fetched at most this many times before it is given up on.
MAX_FETCH_ATTEMPTS = 10


def _job_bytes(job_id: str) -> bytes:
    return bytes.fromhex(job_id[2:])


def _job(ctx: NodeContext, job_id: JobId) -> Job | None:
    return ctx.service.state.jobs.get(job_id)


class InputSealer:
    """SealInput: the plaintext (with the job's output key inside) sealed to the enclave."""

    def __init__(self, ctx: NodeContext) -> None:
        self._ctx = ctx

    async def execute(self, effect: Effect) -> sc.StateChange | None:
        assert isinstance(effect, SealInput)
        files = JobFiles(self._ctx.data_dir, effect.job_id)
        if not files.plaintext.is_file():
            return sc.CandidateFailed(
                effect.job_id,
                effect.candidate,
                "seal",
                f"the plaintext input is not in {files.plaintext}: submit the job again",
            )
        try:
            hpke_key = bytes.fromhex(effect.hpke_public_key.removeprefix("0x"))
            digest, size = await trio.to_thread.run_sync(files.seal_for, hpke_key)
        except (ValueError, EnclaveError) as exc:
            return sc.CandidateFailed(
                effect.job_id, effect.candidate, "seal", f"cannot seal to this enclave: {exc}"
            )
        except OSError as exc:
            raise DaemonError(f"sealing the input of job {effect.job_id}: {exc}") from exc
        return sc.InputSealed(
            effect.job_id, effect.candidate, to_hash32(digest), size, self._ctx.chain_time()
        )


class Quoter:
    """RequestQuote: the provider's signed offer for our exact request, as matchJob checks it."""

    def __init__(self, ctx: NodeContext) -> None:
        self._ctx = ctx

    async def execute(self, effect: Effect) -> sc.StateChange | None:
        assert isinstance(effect, RequestQuote)
        job = _job(self._ctx, effect.job_id)
        if job is None:
            return None
        request = typed_message_from_json(JobRequest, json.loads(effect.request))
        contracts = await self._ctx.contracts.get()
        node = await self._ctx.p2p.node()
        now = self._ctx.chain_time()
        try:
            signed = await request_quote(
                node.host,
                PeerId(effect.peer_id),
                request,
                client=self._ctx.me.address,
                provider=effect.provider,
                chain_id=self._ctx.config.chain.chain_id,
                market=contracts.market,
                now=now,
                timeout_s=QUOTE_TIMEOUT_S,
            )
        except RemoteRefused as refusal:
            return self._failed(effect, f"declined to quote: {refusal.reason}")
        except P2PError as exc:
            return self._failed(effect, f"no usable quote: {type(exc).__name__}: {exc}")
        offer = signed.offer
        # The quote must put the job on the enclave we checked and sealed to: any other key
        # could not open the input, or would be one whose evidence nobody here has seen.
        if job.enclave_key is None or to_canonical_address(
            offer.enclave_key
        ) != to_canonical_address(job.enclave_key):
            return self._failed(
                effect, f"quote names enclave {offer.enclave_key}, we checked {job.enclave_key}"
            )
        if offer.tee_kind != job.tee_kind:
            return self._failed(
                effect, f"quote is for TEE kind {offer.tee_kind}, the enclave is {job.tee_kind}"
            )
        if request.measurement != bytes(32) and offer.measurement != request.measurement:
            return self._failed(effect, "quote is for another measurement")
        left = request.deadline - now
        if not offer.min_duration <= left <= offer.max_duration:
            return self._failed(
                effect,
                f"quote takes jobs of {offer.min_duration}-{offer.max_duration} s, "
                f"the deadline leaves {left} s",
            )
        return sc.QuoteReceived(
            effect.job_id,
            effect.candidate,
            json.dumps(typed_message_to_json(offer)),
            "0x" + signed.signature.hex(),
        )

    @staticmethod
    def _failed(effect: RequestQuote, reason: str) -> sc.CandidateFailed:
        log.warning("job %s: quote from %s: %s", effect.job_id, effect.provider, reason)
        return sc.CandidateFailed(effect.job_id, effect.candidate, "quote", reason)


class InputSender:
    """SendInput: the sealed input uploaded (resumable), the provider's receipt checked."""

    def __init__(self, ctx: NodeContext) -> None:
        self._ctx = ctx

    async def execute(self, effect: Effect) -> sc.StateChange | None:
        assert isinstance(effect, SendInput)
        job = _job(self._ctx, effect.job_id)
        if job is None:
            return None
        files = JobFiles(self._ctx.data_dir, effect.job_id)
        try:
            sealed = await trio.to_thread.run_sync(files.sealed_input.read_bytes)
        except FileNotFoundError:
            return sc.InputUndeliverable(
                effect.job_id, f"the sealed input is not in {files.sealed_input}"
            )
        expected = bytes.fromhex(effect.input_hash[2:])
        if hashlib.sha256(sealed).digest() != expected:
            return sc.InputUndeliverable(
                effect.job_id, "the sealed input on disk is not the one the job committed to"
            )
        contracts = await self._ctx.contracts.get()
        node = await self._ctx.p2p.node()
        try:
            receipt = await upload_input(
                node.host,
                PeerId(effect.peer_id),
                _job_bytes(effect.job_id),
                sealed,
                sha256=expected,
                timeout_s=TRANSFER_TIMEOUT_S,
                enclave_key=effect.enclave_key,
            )
        except RemoteRefused as refusal:
            if refusal.reason in _FINAL_REFUSALS:
                return sc.InputUndeliverable(
                    effect.job_id, f"the provider refused the input: {refusal.reason}"
                )
            return self._again(effect, f"the provider refused the input for now: {refusal.reason}")
        except P2PError as exc:
            return self._again(effect, f"upload failed: {type(exc).__name__}: {exc}")
        if job.spec_hash is None:
            raise DaemonError(f"job {effect.job_id} is assigned without its spec hash")
        signed = InputReceipt(_job_bytes(effect.job_id), bytes.fromhex(job.spec_hash[2:]), expected)
        digest = input_receipt_digest(
            job_market_domain(self._ctx.config.chain.chain_id, contracts.market), signed
        )
        try:
            verify_signed_by(digest, receipt.input_receipt, effect.provider)
        except SignatureInvalid as exc:
            return sc.InputUndeliverable(
                effect.job_id, f"the provider's input receipt is not its signature: {exc}"
            )
        # The provider holds the whole sealed input and owes the job: the plaintext is no
        # longer needed here.
        files.forget_plaintext()
        log.info(
            "job %s: input delivered to %s (%d bytes, resumed from %d)",
            effect.job_id,
            effect.provider,
            receipt.size,
            receipt.resumed_from,
        )
        return sc.InputDelivered(effect.job_id, "0x" + receipt.input_receipt.hex())

    def _again(self, effect: SendInput, reason: str) -> sc.StateChange:
        if self._ctx.chain_time() >= effect.deadline:
            return sc.InputUndeliverable(effect.job_id, f"{reason}; the deadline has passed")
        # Raising retries the effect after the runner's pause.
        raise DaemonError(reason)


class ResultFetcher:
    """FetchOutput: the sealed output, checked against the chain and the enclave, opened."""

    def __init__(self, ctx: NodeContext) -> None:
        self._ctx = ctx
        self._attempts: dict[str, int] = {}

    async def execute(self, effect: Effect) -> sc.StateChange | None:
        assert isinstance(effect, FetchOutput)
        job = _job(self._ctx, effect.job_id)
        if job is None:
            return None
        contracts = await self._ctx.contracts.get()
        node = await self._ctx.p2p.node()
        job_id = _job_bytes(effect.job_id)
        try:
            result = await download_result(
                node.host, PeerId(effect.peer_id), job_id, TRANSFER_TIMEOUT_S
            )
        except P2PError as exc:
            attempts = self._attempts.get(effect.effect_id, 0) + 1
            self._attempts[effect.effect_id] = attempts
            reason = f"output not served: {type(exc).__name__}: {exc}"
            if attempts >= MAX_FETCH_ATTEMPTS:
                return sc.OutputRejected(effect.job_id, f"{reason} ({attempts} attempts)")
            raise DaemonError(reason) from exc
        self._attempts.pop(effect.effect_id, None)
        problem = self._check(effect, job, result, contracts.market)
        if problem:
            log.warning(
                "job %s: output from %s rejected: %s", effect.job_id, effect.provider, problem
            )
            return sc.OutputRejected(effect.job_id, problem)
        files = JobFiles(self._ctx.data_dir, effect.job_id)
        try:
            opened = await trio.to_thread.run_sync(files.open_output, result.output)
        except EnclaveError as exc:
            return sc.OutputRejected(
                effect.job_id, f"the sealed output does not open with the job's key: {exc}"
            )
        except OSError as exc:
            raise DaemonError(f"writing the output of job {effect.job_id}: {exc}") from exc
        sha256, size = opened
        log.info("job %s: output verified and opened (%d bytes)", effect.job_id, size)
        return sc.OutputVerified(effect.job_id, sha256, size)

    def _check(self, effect: FetchOutput, job: Job, result: SealedResult, market: str) -> str:
        """Why the served result cannot be the job's, or ""."""
        settled = bytes.fromhex(effect.output_hash[2:])
        served = hashlib.sha256(result.output).digest()
        if served != settled:
            return (
                f"served output hashes to 0x{served.hex()}, the chain settled {effect.output_hash}"
            )
        receipt = result.receipt
        expected = Result(
            job_id=_job_bytes(effect.job_id),
            provider=effect.provider,
            spec_hash=bytes.fromhex(job.spec_hash[2:]) if job.spec_hash else bytes(32),
            input_hash=bytes.fromhex(effect.input_hash[2:]),
            output_hash=settled,
        )
        if receipt.hash_struct() != expected.hash_struct():
            return "the served receipt is not for this job, provider, spec, input and output"
        digest = result_digest(job_market_domain(self._ctx.config.chain.chain_id, market), expected)
        try:
            verify_signed_by(digest, result.receipt_signature, effect.enclave_key)
        except SignatureInvalid as exc:
            return f"the result is not signed by enclave {effect.enclave_key}: {exc}"
        return ""

"""The provider's components: effect handlers, producers of state changes, p2p services.

Boot (`ProviderBoot`, before the inputs start): the registry entry, the enclave backend and
one instance per configured workload (`ProviderBooted`, `EnclaveStarted`). Then:

| effect           | handler                         | answers with                        |
|------------------|---------------------------------|-------------------------------------|
| RequestApprovals | Attestor (/capa/approve/1)      | KeyApproved / KeyRefused            |
| RotateEnclave    | EnclaveRotator (EnclaveHost)    | EnclaveStarted                      |
| StartJob         | JobExecutor (EnclaveHost)       | JobExecuted / JobExecutionFailed    |
| SignBatch        | BatchSigner (EnclaveHost)       | BatchSigned                         |
| Publish          | OfferPublisher (offer gossip)   | EffectCompleted                     |

Served to peers: evidence per enclave key, quotes (`QuoteRequested`), sealed inputs
(`InputReceived`, answered with the input receipt), sealed outputs. Only sealed bytes ever
reach this provider's disk: inputs sealed by the client to the enclave, outputs sealed by
the enclave to the client.
"""

from __future__ import annotations

from node.daemon.effect_runner import EffectHandler
from node.daemon.enclave_host import EnclaveHost
from node.daemon.provider_attestor import Attestor, KeyEvidence
from node.daemon.provider_boot import ProviderBoot
from node.daemon.provider_market import InputDesk, OfferPublisher, QuoteDesk
from node.daemon.provider_results import ResultStore
from node.daemon.wiring import NodeContext, RoleParts
from node.p2p.input_store import FileInputStore, InputStoreLimits
from node.p2p.node import ProviderServices
from node.state import changes as sc
from node.state import effects as fx
from proofs.receipts import Eip712Domain, job_market_domain

# What this role's components handle and produce (held to the daemon by tests/unit/daemon).
HANDLED_EFFECTS: frozenset[type[fx.Effect]] = frozenset(
    {fx.RequestApprovals, fx.RotateEnclave, fx.StartJob, fx.SignBatch, fx.Publish}
)
PRODUCED_CHANGES: frozenset[type[sc.StateChange]] = frozenset(
    {
        sc.ProviderBooted,
        sc.EnclaveStarted,
        sc.KeyApproved,
        sc.KeyRefused,
        sc.QuoteRequested,
        sc.InputReceived,
        sc.JobExecuted,
        sc.JobExecutionFailed,
        sc.BatchSigned,
        sc.EffectCompleted,
    }
)

INPUTS_DIR = "inputs"
OUTPUTS_DIR = "outputs"


def _market_domain(ctx: NodeContext) -> Eip712Domain:
    return job_market_domain(ctx.config.chain.chain_id, ctx.contracts.market)


class EnclaveRotator:
    def __init__(self, host: EnclaveHost) -> None:
        self._host = host

    async def execute(self, effect: fx.Effect) -> sc.StateChange | None:
        assert isinstance(effect, fx.RotateEnclave)
        return self._host.start(effect.workload)


class JobExecutor:
    def __init__(self, ctx: NodeContext, host: EnclaveHost, inputs: FileInputStore) -> None:
        self._ctx = ctx
        self._host = host
        self._inputs = inputs

    async def execute(self, effect: fx.Effect) -> sc.StateChange | None:
        assert isinstance(effect, fx.StartJob)
        job_id = bytes.fromhex(effect.job_id[2:])
        change = await self._host.run_job(
            effect,
            provider=self._ctx.me.address,
            domain=_market_domain(self._ctx),
            sealed_input=self._inputs.path_of(job_id),
            chain_time=self._ctx.chain_time,
        )
        # Ran (or cannot run): the sealed input has served its purpose.
        await self._inputs.release(job_id)
        return change


class BatchSigner:
    def __init__(self, ctx: NodeContext, host: EnclaveHost) -> None:
        self._ctx = ctx
        self._host = host

    async def execute(self, effect: fx.Effect) -> sc.StateChange | None:
        assert isinstance(effect, fx.SignBatch)
        return self._host.sign_batch(effect, domain=_market_domain(self._ctx))


def build_provider(ctx: NodeContext) -> RoleParts:
    section = ctx.config.provider
    results = ResultStore(ctx.data_dir / OUTPUTS_DIR)
    inputs = FileInputStore(
        ctx.data_dir / INPUTS_DIR,
        InputStoreLimits(
            max_total_bytes=section.input_store_bytes, max_peer_bytes=section.input_store_bytes
        ),
    )
    host = EnclaveHost(section.workloads, results)
    evidence = KeyEvidence(ctx)
    publisher = OfferPublisher(ctx, host, evidence)
    handlers: dict[type[fx.Effect], EffectHandler] = {
        fx.RequestApprovals: Attestor(ctx, host, evidence),
        fx.RotateEnclave: EnclaveRotator(host),
        fx.StartJob: JobExecutor(ctx, host, inputs),
        fx.SignBatch: BatchSigner(ctx, host),
        fx.Publish: publisher,
    }
    return RoleParts(
        handlers=handlers,
        services=[host, publisher],
        provider=ProviderServices(
            evidence=evidence,
            quotes=QuoteDesk(ctx, host),
            inputs=inputs,
            results=results,
            input_gate=InputDesk(ctx, inputs),
        ),
        prepare=[ProviderBoot(ctx, host)],
    )

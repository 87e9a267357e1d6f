"""The client's commands (`capa job submit|watch|result|cancel|refund`, `capa offers`) against
a real API server (the daemon's app served by hypercorn on loopback, found through the token
and URL files as a user's CLI finds it) over a scripted client backend.

The backend plays the client daemon's part: each read of a job answers the next row of the
job's script, so a job walks its stages as the daemon's state machine would walk them.
"""

from __future__ import annotations

import hashlib
import json
import os
import pty
import re
import select
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trio
from eth_account import Account
from typer.testing import CliRunner

from node.api.app import ApiApp
from node.api.errors import NotFound, NotReady
from node.api.models import (
    Action,
    ActionOutcome,
    CancelJob,
    ChainPosition,
    ClaimTimeout,
    NodeStatus,
    StagedInput,
    SubmitJob,
    SubmittedJob,
)
from node.api.server import ApiServer
from node.chain.typed_data import Offer
from node.cli import job_progress
from node.cli.main import app
from node.cli.output import ExitCode
from node.config.model import Role
from node.metrics import Metrics
from node.p2p.identity import NodeIdentity
from node.p2p.offers import ListingDetails, OfferListing
from node.times import format_timestamp
from scheduler.models import GpuModel, GpuOffer, TcbStatus, TeeKind

runner = CliRunner()
TOKEN = "cli-token"
JOB = "0x" + "ab" * 32
CLIENT = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
PROVIDER_KEY = bytes.fromhex("11" * 32)
PROVIDER = Account.from_key(PROVIDER_KEY).address
MARKET = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
OUTPUT = b"CONFIDENTIAL WORDS"
WASM = b"\0asm\1\0\0\0"


def job_row(status: str, **detail: Any) -> dict[str, Any]:
    fields = {k: v for k, v in detail.items() if k in ("provider", "price", "deadline", "error")}
    rest = {k: v for k, v in detail.items() if k not in fields}
    return {
        "job_id": JOB,
        "status": status,
        "client": CLIENT,
        "provider": fields.get("provider"),
        "price": str(fields.get("price", 0)),
        "deadline": fields.get("deadline", 0),
        "input_hash": None,
        "output_hash": None,
        "error": fields.get("error", ""),
        "updated_seq": 1,
        "detail": json.dumps(rest),
    }


CANDIDATES = json.dumps([{"provider": PROVIDER}, {"provider": CLIENT}])
ON_CHAIN = {"provider": PROVIDER, "price": 10**15, "tee_kind": 5, "insecure": True}
VERIFIED = job_row(
    "verified",
    **ON_CHAIN,
    match_tx="0x" + "01" * 32,
    settle_tx="0x" + "02" * 32,
    output_sha256=hashlib.sha256(OUTPUT).hexdigest(),
    output_size=len(OUTPUT),
)
# A job's way through the client daemon, as GET /v1/jobs/{id} shows it.
JOURNEY = [
    job_row("submitted"),
    job_row("checking", provider=PROVIDER, candidates=CANDIDATES, candidate=0),
    job_row("sealing", provider=PROVIDER, candidates=CANDIDATES, candidate=0, tee_kind=5),
    job_row("quoting", provider=PROVIDER, candidates=CANDIDATES, candidate=0),
    job_row("requested", provider=PROVIDER, price=10**15),
    job_row("assigned", **ON_CHAIN, match_tx="0x" + "01" * 32, input_size=5, deadline=2**31),
    job_row("delivered", **ON_CHAIN, input_size=5),
    job_row("settled", **ON_CHAIN, settle_tx="0x" + "02" * 32),
    VERIFIED,
]


@dataclass
class ScriptedClient:
    """The client daemon's side of the API; `scripts[job]` is what successive reads answer."""

    role: Role = Role.CLIENT
    scripts: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    actions: list[tuple[Action, str | None]] = field(default_factory=list)
    staged: list[bytes] = field(default_factory=list)
    offers: list[dict[str, Any]] = field(default_factory=list)
    after_action: list[dict[str, Any]] = field(default_factory=list)
    chain_time: int | None = None  # the watcher's head time; None: not polled yet

    def status(self) -> NodeStatus:
        return NodeStatus(
            version="0",
            role=self.role,
            address=CLIENT,
            peer_id="12D3KooW",
            state_seq=1,
            jobs=len(self.scripts),
            effects_pending=0,
            chain=ChainPosition(rpc_url=None, confirmed_block=None, head_time=self.chain_time),
        )

    def rows(self, table: str, where: dict[str, str], limit: int) -> list[dict[str, Any]]:
        if table == "offers":
            return self.offers[:limit]
        if table != "jobs":
            return []
        if "job_id" in where:
            script = self.scripts.get(where["job_id"])
            if not script:
                return []
            return [script.pop(0) if len(script) > 1 else script[0]]
        return [script[0] for script in self.scripts.values()][:limit]

    async def act(self, action: Action, *, job_id: str | None = None) -> ActionOutcome:
        self.actions.append((action, job_id))
        if job_id is not None and self.after_action:
            self.scripts[job_id] = list(self.after_action)
        return ActionOutcome(origin="cli:r", seq=2, duplicate=False, rejected="")

    async def stage_input(self, data: bytes) -> StagedInput:
        self.staged.append(data)
        return StagedInput(input_id="0x" + hashlib.sha256(data).hexdigest(), size=len(data))

    async def submit(self, action: SubmitJob) -> SubmittedJob:
        self.actions.append((action, None))
        self.scripts.setdefault(JOB, [job_row("submitted")])
        return SubmittedJob(origin="cli:r", seq=3, duplicate=False, rejected="", job_id=JOB)

    def output_of(self, job_id: str) -> Path:
        script = self.scripts.get(job_id)
        if not script:
            raise NotFound(f"no job {job_id}")
        if script[0]["status"] != "verified":
            raise NotReady(f"job {job_id} is {script[0]['status']}, not verified")
        path = Path(self.output_dir) / "out"
        path.write_bytes(OUTPUT)
        return path

    output_dir: str = "."


class ServedApi:
    """The API app served by hypercorn in a thread of its own, as the daemon serves it."""

    def __init__(self, backend: ScriptedClient, token_file: Path) -> None:
        self._server = ApiServer(
            ApiApp(backend, TOKEN, Metrics(), max_input=1 << 20),
            host="127.0.0.1",
            port=0,
            token=TOKEN,
            token_file=token_file,
        )
        self._started = threading.Event()
        self._thread = threading.Thread(target=trio.run, args=(self._serve,), daemon=True)
        self._stop: trio.CancelScope | None = None
        self._trio: trio.lowlevel.TrioToken | None = None

    async def _serve(self) -> None:
        self._trio = trio.lowlevel.current_trio_token()
        async with trio.open_nursery() as nursery:
            self._stop = nursery.cancel_scope
            await nursery.start(self._server.run)
            self._started.set()

    def __enter__(self) -> ServedApi:
        self._thread.start()
        assert self._started.wait(20), "the API server did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._stop is not None and self._trio is not None
        trio.from_thread.run_sync(self._stop.cancel, trio_token=self._trio)
        self._thread.join(20)


def client_config(directory: Path) -> Path:
    config = directory / "capa.toml"
    config.write_text(
        '[node]\nrole = "client"\ndata_dir = "."\n'
        '[chain]\nrpc_urls = ["http://127.0.0.1:9"]\nchain_id = 31337\n'
        "[client]\nallow_sim = true\n"
    )
    return config


@pytest.fixture
def backend(tmp_path: Path) -> ScriptedClient:
    return ScriptedClient(output_dir=str(tmp_path))


@pytest.fixture
def config(tmp_path: Path, backend: ScriptedClient) -> Iterator[Path]:
    with ServedApi(backend, tmp_path / "api.token"):
        yield client_config(tmp_path)


@pytest.fixture(autouse=True)
def quick_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(job_progress, "POLL_S", 0.01)


def capa(*args: str) -> tuple[int, str, str]:
    done = runner.invoke(app, list(args), env={"COLUMNS": "200"})
    assert "Traceback" not in done.output, done.output
    return done.exit_code, done.stdout, done.stderr


def parsed(stdout: str) -> dict[str, Any]:
    answer = json.loads(stdout)  # one JSON object, nothing else
    assert isinstance(answer, dict)
    return answer


def workload(tmp_path: Path) -> tuple[Path, Path]:
    (tmp_path / "m.wasm").write_bytes(WASM)
    (tmp_path / "in.txt").write_bytes(b"words")
    return tmp_path / "m.wasm", tmp_path / "in.txt"


# ------------------------------------------------------------------------------- submit


def test_submit_detach_returns_the_job_id_at_once(
    tmp_path: Path, config: Path, backend: ScriptedClient
) -> None:
    module, text = workload(tmp_path)
    code, out, err = capa(
        "job", "submit", "-c", str(config), "--wasm", str(module), "--input", str(text),
        "--detach", "--json",
    )  # fmt: skip
    assert code == 0, err
    assert parsed(out) == {"job_id": JOB, "state": "submitted", "detached": True}
    assert backend.staged == [b"words"]
    ((submitted, _),) = backend.actions
    assert isinstance(submitted, SubmitJob) and submitted.timeout_s == "600"


def test_submit_shows_one_plain_line_per_stage_and_writes_the_verified_output(
    tmp_path: Path, config: Path, backend: ScriptedClient
) -> None:
    module, text = workload(tmp_path)
    backend.scripts[JOB] = list(JOURNEY)
    code, out, err = capa(
        "job", "submit", "-c", str(config), "--wasm", str(module), "--input", str(text),
        "-o", str(tmp_path / "out.txt"),
    )  # fmt: skip
    assert code == 0, err
    stages = [line.split(":")[0].strip() for line in out.splitlines() if line.startswith("  ")]
    # Each stage once, in order (not a line per poll); evidence twice: checking, then passed.
    assert stages == [
        "offers", "evidence", "evidence", "quote", "escrow", "upload", "running",
        "download", "verified",
    ]  # fmt: skip
    assert "evidence verified 1/2" in out and "quote: 0.001 ETH" in out
    assert "uploaded 5 B at" in out and "B/s" in out
    assert (tmp_path / "out.txt").read_bytes() == OUTPUT


def test_submit_refuses_to_overwrite_before_anything_is_paid(
    tmp_path: Path, config: Path, backend: ScriptedClient
) -> None:
    module, text = workload(tmp_path)
    (tmp_path / "out.txt").write_bytes(b"keep me")
    code, _, err = capa(
        "job", "submit", "-c", str(config), "--wasm", str(module), "--input", str(text),
        "-o", str(tmp_path / "out.txt"),
    )  # fmt: skip
    assert code == ExitCode.USAGE
    assert err.startswith("capa: job submit: ") and "refusing to overwrite" in err
    assert backend.actions == [] and backend.staged == []
    assert (tmp_path / "out.txt").read_bytes() == b"keep me"


def test_a_job_nobody_takes_exits_4_with_the_reason(
    tmp_path: Path, config: Path, backend: ScriptedClient
) -> None:
    module, text = workload(tmp_path)
    why = "no provider can take the job: 2 offers: 2 needs TEE TDX"
    backend.scripts[JOB] = [job_row("submitted"), job_row("failed", error=why)]
    code, out, err = capa(
        "job", "submit", "-c", str(config), "--wasm", str(module), "--input", str(text),
        "-o", str(tmp_path / "o"), "--json",
    )  # fmt: skip
    assert code == ExitCode.NO_PROVIDER, err
    assert parsed(out)["state"] == "failed" and why in err
    assert not (tmp_path / "o").exists()


# ------------------------------------------------------------------------------- spec


SPEC = """
wasm = "m.wasm"
input = "in.txt"
output = "out.txt"
tee = ["sim"]
max_price = "0.02eth"
timeout = 900
cpu_cores = 2
"""


def test_a_spec_file_says_what_the_flags_say_and_flags_win(
    tmp_path: Path, config: Path, backend: ScriptedClient
) -> None:
    workload(tmp_path)
    (tmp_path / "job.toml").write_text(SPEC)
    code, _, err = capa(
        "job", "submit", "-c", str(config), "--spec", str(tmp_path / "job.toml"),
        "--timeout", "120", "--detach", "--json",
    )  # fmt: skip
    assert code == 0, err
    ((submitted, _),) = backend.actions
    assert isinstance(submitted, SubmitJob)
    assert submitted.timeout_s == "120"  # the flag
    assert submitted.max_price == str(2 * 10**16) and submitted.cpu_cores == "2"  # the file
    assert submitted.tee_kinds == 1 << TeeKind.SIM
    assert submitted.measurement == "0x" + hashlib.sha256(WASM).hexdigest()
    assert backend.staged == [b"words"]  # the path is relative to the spec's folder


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("gpus = 1", "unknown key 'gpus'"),
        (
            'memory_mib = "lots"',
            "memory_mib = 'lots': expected a positive integer, not text",
        ),
        ("tee = 5", "tee = 5: expected TEE kinds"),
        ("cpu_cores = true", "cpu_cores = True: expected a positive integer, not a boolean"),
    ],
)
def test_a_bad_spec_is_a_usage_error_naming_the_key_and_the_file(
    tmp_path: Path, config: Path, backend: ScriptedClient, line: str, says: str
) -> None:
    workload(tmp_path)
    spec = tmp_path / "job.toml"
    key = line.split(" = ")[0]
    kept = [kept for kept in SPEC.splitlines() if not kept.startswith(f"{key} = ")]
    spec.write_text("\n".join([*kept, line]))
    code, out, err = capa("job", "submit", "-c", str(config), "--spec", str(spec), "--json")
    assert code == ExitCode.USAGE
    assert err.startswith(f"capa: job submit: {spec}: ") and says in err, err
    assert parsed(out)["error"]["exit_code"] == 2
    assert backend.actions == []


# ------------------------------------------------------------------------------- watch


def test_watch_follows_a_job_to_its_verified_end(config: Path, backend: ScriptedClient) -> None:
    backend.scripts[JOB] = JOURNEY[5:]
    code, out, err = capa("job", "watch", JOB, "-c", str(config), "--json")
    assert code == 0, err
    answer = parsed(out)
    assert answer["state"] == "verified" and answer["stage"].startswith("output checked")
    assert answer["insecure"] is True and "INSECURE" in answer["tee_kind"]


def test_ctrl_c_detaches_without_cancelling_and_says_how_to_reattach(
    tmp_path: Path, config: Path, backend: ScriptedClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    module, text = workload(tmp_path)
    backend.scripts[JOB] = list(JOURNEY)

    def interrupted(seconds: float) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(job_progress, "sleep", interrupted)
    code, out, err = capa(
        "job", "submit", "-c", str(config), "--wasm", str(module), "--input", str(text),
        "-o", str(tmp_path / "o"), "--json",
    )  # fmt: skip
    assert code == 130
    assert parsed(out) == {"job_id": JOB, "detached": True}
    assert f"detached; the daemon keeps working on job {JOB}" in err
    assert f"reattach: `capa job watch {JOB}`" in err
    assert [type(action) for action, _ in backend.actions] == [SubmitJob]  # nothing cancelled


def on_a_terminal(*args: str, timeout: float = 60) -> str:
    """`capa ARGS` in its own process with a pseudo-terminal as its stdout; what it showed."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-c", "from node.cli.main import main; main()", *args],
        stdin=subprocess.DEVNULL,
        stdout=follower,
        stderr=subprocess.PIPE,
        env={**os.environ, "TERM": "xterm-256color", "COLUMNS": "200"},
    )
    os.close(follower)
    shown = bytearray()
    until = time.monotonic() + timeout
    try:
        while time.monotonic() < until:
            ready, _, _ = select.select([leader], [], [], 0.5)
            if not ready:
                continue
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the other end closed: the command ended
                break
            if not chunk:
                break
            shown += chunk
        assert process.wait(timeout=10) == 0, process.stderr.read() if process.stderr else ""
    finally:
        os.close(leader)
        if process.poll() is None:
            process.kill()
        if process.stderr:
            process.stderr.close()
    return shown.decode(errors="replace")


def test_at_a_terminal_watch_shows_a_live_line_and_keeps_each_finished_stage(
    config: Path, backend: ScriptedClient
) -> None:
    backend.scripts[JOB] = JOURNEY[4:]  # the first read only checks that the job exists
    raw = on_a_terminal("job", "watch", JOB, "-c", str(config))
    assert "\r\x1b[2K" in raw  # the live line is redrawn in place
    shown = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", raw)  # without colours and cursor moves
    for stage in ("upload", "running", "download"):
        assert f"✓ {stage}: " in shown, shown  # a finished stage stays, ticked
    assert "  verified: output checked and decrypted: 18 B" in shown


def test_watch_of_an_unknown_job_and_of_a_bad_id(config: Path) -> None:
    code, out, err = capa("job", "watch", JOB, "-c", str(config), "--json")
    assert code == ExitCode.FAILED
    assert err.startswith("capa: job watch: this daemon knows no such job") and "HTTP" not in err
    assert parsed(out)["error"]["exit_code"] == 1
    code, _, err = capa("job", "watch", "0x1234", "-c", str(config))
    assert code == ExitCode.USAGE and "not a job id: '0x1234'" in err


# ------------------------------------------------------------------------------- result


def test_result_before_the_output_is_verified_says_where_the_job_is(
    tmp_path: Path, config: Path, backend: ScriptedClient
) -> None:
    backend.scripts[JOB] = [JOURNEY[6]]
    code, _, err = capa("job", "result", JOB, "-c", str(config), "-o", str(tmp_path / "o"))
    assert code == ExitCode.FAILED
    assert "has no verified output yet: uploaded 5 B; running in the enclave" in err
    assert f"capa job watch {JOB}" in err and not (tmp_path / "o").exists()
    backend.scripts[JOB] = [job_row("failed", error="output rejected: bad signature")]
    code, _, err = capa("job", "result", JOB, "-c", str(config), "-o", str(tmp_path / "o"))
    assert code == ExitCode.FAILED
    assert "ended failed: output rejected: bad signature; it has no output" in err


def test_result_writes_the_verified_output_and_overwrites_only_when_forced(
    tmp_path: Path, config: Path, backend: ScriptedClient
) -> None:
    backend.scripts[JOB] = [VERIFIED]
    target = tmp_path / "result.txt"
    code, out, err = capa("job", "result", JOB, "-c", str(config), "-o", str(target), "--json")
    assert code == 0, err
    assert target.read_bytes() == OUTPUT
    assert parsed(out)["output_sha256"] == hashlib.sha256(OUTPUT).hexdigest()
    target.write_bytes(b"mine")
    code, _, err = capa("job", "result", JOB, "-c", str(config), "-o", str(target))
    assert code == ExitCode.USAGE and "refusing to overwrite" in err and "--force" in err
    assert target.read_bytes() == b"mine"
    code, _, err = capa("job", "result", JOB, "-c", str(config), "-o", str(target), "--force")
    assert code == 0, err
    assert target.read_bytes() == OUTPUT
    code, out, _ = capa("job", "result", JOB, "-c", str(config))
    assert code == 0 and out.encode() == OUTPUT  # no -o: stdout


# ------------------------------------------------------------------------------- refund, cancel


def test_refund_before_the_deadline_says_when_as_a_date(
    config: Path, backend: ScriptedClient
) -> None:
    deadline = int(time.time()) + 3600
    backend.scripts[JOB] = [job_row("assigned", **ON_CHAIN, deadline=deadline)]
    code, out, err = capa("job", "refund", JOB, "-c", str(config), "--json")
    assert code == ExitCode.FAILED
    assert f"a refund becomes possible after {format_timestamp(deadline)} (in " in err
    assert parsed(out)["error"]["exit_code"] == 1
    assert backend.actions == []  # nothing asked of the chain


def test_the_deadline_is_judged_by_the_chains_clock(config: Path, backend: ScriptedClient) -> None:
    deadline = int(time.time()) + 3600  # ahead of this machine's clock ...
    backend.chain_time = deadline + 60  # ... but behind the chain's (a devnet moved on)
    backend.scripts[JOB] = [job_row("assigned", **ON_CHAIN, deadline=deadline)]
    backend.after_action = [job_row("refunded", **ON_CHAIN, deadline=deadline)]
    code, out, err = capa("job", "refund", JOB, "-c", str(config), "--json")
    assert code == 0, err
    assert parsed(out)["state"] == "refunded"
    backend.chain_time = deadline - 60
    backend.scripts[JOB] = [job_row("assigned", **ON_CHAIN, deadline=deadline)]
    code, _, err = capa("job", "refund", JOB, "-c", str(config))
    assert code == ExitCode.FAILED and "(in 1m 1s)" in err


def test_a_refund_the_chain_refuses_is_said_in_words(config: Path, backend: ScriptedClient) -> None:
    past = int(time.time()) - 10
    backend.scripts[JOB] = [job_row("delivered", **ON_CHAIN, deadline=past)]
    backend.after_action = [
        job_row(
            "delivered", **ON_CHAIN, deadline=past, error="claiming the refund: asked by the user"
        ),
        job_row("delivered", **ON_CHAIN, deadline=past, error=f"DeadlineNotPassed({2**31})"),
    ]
    code, _, err = capa("job", "refund", JOB, "-c", str(config))
    assert code == ExitCode.FAILED
    assert (
        "the JobMarket refuses it: the job's deadline has not passed yet: it is 2038-01-19" in err
    )
    assert isinstance(backend.actions[0][0], ClaimTimeout)


def test_a_refund_after_the_deadline_ends_refunded(config: Path, backend: ScriptedClient) -> None:
    past = int(time.time()) - 10
    backend.scripts[JOB] = [job_row("assigned", **ON_CHAIN, deadline=past)]
    backend.after_action = [job_row("refunded", **ON_CHAIN, deadline=past)]
    code, out, err = capa("job", "refund", JOB, "-c", str(config), "--json")
    assert code == 0, err
    assert parsed(out)["state"] == "refunded"


def test_cancel_says_why_a_job_cannot_be_cancelled_and_cancels_an_open_one(
    config: Path, backend: ScriptedClient
) -> None:
    backend.scripts[JOB] = [job_row("assigned", **ON_CHAIN, deadline=2**31)]
    code, _, err = capa("job", "cancel", JOB, "-c", str(config))
    assert code == ExitCode.FAILED
    assert "a provider holds it; only its deadline ends it: `capa job refund" in err
    assert backend.actions == []
    backend.scripts[JOB] = [JOURNEY[1]]  # checking a candidate: nothing paid yet
    backend.after_action = [job_row("cancelled", error="cancelled before matching")]
    code, out, err = capa("job", "cancel", JOB, "-c", str(config))
    assert code == 0, err
    assert "cancelled before its match: nothing was paid" in out
    backend.actions.clear()
    backend.scripts[JOB] = [job_row("open", price=10**15)]
    backend.after_action = [job_row("cancelled", price=10**15)]
    code, out, err = capa("job", "cancel", JOB, "-c", str(config), "--json")
    assert code == 0, err
    assert parsed(out)["state"] == "cancelled" and isinstance(backend.actions[0][0], CancelJob)


# ------------------------------------------------------------------------------- offers


def listing_row(
    tee_kind: int, nonce: int, gpu: GpuOffer | None = None, published: int = -30
) -> dict[str, Any]:
    now = int(time.time())
    # One enclave key per offer: a newer listing of the same key replaces the older one.
    enclave = Account.from_key(bytes([nonce]) * 32).address
    offer = Offer(
        PROVIDER, enclave, tee_kind, hashlib.sha256(WASM).digest(), 10**15, 60, 3600,
        now + 3600, bytes(32), nonce,
    )  # fmt: skip
    listing = OfferListing.create(
        offer=offer,
        details=ListingDetails(4, 8192, TcbStatus.UP_TO_DATE, gpu=gpu),
        chain_id=31337,
        market=MARKET,
        peer_id=NodeIdentity.from_private_key(b"\x01" * 32).peer_id,
        published_at=now + published,
        provider_key=PROVIDER_KEY,
    )
    return {
        "offer_key": f"{PROVIDER}:{nonce}",
        "provider": PROVIDER,
        "nonce": str(nonce),
        "price": str(10**15),
        "valid_until": now + 3600,
        "tee_kind": tee_kind,
        "peer_id": str(listing.peer_id),
        "body": listing.encode().decode(),
        "seen_seq": nonce,
    }


def test_offers_lists_every_offer_and_sim_says_insecure(
    config: Path, backend: ScriptedClient
) -> None:
    h100 = GpuOffer(GpuModel("H100"), 81920, 2, True)
    backend.offers = [listing_row(int(TeeKind.SIM), 1), listing_row(int(TeeKind.TDX), 2, h100)]
    # The daemon checked both keys: a sim key stays INSECURE whatever its check said.
    for row in backend.offers:
        row.update(evidence="verified", evidence_checked_at=int(time.time()) - 150)
    code, out, err = capa("offers", "-c", str(config), "--json")
    assert code == 0, err
    sim, tdx = parsed(out)["offers"]
    assert sim["provider"] == PROVIDER and sim["evidence"].startswith("INSECURE")
    assert sim["price_per_hour_text"] == "0.001 ETH/h" and sim["tcb"] == "UpToDate"
    assert tdx["tee_kind"] == "tdx" and re.match(r"verified \(2m 3\ds ago\)$", tdx["evidence"])
    assert tdx["gpu"] == "2x H100 80 GiB CC" and 25 <= tdx["age_s"] <= 60
    code, out, _ = capa("offers", "-c", str(config))
    assert PROVIDER in out and "INSECURE" in out  # the table: the provider never cut
    code, out, _ = capa("offers", "-c", str(config), "--gpu", "1", "--json")
    assert code == 0 and [o["tee_kind"] for o in parsed(out)["offers"]] == ["tdx"]
    backend.offers.append(listing_row(int(TeeKind.SIM), 1, published=-30 * 60))  # older, same key
    code, out, _ = capa("offers", "-c", str(config), "--json")
    assert [o["nonce"] for o in parsed(out)["offers"]] == ["1", "2"]
    for expired in (backend.offers[0], backend.offers[2]):  # no longer live
        expired["valid_until"] = int(time.time()) - 1
    code, out, _ = capa("offers", "-c", str(config), "--json")
    assert [o["nonce"] for o in parsed(out)["offers"]] == ["2"]
    code, _, err = capa("offers", "-c", str(config), "--tee", "sev-snp")
    assert code == ExitCode.NO_PROVIDER and "no offers after --tee/--gpu (1 heard)" in err


def test_offers_why_names_the_first_constraint_each_offer_fails(
    tmp_path: Path, config: Path, backend: ScriptedClient
) -> None:
    backend.offers = [listing_row(int(TeeKind.SIM), 1), listing_row(int(TeeKind.SIM), 2)]
    workload(tmp_path)
    spec = tmp_path / "job.toml"
    # Fails on two counts: the first in the scheduler's order (INSECURE sim) is the one said.
    spec.write_text(SPEC.replace('tee = ["sim"]', 'tee = "tdx"').replace("= 2", "= 64"))
    code, out, err = capa("offers", "-c", str(config), "--why", str(spec), "--json")
    assert code == ExitCode.NO_PROVIDER, err
    answer = parsed(out)
    assert [o["why"] for o in answer["offers"]] == [
        "INSECURE: simulated enclave (SIM) has no hardware isolation; the job does not accept SIM"
    ] * 2
    assert answer["summary"].startswith("2 offers: 2 ")
    spec.write_text(SPEC.replace("cpu_cores = 2", "cpu_cores = 64"))
    code, out, _ = capa("offers", "-c", str(config), "--why", str(spec))
    assert code == ExitCode.NO_PROVIDER
    assert "-> needs 64 CPU cores, offers 4" in out
    spec.write_text(SPEC)
    backend.offers[1].update(evidence="refused", evidence_checked_at=int(time.time()) - 5)
    code, out, _ = capa("offers", "-c", str(config), "--why", str(spec), "--json")
    assert code == 0
    # The daemon's own refusal of a key counts, as when it ranks a submitted job.
    assert [o["why"] for o in parsed(out)["offers"]] == [
        "matches (rank 1)",
        "evidence not verified",
    ]
    backend.offers[1].update(evidence="unchecked", evidence_checked_at=0)
    code, out, _ = capa("offers", "-c", str(config), "--why", str(spec), "--json")
    assert code == 0
    assert sorted(o["why"] for o in parsed(out)["offers"]) == [
        "matches (rank 1)",
        "matches (rank 2)",
    ]


# ------------------------------------------------------------------------------- no daemon


@pytest.mark.parametrize(
    "args",
    [
        ("job", "watch", JOB),
        ("job", "result", JOB, "-o", "x"),
        ("job", "cancel", JOB),
        ("job", "refund", JOB),
        ("job", "status", JOB),
        ("job", "list"),
        ("offers",),
    ],
    ids=" ".join,
)
def test_without_a_daemon_every_client_command_exits_3(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    config = client_config(tmp_path)
    code, out, err = capa(*args, "-c", str(config), "--json")
    assert code == ExitCode.UNREACHABLE, err
    assert err.startswith(
        f"capa: {' '.join(args[:2]) if args[0] == 'job' else 'offers'}: no running daemon"
    )
    assert parsed(out)["error"]["exit_code"] == 3


# ------------------------------------------------------------------------------- the example


REPO = Path(__file__).resolve().parents[3]


def test_the_shipped_example_spec_is_valid_and_the_readme_shows_it() -> None:
    from node.cli.job import submission_of
    from node.cli.job_spec import load_spec

    example = REPO / "examples" / "job.toml"
    spec = load_spec(example)
    assert spec.input is not None and spec.input.is_file()
    submission = submission_of(spec, "0x" + "00" * 32)
    assert submission.workload.value == "wasm" and submission.timeout_s == "600"
    settings = [line for line in example.read_text().splitlines() if " = " in line]
    readme = (REPO / "README.md").read_text()
    assert all(line in readme for line in settings)

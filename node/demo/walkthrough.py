"""The demo's steps, each the command a user would type, shown before it runs:

1. train the digit classifier, export it to ONNX, pick one held-out image as the input;
2. `capa devnet up --onnx MODEL`: anvil, the contracts, a verifier, two sim providers serving
   the model, a client daemon;
3. the offers the client daemon holds for the model, each enclave key's standing on chain;
4. `capa job submit --onnx MODEL --input IMAGE`: the client daemon checks the provider's
   evidence, seals the image to its enclave, escrows the price with matchJob, uploads,
   and verifies and decrypts the result the provider settled with submitResult;
5. the two transactions' receipts, read from anvil: gas, fee, escrow and payout;
6. the decrypted prediction against the true label;
7. `capa devnet down`, always, also after a failure or Ctrl-C;
8. every file the providers, the verifier and anvil wrote, searched for the image's bytes.

The commands run as child processes in their own sessions: a Ctrl-C reaches the demo only,
which passes it to the running command (so `devnet up` stops what it started) and then
brings the devnet down itself.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from node.amounts import format_amount
from node.chain.client import ChainClient
from node.chain.errors import ChainError
from node.chain.market import Market
from node.demo import digits
from node.demo.errors import DemoFailed
from node.devnet.errors import DevnetError
from node.devnet.launcher import Devnet, capa_command, node_environment
from node.devnet.processes import is_running
from node.devnet.state import STATE_NAME
from node.enclave.workloads import OnnxWorkload
from proofs.claims import TeeKind

MARKER = ".capa-demo"
PROVIDERS = 2
VERIFIERS = 1
# A child asked to stop (SIGINT) gets this long to clean up before it is killed.
CHILD_GRACE_S = 60.0
OFFERS_TIMEOUT_S = 90.0
INSECURE = "[bold red]INSECURE[/bold red]"
_SUBMITTED = re.compile(r"^job (0x[0-9a-fA-F]{64}) submitted$", re.MULTILINE)


@dataclass(frozen=True)
class Paths:
    root: Path

    @property
    def model(self) -> Path:
        return self.root / "digits.onnx"

    @property
    def image(self) -> Path:
        return self.root / "digit.npz"

    @property
    def prediction(self) -> Path:
        return self.root / "prediction.npz"

    @property
    def devnet(self) -> Path:
        return self.root / "devnet"


class Walkthrough:
    def __init__(self, console: Console, root: Path, image_index: int | None) -> None:
        self.console = console
        self.paths = Paths(root.resolve())
        self.image_index = image_index
        self.started = time.monotonic()
        self.input_hash = b""  # of the sealed input, as matchJob escrowed it

    # ------------------------------------------------------------------ the run

    def run(self) -> None:
        """The whole demo; the devnet is down when this returns or raises."""
        prepare(self.paths.root)
        self.console.print(
            f"{INSECURE}: the providers run sim enclaves, real sandboxes without TEE hardware: "
            "no isolation from their host, no confidentiality. Every step below says so."
        )
        try:
            expected = self.make_model_and_input()
            self.devnet_up()
            net = Devnet.attach(self.paths.devnet)
            market = Market.at(ChainClient(net.rpc_url), net.contracts["JobMarket"])
            self.show_offers(net, market)
            job = self.submit()
            self.show_transactions(net, market, job)
            self.show_answer(expected)
        finally:
            self.devnet_down()
        self.show_exposure(Devnet.attach(self.paths.devnet))
        elapsed = time.monotonic() - self.started
        self.console.print(
            f"\ndone in {elapsed:.0f} s; files and logs stay in {shown(self.paths.root)}. "
            f"The enclaves were {INSECURE} sim: no hardware, no confidentiality."
        )

    def make_model_and_input(self) -> int:
        self.section("1. the model and the input")
        model = digits.train()
        count = len(model.held_out_labels)
        self.console.print(
            f"  trained {model.description} on {model.train_count} of scikit-learn's 8x8 "
            f"handwritten digits\n  held-out accuracy: {model.accuracy:.1%} "
            f"({count} images it never saw)"
        )
        self.paths.model.write_bytes(model.onnx)
        measurement = OnnxWorkload(model.onnx).measure().hex()
        self.console.print(
            f"  exported to ONNX: {shown(self.paths.model)} ({len(model.onnx):,} B), "
            f"measurement 0x{measurement}"
        )
        index = self.image_index
        if index is None:
            index = random.randrange(count)
        if not 0 <= index < count:
            raise DemoFailed(f"--image {index}: expected 0 to {count - 1} (the held-out images)")
        image = model.held_out_images[index]
        label = int(model.held_out_labels[index])
        self.paths.image.write_bytes(digits.input_archive(image))
        self.console.print(
            f"  the input: held-out image #{index} as {shown(self.paths.image)} "
            f"(tensor {digits.INPUT_NAME!r}, 1x64); its true label stays here to check the answer"
        )
        for row in digits.picture(image):
            self.console.print(f"      |{row}|", markup=False, highlight=False)
        return label

    def devnet_up(self) -> None:
        self.section("2. a local marketplace of separate daemons")
        self.command(
            "devnet", "up", "--dir", self.paths.devnet,
            "--providers", str(PROVIDERS), "--verifiers", str(VERIFIERS),
            "--onnx", self.paths.model,
        )  # fmt: skip

    def show_offers(self, net: Devnet, market: Market) -> None:
        self.section("3. offers the client daemon found for the model")
        measurement = "0x" + OnnxWorkload(self.paths.model.read_bytes()).measure().hex()
        names = {node.address.lower(): node.name for node in net.nodes}
        latest = self.wait_for_model_offers(net, measurement)
        table = compact_table("provider", "enclave key", "TEE", "price", "key on chain")
        for offer in latest:
            provider, key = offer["provider"], offer["enclaveKey"]
            try:
                valid, kind, on_chain, _tcb = market.client.call(
                    "AttestationVerifier", market.verifier.functions.isValidKey(provider, key)
                )
            except ChainError as exc:
                raise DemoFailed(f"isValidKey({provider}, {key}): {exc}") from exc
            registered = (
                valid
                and int(kind) == int(offer["teeKind"])
                and "0x" + bytes(on_chain).hex() == measurement
            )
            table.add_row(
                f"{names.get(provider.lower(), '?')} {short(provider)}",
                short(key),
                tee_label(int(offer["teeKind"])),
                f"{format_amount(int(offer['price']))}/h",
                "registered" if registered else "[red]not valid[/red]",
            )
        self.console.print(table)
        self.console.print(
            "  registered: the enclave key's evidence was checked by the verifier committee "
            "against the deployment's policy (sim allowed on this devnet only) and the key "
            "recorded on chain (isValidKey); the client daemon checks the evidence again "
            "itself before it sends anything"
        )

    def wait_for_model_offers(self, net: Devnet, measurement: str) -> list[dict[str, Any]]:
        """The newest offer of each provider for the model, once the client holds one of
        every provider (each provider gossips one offer per workload it serves, in turn)."""
        deadline = time.monotonic() + OFFERS_TIMEOUT_S
        while True:
            try:
                latest = latest_offers(net.client.get("/v1/offers")["offers"], measurement)
            except (DevnetError, KeyError, TypeError) as exc:
                raise DemoFailed(f"the client's offer book: {exc}") from exc
            if len(latest) >= PROVIDERS:
                return latest
            if time.monotonic() > deadline:
                raise DemoFailed(
                    f"after {OFFERS_TIMEOUT_S:.0f} s the client holds offers of {len(latest)} "
                    f"of {PROVIDERS} providers for the model (`capa devnet logs` says why)"
                )
            time.sleep(0.25)  # another process's API: no event to wait on

    def submit(self) -> dict[str, Any]:
        self.section("4. the job, through the client daemon")
        config = self.paths.devnet / "client" / "capa.toml"
        output = self.command(
            "job", "submit", "-c", config, "--onnx", self.paths.model,
            "--input", self.paths.image, "--output", self.paths.prediction,
        )  # fmt: skip
        found = _SUBMITTED.search(output)
        if found is None:
            raise DemoFailed("`capa job submit` did not name the job it submitted")
        answer = self.command("job", "status", found.group(1), "-c", config, "--json", quiet=True)
        try:
            job: dict[str, Any] = json.loads(answer)
        except ValueError as exc:
            raise DemoFailed(f"`capa job status --json` printed no JSON: {exc}") from exc
        chosen = {n.address.lower(): n.name for n in Devnet.attach(self.paths.devnet).nodes}.get(
            str(job["provider"]).lower(), "provider"
        )
        self.console.print(
            f"  the client daemon chose {chosen} {job['provider']} and checked its enclave's "
            f"evidence itself: {job['tee_kind']}; job {job['state']}",
            markup=False,
            highlight=False,
        )
        return job

    def show_transactions(self, net: Devnet, market: Market, job: dict[str, Any]) -> None:
        self.section("5. on chain: escrow and settlement (receipts read from anvil)")
        names = {node.address.lower(): node.name for node in net.nodes}
        table = compact_table("step", "call", "sent by", "block", "gas used", "gas price", "fee")
        receipts = {}
        for step, key in (("escrow", "match_tx"), ("settle", "settle_tx")):
            tx_hash = job.get(key)
            if not tx_hash:
                raise DemoFailed(f"the job records no {step} transaction ({key})")
            try:
                tx = market.client.w3.eth.get_transaction(tx_hash)
                receipt = market.client.w3.eth.get_transaction_receipt(tx_hash)
                function, _ = market.market.decode_function_input(tx["input"])
            except Exception as exc:  # web3 raises a zoo of its own types for an RPC answer
                raise DemoFailed(f"the {step} transaction {tx_hash}: {exc}") from exc
            receipts[step] = receipt
            gas, price = int(receipt["gasUsed"]), int(receipt["effectiveGasPrice"])
            table.add_row(
                step,
                function.fn_name,
                names.get(str(receipt["from"]).lower(), str(receipt["from"])),
                str(receipt["blockNumber"]),
                f"{gas:,}",
                f"{price / 10**9:.2f} gwei",
                f"{gas * price / 10**18:.6f} ETH",
            )
        self.console.print(table)
        matched = market.events(receipts["escrow"], "JobMarket", "JobMatched")
        settled = market.events(receipts["settle"], "JobMarket", "JobSettled")
        if len(matched) != 1 or len(settled) != 1:
            raise DemoFailed("the receipts do not hold one JobMatched and one JobSettled")
        price, payout = int(matched[0]["args"]["price"]), int(settled[0]["args"]["payout"])
        self.input_hash = bytes(matched[0]["args"]["inputHash"])
        provider = names.get(str(settled[0]["args"]["provider"]).lower(), "the provider")
        self.console.print(
            f"  escrowed {format_amount(price)} for job {job['job_id'][:18]}..; {provider} "
            f"credited {format_amount(payout)}, protocol fee {format_amount(price - payout)}\n"
            f"  paid only against a result signed by enclave key "
            f"{settled[0]['args']['enclaveKey']} (output hash "
            f"0x{bytes(settled[0]['args']['outputHash']).hex()[:16]}..)"
        )

    def show_answer(self, expected: int) -> None:
        self.section("6. the answer, decrypted by the client")
        label, probability = digits.read_prediction(self.paths.prediction.read_bytes())
        verdict = "correct" if label == expected else "wrong (the model is ~97% accurate)"
        self.console.print(
            f"  prediction: {label} (probability {probability:.1%}), true label: {expected}: "
            f"{verdict}"
        )

    def devnet_down(self) -> None:
        if not (self.paths.devnet / STATE_NAME).exists():
            return
        self.section("7. stop the marketplace")
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # let the stop finish
        try:
            self.command("devnet", "down", "--dir", self.paths.devnet, check=False)
            net = Devnet.attach(self.paths.devnet)
            alive = [name for name, process in net.state.processes() if is_running(process)]
        except (DemoFailed, DevnetError) as exc:
            self.console.print(f"  [red]could not stop the devnet: {exc}[/red]")
            raise
        finally:
            signal.signal(signal.SIGINT, previous)
        if alive:
            raise DemoFailed(f"still running after `devnet down`: {', '.join(alive)}")
        self.console.print("  every process the devnet started has stopped")

    def show_exposure(self, net: Devnet) -> None:
        self.section("8. where the image's bytes are")
        archive = self.paths.image.read_bytes()
        pixels = digits.pixel_bytes(archive)
        others = [n.directory for n in net.nodes if n.name != "client"]
        files, total, hits = scan([*others, net.state.anvil_log], (archive, pixels))
        if hits:
            raise DemoFailed(
                "the plaintext image was found outside the client: "
                + ", ".join(shown(p) for p in hits)
            )
        job_dirs = sorted((net.client.directory / "jobs").glob("0x*"))
        sealed = [d / "input.sealed" for d in job_dirs if (d / "input.sealed").exists()]
        sent = ""
        if sealed:
            blob = sealed[0].read_bytes()
            committed = hashlib.sha256(blob).digest() == self.input_hash
            sent = (
                f"; what left it: {shown(sealed[0])} ({len(blob)} B, sealed to the enclave's "
                f"key{', its sha256 the input hash escrowed on chain' if committed else ''})"
            )
        self.console.print(
            f"  searched {files} files ({total:,} B) the providers, the verifier and anvil "
            "wrote for the image (its .npz and its raw pixels): found in none.\n"
            f"  the plaintext never left the client{sent}"
        )

    # ------------------------------------------------------------------ plumbing

    def section(self, title: str) -> None:
        self.console.rule(f"[bold]{title}[/bold]", align="left")

    def command(self, *args: str | Path, quiet: bool = False, check: bool = True) -> str:
        """Run `capa ARGS`, shown first as the user would type it; its output streamed
        (unless `quiet`) and returned. A failure is DemoFailed when `check`."""
        self.console.print(
            "$ capa " + " ".join(shown(a) if isinstance(a, Path) else a for a in args),
            markup=False,
            highlight=False,
        )
        code, output = run_child(
            [*capa_command(), *(str(a) for a in args)],
            lambda line: (
                None if quiet else self.console.print("  " + line, markup=False, highlight=False)
            ),
        )
        if check and code != 0:
            tail = output.strip().splitlines()[-1:] or ["(no output)"]
            raise DemoFailed(f"`capa {args[0]} {args[1]}` failed (status {code}): {tail[0]}")
        return output


def run_child(argv: Sequence[str], echo: Any) -> tuple[int, str]:
    """Run a command in its own session, each output line to `echo`; (status, output).
    A Ctrl-C meanwhile is passed on to it, and after CHILD_GRACE_S it is killed."""
    env = node_environment()
    env["PYTHONUNBUFFERED"] = "1"  # its lines as they happen, not at its exit
    child = subprocess.Popen(
        list(argv),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        start_new_session=True,
    )
    lines: list[str] = []
    try:
        assert child.stdout is not None
        for line in child.stdout:
            lines.append(line)
            echo(line.rstrip("\n"))
        return child.wait(), "".join(lines)
    except KeyboardInterrupt:
        child.send_signal(signal.SIGINT)
        try:
            child.wait(timeout=CHILD_GRACE_S)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        raise
    finally:
        if child.stdout is not None:
            child.stdout.close()


def prepare(root: Path) -> None:
    """Make `root` the demo's: create it, or clear a previous demo's (never a stranger's)."""
    if root.exists() and any(root.iterdir()):
        if not (root / MARKER).exists():
            raise DemoFailed(f"{root} is not empty and was not made by the demo: use --dir")
        state = root / "devnet" / STATE_NAME
        if state.exists():
            try:
                net = Devnet.attach(root / "devnet")
                alive = [name for name, process in net.state.processes() if is_running(process)]
            except DevnetError as exc:
                raise DemoFailed(f"{root}: {exc}") from exc
            if alive:
                raise DemoFailed(
                    f"a devnet still runs in {root / 'devnet'} ({', '.join(alive)}): "
                    f"`capa devnet down --dir {root / 'devnet'}` stops it"
                )
        shutil.rmtree(root)
    root.mkdir(parents=True)
    (root / MARKER).write_text("made by `make demo`; the next run clears this folder\n")


def latest_offers(book: Sequence[dict[str, Any]], measurement: str) -> list[dict[str, Any]]:
    """The newest signed offer of each provider for this measurement, by provider."""
    latest: dict[str, tuple[int, dict[str, Any]]] = {}
    for entry in book:
        try:
            offer = json.loads(entry["body"])["signed"]["offer"]
            seen = int(entry["seen_seq"])
        except (KeyError, TypeError, ValueError):
            continue  # not an offer this demo can read: the daemon validated what it uses
        if str(offer.get("measurement", "")).lower() != measurement.lower():
            continue
        provider = str(offer["provider"]).lower()
        if provider not in latest or latest[provider][0] < seen:
            latest[provider] = (seen, offer)
    return [offer for _, (_, offer) in sorted(latest.items())]


def tee_label(kind: int) -> str:
    try:
        tee = TeeKind(kind)
    except ValueError:
        return f"kind {kind}"
    if tee is TeeKind.SIM:
        return f"sim: {INSECURE}"
    return tee.name.lower().replace("_", "-")


def files_under(paths: Sequence[Path]) -> Iterator[Path]:
    for path in paths:
        if path.is_file():
            yield path
        for root, _, names in os.walk(path):
            for name in names:
                yield Path(root) / name


def scan(paths: Sequence[Path], needles: Sequence[bytes]) -> tuple[int, int, list[Path]]:
    """(files searched, bytes searched, files holding any needle)."""
    count = total = 0
    hits = []
    for path in files_under(paths):
        try:
            data = path.read_bytes()
        except OSError:
            continue  # a socket or a file gone meanwhile: nothing stored there
        count += 1
        total += len(data)
        if any(needle in data for needle in needles):
            hits.append(path)
    return count, total, hits


def compact_table(*columns: str) -> Table:
    """A table that fits 80 columns: no outer edge, cells never wrapped."""
    table = Table(show_edge=False, box=box.SIMPLE_HEAD, pad_edge=False)
    for column in columns:
        table.add_column(column, no_wrap=True)
    return table


def short(address: str) -> str:
    """0x70e3…D3F2: enough to tell addresses apart in a table."""
    return f"{address[:6]}…{address[-4:]}"


def shown(path: Path) -> str:
    """A path as short as it can be said: relative to here when it lies below."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)

"""`make demo` as a newcomer runs it: a digit classifier trained and served through a devnet
of separate daemons, one image classified through the client daemon, the devnet stopped at
the end, also when the user presses Ctrl-C half way."""

from __future__ import annotations

import contextlib
import io
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from node.demo.__main__ import main as demo_main
from node.demo.walkthrough import prepare
from node.devnet.errors import DevnetError
from node.devnet.launcher import Devnet
from node.devnet.processes import is_running

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
DEMO = [sys.executable, "-m", "node.demo"]
ENV = {"COLUMNS": "200", "NO_COLOR": "1", "PATH": "/usr/bin:/bin"}


def still_running(devnet_dir: Path) -> list[str]:
    net = Devnet.attach(devnet_dir)
    return [name for name, process in net.state.processes() if is_running(process)]


def test_the_demo_classifies_a_held_out_digit_through_the_daemons_and_stops_them(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "demo"
    ran = subprocess.run(
        [*DEMO, "--dir", str(folder), "--image", "7"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env=ENV,
    )
    out = ran.stdout + ran.stderr
    assert ran.returncode == 0, out

    accuracy = re.search(r"held-out accuracy: ([\d.]+)%", out)
    assert accuracy and float(accuracy.group(1)) > 90, out
    # The printed prediction is what the client decrypted, and that is what the model the
    # providers served computes on the image: run it here, outside any daemon.
    printed = re.search(r"prediction: (\d) \(probability [\d.]+%\), true label: (\d)", out)
    assert printed, out
    session = ort.InferenceSession(str(folder / "digits.onnx"), providers=["CPUExecutionProvider"])
    with np.load(folder / "digit.npz") as feeds:
        label, probabilities = session.run(["label", "probabilities"], {"X": feeds["X"]})
    with np.load(io.BytesIO((folder / "prediction.npz").read_bytes())) as decrypted:
        assert int(decrypted["label"][0]) == int(label[0]) == int(printed.group(1))
        np.testing.assert_allclose(decrypted["probabilities"], probabilities, rtol=1e-5)

    # The job went through the chain: escrow by the client, settlement by a provider.
    assert re.search(r"escrow +matchJob +client +\d+ +[\d,]+ +[\d.]+ gwei", out), out
    assert re.search(r"settle +submitResult +provider-\d +\d+ +[\d,]+ +[\d.]+ gwei", out), out
    assert "the plaintext never left the client" in out and "found in none" in out
    assert "its sha256 the input hash escrowed on chain" in out
    # Sim enclaves are never presented as real.
    assert out.count("INSECURE") >= 4

    # Ended cleanly: everything the devnet started has stopped.
    assert "every process the devnet started has stopped" in out
    assert still_running(folder / "devnet") == []


def test_ctrl_c_while_the_devnet_starts_stops_everything_it_started(tmp_path: Path) -> None:
    folder = tmp_path / "demo"
    log = tmp_path / "demo.out"
    with log.open("w") as out:
        demo = subprocess.Popen(
            [*DEMO, "--dir", str(folder)], cwd=REPO, stdout=out, stderr=out, text=True, env=ENV
        )
    try:
        # The devnet is half up once its state file records a started node: another
        # process's file, polled (there is no event to wait on).
        deadline = time.monotonic() + 120
        started: list[str] = []
        while not started:
            assert demo.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            with contextlib.suppress(DevnetError):  # its state file not written yet
                started = still_running(folder / "devnet")
            time.sleep(0.1)
        demo.send_signal(signal.SIGINT)
        code = demo.wait(timeout=120)
    finally:
        if demo.poll() is None:
            demo.kill()
    text = log.read_text()
    assert code == 130, text
    assert "interrupted; the devnet is down" in text
    assert "every process the devnet started has stopped" in text
    assert started and still_running(folder / "devnet") == []


def test_a_folder_the_demo_did_not_make_is_refused_and_left_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "thesis.tex").write_text("years of work")
    assert demo_main(["--dir", str(tmp_path)]) == 1
    assert "is not empty and was not made by the demo" in capsys.readouterr().out
    assert (tmp_path / "thesis.tex").read_text() == "years of work"


def test_a_previous_demo_folder_is_cleared_and_an_image_out_of_range_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "demo"
    prepare(folder)
    (folder / "prediction.npz").write_bytes(b"an old run's output")
    assert demo_main(["--dir", str(folder), "--image", "450"]) == 1
    assert "--image 450: expected 0 to 449 (the held-out images)" in capsys.readouterr().out
    assert not (folder / "prediction.npz").exists()
    assert not (folder / "devnet").exists()  # nothing was started

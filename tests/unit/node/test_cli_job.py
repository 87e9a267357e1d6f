"""`capa job`: what the CLI decides before it asks the daemon (workload, TEE kinds, amounts),
and how it says it."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from node.cli.job import tee_mask, workload_of
from node.cli.main import app
from node.cli.output import CommandFailed, ExitCode
from proofs.claims import TeeKind

runner = CliRunner()


def test_tee_kinds_by_name_make_the_request_mask() -> None:
    assert tee_mask(None) == 0
    assert tee_mask("tdx, SEV-SNP") == (1 << TeeKind.TDX) | (1 << TeeKind.SEV_SNP)
    assert tee_mask("sim") == 1 << TeeKind.SIM
    with pytest.raises(CommandFailed, match="unknown TEE kind 'h100'") as raised:
        tee_mask("tdx,h100")
    assert raised.value.code is ExitCode.USAGE


def test_a_wasm_workload_is_measured_as_the_enclave_measures_it(tmp_path: Path) -> None:
    module = tmp_path / "m.wasm"
    module.write_bytes(b"\0asm\1\0\0\0")
    kind, measurement = workload_of(module, None, None, None)
    assert kind.value == "wasm"
    assert measurement == "0x" + hashlib.sha256(module.read_bytes()).hexdigest()


def test_exactly_one_workload(tmp_path: Path) -> None:
    module = tmp_path / "m.wasm"
    module.write_bytes(b"\0asm")
    for given in ((None, None, None, None), (module, module, None, None)):
        with pytest.raises(CommandFailed, match="exactly one workload"):
            workload_of(*given)
    with pytest.raises(CommandFailed, match="not a directory"):
        workload_of(None, None, module, "/bin/true")


def test_submit_without_a_daemon_is_one_line_and_exit_3(tmp_path: Path) -> None:
    module = tmp_path / "m.wasm"
    module.write_bytes(b"\0asm\1\0\0\0")
    (tmp_path / "in").write_bytes(b"hello")
    config = tmp_path / "capa.toml"
    config.write_text(
        '[node]\nrole = "client"\ndata_dir = "."\n[chain]\nrpc_urls = ["http://127.0.0.1:9"]\nchain_id = 31337\n'
    )
    result = runner.invoke(
        app,
        [
            "job",
            "submit",
            "-c",
            str(config),
            "--wasm",
            str(module),
            "--input",
            str(tmp_path / "in"),
            "--output",
            str(tmp_path / "out"),
        ],
    )
    assert result.exit_code == int(ExitCode.UNREACHABLE), result.output
    assert "capa: job submit: no running daemon found" in result.output
    assert "Traceback" not in result.output


def test_a_bad_amount_is_a_usage_error(tmp_path: Path) -> None:
    module = tmp_path / "m.wasm"
    module.write_bytes(b"\0asm\1\0\0\0")
    result = runner.invoke(
        app,
        [
            "job",
            "submit",
            "--wasm",
            str(module),
            "--input",
            str(module),
            "--output",
            str(tmp_path / "o"),
            "--max-price",
            "lots",
        ],
    )
    assert result.exit_code == int(ExitCode.USAGE), result.output
    assert result.output.startswith("capa: job submit:")

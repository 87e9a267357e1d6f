"""Live collateral: a local HTTP server serves the test data in the Intel PCS v4 and AMD KDS
shapes (bodies, and the issuer chains in the headers as PCS sends them, URL-encoded); the
verifier's source fetches, caches by FMSPC / product and nextUpdate, refreshes ahead of
expiry, and answers from its cache while the server is down, until the collateral expires."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote as url_quote

import pytest

from node.collateral import LiveCollateralConfig, live_collateral_source, live_gpu_sources
from proofs.collateral_source import CachedCollateralSource, intel_collateral_expiry
from proofs.errors import CollateralError
from proofs.evidence import intel_collateral_request, verify_evidence
from proofs.intel_quote import parse_intel_quote

pytestmark = pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")

TESTDATA = Path(__file__).resolve().parents[2] / "data" / "attestation"


def _at(case: str) -> datetime:
    return datetime.fromisoformat(
        json.loads((TESTDATA / case / "case.json").read_text())["verify_at"].replace("Z", "+00:00")
    )


class _Routes:
    def __init__(self) -> None:
        self.files: dict[str, tuple[bytes, dict[str, str]]] = {}
        self.requests: list[str] = []

    def add(self, path: str, body: bytes, **headers: str) -> None:
        self.files[path] = (body, headers)


def _pcs_routes(case: str, routes: _Routes) -> None:
    folder = TESTDATA / case
    request = intel_collateral_request(parse_intel_quote((folder / "quote.bin").read_bytes()))
    tee = "tdx" if request.tdx else "sgx"
    chain = (folder / "tcb_signing_chain.pem").read_text()
    routes.add(
        f"/{tee}/certification/v4/tcb?fmspc={request.fmspc}",
        (folder / "tcb_info.json").read_bytes(),
        **{"TCB-Info-Issuer-Chain": url_quote(chain, safe="")},
    )
    routes.add(
        f"/{tee}/certification/v4/qe/identity",
        (folder / "qe_identity.json").read_bytes(),
        **{"SGX-Enclave-Identity-Issuer-Chain": url_quote(chain, safe="")},
    )
    routes.add(
        f"/sgx/certification/v4/pckcrl?ca={request.pck_ca}&encoding=der",
        (folder / "pck_crl.der").read_bytes(),
        **{
            "SGX-PCK-CRL-Issuer-Chain": url_quote(
                (folder / "pck_crl_issuer_chain.pem").read_text(), safe=""
            )
        },
    )
    routes.add("/IntelSGXRootCA.der", (folder / "root_ca_crl.der").read_bytes())


def _kds_routes(case: str, routes: _Routes) -> None:
    folder = TESTDATA / case
    fields = json.loads((folder / "case.json").read_text())["fields"]
    tcb = fields["reported_tcb"]
    query = f"blSPL={tcb['bl']}&teeSPL={tcb['tee']}&snpSPL={tcb['snp']}&ucodeSPL={tcb['ucode']}"
    base = f"/vcek/v1/{fields['product']}"
    routes.add(f"{base}/{fields['chip_id']}?{query}", (folder / "vcek.der").read_bytes())
    routes.add(f"{base}/cert_chain", (folder / "ask_ark.pem").read_bytes())


class _Server:
    def __init__(self, routes: _Routes) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                routes.requests.append(self.path)
                found = routes.files.get(self.path)
                if found is None:
                    self.send_response(404)
                    self.end_headers()
                    return
                body, headers = found
                self.send_response(200)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                routes.requests.append(f"POST {self.path} {len(self.rfile.read(length))}")
                self.send_response(503)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def routes() -> _Routes:
    return _Routes()


@pytest.fixture
def server(routes: _Routes) -> Iterator[_Server]:
    running = _Server(routes)
    yield running
    running.stop()


def _source(server: _Server, cache_dir: Path | None = None) -> CachedCollateralSource:
    return live_collateral_source(
        LiveCollateralConfig(
            intel_pcs_url=server.url,
            intel_root_ca_crl_url=f"{server.url}/IntelSGXRootCA.der",
            amd_kds_url=server.url,
            cache_dir=cache_dir,
            timeout_s=5.0,
        )
    )


def test_intel_collateral_is_fetched_once_then_served_from_cache(
    routes: _Routes, server: _Server
) -> None:
    _pcs_routes("tdx-4", routes)
    source = _source(server)
    quote = (TESTDATA / "tdx-4" / "quote.bin").read_bytes()
    first = verify_evidence(quote, source, _at("tdx-4")).claims
    assert first.tcb_status_name == "OutOfDate" and first.revocation_checked
    assert len(routes.requests) == 4
    verify_evidence(quote, source, _at("tdx-4") + timedelta(hours=1))
    assert len(routes.requests) == 4


def test_collateral_is_refreshed_ahead_of_its_expiry(routes: _Routes, server: _Server) -> None:
    _pcs_routes("tdx-4", routes)
    source = _source(server)
    quote = (TESTDATA / "tdx-4" / "quote.bin").read_bytes()
    verify_evidence(quote, source, _at("tdx-4"))
    request = intel_collateral_request(parse_intel_quote(quote))
    expiry = intel_collateral_expiry(source.intel_collateral(request, _at("tdx-4")))
    verify_evidence(quote, source, expiry - source.refresh_before + timedelta(minutes=1))
    assert len(routes.requests) == 8


def test_cache_answers_while_the_server_is_down_until_the_collateral_expires(
    routes: _Routes, server: _Server, tmp_path: Path
) -> None:
    _pcs_routes("tdx-4", routes)
    quote = (TESTDATA / "tdx-4" / "quote.bin").read_bytes()
    verify_evidence(quote, _source(server, tmp_path), _at("tdx-4"))
    server.stop()
    # A new source (a restarted daemon) with the server gone: the directory cache answers,
    # even inside the refresh window, and says why it could not refresh.
    restarted = _source(server, tmp_path)
    request = intel_collateral_request(parse_intel_quote(quote))
    expiry = intel_collateral_expiry(restarted.intel_collateral(request, _at("tdx-4")))
    claims = verify_evidence(quote, restarted, expiry - timedelta(minutes=1)).claims
    assert claims.tcb_status_name == "OutOfDate"
    assert restarted.last_refresh_error is not None and "GET" in restarted.last_refresh_error
    with pytest.raises(CollateralError, match="no cached collateral valid at"):
        verify_evidence(quote, restarted, expiry + timedelta(seconds=1))


def test_amd_vcek_and_chain_come_from_kds_by_product_chip_and_tcb(
    routes: _Routes, server: _Server
) -> None:
    _kds_routes("snp-2", routes)
    source = _source(server)
    report = (TESTDATA / "snp-2" / "report.bin").read_bytes()
    claims = verify_evidence(report, source, _at("snp-2")).claims
    assert claims.platform == "Milan"
    # No CRL on this server (404): verified, and the claims say revocation was not checked.
    assert not claims.revocation_checked
    assert routes.requests[-1].endswith("/crl")
    count = len(routes.requests)
    verify_evidence(report, source, _at("snp-2"))
    assert len(routes.requests) == count


def test_a_server_error_is_a_collateral_error_not_a_crash(routes: _Routes, server: _Server) -> None:
    quote = (TESTDATA / "tdx-4" / "quote.bin").read_bytes()
    with pytest.raises(CollateralError, match="HTTP 404"):
        verify_evidence(quote, _source(server), _at("tdx-4"))


def test_gpu_rims_come_from_the_rim_service_and_their_chain_is_checked_by_ocsp(
    routes: _Routes, server: _Server
) -> None:
    rim_id = "NV_GPU_VBIOS_1010_0200_882_96005E0001"
    rim = Path(__file__).resolve().parent / "data" / "nvidia" / f"{rim_id[13:]}_PROD.swidtag"
    answer = json.dumps({"id": rim_id, "rim": base64.b64encode(rim.read_bytes()).decode()})
    routes.add(f"/v1/rim/{rim_id}", answer.encode())
    rims, _ = live_gpu_sources(
        LiveCollateralConfig(
            nvidia_rim_url=f"{server.url}/v1/rim/", nvidia_ocsp_url=f"{server.url}/ocsp"
        )
    )
    # The RIM arrives and verifies; its chain's OCSP status is asked next, and this
    # responder is down: no manifest is handed out unchecked.
    with pytest.raises(CollateralError, match="HTTP 503"):
        rims.reference_manifest(rim_id, datetime(2024, 6, 1, tzinfo=UTC))
    assert routes.requests[0] == f"/v1/rim/{rim_id}"
    assert routes.requests[1].startswith("POST /ocsp ")

"""The containers' health check: ready only when the node's API answers as the role its config
names, with the token in its folder, and its p2p port is open; otherwise one line says why."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from node.config.model import Role
from node.devnet.health import main, not_ready
from node.devnet.node_files import base_settings, write_config

TOKEN = "s3cret-token"


class _Api(BaseHTTPRequestHandler):
    role = "verifier"

    def do_GET(self) -> None:
        if self.path != "/v1/status" or self.headers.get("Authorization") != f"Bearer {TOKEN}":
            self.send_response(401)
            self.end_headers()
            return
        body = json.dumps({"role": self.role}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def api() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Api)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def _node(directory: Path, p2p_port: int) -> Path:
    directory.mkdir()
    settings = base_settings(
        Role.VERIFIER,
        rpc_url="http://127.0.0.1:8545",
        chain_id=31337,
        market="0x" + "ab" * 20,
        start_block=1,
        p2p_port=p2p_port,
        bootstrap_peers=[],
        rendezvous_server=True,
        confirmations=1,
        poll_interval=0.25,
        log_level="info",
    )
    write_config(directory, settings)
    return directory


def test_ready_only_when_the_api_answers_as_its_role_and_p2p_listens(
    tmp_path: Path, api: ThreadingHTTPServer
) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    node = _node(tmp_path / "verifier-1", listener.getsockname()[1])
    assert "has not published its API" in str(not_ready(node))

    (node / "api.url").write_text(f"http://127.0.0.1:{api.server_address[1]}\n")
    (node / "api.token").write_text("another token\n")
    assert "/v1/status does not answer" in str(not_ready(node))

    (node / "api.token").write_text(TOKEN + "\n")
    assert "p2p port" in str(not_ready(node))
    listener.listen()
    try:
        assert not_ready(node) is None
        assert main([str(node)]) == 0
        _Api.role = "client"
        assert "answers as 'client', not as the verifier" in str(not_ready(node))
        assert main([str(node)]) == 1
    finally:
        _Api.role = "verifier"
        listener.close()


def test_a_folder_without_a_node_config_or_arguments_is_said_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert "no devnet node config" in str(not_ready(tmp_path))
    (tmp_path / "capa.toml").write_text("[node\n")
    assert "no devnet node config" in str(not_ready(tmp_path))
    assert main([]) == 2
    assert "usage" in capsys.readouterr().err

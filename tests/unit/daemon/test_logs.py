"""`capa node run` logs quietly by default: the node's lines, libraries' warnings, no chatter;
-v and -vv add the rest. Real loggers of the libraries the daemon runs, real records."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import libp2p  # noqa: F401  (its import cuts the libp2p loggers off from the root)
import pytest

from node.daemon.logs import configure_logging

HYPERCORN_BANNER = "Running on http://127.0.0.1:7420 (CTRL + C to quit)"
ALEMBIC_PLUGINS = "Context impl SQLiteImpl."


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, logging.lastResort)
    names = ("node", "httpx", "httpcore", "hypercorn.access")
    levels = {name: logging.getLogger(name).level for name in names}
    yield
    root.handlers[:], root.level, logging.lastResort = saved
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


def _emit_everything() -> None:
    # As in the daemon: py-libp2p's logger has no handler (pytest hangs its own on it).
    logging.getLogger("libp2p").handlers.clear()
    logging.getLogger("node.daemon.daemon").info("daemon ready")
    logging.getLogger("node.chain.watcher").debug("polled block 7")
    logging.getLogger("hypercorn.error").info(HYPERCORN_BANNER)
    logging.getLogger("alembic.runtime.migration").info(ALEMBIC_PLUGINS)
    logging.getLogger("httpx").info("HTTP Request: POST http://127.0.0.1:8545 200 OK")
    logging.getLogger("web3.providers").warning("a library warning")
    stream_log = logging.getLogger("libp2p.discovery.rendezvous.service")
    stream_log.error("Error handling stream from 12D3KooW: ")
    stream_log.warning("libp2p warning")
    stream_log.critical("libp2p critical")


def _lines(capsys: pytest.CaptureFixture[str], verbosity: int) -> list[str]:
    configure_logging("info", as_json=False, verbosity=verbosity)
    _emit_everything()
    return capsys.readouterr().err.splitlines()


def test_by_default_only_the_node_and_warnings(capsys: pytest.CaptureFixture[str]) -> None:
    err = "\n".join(_lines(capsys, 0))
    assert "INFO    node.daemon.daemon: daemon ready" in err
    assert "WARNING web3.providers: a library warning" in err
    for chatter in (
        "CTRL + C",
        ALEMBIC_PLUGINS,
        "HTTP Request",
        "polled block",
        "Error handling stream",
        "libp2p warning",
    ):
        assert chatter not in err
    # py-libp2p's records still come out in our format when they matter.
    assert "CRITICAL libp2p.discovery.rendezvous.service: libp2p critical" in err


def test_v_adds_debug_and_the_libraries_info(capsys: pytest.CaptureFixture[str]) -> None:
    err = "\n".join(_lines(capsys, 1))
    assert "DEBUG   node.chain.watcher: polled block 7" in err
    assert f"INFO    hypercorn.error: {HYPERCORN_BANNER}" in err
    assert ALEMBIC_PLUGINS in err
    assert "WARNING libp2p.discovery.rendezvous.service: libp2p warning" in err
    assert "HTTP Request" not in err


def test_vv_adds_everything(capsys: pytest.CaptureFixture[str]) -> None:
    err = "\n".join(_lines(capsys, 2))
    assert "INFO    httpx: HTTP Request: POST" in err
    assert "ERROR   libp2p.discovery.rendezvous.service: Error handling stream" in err


def test_the_configured_level_holds_for_the_node(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("warning", as_json=True, verbosity=0)
    logging.getLogger("node.daemon.daemon").info("daemon ready")
    logging.getLogger("node.daemon.alerts").warning('{"slash": 1}')
    err = capsys.readouterr().err
    assert "daemon ready" not in err
    assert '"level": "warning"' in err

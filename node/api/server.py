"""Serve the API with hypercorn's trio worker on loopback; publish its URL and a fresh token."""

from __future__ import annotations

import logging
import secrets
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve

from node.api.app import ApiApp
from node.api.discovery import url_file_for
from node.config.errors import PortInUse, address_in_use
from node.keys.files import replace_secret_file

if TYPE_CHECKING:
    # trio-typing's stale trio-stubs (pulled in by libp2p) hide trio.TaskStatus from mypy.
    from trio_typing import TaskStatus

log = logging.getLogger(__name__)


def new_token() -> str:
    return secrets.token_urlsafe(32)


class ApiServer:
    def __init__(self, app: ApiApp, *, host: str, port: int, token: str, token_file: Path) -> None:
        self._app = app
        self._host = host
        self._port = port
        self._token = token
        self._token_file = token_file
        self.url: str | None = None

    async def run(self, *, task_status: TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        config = HypercornConfig()
        config.bind = [f"{self._host}:{self._port}"]
        config.graceful_timeout = 2.0
        config.accesslog = None
        config.errorlog = logging.getLogger("hypercorn.error")
        config.keep_alive_timeout = 5.0
        async with trio.open_nursery() as nursery:
            try:
                binds = await nursery.start(partial(serve, self._app, config, mode="asgi"))  # type: ignore[arg-type]
            except BaseException as exc:
                # Two daemons on one machine: one line naming the key, not hypercorn's
                # traceback from four nurseries down.
                if address_in_use(exc):
                    raise PortInUse(
                        f"api.port: {self._host}:{self._port} is already in use (another "
                        "daemon on this machine?): set api.port (or CAPA_API_PORT) to a free port"
                    ) from None
                raise
            self.url = str(binds[0])
            replace_secret_file(self._token_file, self._token.encode())
            replace_secret_file(url_file_for(self._token_file), self.url.encode())
            log.info("API listening on %s (token in %s)", self.url, self._token_file)
            task_status.started(self.url)

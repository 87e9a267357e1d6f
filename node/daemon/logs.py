"""Logging setup: human lines or one JSON object per line (`--log-json`), quiet by default.

What an operator sees without asking is the node's own lines at `log.level` and the
libraries' warnings. `-v` adds the node's debug lines and the libraries' info (hypercorn's
"Running on ... (CTRL + C to quit)", the migration tool's plugin list), `-vv` everything.

py-libp2p cuts its loggers off from the root at import (no handler, no propagation), so
their records reach only `logging.lastResort`, which prints a bare message. That handler is
replaced by one with our format; by default it passes only CRITICAL, because py-libp2p logs
a peer closing a stream mid-request as an ERROR, and every fault a peer causes is logged by
`node.p2p` already, with the peer behind it. `LIBP2P_DEBUG` is py-libp2p's own switch.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}
TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"

# Per verbosity (no -v, -v, -vv): the level of libraries under the root logger, and of the
# py-libp2p records that reach the last-resort handler.
_LIBRARIES = (logging.WARNING, logging.INFO, logging.DEBUG)
_DETACHED = (logging.CRITICAL, logging.WARNING, logging.DEBUG)
# A line per HTTP request (every chain poll): only at -vv.
_PER_REQUEST = ("httpx", "httpcore", "hypercorn.access")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD:
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(level: str, *, as_json: bool, verbosity: int = 0) -> None:
    """The node's loggers at `level` (debug from -v on), libraries at warning (info at -v,
    debug at -vv); every line on stderr in one format."""
    step = max(0, min(verbosity, 2))
    formatter: logging.Formatter = JsonFormatter() if as_json else logging.Formatter(TEXT_FORMAT)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(_LIBRARIES[step])
    logging.getLogger("node").setLevel(logging.DEBUG if step else level.upper())
    for name in _PER_REQUEST:
        logging.getLogger(name).setLevel(logging.NOTSET if step == 2 else logging.WARNING)
    detached = logging.StreamHandler(sys.stderr)
    detached.setFormatter(formatter)
    detached.setLevel(_DETACHED[step])
    logging.lastResort = detached

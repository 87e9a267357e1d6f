"""Is a devnet node up? Its local API answers /v1/status, with the token in its folder, as the
role its config names, and its p2p port accepts connections.

The containers' health check (docker-compose.yml) runs this every few seconds per node:

    python3 -m node.devnet.health /devnet/verifier-1

so it imports the standard library alone (a tenth of a second, where `capa` takes seconds).
Exit 0 when ready; otherwise 1 and one line saying what is missing.
"""

from __future__ import annotations

import json
import socket
import sys
import tomllib
import urllib.error
import urllib.request
from pathlib import Path

# The names node_files.write_config and the daemon's defaults give these files in a devnet
# node's folder (its data dir).
CONFIG_NAME = "capa.toml"
TOKEN_NAME = "api.token"
URL_NAME = "api.url"
TIMEOUT_S = 2.0


def not_ready(directory: Path) -> str | None:
    """None when the node in `directory` is ready; else why not, in one line."""
    try:
        config = tomllib.loads((directory / CONFIG_NAME).read_text(encoding="utf-8"))
        role = str(config["node"]["role"])
        listen = list(config.get("p2p", {}).get("listen_addrs", []))
        p2p = bool(config.get("p2p", {}).get("enabled", False))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, KeyError, TypeError) as exc:
        return f"{directory / CONFIG_NAME}: no devnet node config ({exc})"
    try:
        url = (directory / URL_NAME).read_text(encoding="utf-8").strip()
        token = (directory / TOKEN_NAME).read_text(encoding="utf-8").strip()
    except OSError:
        return "the daemon has not published its API yet (api.url, api.token)"
    request = urllib.request.Request(
        url + "/v1/status", headers={"Authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as answer:
            status = json.load(answer)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return f"{url}/v1/status does not answer: {exc}"
    answered = status.get("role") if isinstance(status, dict) else None
    if answered != role:
        return f"{url} answers as {answered!r}, not as the {role} this config names"
    if p2p:
        for address in listen:
            port = _tcp_port(str(address))
            if port is None:
                continue
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT_S):
                    pass
            except OSError:
                return f"p2p port {port} does not accept connections yet"
    return None


def _tcp_port(multiaddr: str) -> int | None:
    parts = multiaddr.strip("/").split("/")
    if "tcp" in parts:
        index = parts.index("tcp") + 1
        if index < len(parts) and parts[index].isdigit():
            return int(parts[index])
    return None


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python3 -m node.devnet.health NODE_DIR", file=sys.stderr)
        return 2
    reason = not_ready(Path(args[0]))
    if reason is None:
        print("ready")
        return 0
    print(reason)
    return 1


if __name__ == "__main__":
    sys.exit(main())

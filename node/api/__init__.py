"""The local HTTP API (ASGI, served by hypercorn's trio worker) the CLI talks to."""
